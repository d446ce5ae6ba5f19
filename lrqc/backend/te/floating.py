"""to_te for base products with a float operand (weight-only quantization such as
`a: float16` x `b: int4 per_channel`, or `a: int8` x `b: bfloat16`), and the float fallback of
quantized products the integer path cannot hold (e4m3/e5m2 codes, unequal per_vector sizes,
MX on one side): a float32 GEMM.

quantize_a makes Af[Mp, Kp] float32: a float operand rounded to its declared type (float16 by a
round trip through half, bfloat16 by the reference's round-to-nearest-even bit trick), a
quantized one dequantized from the integer path's codes ((code - zc) · scale). The static
operand is packed by layout.pack as Bf[Np/16, Kp, 16] float32 (rounded or dequantized in
float64 by the reference, then float32). gemm multiplies them with float32 accumulation, so the
result matches lrqc.reference.matmul within float32 rounding (not bit for bit)."""

from __future__ import annotations

from ...plan import names
from ...plan.model import KernelPlan
from ...reference.minifloat import frac_bits
from ..compat import te, tir
from . import quantize as te_quantize
from . import unpack
from .bitstats import masked_bits
from .epilogue import epilogue_terms


def _round_to(v, dtype: str):
    """float32 v rounded to a float storage type and back."""
    if dtype in ("float32", "float64"):
        return v
    if dtype == "float16":
        return v.astype("float16").astype("float32")
    u = tir.reinterpret("uint32", v)  # bfloat16, round to nearest even
    one = tir.const(1, "uint32")
    u = (u + tir.const(0x7FFF, "uint32") + ((u >> tir.const(16, "uint32")) & one)) \
        & tir.const(0xFFFF0000, "uint32")
    return tir.reinterpret("float32", u)


def _widen(v, dtype: str):
    """A float16 / bfloat16 value as float32 (bfloat16: its bits shifted into the high half,
    which LLVM vectorizes; TVM's own bfloat16 cast does not)."""
    if dtype == "bfloat16":
        bits = tir.reinterpret("uint16", v).astype("uint32") << tir.const(16, "uint32")
        return tir.reinterpret("float32", bits)
    return v.astype("float32")


