"""CUDA sm_75+ (bf16: sm_80+): float GEMMs on fp16 / bf16 tensor cores (WMMA m16n16k16,
f32 accumulation) when every value they multiply is exact in 16 bits (KernelPlan.half:
weight-only products such as `a: float16` x `b: int4 per_channel`, and the float fallback of
per_tensor / per_channel e*m* codes). The GEMM multiplies A's and B's values (codes, or a float
operand rounded to its type) cast to 16 bits while staged in shared memory (the TE's HALF
formulation, te.floating.gemm(half=True)), and applies the row and column scales in its
epilogue: products are exact in float32, so only the order of the float32 sums differs from
the float32 GEMM. Same tile and software pipeline as the int8 tensor-core rule
(wmma.wmma_gemm). Run on an H200 (sm_90) against lrqc.reference."""

from lrqc.backend.cuda.wmma import WmmaRule
from lrqc.backend.schedule.protocol import Formulation


class CudaWmmaHalf(WmmaRule):
    name = "cuda_wmma_half"
    formulation = Formulation.HALF
