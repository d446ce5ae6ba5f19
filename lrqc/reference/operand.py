"""One operand after its base treatment (docs/numerics.md, sections 1, 3 and 4): quantized and
dequantized, rounded to its float type, or factorized by LPLR, with its residual terms; and the
forms of it the other operand's terms multiply (held, sparse_copy), computed once per operand."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..frontend.model import FloatOperand, LplrOperand, Operand, Sparse
from . import lplr as lplr_mod
from .inputs import round_float
from .quant import QArray, quantize
from .residual import TermResult, apply_terms, sparse_operand


@dataclass
class Prepared:
    """One operand after its base treatment: `base` is what the direct product uses (deq(Q(X)),
    the float-rounded X, or LPLR's L R + beta); `terms` approximate the residual X - base.
    `memo` keeps what the other operand's terms derive from this one (held, sparse copies)."""

    role: str
    x: np.ndarray
    base: np.ndarray
    q: QArray | None = None
    terms: list[TermResult] = field(default_factory=list)
    lplr: tuple | None = None
    memo: dict = field(default_factory=dict, repr=False, compare=False)


def prepare(op: Operand, x: np.ndarray, role: str) -> Prepared:
    """Operand `op` (of role "a" or "b") applied to x: its base and residual terms."""
    if isinstance(op, FloatOperand):
        # a float operand *is* its rounding to the declared type, in the base product and in
        # every residual term that multiplies it (a kernel never sees the unrounded values)
        xr = round_float(x, op.dtype, role.upper())
        return Prepared(role, xr, xr)
    if isinstance(op, LplrOperand):
        fn = lplr_mod.lplr if op.method == "lplr" else lplr_mod.dsvd
        if op.method == "lplr":
            L, R, beta = fn(x, op.rank, op.left_bits, op.right_bits, power_iters=op.power_iters,
                            seed=op.seed, normalize_shift=op.normalize_shift)
        else:
            L, R, beta = fn(x, op.rank, op.left_bits, op.right_bits)
        return Prepared(role, x, L @ R + beta, lplr=(L, R, beta))
    q = quantize(x, op.quant, role)
    base = q.dequantize()
    return Prepared(role, x, base, q, apply_terms(op.residuals, x - base, role))


def held(pb: Prepared) -> np.ndarray:
    """X̂ (of operand b: B̂): the operand as a kernel holds it, the base (deq(Q(B)), the rounded
    float B, or LPLR's L R + beta) plus the reconstruction of each of its residual terms
    (L_B F_Bᵀ, deq(Q(R_B))); what A's lowrank term multiplies with other=packed."""
    if "held" not in pb.memo:
        pb.memo["held"] = pb.base + sum((t.approx for t in pb.terms), np.zeros_like(pb.base))
    return pb.memo["held"]


def sparse_copy(p: Prepared, term: Sparse) -> tuple[np.ndarray, str]:
    """(deq(Q(x_s)), note): the thresholded, requantized copy of this operand that a sparse term
    of the other operand multiplies (the whole operand above max_density)."""
    key = ("sparse", term)
    if key not in p.memo:
        p.memo[key] = sparse_operand(p.x, term, p.role, p.role.upper())
    return p.memo[key]
