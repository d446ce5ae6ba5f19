"""to_te for the integer GEMM of quantized products: gemm multiplies u8 codes of A (offset 128
when A is signed) with s8 weights packed as Bp[N/16, K/4, 16, 4] (or packed densely: te.unpack)
and corrects with zc[i,g]·colsum[g,j] (and, for weights with zero points, ra[i,g]·zb[g,j]), so
acc - zc·colsum = Σ (qA - zA) qB exactly: subtracted after the sums, or, per K group where the
correction is one vector for all rows, as the value the sums start from (_group_sums); the
epilogue (epilogue.py) dequantizes the sums and adds the low-rank terms. int_only gives the
corrected integer sums themselves. Two-level integer scales whose products with the group sums
fit int16 pairs (plan.signature.scale_pairs) may be summed over the groups in int32 instead
(_pair_sums), then dequantized once by the row's and column's float scales."""

from __future__ import annotations

from ...plan import names, ranges
from ...plan import signature as sig
from ...plan.model import KernelPlan
from ..compat import PrimExpr, te, tir
from . import flipped, unpack
from .epilogue import dequantize, epilogue_terms


def _int_sum(shape, prod, width: int, name: str, pairs: bool, init=None):
    """int32 sums of prod(*idx, k) over k < width: directly, or (pairs) as two interleaved half
    sums over k pairs (2h, 2h+1) of every 4 (the vpmaddwd order), added in a block `name`.
    init(*idx) (direct sums only): the value each sum starts from instead of 0."""
    if not pairs:
        k = te.reduce_axis((0, width), "k")
        return te.compute(shape, lambda *idx: te.sum(
            prod(*idx, k), axis=k, init=None if init is None else init(*idx)), name=name)
    assert init is None, "the pairs' sums start from 0"
    k4, t = te.reduce_axis((0, width // 4), "k4"), te.reduce_axis((0, 2), "t")
    half = te.compute(tuple(shape) + (2,), lambda *idx: te.sum(
        prod(*idx[:-1], k4 * 4 + idx[-1] * 2 + t), axis=[k4, t]), name=name + names.PAIRS)
    h = te.reduce_axis((0, 2), "h")
    return te.compute(shape, lambda *idx: te.sum(half[idx + (h,)], axis=h), name=name)


class _Shifted:
    """acc[i, j] of the s8 formulation read back as the u8 sum: acc_s8 + 128 cs[0, j]."""

    def __init__(self, acc, cs):
        self.acc, self.cs = acc, cs

    def __getitem__(self, ij):
        i, j = ij
        return self.acc[i, j] + 128 * self.cs[0, j]


def _group_sums(p: KernelPlan, prod, corr, pairs: bool, start: bool):
    """(part, rest): the int32 sums of each K group, part[i, g, j], and what is left to
    subtract from them, rest(i, g, j): corr, or nothing where each sum starts from -corr
    (block names.PARTIAL_START, the sum's initialization: backend.compat.START): with start,
    not pairs, and corr one vector per group for all rows (a static zero correction, weights
    without zero points; a product per row in the start value ran 2 % slower than after the
    sums: VS-Quant w4a4 at 2048³ on a Zen 4)."""
    Mp, Np, G, V = p.mp, p.np_, p.groups, p.vector

    def group(i: PrimExpr, g: PrimExpr, j: PrimExpr, k: PrimExpr) -> PrimExpr:
        return prod(i, j, g * V + k)

    if not start or pairs or p.a_zero_static is None or p.b_zero:
        return _int_sum((Mp, G, Np), group, V, names.PARTIAL, pairs), corr
    first = te.compute((Mp, G, Np), lambda i, g, j: -corr(i, g, j), name=names.PARTIAL_START)
    part = _int_sum((Mp, G, Np), group, V, names.PARTIAL, pairs, lambda i, g, j: first[i, g, j])
    return part, lambda i, g, j: tir.const(0, "int32")


def _pair_sums(p: KernelPlan, part: te.Tensor, levels: list[te.Tensor]) -> te.Tensor:
    """int32 totals [Mp, G / chunk, Np] of each chunk of groups (ranges.ScalePairs.chunk):
    Σ_g (part[i, g, j] - offset·cqb[g // 2, j, g % 2])·sqa[i, g]·sqb[g // 2, j, g % 2] (block
    names.PAIR_SUMS), part the stored codes' sums and offset A's fixed zero correction
    (ScalePairs.offset: its storage offset, or where its zero points come from the data, the
    centre its codes are stored around; none where it is 0). Exact where signature.scale_pairs
    holds and, with data zero points, every group of the call is centred: a rule subtracts the
    correction from the sums in int16 (modulo 2^16, exact as the corrected sum fits) and sums
    each two groups' int16 pairs in one instruction (vpdpwssd; AVX2: vpmaddwd per 8 columns)."""
    sqa, _, sqb, _, *cqb = levels
    sp = ranges.pairs_of(p)
    r = te.reduce_axis((0, sp.chunk), "g")

    def sums(i: PrimExpr, g: PrimExpr, j: PrimExpr) -> PrimExpr:
        s = part[i, g, j] - cqb[0][g // 2, j, g % 2].astype("int32") * sp.offset if cqb else \
            part[i, g, j]
        return s * (sqa[i, g].astype("int32") * sqb[g // 2, j, g % 2].astype("int32"))

    return te.compute((p.mp, p.groups // sp.chunk, p.np_), lambda i, c, j: te.sum(
        sums(i, c * sp.chunk + r, j), axis=r), name=names.PAIR_SUMS)


def _pair_output(p: KernelPlan, tot: te.Tensor, levels: list[te.Tensor], output, grouped,
                 out_start: bool) -> te.Tensor:
    """C from the chunks' int32 totals, each times A's row and B's column scale in float32:
    one chunk an elementwise output, several a reduction over them (epilogue_terms)."""
    def chunk(i: PrimExpr, j: PrimExpr, c: PrimExpr) -> PrimExpr:
        return dequantize(tot[i, c, j].astype("float32"), levels[1][i, 0], levels[3][0, j])

    nc = int(tot.shape[1])
    if nc == 1:
        return output((p.mp, p.np_), lambda i, j: chunk(i, j, 0), names.OUT)
    return grouped((p.mp, p.np_), chunk, nc, names.OUT, out_start)


def _weights(p: KernelPlan) -> tuple[te.Tensor, te.Tensor]:
    """(the weights' placeholder, Bp[N/16, K/4, 16, 4] as the sums read it): int8 codes, or
    codes below a byte each unpacked per tile by the schedule (block names.UNPACK)."""
    Np, Kp = p.np_, p.kp
    if not p.packed:
        Bp = te.placeholder((Np // 16, Kp // 4, 16, 4), "int8", name="Bp")
        return Bp, Bp
    b_in = unpack.packed_input(p)
    return b_in, te.compute((Np // 16, Kp // 4, 16, 4), lambda n, k4, j, kk: unpack.code(
        b_in, p.pack_bits, n, k4, j * 4 + kk, 64), name=names.UNPACK)


def _zero_points(p: KernelPlan) -> list[te.Tensor]:
    """Weights with zero points: [ra (row sums of A's centered codes), zb (zero - offset)]."""
    if not p.b_zero:
        return []
    return [te.placeholder((p.mp, p.groups), "int32", name="ra"),
            te.placeholder((p.groups, p.np_), "int32", name="zb")]


def _levels(p: KernelPlan) -> list[te.Tensor]:
    """Two-level integer scales the groups may be summed with (signature.scale_pairs): [sqa,
    ga, sqb, gb], A's integer and row scales, then B's in pairs of groups and column scales,
    and with zero corrections (signature.zero_pairs) [cqb], B's column sums as such pairs."""
    if not sig.scale_pairs(p):
        return []
    Mp, Np, G = p.mp, p.np_, p.groups
    sqb, cqb = ranges.pairs_of(p).narrow
    zeros = [te.placeholder((G // 2, Np, 2), cqb, name=sig.CQB)] if sig.zero_pairs(p) else []
    return [te.placeholder((Mp, G), "int16", name=sig.SQA),
            te.placeholder((Mp, 1), "float32", name=sig.GA),
            te.placeholder((G // 2, Np, 2), sqb, name=sig.SQB),
            te.placeholder((1, Np), "float32", name=sig.GB), *zeros]


def _s8_sums(p: KernelPlan, Aq: te.Tensor, Bp: te.Tensor) -> te.Tensor:
    """The s8 formulation's sums Σ (a - 128)·b: A's codes shifted to s8 (block names.A_S8),
    B read as a K-contiguous N x K matrix (block names.B_NK)."""
    a8 = te.compute((p.mp, p.kp), lambda i, k: (Aq[i, k].astype("int32") - 128).astype("int8"),
                    name=names.A_S8)
    bnk = te.compute((p.np_, p.kp), lambda n, k: Bp[n // 16, k // 4, n % 16, k % 4],
                     name=names.B_NK)
    k = te.reduce_axis((0, p.kp), "k")
    return te.compute((p.mp, p.np_), lambda i, j: te.sum(
        a8[i, k].astype("int32") * bnk[j, k].astype("int32"), axis=k), name=names.ACC)


def gemm(p: KernelPlan, int_only: bool = False, pairs: bool = False, s8: bool = False,
         start: bool = False, out_start: bool = False, scale_pairs: bool = False,
         signed: bool = False) -> list[te.Tensor]:
    """Tensors [Aq, Bp, sa, zc, sb, cs, C] (or [Aq, Bp, zc, cs, acc] when int_only). With
    pairs, the int32 sums are formed as vpmaddwd does (see _int_sum): same integers. With s8
    (single group; tensor cores multiply s8 by s8), A's codes are shifted to s8 (a - 128, block
    names.A_S8) and B read as a K-contiguous N x K matrix (block names.B_NK): acc_s8 + 128 cs
    is the u8 sum, exactly. With signed (AVX2's vpsignb + vpmaddubsw), A's codes arrive flipped
    (te.flipped: each stored code a less 128, as int8) and each product is (a - 128)·b, in the
    same blocks: the sums lack 128 cs, so their zero correction is 128 cs less (none for A's
    signed codes, stored + 128). With start
    (ScheduleRule.sums_start: not AMX's tiles nor CUDA), per-group sums may start from minus
    their correction (_group_sums; int8 per_vector(16) at 2048³ on a Zen 4: 34 -> 29 ms);
    with out_start (ScheduleRule.output_start), an output
    summed over K groups starts from the bias (epilogue_terms); with scale_pairs
    (ScheduleRule.scale_pairs) and start, a plan whose groups fit int16 pairs sums them so
    (_pair_sums). Plans with such scales take A's and B's integer and float scales (sqa, ga,
    sqb, gb) whatever the formulation."""
    assert not (s8 and signed), "one formulation of A's shifted codes at a time"
    Mp, Np, Kp, G = p.mp, p.np_, p.kp, p.groups
    Aq = te.placeholder((Mp, Kp), "uint8", name="Aq")
    b_in, Bp = _weights(p)
    sa = te.placeholder((Mp, G), "float32", name="sa")
    zc = te.placeholder((Mp, G), "int32", name="zc")
    sb = te.placeholder((G, Np), "float32", name="sb")
    cs = te.placeholder((G, Np), "int32", name="cs")
    zeros, levels = _zero_points(p), _levels(p) if not int_only else []
    extra = zeros + levels
    static = p.a_zero_static  # zc the same everywhere: no per-row load or product
    shift = 128 if signed else 0  # the signed sums are Σ (a - 128)·b: 128 cs less

    def corr(i: PrimExpr, g: PrimExpr, j: PrimExpr) -> PrimExpr:
        if static is None:
            c = (zc[i, g] - shift if shift else zc[i, g]) * cs[g, j]
        else:
            c = cs[g, j] * (static - shift) if static != shift else tir.const(0, "int32")
        return c + zeros[0][i, g] * zeros[1][g, j] if zeros else c

    lr_in, output, grouped = epilogue_terms(p)

    def prod(i: PrimExpr, j: PrimExpr, k: PrimExpr) -> PrimExpr:
        a = flipped.less_128(Aq[i, k]) if signed else Aq[i, k].astype("int32")
        return a * Bp[j // 16, k // 4, j % 16, k % 4].astype("int32")

    if s8:
        assert G == 1, "the s8 formulation is for single-group products"
        acc = _Shifted(_s8_sums(p, Aq, Bp), cs)
    elif G == 1:
        acc = _int_sum((Mp, Np), prod, Kp, names.ACC, pairs)
    if G == 1:
        if int_only:
            out = te.compute((Mp, Np), lambda i, j: acc[i, j] - corr(i, 0, j), name=names.OUT)
            return [Aq, b_in, zc, cs, *extra, out]
        C = output((Mp, Np), lambda i, j: dequantize(
            (acc[i, j] - corr(i, 0, j)).astype("float32"), sa[i, 0], sb[0, j]), names.OUT)
        return [Aq, b_in, sa, zc, sb, cs, *extra, *lr_in, C]
    in_pairs = bool(levels) and scale_pairs and start and not pairs
    assert not (in_pairs and signed), "the pair sums correct the stored codes' sums"
    part, rest = _group_sums(p, prod, corr, pairs, start and not in_pairs)
    if in_pairs:  # the stored codes' sums, each less its zero correction in the pairs
        C = _pair_output(p, _pair_sums(p, part, levels), levels, output, grouped, out_start)
        return [Aq, b_in, sa, zc, sb, cs, *extra, *lr_in, C]
    if p.chunked and not int_only:  # K chunks of one scale: int32 partials added in int64
        g = te.reduce_axis((0, G), "g")
        tot = te.compute((Mp, Np), lambda i, j: te.sum(
            (part[i, g, j] - rest(i, g, j)).astype("int64"), axis=g), name=names.ACC64)
        C = output((Mp, Np), lambda i, j: dequantize(tot[i, j].astype("float32"), sa[i, 0],
                                                      sb[0, j]), names.OUT)
        return [Aq, b_in, sa, zc, sb, cs, *extra, *lr_in, C]
    if int_only:
        out = te.compute((Mp, G, Np), lambda i, g, j: part[i, g, j] - rest(i, g, j),
                         name=names.OUT)
        return [Aq, b_in, zc, cs, *extra, out]
    C = grouped((Mp, Np), lambda i, j, g: dequantize(
        (part[i, g, j] - rest(i, g, j)).astype("float32"), sa[i, g], sb[g, j]), G, names.OUT,
        out_start)
    return [Aq, b_in, sa, zc, sb, cs, *extra, *lr_in, C]
