"""Residual approximations of docs/numerics.md, section 3 (lowrank, dense, sparse) on one operand,
applied in the order written, each to what the previous one left."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..frontend.model import Dense, LowRank, Quant, Residual, Sparse
from .lowrank import factorize
from .quant import QArray, quantize


@dataclass
class TermResult:
    """One residual term's approximation R̂ of the current residual (operand's own layout)."""

    term: object
    approx: np.ndarray
    factors: tuple[np.ndarray, np.ndarray] | None = None  # (L, Ft) for lowrank
    q: object = None  # the QArray of dense and sparse terms
    notes: list[str] = field(default_factory=list)


def approximate(term: Residual, resid: np.ndarray, role: str) -> TermResult:
    """R̂ for one term: L Fᵀ (lowrank) or deq(Q(R)) with the term's quantizer (dense, sparse)."""
    if isinstance(term, LowRank):
        L, Ft = factorize(resid, term.method, term.rank, oversample=term.oversample,
                          power_iters=term.power_iters, seed=term.seed)
        return TermResult(term, L @ Ft, (L, Ft))
    if isinstance(term, (Dense, Sparse)):
        q = quantize(resid, term.quant, role)
        return TermResult(term, q.dequantize(), q=q)
    raise TypeError(f"not a residual term: {term!r}")


def apply_terms(terms: Iterable[Residual], resid: np.ndarray, role: str) -> list[TermResult]:
    out = []
    for term in terms:
        res = approximate(term, resid, role)
        out.append(res)
        resid = resid - res.approx
    return out


def sparsify(x: np.ndarray, threshold: float) -> tuple[np.ndarray, float]:
    """Keep |x_ij| >= 2 * threshold * mean|x| (mean over nonzeros); return (x_s, density)."""
    nz = np.abs(x[x != 0])
    cut = 2.0 * threshold * (nz.mean() if nz.size else 0.0)
    keep = np.abs(x) >= cut
    keep &= x != 0
    return np.where(keep, x, 0.0), float(keep.mean())


def sparse_quant(x: np.ndarray, term: Sparse, role: str, name: str) -> tuple[QArray, str]:
    """(Q(x_s), note) of the other operand for a sparse term, or Q(x) above max_density."""
    xs, density = sparsify(x, term.threshold)
    q: Quant = term.quant
    return quantize(x if density > term.max_density else xs, q, role), \
        density_note(name, density, term.max_density)


def density_note(name: str, density: float, max_density: float) -> str:
    if density > max_density:
        return (f"sparse: {name} density {density:.3f} > max_density {max_density:g}: "
                f"dense {name} used")
    return (f"sparse: {name} density {density:.3f} <= max_density {max_density:g}: "
            f"sparse {name} used")


def sparse_operand(x: np.ndarray, term: Sparse, role: str, name: str) -> tuple[np.ndarray, str]:
    """deq(Q(x_s)) of the other operand for a sparse term, or deq(Q(x)) above max_density."""
    q, note = sparse_quant(x, term, role, name)
    return q.dequantize(), note
