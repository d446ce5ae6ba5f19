"""Checks of a kernel's per-call numbers: its quantization scales (normal in float32), its
float32 result (finite) and that result's rounding to a narrow output type (decided)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..frontend.model import Calibration
from ..plan import signature as sig
from ..plan.model import KernelPlan
from ..plan.ranges import ScalePairs
from ..plan.support import centered_limit
from ..reference.inputs import to_output

F32_TINY = float(np.finfo(np.float32).tiny)


def pairs_hold(sp: ScalePairs, zc: np.ndarray, ga: np.ndarray, packed: Any) -> bool:
    """Whether a call's numbers keep the GEMM's int16 pairs of integer scales exact and in
    range (else it runs gemm_groups): where A's zero points come from the data, every group
    of its rows stored centred (zc = the centre, ScalePairs.offset, which no other group's
    zc can be: ScalePairs.centred); A's row scales ga and the packed column scales gb normal
    in float32 (a subnormal one keeps fewer bits); and a chunk's int32 total times A's row
    scale, at most 2^31 max |ga|, inside float32's range (the old path's group sums times a
    scale stay far smaller: 1e33 inputs must not fail where they fit)."""
    if sp.data and not (zc == sp.offset).all():
        return False
    if packed.normal_gb is None:
        gb = np.abs(packed.arrays.gb)
        packed.normal_gb = bool((gb[gb != 0] >= F32_TINY).all())
    top, low = float(np.abs(ga).max()), float(np.abs(ga).min())
    return packed.normal_gb and low >= F32_TINY and 2.0**31 * top * 1.01 < 1e38


def sum_bound(p: KernelPlan, dev_a: float = 255.0, dev_b: float = 255.0) -> float:
    """The largest |integer sum| an integer GEMM's epilogue multiplies by A's scale, then B's:
    Kp dev_a dev_b over all its groups, dev_a and dev_b the largest |code - zero point| of A's
    and B's codes (255 for codes of at most 8 bits with their zero points within the codes'
    range; more where min-max zero points lie outside it: support.code_deviations), or, where
    the groups are summed as int16 pairs of integer scales (signature.scale_pairs), the int32
    total times A's row scale, then B's column scale: at most 2^31, and a row (column) scale
    is at most any of its scales (their integers are at least 1)."""
    acc = p.kp * float(dev_a) * float(dev_b)
    return max(acc, 2.0**31) if sig.scale_pairs(p) else acc



def normal_scales(scales: np.ndarray, what: str, name: str, axis: int = 0) -> None:
    """InputError when a quantization scale is subnormal in float32 (int8: a group whose
    largest |value| is below about 1.5e-36; eXmY elements: the largest element, e.g. 57344 for
    e5m2, times that): the float32 epilogue of the integer GEMM or of the 16-bit float path
    would keep only a few of its bits (C off by percents). MX scales are powers of two, exact
    even there."""
    bad = (scales != 0) & (np.abs(scales) < F32_TINY)
    if bad.any():
        i = int(np.argwhere(bad)[0][axis])
        raise InputError(f"{name}: {what} {i}: a quantization scale of "
                         f"{float(scales[bad][0]):.3g} is subnormal in float32 (its values are "
                         "too small for the format's scales: below about 1.5e-36 for int8, "
                         "float32's smallest normal times the format's largest code), where the "
                         "kernels' epilogue would lose its precision; scale the data up (C "
                         "scales with it)")


def finite_scales(scales: np.ndarray, what: str, name: str, axis: int = 0) -> None:
    """InputError when a quantization scale of a finite operand is not finite in float32: a
    group whose values span more than its format's steps can hold (min-max over one step,
    uint1, with values near float32's largest)."""
    bad = ~np.isfinite(scales)
    if bad.any():
        i = int(np.argwhere(bad)[0][axis])
        raise InputError(f"{name}: {what} {i}: a quantization scale leaves float32's range "
                         "(about 3.4e38): the values span more than the format's steps hold; "
                         "scale the data down (C scales with it)")


def finite(c: np.ndarray) -> np.ndarray:
    """c, the float32 result of a kernel; InputError where an entry is not finite. The inputs
    are finite in float32, so an inf or NaN means that C, or a partial sum of it, left the
    float32 range the kernels compute in: a wrong number, where the reference (float64) would
    give the value, or +-inf rounded once."""
    if c.size and not (np.isfinite(c.min()) and np.isfinite(c.max())):  # NaN propagates
        i, j = np.argwhere(~np.isfinite(c))[0]
        raise InputError(f"C[{i}, {j}]: the product, or a step of its computation (a sum "
                         "times a scale), leaves float32's range (about 3.4e38) in the "
                         "kernel's float32 arithmetic; scale A or B down (lrqc.reference "
                         "computes it in float64)")
    return c


def sparse_top(p: KernelPlan, call: list[np.ndarray], static: list[np.ndarray]) -> float | None:
    """The largest |value| the sparse products of plan p add to C, from each product's
    per-call and static scales (call[j], static[j]): C += Σ_g acc_g s_call s_static with int32
    sums of codes of at most centered_limit(q) each, so |Σ_g acc_g| <= Kq limit² (either
    formulation: the dense one's shifted sums are corrected in int32 first). None where an
    intermediate (acc s_call first, or the scales' product) could overflow float32, or where a
    product's codes have zero points (their limit is then not proven)."""
    top = 0.0
    for sp, sc, ss in zip(p.sparse, call, static, strict=True):
        if not sp.q.signed or sp.q.calibrate == Calibration.MINMAX:
            return None
        acc = p.kq * float(centered_limit(sp.q)) ** 2
        a, b = float(np.abs(sc).max()), float(np.abs(ss).max())
        if not (a * b < np.inf and max(acc * a, acc * b, a * b) * 1.01 < 1e38):  # NaN: None
            return None
        top += acc * a * b
    return top


# float16 / bfloat16: the float32 values at and above which rounding gives infinity
OVERFLOW = {"float16": 65520.0, "bfloat16": float(np.float32(2.0**127 * (2 - 2.0**-8)))}
BAND = 2.0**-14  # relative: well above the rounding of the integer GEMMs' float32 epilogues
#   (float32 GEMMs whose sums cancel can be further off: docs/numerics.md)


def kernel_output(c: np.ndarray, name: str) -> np.ndarray:
    """to_output of a kernel's float32 C. A value within BAND of the output type's overflow
    threshold is refused (InputError): computed in float32, it cannot tell 65504 from infinity
    (a true 65519.997 that float32 rounds to 65520 would become infinity where the reference
    gives 65504)."""
    top = OVERFLOW.get(name)
    if top is not None and c.size:
        lo, hi = top * (1 - BAND), top * (1 + BAND)
        near = (np.abs(c) >= lo) & (np.abs(c) <= hi) if max(c.max(), -c.min()) >= lo else None
        if near is not None and near.any():
            i, j = (int(v) for v in np.argwhere(near)[0])
            raise InputError(f"C[{i}, {j}] = {float(c[i, j]):.9g} lies within float32's rounding "
                             f"of {name}'s overflow threshold ({top:.9g}): whether it rounds to "
                             f"the largest {name} or to infinity is not decided in float32; use "
                             "output: float32, or scale the data down")
    return to_output(c, name)
