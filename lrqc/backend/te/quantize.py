"""to_te for A's quantization: the quantizer every A-side pass builds on, and quantize_a, the
per-call pass of the base quantized product.

quantizer computes in float64 with the reference's exact operations (max |x|, x / s, rint), so
its integer codes equal lrqc.reference.quantize's bit for bit: integer formats with one scale
per tensor, row or K group (max-abs or min-max calibrated, optionally with two-level uint
scales), fixed point with its static scale, int1 sign binarization, and eXmY elements with a
float scale. quantize_a adds OCP MX (per_block with e8m0 scales), the row sums of the centered
codes that weights with zero points need, and two-level scales' integers and row scales."""

from __future__ import annotations

from collections.abc import Callable

from ...frontend.model import Calibration, Granularity, Quant, Rounding
from ...plan import names
from ...plan import signature as sig
from ...plan.model import KernelPlan
from ...plan.support import float32_codes
from ...reference.minifloat import elem_emax, elem_max, fp_params, frac_bits
from ...reference.quant import int_range
from ..compat import PrimExpr, fma, te, tir
from . import bitstats, centre, fastcodes, flipped

F64 = "float64"


def smallest_f64() -> PrimExpr:
    """The smallest positive float64 (the subnormal 2^-1074, the reference quantizer's scale
    floor) as a bit cast of 1 (unsigned: the CUDA pipeline narrows an int64 literal to int32 and
    the bit cast fails): a subnormal FloatImm literal breaks TVM's JSON round trip of the
    module (MetaSchedule's worker processes fail to parse it)."""
    return tir.reinterpret("float64", tir.const(1, "uint64"))  # uint64: CUDA narrows int64 literals


def quotient(x: PrimExpr, s: PrimExpr, y: PrimExpr, signed_zero: bool = True) -> PrimExpr:
    """fl(x / s), the correctly rounded float64 quotient (what the reference's division gives),
    from y = fl(1 / s) with a product and four FMAs, several times the throughput of a
    division. q0 = x y (rounded or not) is within 1.5 ulp of x / s; one correction
    q1 = fl(q0 + fl(x - s q0) y) is then faithful (the correction's own error is about 2^-104
    relative), and by Markstein's theorem (y correctly rounded, q1 faithful) the residual
    x - s q1 is exact and fl(q1 + (x - s q1) y) is fl(x / s). The theorem needs every
    intermediate in float64's normal range: s is a positive normal scale and a nonzero |x|
    lies between 2^-300 and 2^130 (float32 values and their residuals), so the residuals are 0
    or above 2^-400. x = -0 gives +0 unless signed_zero (the sign kept as the division keeps
    it: a compare and a select more; integer codes do not need it)."""
    q0 = x * y
    q1 = fma(fma(-q0, s, x), y, q0)
    q2 = fma(fma(-q1, s, x), y, q1)
    return tir.Select(x == 0, q0, q2) if signed_zero else q2


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
        return tir.Select(y < 0, -tir.floor(-y + 0.5), tir.floor(y + 0.5))
    raise ValueError(mode)


def _floor_log2(v):
    """Exact floor(log2 |v|) of a normal float64 from its exponent field (-1023 for 0)."""
    bits = tir.reinterpret("int64", v)
    return ((bits >> tir.const(52, "int64")) & tir.const(0x7FF, "int64")).astype("int32") - 1023


def _pow2(n):
    """Exactly 2^n as float64 for int32 n in [-1022, 1023]."""
    return tir.reinterpret("float64", (n + 1023).astype("int64") << tir.const(52, "int64"))


