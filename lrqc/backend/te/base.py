"""to_te for the base quantized product: quantize_a (per call) and gemm (int GEMM + epilogue).

quantize_a computes in float64 with the reference's exact operations (max |x|, x / s, rint), so
its integer codes equal lrqc.reference.quantize's bit for bit. gemm multiplies u8 codes of A
(offset 128 when A is signed) with s8 weights packed as Bp[N/16, K/4, 16, 4] and corrects with
zc[i,g]·colsum[g,j], so acc - zc·colsum = Σ (qA - zA) qB exactly."""

from __future__ import annotations

from ...reference.quant import int_range
from ...plan import names
from ..compat import te, tir
from ...plan.model import KernelPlan


def smallest_f64():
    """The smallest positive float64 (the subnormal 2^-1074, the reference quantizer's scale
    floor) as a bit cast of 1 (unsigned: the CUDA pipeline narrows an int64 literal to int32 and
    the bit cast fails): a subnormal FloatImm literal breaks TVM's JSON round trip of the
    module (MetaSchedule's worker processes fail to parse it)."""
    return tir.reinterpret("float64", tir.const(1, "uint64"))  # uint64: CUDA narrows int64 literals


def _round(y, mode, u=None):
    if mode == "stochastic":  # floor(y + u), u the reference's U[0, 1) draw for this element
        return tir.floor(y + u)
    if mode == "nearest":
        return tir.nearbyint(y)
    if mode == "floor":
        return tir.floor(y)
    if mode == "trunc":
        return tir.trunc(y)
    if mode == "nearest_away":
        return tir.if_then_else(y < 0, -tir.floor(-y + 0.5), tir.floor(y + 0.5))
    raise ValueError(mode)


def _floor_log2(v):
    """Exact floor(log2 |v|) of a normal float64 from its exponent field (-1023 for 0)."""
    bits = tir.reinterpret("int64", v)
    return ((bits >> tir.const(52, "int64")) & tir.const(0x7FF, "int64")).astype("int32") - 1023


def _pow2(n):
    """Exactly 2^n as float64 for int32 n in [-1022, 1023]."""
    return tir.reinterpret("float64", (n + 1023).astype("int64") << tir.const(52, "int64"))


def _a_input(p: KernelPlan):
    """The placeholder A (M x K float32) and x(i, k): A as float64, zero outside M x K (the
    reference's K padding and the row tile's padding)."""
    M, K = p.m, p.k
    A = te.placeholder((M, K), "float32", name="A")

    def x(i, k):
        return tir.if_then_else(tir.all(i < M, k < K), A[tir.min(i, M - 1), tir.min(k, K - 1)]
                                .astype("float64"), tir.const(0.0, "float64"))

    return A, x


def _elem_code(y, q, u=None):
    """y rounded onto element format q.fmt's grid and saturated (reference.minifloat
    .round_to_format), as the integer code value·2^frac_bits (float64)."""
    from ...reference.minifloat import FP_FORMATS, frac_bits

    f64 = "float64"
    if q.fmt == "int8":  # MX INT8: q/64, codes q
        return tir.min(tir.max(_round(y * 64.0, q.round), tir.const(-127.0, f64)),
                       tir.const(127.0, f64))
    exp_bits, man_bits, _, max_normal = FP_FORMATS[q.fmt]
    emin = 2 - 2 ** (exp_bits - 1)
    ue = tir.max(_floor_log2(y), emin) - man_bits
    v = _round(y * _pow2(-ue), q.round, u) * _pow2(ue)
    v = tir.min(tir.max(v, tir.const(-max_normal, f64)), tir.const(max_normal, f64))
    return v * float(2 ** frac_bits(q.fmt))


