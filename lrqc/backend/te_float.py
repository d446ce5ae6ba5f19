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

from . import names, te_base
from .compat import te, tir
from .plan import KernelPlan


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


def quantize_a(p: KernelPlan):
    """Tensors [A, (U,) Af] of the per-call pass (U: stochastic rounding draws)."""
    M, K, Mp, Kp, V = p.m, p.k, p.mp, p.kp, p.vector
    if p.a_float:
        A = te.placeholder((M, K), "float32", name="A")
        Af = te.compute((Mp, Kp), lambda i, k: tir.if_then_else(
            tir.all(i < M, k < K), _round_to(A[tir.min(i, M - 1), tir.min(k, K - 1)],
                                             p.scheme.a.dtype), tir.const(0.0, "float32")),
            name=names.QUANT_FLOAT)
        return [A, Af]
    *inputs, Aq, sa, zc = te_base.quantize_a(p, codes="float64")
    Af = te.compute((Mp, Kp), lambda i, k: ((Aq[i, k] - zc[i, k // V].astype("float64"))
                                            * sa[i, k // V].astype("float64")).astype("float32"),
                    name=names.QUANT_FLOAT)
    return [*inputs, Af]


def gemm(p: KernelPlan):
    """Tensors [Af, Bf, C]."""
    Mp, Np, Kp = p.mp, p.np_, p.kp
    Af = te.placeholder((Mp, Kp), "float32", name="Af")
    Bf = te.placeholder((Np // 16, Kp, 16), "float32", name="Bf")
    k = te.reduce_axis((0, Kp), "k")
    acc = te.compute((Mp, Np), lambda i, j: te.sum(Af[i, k] * Bf[j // 16, k, j % 16], axis=k),
                     name=names.ACC)
    lr_in, output, _ = te_base.epilogue_terms(p)
    C = output((Mp, Np), lambda i, j: acc[i, j], names.OUT)
    return [Af, Bf, *lr_in, C]