def a_placeholder(p: KernelPlan, free_rows: bool = False
                  ) -> tuple[te.Tensor, Callable[..., PrimExpr]]:
    """The placeholder A (M x K float32) and at(i, k), A's element for i < M, k < K, read at
    indices clamped into A for any i, k (callers mask what lies outside: bitstats.masked_bits).

    free_rows: A is a flat float32 array of a_len = off + R·K elements: R rows of K (any R from
    1 to M, a call's own A) starting at element off, 0 <= off < K (so R = a_len // K and
    off = a_len % K). A caller's A lies where it is: the array starts at the 64-byte aligned
    address at or before A's first element (TVM's tensors must), off elements before it. Rows
    R..M-1 read as copies of row R-1: what a call's copy of A into the bucket pads them with,
    so every code and statistic is the same."""
    M, K = p.m, p.k
    if not free_rows:
        A = te.placeholder((M, K), "float32", name="A")
        return A, lambda i, k: A[tir.min(i, M - 1), tir.min(k, K - 1)]
    n = tir.Var("a_len", "int32")
    A = te.placeholder((n,), "float32", name="A")
    rows, off = tir.floordiv(n, K), tir.floormod(n, K)
    return A, lambda i, k: A[off + tir.min(i, rows - 1) * K + tir.min(k, K - 1)]


def a_bits(p: KernelPlan, free_rows: bool = False
           ) -> tuple[te.Tensor, Callable[..., PrimExpr], Callable[..., PrimExpr] | None]:
    """The placeholder A (a_placeholder), x(i, k): A as float64, zero outside M x K (the
    reference's K padding and the row tile's padding), and the `bits` of A's statistics
    (bitstats.bits_of) where the plan checks A's finiteness by its scales
    (signature.stats_see_non_finite), else None."""
    A, at = a_placeholder(p, free_rows)
    bits = bitstats.bits_of(at, p.m, p.k) if sig.stats_see_non_finite(p) else None
    return A, _as_float64(p, at), bits


def _as_float64(p: KernelPlan, at: Callable[..., PrimExpr]) -> Callable[..., PrimExpr]:
    bits = bitstats.masked_bits(at, p.m, p.k)

    def x(i: PrimExpr, k: PrimExpr) -> PrimExpr:
        return tir.reinterpret("float32", bits(i, k)).astype("float64")

    return x


def _elem_code(y, q, u=None):
    """y rounded onto element format q.fmt's grid and saturated (reference.minifloat
    .round_to_format), as the integer code value·2^frac_bits (float64)."""
    if q.fmt == "int8":  # MX INT8: q/64, codes q
        return tir.min(tir.max(_round(y * 64.0, q.round), tir.const(-127.0, F64)),
                       tir.const(127.0, F64))
    f = fp_params(q.fmt)
    max_normal = f.max_normal
    ue = tir.max(_floor_log2(y), f.emin) - f.man_bits
    v = _round(y * _pow2(-ue), q.round, u) * _pow2(ue)
    v = tir.min(tir.max(v, tir.const(-max_normal, F64)), tir.const(max_normal, F64))
    return v * float(2 ** frac_bits(q.fmt))


