"""A's codes stored centred on their min-max zero points, for products whose K groups the GEMM
sums as int16 pairs of integer scales (plan.ranges.ScalePairs.data).

Each group's corrected sum Σ (a - zc)·b is what the pairs scale. With A's zero points from the
data, zc differs per row and group, and subtracting zc·cs costs an int16 product per row; with
the codes stored as a - zc + c and zc read as c, the correction is c·cs, one vector per group
and 16 columns for all rows, as for signed formats' fixed offset. The sums are the same
integers. A group is centred where every code of its format lies within the pairs' reach of
its zero point (zc in ScalePairs.centred: the codes then fit a byte); any other keeps its codes
and zero point, and a call with such a group runs gemm_groups (runtime.checks.pairs_hold).
The centre c (ScalePairs.offset) is the top of that interval, so a group that is not centred
never has zc = c: the call's zc alone tells whether all its groups are."""

from __future__ import annotations

from collections.abc import Callable

from ...plan import names, ranges
from ...plan.model import KernelPlan
from ..compat import PrimExpr, te, tir


def centred(p: KernelPlan, code: Callable[..., PrimExpr], zc: te.Tensor,
            out: Callable[[PrimExpr], PrimExpr] = lambda v: v
            ) -> tuple[te.Tensor, te.Tensor]:
    """(Aq, zc) of quantize_a for a plan whose pairs take data zero points (out: how Aq holds
    a stored code, quantize's flip or as it is): the codes (uint8,
    code(i, k, "uint8") as the quantizer gives them) shifted by c - zc in the groups whose zc
    lies within ScalePairs.centred, c the centre (ScalePairs.offset), and the zero
    corrections as the GEMM then reads them (c there, zc elsewhere)."""
    sp = ranges.pairs_of(p)
    assert sp.data, "codes are centred for data zero points only"
    lo, hi = sp.centred.lo, sp.centred.hi

    def shift(i: PrimExpr, g: PrimExpr) -> PrimExpr:
        z = zc[i, g]
        return tir.Select(tir.all(lo <= z, z <= hi), sp.offset - z, 0)

    aq = te.compute((p.mp, p.kq), lambda i, k: out((code(i, k, "uint8").astype("int32") + shift(
        i, k // p.vector)).astype("uint8")), name=names.QUANT_CODES)
    return aq, te.compute(zc.shape, lambda i, g: zc[i, g] + shift(i, g), name="zc")
