"""A's quantization statistics on its float32 bit patterns (te.quantize.statistics, where
signature.stats_see_non_finite holds): max |x| as the integer maximum of |x|'s patterns, and
min x / max x as integer extremes of patterns mapped to the order of the values. Both equal
the float statistics for finite values, and a NaN or an infinity in a group makes its
statistic infinite, so the scales computed from it are not finite and the kernel refuses A
by its scales, without a pass over A of its own. reduce_groups builds the reduction of a value
over each scale group (per tensor, row or K group) that every statistic of A uses."""

from __future__ import annotations

from collections.abc import Callable

from ...frontend.model import Granularity
from ...plan import names
from ..compat import PrimExpr, te, tir

F64 = "float64"


def reduce_groups(q, dims: tuple, f: Callable[..., PrimExpr], op, name: str) -> te.Tensor:
    """op (te.max or te.min) of f(i, k) over each of q's scale groups of the Mp x Kq operand:
    a (1, 1) block per tensor, else (Mp, groups) (one group per row unless grouped along K);
    group_index gives a row's group's place in it."""
    M, K, Mp, _, G, V = dims
    if q.granularity == Granularity.PER_TENSOR:
        r1, r2 = te.reduce_axis((0, M), "r1"), te.reduce_axis((0, K), "r2")
        return te.compute((1, 1), lambda _, __: op(f(r1, r2), axis=[r1, r2]), name=name)
    width, ng = (V, G) if q.grouped else (K, 1)
    r = te.reduce_axis((0, width), "r")
    return te.compute((Mp, ng), lambda i, g: op(f(i, g * width + r), axis=r), name=name)


def group_index(q) -> Callable[[PrimExpr, PrimExpr], tuple]:
    """(i, g) -> the index of row i's group g in a reduce_groups block."""
    if q.granularity == Granularity.PER_TENSOR:
        return lambda i, g: (0, 0)
    return (lambda i, g: (i, g)) if q.grouped else (lambda i, g: (i, 0))


def abs_max(q, bits, dims: tuple, tag: str):
    """quantize.statistics' max |x| blocks from bits(i, k) (integer maxima, then float64
    values)."""
    top = reduce_groups(q, dims, bits, te.max, names.QUANT_STATS + tag)
    return _as_abs_max(top, tag), None, group_index(q)


def _as_abs_max(top: te.Tensor, tag: str) -> te.Tensor:
    """The float64 max |x| of the int32 maxima of |x|'s bit patterns, NaN's lowered to
    infinity's."""
    inf = tir.const(0x7F800000, "int32")
    return te.compute(top.shape, lambda i, g: tir.reinterpret(
        "float32", tir.min(top[i, g], inf)).astype(F64), name="a_absmax" + tag)


def masked_bits(at: Callable[..., PrimExpr], M: int, K: int) -> Callable[..., PrimExpr]:
    """bits(i, k): the float32 A's bit pattern (int32) at(i, k) inside M x K, 0 (that of +0)
    outside. at reads clamped indices, so the load is always in bounds; it is masked rather
    than chosen by a select, whose true branch TVM simplifies under its condition (dropping the
    clamps: a load past A's end) and rather than a branch, which TVM's vectorizer turns into
    one element at a time where the condition differs by lane."""
    def bits(i: PrimExpr, k: PrimExpr) -> PrimExpr:
        mask = tir.Select(tir.all(i < M, k < K), tir.const(-1, "int32"), tir.const(0, "int32"))
        return tir.reinterpret("int32", at(i, k)) & mask
    return bits


def bits_of(at: Callable[..., PrimExpr], M: int, K: int) -> Callable[..., PrimExpr]:
    """bits(i, k) of the statistics for the float32 A of at(i, k): |A|'s bit pattern as int32
    (the sign bit cleared), 0 outside M x K; bits(i, k, ordered=True): A's own pattern as an
    int32 in the order of the float values (_ordered; 0 outside, that of +0)."""
    masked = masked_bits(at, M, K)

    def bits(i: PrimExpr, k: PrimExpr, ordered: bool = False) -> PrimExpr:
        b = masked(i, k)
        return _ordered(b) if ordered else b & tir.const(0x7FFFFFFF, "int32")
    return bits


def _ordered(b: PrimExpr) -> PrimExpr:
    """A float32 bit pattern b (int32) mapped to an int32 in the order of the float values:
    negative values' lower 31 bits flipped (-0 just below +0; NaNs with the sign bit below -inf,
    others above +inf). The map is its own inverse."""
    return b ^ ((b >> 31) & tir.const(0x7FFFFFFF, "int32"))


def min_max(q, bits, dims: tuple, tag: str):
    """quantize.statistics' max x and min x blocks (min-max calibration) from ordered bit
    patterns: integer maxima and minima, then float64 values, NaNs clamped to the infinity on
    their side: a NaN or infinity in a group makes its max +inf or its min -inf, so its range
    and every scale computed from it are not finite, as with max |x| (abs_max)."""
    lo_key, hi_key = (tir.const(_ORDERED_NEG_INF, "int32"), tir.const(0x7F800000, "int32"))

    def value(t: te.Tensor, name: str) -> te.Tensor:
        return te.compute(t.shape, lambda i, g: tir.reinterpret("float32", _ordered(
            tir.min(tir.max(t[i, g], lo_key), hi_key))).astype(F64), name=name + tag)

    def key(i: PrimExpr, k: PrimExpr) -> PrimExpr:
        return bits(i, k, True)

    top = reduce_groups(q, dims, key, te.max, names.QUANT_STATS + tag)
    low = reduce_groups(q, dims, key, te.min, names.QUANT_STATS + "_lo" + tag)
    return value(top, "a_max"), value(low, "a_min"), group_index(q)


_ORDERED_NEG_INF = -0x7F800001  # _ordered(-inf's pattern 0xFF800000)