def quantize_a(p: KernelPlan) -> list[te.Tensor]:
    """Tensors [A, (U,) Af] of the per-call pass (U: stochastic rounding draws); with p.half,
    [A, (U,) Af, saf]: Af holds A's exact 16-bit values (a float operand rounded to its type,
    or a quantized one's codes - zero) and saf[Mp] its row scales (1 for a float operand)."""
    M, K, Mp, Kp, V = p.m, p.k, p.mp, p.kp, p.vector
    if p.a_float:
        A, at = te_quantize.a_placeholder(p, free_rows=True)
        bits = masked_bits(at, M, K)  # +0 outside M x K
        Af = te.compute((Mp, Kp), lambda i, k: _round_to(
            tir.reinterpret("float32", bits(i, k)), p.scheme.a.dtype), name=names.QUANT_FLOAT)
        if not p.half:
            return [A, Af]
        saf = te.compute((Mp,), lambda i: tir.const(1.0, "float32"), name=names.QUANT_ROW_SCALE)
        return [A, Af, saf]
    *inputs, Aq, sa, zc = te_quantize.quantize_a(p, codes="float64")
    if p.half:  # scales outside the K sum: element values here, scales in the GEMM's epilogue
        # codes of e*m* formats are element values times 2^f: back to the values (exact, and
        # within float16's range, which e4m3 / e5m2 codes themselves are not)
        unit = 1.0 if p.qa.is_int else 2.0 ** -frac_bits(p.qa.fmt)
        Af = te.compute((Mp, Kp), lambda i, k: ((Aq[i, k] - zc[i, 0].astype("float64"))
                                                * unit).astype("float32"), name=names.QUANT_FLOAT)
        saf = te.compute((Mp,), lambda i: (sa[i, 0] * tir.const(1.0 / unit, "float64"))
                         .astype("float32"), name=names.QUANT_ROW_SCALE)
        return [*inputs, Af, saf]
    Af = te.compute((Mp, Kp), lambda i, k: ((Aq[i, k] - zc[i, k // V].astype("float64"))
                                            * sa[i, k // V]).astype("float32"),
                    name=names.QUANT_FLOAT)  # (sa in float64: one rounding, as the reference)
    return [*inputs, Af]


def gemm(p: KernelPlan, half: bool = False) -> list[te.Tensor]:
    """Tensors [Af, Bf, C], or with p.half [Af, Bf, saf, sbf, C]: the codes' product scaled by
    saf[i] sbf[0, j] in the epilogue, B's values stored in p.half (half the memory). half
    (CUDA's 16-bit tensor cores, needs p.half): both operands are cast to p.half while staged
    (blocks names.A_HALF and names.B_NK, B read as a K-contiguous N x K matrix); the values
    are exact in it, so the sums are the same."""
    Mp, Np, Kp = p.mp, p.np_, p.kp
    Af = te.placeholder((Mp, Kp), "float32", name="Af")
    if p.float_codes:
        return _gemm_codes(p, Af)
    Bf = te.placeholder((Np // 16, Kp, 16), p.half or "float32", name="Bf")  # B in 16 bits
    k = te.reduce_axis((0, Kp), "k")
    if half:
        assert p.half, "16-bit operands need a plan whose values are exact in them"
        a16 = te.compute((Mp, Kp), lambda i, kk: Af[i, kk].astype(p.half), name=names.A_HALF)
        b16 = te.compute((Np, Kp), lambda n, kk: Bf[n // 16, kk, n % 16], name=names.B_NK)
        acc = te.compute((Mp, Np), lambda i, j: te.sum(
            a16[i, k].astype("float32") * b16[j, k].astype("float32"), axis=k), name=names.ACC)
    else:
        b32 = Bf
        if p.half:  # 16-bit storage widened once per 16-column panel (floats.float_gemm)
            b32 = te.compute(Bf.shape, lambda n, kk, c: _widen(Bf[n, kk, c], p.half),
                             name=names.B_FLOAT)
        acc = te.compute((Mp, Np), lambda i, j: te.sum(Af[i, k] * b32[j // 16, k, j % 16],
                                                       axis=k), name=names.ACC)
    lr_in, output, _ = epilogue_terms(p)
    if not p.half:
        C = output((Mp, Np), lambda i, j: acc[i, j], names.OUT)
        return [Af, Bf, *lr_in, C]
    saf = te.placeholder((Mp,), "float32", name="saf")
    sbf = te.placeholder((1, Np), "float32", name="sbf")
    # (acc saf) sbf: the scales' own product could leave float32's normal range
    C = output((Mp, Np), lambda i, j: acc[i, j] * saf[i] * sbf[0, j], names.OUT)
    return [Af, Bf, saf, sbf, *lr_in, C]


def _gemm_codes(p: KernelPlan, Af: te.Tensor) -> list[te.Tensor]:
    """[Af, Bp, sbf, (zbf,) C] of weight-only products (KernelPlan.float_codes): B's codes
    dequantized to float32, (code - zbf) · sbf of their K group, once per 16-column panel or k
    chunk (block names.B_FLOAT, floats.float_gemm), then a plain float32 GEMM."""
    Mp, Np, Kp, V = p.mp, p.np_, p.kp, p.b_group
    if p.packed:
        Bp = unpack.packed_input(p)

        def code(n, kk, c):
            return unpack.code(Bp, p.pack_bits, n, kk, c, 16)
    else:
        Bp = te.placeholder((Np // 16, Kp, 16), "int8", name="Bp")

        def code(n, kk, c):
            return Bp[n, kk, c]
    groups = -(-p.k // V)
    sbf = te.placeholder((groups, Np), "float32", name="sbf")
    zbf = [te.placeholder((groups, Np), "float32", name="zbf")] if p.float_zero else []

    def value(n, kk, c):
        v = code(n, kk, c).astype("float32")
        if zbf:
            v = v - zbf[0][kk // V, n * 16 + c]
        return v * sbf[kk // V, n * 16 + c]

    b32 = te.compute((Np // 16, Kp, 16), value, name=names.B_FLOAT)
    k = te.reduce_axis((0, Kp), "k")
    acc = te.compute((Mp, Np), lambda i, j: te.sum(Af[i, k] * b32[j // 16, k, j % 16], axis=k),
                     name=names.ACC)
    lr_in, output, _ = epilogue_terms(p)
    C = output((Mp, Np), lambda i, j: acc[i, j], names.OUT)
    return [Af, Bp, sbf, *zbf, *lr_in, C]
