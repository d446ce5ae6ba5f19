"""LRAMM (docs/numerics.md, section 4): the whole product through quantized rank-r RSVD factors."""

from __future__ import annotations

import numpy as np

from ..frontend.model import Granularity, LowRankProduct, Quant
from .lowrank import factorize
from .quant import quantize


def factor_quant(bits: int) -> Quant:
    """Factors are quantized symmetric, per tensor, max-abs, round to nearest."""
    return Quant(f"int{bits}", Granularity.PER_TENSOR)


def side(p: LowRankProduct, x: np.ndarray, role: str) -> tuple[np.ndarray, np.ndarray]:
    """One operand's dequantized factors, √Σ on both: (UA, VAt) of A (seed, bits b1 and b2) or
    (UB, VBt) of B (seed + 1, bits b2 and b3). Each operand's pair depends on it alone."""
    left, right = factorize(x, p.method, p.rank, oversample=p.oversample,
                            power_iters=p.power_iters, seed=p.seed + (role == "b"), split="sqrt")
    b_left, b_inner, b_right = p.bits
    b1, b2 = (b_left, b_inner) if role == "a" else (b_inner, b_right)
    return (quantize(left, factor_quant(b1), role).dequantize(),
            quantize(right, factor_quant(b2), role).dequantize())


def factors(p: LowRankProduct, A: np.ndarray, B: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Dequantized factors (UA M x r, VAt r x K, UB K x r, VBt r x N), √Σ split onto both sides."""
    return (*side(p, A, "a"), *side(p, B, "b"))


def chain(ua: np.ndarray, vat: np.ndarray, ub: np.ndarray, vbt: np.ndarray) -> np.ndarray:
    """UA (VAt UB) VBt, the r x r core first, then the cheaper association."""
    core = vat @ ub
    m, n = ua.shape[0], vbt.shape[1]
    if m <= n:
        return (ua @ core) @ vbt
    return ua @ (core @ vbt)


def matmul(p: LowRankProduct, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    return chain(*factors(p, A, B))
