"""LRAMM (docs/numerics.md, section 4): the whole product through quantized rank-r RSVD factors."""

from __future__ import annotations

import numpy as np

from ..frontend.model import Granularity, LowRankProduct, Quant
from .lowrank import factorize
from .quant import quantize


def factor_quant(bits: int) -> Quant:
    """Factors are quantized symmetric, per tensor, max-abs, round to nearest."""
    return Quant(f"int{bits}", Granularity.PER_TENSOR)


def factors(p: LowRankProduct, A: np.ndarray, B: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Dequantized factors (UA M x r, VAt r x K, UB K x r, VBt r x N), √Σ split onto both sides."""
    ua, vat = factorize(A, p.method, p.rank, oversample=p.oversample,
                        power_iters=p.power_iters, seed=p.seed, split="sqrt")
    ub, vbt = factorize(B, p.method, p.rank, oversample=p.oversample,
                        power_iters=p.power_iters, seed=p.seed + 1, split="sqrt")
    b_left, b_inner, b_right = p.bits
    ua = quantize(ua, factor_quant(b_left), "a").dequantize()
    vat = quantize(vat, factor_quant(b_inner), "a").dequantize()
    ub = quantize(ub, factor_quant(b_inner), "b").dequantize()
    vbt = quantize(vbt, factor_quant(b_right), "b").dequantize()
    return ua, vat, ub, vbt


def chain(ua: np.ndarray, vat: np.ndarray, ub: np.ndarray, vbt: np.ndarray) -> np.ndarray:
    """UA (VAt UB) VBt, the r x r core first, then the cheaper association."""
    core = vat @ ub
    m, n = ua.shape[0], vbt.shape[1]
    if m <= n:
        return (ua @ core) @ vbt
    return ua @ (core @ vbt)


def matmul(p: LowRankProduct, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    return chain(*factors(p, A, B))