def _quantize_mx(p: KernelPlan, dt: str = "uint8", flip: bool = False):
    """OCP MX along K in blocks of V: e = floor(log2 max|v|) - emax (clamped to ±127, -127 for a
    zero block), elements v / 2^e rounded on the element grid and saturated, as integer codes
    value·2^f (+128 for the u8 operand); scale 2^(e - f). Mirrors reference.minifloat exactly."""
    q = p.qa
    _, _, Mp, Kp, G, V = dims(p)
    A, x, _ = a_bits(p, free_rows=True)
    r = te.reduce_axis((0, V), "r")
    hi = te.compute((Mp, G), lambda i, g: te.max(tir.abs(x(i, g * V + r)), axis=r),
                    name=names.QUANT_STATS)
    emax = elem_emax(q.fmt)
    e = te.compute((Mp, G), lambda i, g: tir.if_then_else(
        hi[i, g] > 0, tir.min(tir.max(_floor_log2(hi[i, g]) - emax, -127), 127),
        tir.const(-127, "int32")), name=names.QUANT_SCALE + "_exp")
    f = frac_bits(q.fmt)

    Aq = te.compute((Mp, Kp), lambda i, k: flipped.maybe((_elem_code(
        x(i, k) * _pow2(-e[i, k // V]), q) + float(p.a_offset)).astype(dt), flip),
        name=names.QUANT_CODES)
    sa = te.compute((Mp, G), lambda i, g: _pow2(e[i, g] - f).astype(
        "float64" if dt == "float64" else "float32"), name="sa")
    zc = te.compute((Mp, G), lambda i, g: tir.const(p.a_offset, "int32"), name="zc")
    return [A, Aq, sa, zc]


def _with_rowsum(p: KernelPlan, tensors, flip: bool = False):
    """Append ra[i, g] = Σ_k∈g (Aq - zc), the row sums of A's centered codes, when the weights
    have zero points (Σ (qa-za)(qb-zb) = Σ (qa-za)(qb-ob) - (zb-ob)·ra; Aq maybe flipped)."""
    if not p.b_zero:
        return tensors
    *inputs, Aq, sa, zc = tensors
    r = te.reduce_axis((0, p.vector), "r")
    ra = te.compute((p.mp, p.groups), lambda i, g: te.sum(
        flipped.stored(Aq[i, g * p.vector + r], flip) - zc[i, g], axis=r), name=names.QUANT_ROWSUM)
    return [*inputs, Aq, sa, zc, ra]


def quantize_a(p: KernelPlan, codes: str = "uint8", fast: bool = False, flip: bool = False
               ) -> list[te.Tensor]:
    """Tensors [A, Aq, sa, zc] (+ ra when the weights have zero points, + sqa, ga, the integer
    and row scales of two-level scales the GEMM sums as int16 pairs: signature.scale_pairs,
    with data zero points the codes centred: te centre) of quantize_a. Aq holds the codes +
    a_offset as uint8, or (codes="float64", for the float fallback) exactly, and sa then in
    float64 too. fast: byte codes from float32 where proven exact (fastcodes; CPU passes);
    flip: Aq flipped (te.flipped)."""
    if p.mx:
        return _with_rowsum(p, _quantize_mx(p, codes, flip), flip)
    return _with_rowsum(p, _quantize_a(p, codes, fast and codes == "uint8", flip), flip)


def _quantize_a(p: KernelPlan, dt: str = "uint8", fast: bool = False, flip: bool = False):
    q = p.qa
    A, at = a_placeholder(p, free_rows=True)
    x = _as_float64(p, at)
    bits = bitstats.bits_of(at, p.m, p.k) if sig.stats_see_non_finite(p) else None
    masked = bitstats.masked_bits(at, p.m, p.k)
    x32 = (lambda i, k: tir.reinterpret("float32", masked(i, k))) if fast else None
    inputs, u = [A], None
    if q.round == Rounding.STOCHASTIC:  # the reference's draws, pregenerated (Kernel.noise)
        U = te.placeholder((p.m, p.kq), "float64", name="U")
        inputs.append(U)
        def u(i: PrimExpr, k: PrimExpr) -> PrimExpr:
            return U[tir.min(i, p.m - 1), k]
    pairs = dt == "uint8" and sig.scale_pairs(p)
    data = pairs and sig.zero_pairs(p) and p.a_zero_static is None  # codes centred
    code, sa, zc, _ = quantizer(q, x, dims(p), offset=p.a_offset, u=u, bits=bits, x32=x32,
                                scale_dtype=dt if dt == F64 else "float32", levels=(levels := []),
                                zc_name="zc_data" if data else "zc")
    Aq, zc = centre.centred(p, code, zc, lambda v: flipped.maybe(v, flip)) if data else (
        te.compute((p.mp, p.kq), lambda i, k: flipped.maybe(code(i, k, dt), flip),
                   name=names.QUANT_CODES), zc)
    if not pairs:
        return [*inputs, Aq, sa, zc]
    (sint, gamma), = levels  # two-level scales as the GEMM's int16 pairs read them
    sqa = te.compute((p.mp, p.gq), lambda i, g: sint(i, g).astype("int16"), name=sig.SQA)
    ga = te.compute((p.mp, 1), lambda i, _: gamma(i).astype("float32"), name=sig.GA)
    return [*inputs, Aq, sa, zc, sqa, ga]


def no_contract(v: PrimExpr) -> PrimExpr:
    """v unchanged, but LLVM may no longer fuse the product v into a following add or
    subtract (FMA contraction rounds once where numpy rounds twice, which moves floor and
    trunc codes sitting exactly on a boundary, e.g. a group's maximum): max(v, -inf) is a
    compare and select that LLVM keeps without fast-math."""
    return tir.max(v, tir.const(float("-inf"), "float64"))


def dims(p: KernelPlan) -> tuple:
    """(M, K, Mp, Kq, G, V) of A's quantization (one segment)."""
    return p.m, p.k, p.mp, p.kq, p.gq, p.vector


def max_abs_stat(q: Quant) -> bool:
    """Whether q's scales come from max |x| (statistics' hi): not fixed point, not 1-bit signs,
    not min-max calibrated integers."""
    return not (q.is_fixed or (q.is_int and q.signed and q.bits == 1)
                or (q.calibrate == Calibration.MINMAX and q.is_int))


def quantizer(q: Quant, x: Callable[..., PrimExpr], dims: tuple, offset: int, tag: str = "",
              u: Callable[..., PrimExpr] | None = None, bits: Callable[..., PrimExpr] | None = None,
              stats: tuple | None = None, scale_dtype: str = "float32",
              x32: Callable[..., PrimExpr] | None = None, levels: list | None = None,
              zc_name: str = "zc"
              ) -> tuple[Callable[..., PrimExpr], te.Tensor, te.Tensor, Callable[..., PrimExpr]]:
    """Q(x) by rows of the Mp x Kq operand x(i, k) (float64, zero outside M x K) exactly as
    lrqc.reference.quantize: returns (code, sa, zc, deq) where code(i, k) is the float64 code
    plus `offset`, sa / zc the (Mp, G) float32 scales and int32 zero corrections of the GEMM,
    and deq(i, k, held=None) the float64 dequantized value (of code(i, k), or of `held`, the
    same code read back from where a pass stored it). Blocks are named with suffix `tag`.
    stats: statistics(q, x, ...)'s (hi, lo, sidx), made by the caller (who reads them too), or
    values equal to them that need no pass over x (max_abs_stat quantizers). scale_dtype: sa's
    type (float64 for the float fallback: eXmY scales times 2^-f, e.g. 2^-62 for e7m0, leave
    float32's range). x32: x's float32 values, where code(i, k, dt) may take them (_codes).
    levels: a list that receives, for two-level scales, (sint(i, g), gamma(i)): the integer
    scales and the row's float scale (float64). zc_name: min-max zero corrections' block."""
    if q.is_fixed:  # the static scale of fixed point: no statistics
        s_fixed = te.compute((1, 1), lambda _, __: tir.const(q.fixed_scale, F64),
                             name=names.QUANT_SCALE + tag)
        return _codes(q, x, dims, offset, (s_fixed, lambda i, g: tir.const(0.0, F64),
                                           lambda i, g: (0, 0)), tag, u, scale_dtype)
    if q.is_int and q.signed and q.bits == 1:
        return _binary(q, x, dims, offset, tag)
    # e*m* elements: max |x| -> the max normal
    minmax = q.calibrate == Calibration.MINMAX and q.is_int
    hi, lo, sidx = stats or statistics(q, x, dims, tag, bits)
    s_eff = _two_level(q, _base_scale(q, hi, lo, tag), dims, tag, levels)
    if minmax:
        zero = te.compute(hi.shape, lambda i, g: tir.const(float(int_range(q)[0]), F64)
                          - tir.nearbyint(lo[i, g] / s_eff[i, g]),
                          name=names.QUANT_ZERO + "_f" + tag)
        def zf(i: PrimExpr, g: PrimExpr) -> PrimExpr:
            return zero[sidx(i, g)]
    else:
        def zf(i: PrimExpr, g: PrimExpr) -> PrimExpr:
            return tir.const(0.0, F64)
    return _codes(q, x, dims, offset, (s_eff, zf, sidx), tag, u, scale_dtype, x32, zc_name)


def statistics(q, x, dims: tuple, tag: str = "", bits=None):
    """(hi, lo, sidx): the blocks of max |x| (max x and min x when min-max calibrated; lo None
    otherwise) per tensor, row or K group, and sidx(i, g), the index of row i's group g in
    them. bits(i, k): |x|'s float32 bit pattern as int32 (x a float32 A): max |x| is then the
    integer maximum of the patterns (the same order for non-negative floats), converted back,
    and a NaN or infinity anywhere in a group makes its maximum +inf (their patterns are
    larger than every finite one's; a NaN's is lowered to infinity's, which every scale
    computed from it keeps non-finite), which no float maximum guarantees for NaN."""
    minmax = q.calibrate == Calibration.MINMAX and q.is_int
    if bits is not None:
        return bitstats.min_max(q, bits, dims, tag) if minmax else \
            bitstats.abs_max(q, bits, dims, tag)
    stat = (lambda v: v) if minmax else tir.abs
    hi = bitstats.reduce_groups(q, dims, lambda i, k: stat(x(i, k)), te.max,
                                names.QUANT_STATS + tag)
    lo = bitstats.reduce_groups(q, dims, x, te.min, names.QUANT_STATS + "_lo" + tag) \
        if minmax else None
    return hi, lo, bitstats.group_index(q)


def _base_scale(q, hi, lo, tag: str):
    """The block of scales s0 the statistics give: (max - min) / levels when min-max
    calibrated (lo given), else max |x| / the largest code (floored at the smallest float64);
    1 where the statistics are 0."""
    one = tir.const(1.0, F64)
    if lo is not None:
        qmin, qmax = int_range(q)

        def base_scale(i: PrimExpr, g: PrimExpr) -> PrimExpr:
            rng = hi[i, g] - lo[i, g]
            rng = tir.if_then_else(rng > 0, rng, tir.max(tir.abs(hi[i, g]), tir.abs(lo[i, g])))
            return tir.if_then_else(rng > 0, rng / tir.const(float(qmax - qmin), F64), one)
    else:
        top = float(int_range(q)[1]) if q.is_int else float(elem_max(q.fmt))
        tiny = smallest_f64()

        def base_scale(i: PrimExpr, g: PrimExpr) -> PrimExpr:
            return tir.if_then_else(hi[i, g] > 0, tir.max(hi[i, g] / tir.const(top, F64), tiny),
                                    one)
    return te.compute(hi.shape, base_scale, name=names.QUANT_SCALE + "_0" + tag)


def _two_level(q, s0, dims: tuple, tag: str, levels: list | None = None):
    """The scales the codes use: s0, or with uint scales (two-level) s0 / gamma rounded to
    uint codes (at least 1) times gamma, gamma the row's largest scale over the largest code
    (levels, a list, receives (sint, gamma): quantizer)."""
    if not q.scale.startswith("uint"):
        return s0
    _, K, _, _, _, V = dims
    shp = s0.shape
    one = tir.const(1.0, F64)
    top = float(2**q.scale_bits - 1)
    # gamma: the largest scale of the groups the reference has (K padded to V); a
    # compensated kernel pads K further (16 lanes), with all-zero groups of scale 1
    rg = te.reduce_axis((0, min(int(shp[1]), -(-K // V)) if q.grouped else shp[1]), "rg")
    gmax = te.compute((shp[0],), lambda i: te.max(s0[i, rg], axis=rg), name="a_gamma" + tag)
    def gamma(i: PrimExpr) -> PrimExpr:
        return tir.if_then_else(gmax[i] / top > 0, gmax[i] / top, one)
    rnd = tir.ceil if q.scale_round == "ceil" else tir.nearbyint

    def sint(i: PrimExpr, g: PrimExpr) -> PrimExpr:
        return tir.min(tir.max(rnd(s0[i, g] / gamma(i)), one), tir.const(top, F64))

    if levels is not None:
        levels.append((sint, gamma))
    return te.compute(shp, lambda i, g: sint(i, g) * gamma(i), name=names.QUANT_SCALE + tag)


def _codes(q, x, dims: tuple, offset: int, scales: tuple, tag: str, u=None,
           scale_dtype: str = "float32", x32=None, zc_name: str = "zc"):
    """(code, sa, zc, deq) of quantizer() from the scales (s_eff, zf, sidx): the scale block,
    the zero point zf(i, g) (float64) and the index of row i's group g in the scale block.
    code(i, k) is float64; code(i, k, dt) the same code as dt, from float32 where that is
    proven exact (fastcodes) when x32(i, k), x's float32 value, is given."""
    _, _, Mp, _, G, V = dims
    s_eff, zf, sidx = scales
    rcp = te.compute(s_eff.shape, lambda i, g: tir.const(1.0, F64) / s_eff[i, g],
                     name=names.QUANT_SCALE + "_rcp" + tag)
    fp = not q.is_int
    qmin, qmax = int_range(q) if q.is_int else (0, 0)
    off = float(offset)
    fast = fastcodes.guard(q, x32, dims, rcp, s_eff, zf, sidx, (qmin, qmax), off, tag) \
        if x32 is not None and float32_codes(q) else None

    def code(i: PrimExpr, k: PrimExpr, dt: str | None = None) -> PrimExpr:
        g = k // V
        si = sidx(i, g)
        ui = u(i, k) if u else None
        xs = quotient(x(i, k), s_eff[si], rcp[si], signed_zero=fp)
        if fp:
            v = _elem_code(xs, q, ui) + off
        else:
            v = _round(xs, q.round, ui) + zf(i, g)
            v = tir.min(tir.max(v, tir.const(float(qmin), F64)), tir.const(float(qmax), F64)) \
                + off
        if dt is None:
            return v
        return v.astype(dt) if fast is None else fast(i, k, v.astype(dt), dt)

    unit = 2.0 ** -frac_bits(q.fmt) if fp else 1.0

    def deq(i: PrimExpr, k: PrimExpr, held: PrimExpr | None = None) -> PrimExpr:
        g = k // V
        c = code(i, k) if held is None else held
        return no_contract((c - (zf(i, g) + off)) * (s_eff[sidx(i, g)] * unit))

    sa = te.compute((Mp, G), lambda i, g: (s_eff[sidx(i, g)] * unit).astype(scale_dtype),
                    name="sa" + tag)
    big = tir.const(2.0**30, F64)  # zero points far from the codes: clamped (the call refused)
    zc = te.compute((Mp, G), lambda i, g: tir.min(tir.max(zf(i, g) + off, -big), big)
                    .astype("int32"), name=zc_name + tag)
    return code, sa, zc, deq


def _binary(q, x, dims: tuple, offset: int, tag: str = ""):
    """quantizer() of int1: sign binarization as lrqc.reference.quantize does it: codes +-1
    (x >= 0: +1), centered 0 in the K padding; scale = mean |x| of the group (K padding
    included, as the reference pads), 0 for an all-zero group."""
    M, K, Mp, _, G, V = dims
    if q.granularity == Granularity.PER_TENSOR:
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
        tir.const(0.0, F64)), name=names.QUANT_SCALE + tag)
    off = float(offset)

    def code(i: PrimExpr, k: PrimExpr, dt: str | None = None) -> PrimExpr:
        sign = tir.Select(x(i, k) >= 0, tir.const(1.0, F64), tir.const(-1.0, F64))
        # a branch: within a select on k < K, TVM would drop the clamp of x's load to K
        v = tir.if_then_else(k < K, sign, tir.const(0.0, F64)) + off
        return v if dt is None else v.astype(dt)

    def deq(i: PrimExpr, k: PrimExpr, held: PrimExpr | None = None) -> PrimExpr:
        c = code(i, k) if held is None else held
        return no_contract((c - off) * scale[sidx(i, k // V)])

    sa = te.compute((Mp, G), lambda i, g: scale[sidx(i, g)].astype("float32"), name="sa" + tag)
    zc = te.compute((Mp, G), lambda i, g: tir.const(offset, "int32"), name="zc" + tag)
    return code, sa, zc, deq