def _quantize_mx(p: KernelPlan, dt: str = "uint8"):
    """OCP MX along K in blocks of V: e = floor(log2 max|v|) - emax (clamped to ±127, -127 for a
    zero block), elements v / 2^e rounded on the element grid and saturated, as integer codes
    value·2^f (+128 for the u8 operand); scale 2^(e - f). Mirrors reference.minifloat exactly."""
    from ...reference.minifloat import ELEM_EMAX, frac_bits

    q = p.qa
    _, _, Mp, Kp, G, V = dims(p)
    A, x = _a_input(p)

    r = te.reduce_axis((0, V), "r")
    hi = te.compute((Mp, G), lambda i, g: te.max(tir.abs(x(i, g * V + r)), axis=r),
                    name=names.QUANT_STATS)
    emax = ELEM_EMAX[q.fmt]
    e = te.compute((Mp, G), lambda i, g: tir.if_then_else(
        hi[i, g] > 0, tir.min(tir.max(_floor_log2(hi[i, g]) - emax, -127), 127),
        tir.const(-127, "int32")), name=names.QUANT_SCALE + "_exp")
    f = frac_bits(q.fmt)

    def code(i, k):
        v = _elem_code(x(i, k) * _pow2(-e[i, k // V]), q)
        return (v + float(p.a_offset)).astype(dt)

    Aq = te.compute((Mp, Kp), code, name=names.QUANT_CODES)
    sa = te.compute((Mp, G), lambda i, g: _pow2(e[i, g] - f).astype("float32"), name="sa")
    zc = te.compute((Mp, G), lambda i, g: tir.const(p.a_offset, "int32"), name="zc")
    return [A, Aq, sa, zc]


def _with_rowsum(p: KernelPlan, tensors):
    """Append ra[i, g] = Σ_k∈g (Aq - zc), the row sums of A's centered codes, when the weights
    have zero points (Σ (qa-za)(qb-zb) = Σ (qa-za)(qb-ob) - (zb-ob)·ra)."""
    if not p.b_zero:
        return tensors
    *inputs, Aq, sa, zc = tensors
    r = te.reduce_axis((0, p.vector), "r")
    ra = te.compute((p.mp, p.groups), lambda i, g: te.sum(
        Aq[i, g * p.vector + r].astype("int32") - zc[i, g], axis=r), name=names.QUANT_ROWSUM)
    return [*inputs, Aq, sa, zc, ra]


def quantize_a(p: KernelPlan, codes: str = "uint8"):
    """Tensors [A, Aq, sa, zc] (+ ra when the weights have zero points) of quantize_a. Aq holds
    the codes + a_offset as uint8, or (codes="float64", for the float fallback) exactly, for
    formats whose codes do not fit a byte."""
    if p.mx:
        return _with_rowsum(p, _quantize_mx(p, codes))
    return _with_rowsum(p, _quantize_a(p, codes))


def _quantize_a(p: KernelPlan, dt: str = "uint8"):
    q = p.qa
    A, x = _a_input(p)
    inputs = [A]
    u = None
    if q.round == "stochastic":  # the reference's draws, pregenerated (Kernel.noise)
        U = te.placeholder((p.m, p.kq), "float64", name="U")
        inputs.append(U)
        u = lambda i, k: U[tir.min(i, p.m - 1), k]
    code, sa, zc, _ = quantizer(q, x, dims(p), offset=p.a_offset, u=u)
    Aq = te.compute((p.mp, p.kq), lambda i, k: code(i, k).astype(dt), name=names.QUANT_CODES)
    return [*inputs, Aq, sa, zc]


def no_contract(v):
    """v unchanged, but LLVM may no longer fuse the product v into a following add or
    subtract (FMA contraction rounds once where numpy rounds twice, which moves floor and
    trunc codes sitting exactly on a boundary, e.g. a group's maximum): max(v, -inf) is a
    compare and select that LLVM keeps without fast-math."""
    return tir.max(v, tir.const(float("-inf"), "float64"))


def dims(p: KernelPlan) -> tuple:
    """(M, K, Mp, Kq, G, V) of A's quantization (one segment)."""
    return p.m, p.k, p.mp, p.kq, p.gq, p.vector


def quantizer(q, x, dims: tuple, offset: int, tag: str = "", u=None):
    """Q(x) by rows of the Mp x Kq operand x(i, k) (float64, zero outside M x K) exactly as
    lrqc.reference.quantize: returns (code, sa, zc, deq) where code(i, k) is the float64 code
    plus `offset`, sa / zc the (Mp, G) float32 scales and int32 zero corrections of the GEMM,
    and deq(i, k) the float64 dequantized value. Blocks are named with suffix `tag`."""
    if q.is_int and q.signed and q.bits == 1:
        return _binary(q, x, dims, offset, tag)
    M, K, Mp, _, G, V = dims
    qmin, qmax = int_range(q) if q.is_int else (0, 0)
    f64 = "float64"
    fp = not q.is_int  # e*m* elements with a float scale: max |x| maps to the max normal
    minmax = q.calibrate == "minmax" and not fp
    stat = (lambda v: v) if minmax else tir.abs
    if q.granularity == "per_tensor":
        r1, r2 = te.reduce_axis((0, M), "r1"), te.reduce_axis((0, K), "r2")
        hi = te.compute((1, 1), lambda _, __: te.max(stat(x(r1, r2)), axis=[r1, r2]),
                        name=names.QUANT_STATS + tag)
        lo = None
        if minmax:
            s1, s2 = te.reduce_axis((0, M), "s1"), te.reduce_axis((0, K), "s2")
            lo = te.compute((1, 1), lambda _, __: te.min(x(s1, s2), axis=[s1, s2]),
                            name=names.QUANT_STATS + "_lo" + tag)
        sidx = lambda i, g: (0, 0)
    else:
        ng = G if q.grouped else 1
        width = V if q.grouped else K
        r = te.reduce_axis((0, width), "r")
        hi = te.compute((Mp, ng), lambda i, g: te.max(stat(x(i, g * width + r)), axis=r),
                        name=names.QUANT_STATS + tag)
        lo = None
        if minmax:
            r_ = te.reduce_axis((0, width), "r_")
            lo = te.compute((Mp, ng), lambda i, g: te.min(x(i, g * width + r_), axis=r_),
                            name=names.QUANT_STATS + "_lo" + tag)
        sidx = (lambda i, g: (i, g)) if q.grouped else (lambda i, g: (i, 0))
    shp = hi.shape
    levels = qmax - qmin
    one = tir.const(1.0, f64)
    if minmax:
        def base_scale(i, g):
            rng = hi[i, g] - lo[i, g]
            rng = tir.if_then_else(rng > 0, rng, tir.max(tir.abs(hi[i, g]), tir.abs(lo[i, g])))
            return tir.if_then_else(rng > 0, rng / tir.const(float(levels), f64), one)
    else:
        top = float(qmax)
        if fp:
            from ...reference.minifloat import FP_FORMATS

            top = float(FP_FORMATS[q.fmt][3])
        tiny = smallest_f64()

        def base_scale(i, g):
            return tir.if_then_else(hi[i, g] > 0, tir.max(hi[i, g] / tir.const(top, f64), tiny), one)
    s0 = te.compute(shp, base_scale, name=names.QUANT_SCALE + "_0" + tag)
    if q.scale.startswith("uint"):
        top = float(2**q.scale_bits - 1)
        # gamma: the largest scale of the groups the reference has (K padded to V); a
        # compensated kernel pads K further (16 lanes), with all-zero groups of scale 1
        rg = te.reduce_axis((0, min(int(shp[1]), -(-K // V)) if q.grouped else shp[1]), "rg")
        gmax = te.compute((shp[0],), lambda i: te.max(s0[i, rg], axis=rg), name="a_gamma" + tag)
        gamma = lambda i: tir.if_then_else(gmax[i] / top > 0, gmax[i] / top, one)
        rnd = tir.ceil if q.scale_round == "ceil" else tir.nearbyint
        s_eff = te.compute(shp, lambda i, g: tir.min(tir.max(rnd(s0[i, g] / gamma(i)), one),
                                                     tir.const(top, f64)) * gamma(i),
                           name=names.QUANT_SCALE + tag)
    else:
        s_eff = s0
    if minmax:
        zero = te.compute(shp, lambda i, g: tir.const(float(qmin), f64)
                          - tir.nearbyint(lo[i, g] / s_eff[i, g]), name=names.QUANT_ZERO + "_f" + tag)
        zf = lambda i, g: zero[sidx(i, g)]
    else:
        zf = lambda i, g: tir.const(0.0, f64)
    off = float(offset)

    def code(i, k):
        g = k // V
        si = sidx(i, g)
        ui = u(i, k) if u else None
        if fp:
            return _elem_code(x(i, k) / s_eff[si], q, ui) + off
        v = _round(x(i, k) / s_eff[si], q.round, ui) + zf(i, g)
        return tir.min(tir.max(v, tir.const(float(qmin), f64)), tir.const(float(qmax), f64)) + off

    unit = 1.0
    if fp:
        from ...reference.minifloat import frac_bits

        unit = 2.0 ** -frac_bits(q.fmt)

    def deq(i, k):
        g = k // V
        return no_contract((code(i, k) - (zf(i, g) + off)) * (s_eff[sidx(i, g)] * unit))

    sa = te.compute((Mp, G), lambda i, g: (s_eff[sidx(i, g)] * unit).astype("float32"),
                    name="sa" + tag)
    big = tir.const(2.0**30, f64)  # a zero point far outside the codes (min-max of data far
    # from 0): clamped to stay a defined int32, and the kernel refuses the call (plan.zero_points)
    zc = te.compute((Mp, G), lambda i, g: tir.min(tir.max(zf(i, g) + off, -big), big)
                    .astype("int32"), name="zc" + tag)
    return code, sa, zc, deq


def _binary(q, x, dims: tuple, offset: int, tag: str = ""):
    """quantizer() of int1: sign binarization as lrqc.reference.quantize does it: codes +-1
    (x >= 0: +1), centered 0 in the K padding; scale = mean |x| of the group (K padding
    included, as the reference pads), 0 for an all-zero group."""
    M, K, Mp, _, G, V = dims
    f64 = "float64"
    if q.granularity == "per_tensor":
        r1, r2 = te.reduce_axis((0, M), "r1"), te.reduce_axis((0, K), "r2")
        tot = te.compute((1, 1), lambda _, __: te.sum(tir.abs(x(r1, r2)), axis=[r1, r2]),
                         name=names.QUANT_STATS + tag)
        count, sidx = M * K, (lambda i, g: (0, 0))
    else:
        width = V if q.grouped else K
        r = te.reduce_axis((0, width), "r")
        tot = te.compute((Mp, G if q.grouped else 1), lambda i, g: te.sum(
            tir.abs(x(i, g * width + r)), axis=r), name=names.QUANT_STATS + tag)
        count = width
        sidx = (lambda i, g: (i, g)) if q.grouped else (lambda i, g: (i, 0))
    scale = te.compute(tot.shape, lambda i, g: tir.if_then_else(
        tot[i, g] > 0, tir.max(tot[i, g] / float(count), smallest_f64()),
        tir.const(0.0, f64)), name=names.QUANT_SCALE + tag)
    off = float(offset)

    def code(i, k):
        sign = tir.if_then_else(x(i, k) >= 0, tir.const(1.0, f64), tir.const(-1.0, f64))
        return tir.if_then_else(k < K, sign, tir.const(0.0, f64)) + off

    def deq(i, k):
        return no_contract((code(i, k) - off) * scale[sidx(i, k // V)])

    sa = te.compute((Mp, G), lambda i, g: scale[sidx(i, g)].astype("float32"), name="sa" + tag)
    zc = te.compute((Mp, G), lambda i, g: tir.const(offset, "int32"), name="zc" + tag)
    return code, sa, zc, deq


def _nibble(byte, e):
    """Sign-extended low nibble for elements 0..31 of a block, high nibble for 32..63."""
    four = tir.const(4, "int8")
    return tir.if_then_else(e < 32, (byte << four) >> four, byte >> four)


def _int_sum(shape, prod, width: int, name: str, pairs: bool):
    """int32 sums of prod(*idx, k) over k < width: directly, or (pairs) as two interleaved half
    sums over k pairs (2h, 2h+1) of every 4 (the vpmaddwd order), added in a block `name`."""
    if not pairs:
        k = te.reduce_axis((0, width), "k")
        return te.compute(shape, lambda *idx: te.sum(prod(*idx, k), axis=k), name=name)
    k4, t = te.reduce_axis((0, width // 4), "k4"), te.reduce_axis((0, 2), "t")
    half = te.compute(tuple(shape) + (2,), lambda *idx: te.sum(
        prod(*idx[:-1], k4 * 4 + idx[-1] * 2 + t), axis=[k4, t]), name=name + names.PAIRS)
    h = te.reduce_axis((0, 2), "h")
    return te.compute(shape, lambda *idx: te.sum(half[idx + (h,)], axis=h), name=name)


def epilogue_terms(p: KernelPlan):
    """(placeholders, output, plus): output(shape, value, name) makes the output block
    value + Σ U W (te_comp.output); plus(v, i, j, g) adds the low-rank epilogue to the value v
    of an output that reduces over K groups g (at g == 0 only)."""
    from .compensated import epilogue, lowrank_blocks, output

    ph, parts = epilogue(p)

    def out(shape, value, name):
        return output(parts, shape, value, name)

    if not parts:
        return [], out, lambda v, i, j, g: v
    lr = []  # the blocks, made on first use (only outputs that reduce over groups need them)

    def plus(v, i, j, g):
        if not lr:
            lr.append(lowrank_blocks(parts))
        return v + tir.if_then_else(g == 0, lr[0](i, j), tir.const(0.0, "float32"))

    return ph, out, plus


def dequantize(acc, sa, sb):
    """(acc sa) sb: the integer sum times A's scale, then B's. The scales' own product can
    leave float32's normal range while C does not (max |A| max |B| below 2^-112 underflows
    it), whereas acc sa is at least sa wherever acc is not 0."""
    return acc * sa * sb


class _Shifted:
    """acc[i, j] of the s8 formulation read back as the u8 sum: acc_s8 + 128 cs[0, j]."""

    def __init__(self, acc, cs):
        self.acc, self.cs = acc, cs

    def __getitem__(self, ij):
        i, j = ij
        return self.acc[i, j] + 128 * self.cs[0, j]


def gemm(p: KernelPlan, int_only: bool = False, pairs: bool = False, s8: bool = False):
    """Tensors [Aq, Bp, sa, zc, sb, cs, C] (or [Aq, Bp, zc, cs, acc] when int_only). With
    pairs, the int32 sums are formed as vpmaddwd does (see _int_sum): same integers. With s8
    (single group; tensor cores multiply s8 by s8), A's codes are shifted to s8 (a - 128, block
    names.A_S8) and B read as a K-contiguous N x K matrix (block names.B_NK): acc_s8 + 128 cs
    is the u8 sum, exactly."""
    Mp, Np, Kp, G, V = p.mp, p.np_, p.kp, p.groups, p.vector
    Aq = te.placeholder((Mp, Kp), "uint8", name="Aq")
    if p.nibbles:  # two weights per byte, unpacked per tile by the schedule
        B4 = te.placeholder((Np // 16, Kp // 4, 32), "int8", name="Bp")
        Bp = te.compute((Np // 16, Kp // 4, 16, 4), lambda n, k4, j, kk: _nibble(
            B4[n, k4, (j * 4 + kk) % 32], j * 4 + kk), name=names.UNPACK)
        b_in = B4
    else:
        Bp = b_in = te.placeholder((Np // 16, Kp // 4, 16, 4), "int8", name="Bp")
    sa = te.placeholder((Mp, G), "float32", name="sa")
    zc = te.placeholder((Mp, G), "int32", name="zc")
    sb = te.placeholder((G, Np), "float32", name="sb")
    cs = te.placeholder((G, Np), "int32", name="cs")
    extra = []  # weights with zero points: ra (row sums of A's centered codes), zb (zero - offset)
    if p.b_zero:
        ra = te.placeholder((Mp, G), "int32", name="ra")
        zb = te.placeholder((G, Np), "int32", name="zb")
        extra = [ra, zb]

    def corr(i, g, j):
        c = zc[i, g] * cs[g, j]
        return c + ra[i, g] * zb[g, j] if p.b_zero else c

    lr_in, output, plus = epilogue_terms(p)

    def prod(i, j, k):
        return Aq[i, k].astype("int32") * Bp[j // 16, k // 4, j % 16, k % 4].astype("int32")

    if s8:
        assert G == 1, "the s8 formulation is for single-group products"
        a8 = te.compute((Mp, Kp), lambda i, k: (Aq[i, k].astype("int32") - 128).astype("int8"),
                        name=names.A_S8)
        bnk = te.compute((Np, Kp), lambda n, k: Bp[n // 16, k // 4, n % 16, k % 4],
                         name=names.B_NK)
        k = te.reduce_axis((0, Kp), "k")
        acc8 = te.compute((Mp, Np), lambda i, j: te.sum(
            a8[i, k].astype("int32") * bnk[j, k].astype("int32"), axis=k), name=names.ACC)
        acc = _Shifted(acc8, cs)
    elif G == 1:
        acc = _int_sum((Mp, Np), prod, Kp, names.ACC, pairs)
    if G == 1:
        if int_only:
            out = te.compute((Mp, Np), lambda i, j: acc[i, j] - corr(i, 0, j), name=names.OUT)
            return [Aq, b_in, zc, cs, *extra, out]
        C = output((Mp, Np), lambda i, j: dequantize(
            (acc[i, j] - corr(i, 0, j)).astype("float32"), sa[i, 0], sb[0, j]), names.OUT)
        return [Aq, b_in, sa, zc, sb, cs, *extra, *lr_in, C]
    part = _int_sum((Mp, G, Np), lambda i, g, j, k: prod(i, j, g * V + k), V, names.PARTIAL, pairs)
    if p.chunked and not int_only:  # K chunks of one scale: int32 partials added in int64
        g = te.reduce_axis((0, G), "g")
        tot = te.compute((Mp, Np), lambda i, j: te.sum(
            (part[i, g, j] - corr(i, g, j)).astype("int64"), axis=g), name=names.ACC64)
        C = output((Mp, Np), lambda i, j: dequantize(tot[i, j].astype("float32"), sa[i, 0],
                                                      sb[0, j]), names.OUT)
        return [Aq, b_in, sa, zc, sb, cs, *extra, *lr_in, C]
    if int_only:
        out = te.compute((Mp, G, Np), lambda i, g, j: part[i, g, j] - corr(i, g, j),
                         name=names.OUT)
        return [Aq, b_in, zc, cs, *extra, out]
    g = te.reduce_axis((0, G), "g")
    C = te.compute((Mp, Np), lambda i, j: te.sum(plus(dequantize(
        (part[i, g, j] - corr(i, g, j)).astype("float32"), sa[i, g], sb[g, j]), i, j, g),
        axis=g), name=names.OUT)
    return [Aq, b_in, sa, zc, sb, cs, *extra, *lr_in, C]
