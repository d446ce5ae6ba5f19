"""A's integer codes in float32 where float32 provably gives the float64 codes (CPU passes).

The reference computes a code as R(fl64(x / s)) + z, clipped: a float64 quotient rounded to
an integer. quantize.quotient reproduces the quotient with a product and four FMAs on eight
float64 lanes. The code only depends on which side of each rounding boundary (half-integers
for nearest, integers for floor and trunc) the quotient falls, and float32 decides that on
sixteen lanes from p = fl32(x · y32), y32 = fl32(fl64(1 / s)), unless p lies close to a
boundary. Each row gets a score, the largest over its elements of

    w + |p| · 2^-22   (nearest, nearest_away)   or   (0.5 - w) + |p| · 2^-22   (floor, trunc)

with w = |p - rint(p)|, p's distance to the nearest integer. A row whose score is at most
0.5 - 2^-22 and whose every group's scale lies in [2^-126, 2^126] (zero point at most 2^22
in size) takes its codes from p: R(p) + z, clipped, all float32 integers and exact. Any other
row is computed by the float64 path, so the codes are always the reference's.

Why p decides. Let t = x / s exactly. y = fl64(1 / s) is within 2^-53 of 1 / s (relative) and
y32 within 2^-24 of y (a normal float32, by the scale's range); p is within 2^-24 of x · y32
(or 2^-150 where it underflows). Together |p - t| <= |t| · 2^-23 (1 + 2^-25) + 2^-150, at most
|p| · 2^-22 + 2^-149. The score itself is computed in float32: w is exact (p and its nearest
integer are within a factor of two, or that integer is 0), and the sum rounds by less than
2^-24. LLVM may fuse x · y32 - rint(p) into one FMA; that w is |x · y32 - rint(p)| rounded
once, within the same 2^-24. So a row that passes has, for every element,
|t - rint(p)| <= w + |p| · 2^-22 + 2^-149 < 0.5 - 2^-23 (nearest), or its distance to the
nearest integer w >= |p - t| + 2^-23 (floor, trunc; an element x = 0 scores 0 there, its
code exactly R(0) + z = z). Then t, and fl64(t) with it, lies strictly on the same side of
every boundary as p: fl64 is monotone and moves t by at most 2^-31 for |t| < 2^22, which
every passing row's elements obey (|p| · 2^-22 <= 0.5).

The codes' own rounding is TVM's round (LLVM's nearbyint: ties to even) for nearest and
nearest_away alike: a passing row has no element within 2^-23 of a half-integer, so no tie
is ever rounded there. The checks on the scales and the zero point keep the bounds above
true by construction; the kernels' other checks make them redundant in practice (a scale
subnormal in float32 is refused per call, every format's largest scale is under 2^126, and a
zero point past 2^21 makes |p| too large for any row to pass).

Random normal data sends about 3 % of int8 rows of 2048 elements (5 % of 4096, under 1 % of
int4 rows) down the float64 path; the pass as a whole ran 1.4-1.7 times as fast."""

from __future__ import annotations

from collections.abc import Callable

from ...frontend.model import Rounding
from ...plan import names
from ..compat import PrimExpr, te, tir

F32 = "float32"
MARGIN = 2.0**-22  # times |p|: the score's allowance for p's error (|p| 2^-23 and less)
LIMIT = 0.5 - 2.0**-22  # the largest score of a row whose codes come from p
SCALE_LO, SCALE_HI, ZERO_MAX = 2.0**-126, 2.0**126, 2.0**22
AMB = names.QUANT_STATS + "_amb"  # the blocks' names: scores, then the rows' scale checks
OKS = names.QUANT_STATS + "_oks"


def guard(q, x32: Callable[..., PrimExpr], dims: tuple, rcp: te.Tensor, s_eff: te.Tensor,
          zf: Callable[..., PrimExpr], sidx: Callable[..., tuple], bounds: tuple[float, float],
          offset: float, tag: str = "") -> Callable[..., PrimExpr]:
    """code(i, k, exact, dt): the code of x32(i, k) (A's float32 value, 0 outside M x K) as dt,
    from float32 in rows where that is proven, else `exact` (the float64 path's code, as dt).
    rcp / s_eff: the float64 reciprocal scales and scales; zf(i, g) the float64 zero point of
    row i's group g; bounds (qmin, qmax); offset added to every code."""
    _, _, Mp, Kq, _, V = dims
    y32 = te.compute(rcp.shape, lambda i, g: rcp[i, g].astype(F32), name="a_rcp32" + tag)
    nearest = q.round in (Rounding.NEAREST, Rounding.NEAREST_AWAY)
    half, margin = tir.const(0.5, F32), tir.const(MARGIN, F32)

    def product(i: PrimExpr, k: PrimExpr) -> PrimExpr:
        return x32(i, k) * y32[sidx(i, k // V)]

    def score(i: PrimExpr, k: PrimExpr) -> PrimExpr:
        p = product(i, k)
        w = tir.abs(p - tir.round(p))
        if nearest:
            return w + tir.abs(p) * margin
        # an integer boundary at 0 too: exact zeros (ReLU's, K's padding) are codes 0 as such
        return tir.Select(x32(i, k) == 0, tir.const(0.0, F32), half - w + tir.abs(p) * margin)

    r = te.reduce_axis((0, Kq), "r")
    amb = te.compute((Mp,), lambda i: te.max(score(i, r), axis=r), name=AMB + tag)

    def fits(i: PrimExpr, g: PrimExpr) -> PrimExpr:
        s, z = s_eff[sidx(i, g)], tir.abs(zf(i, g))
        return tir.Select(tir.all(s >= SCALE_LO, s <= SCALE_HI, z <= ZERO_MAX),
                          tir.const(1, "int32"), tir.const(0, "int32"))

    rg = te.reduce_axis((0, int(s_eff.shape[1])), "rg")
    oks = te.compute((Mp,), lambda i: te.min(fits(i, rg), axis=rg), name=OKS + tag)
    rnd = {Rounding.FLOOR: tir.floor, Rounding.TRUNC: tir.trunc}.get(q.round, tir.round)
    lo, hi = (tir.const(float(b), F32) for b in bounds)

    def code(i: PrimExpr, k: PrimExpr, exact: PrimExpr, dt: str) -> PrimExpr:
        z = zf(i, k // V).astype(F32)
        fast = tir.min(tir.max(rnd(product(i, k)) + z, lo), hi) + tir.const(offset, F32)
        ok = tir.all(amb[i] <= tir.const(LIMIT, F32), oks[i] > 0)
        return tir.if_then_else(ok, fast.astype(dt), exact)

    return code
