"""CUDA sm_75+: the single-group integer GEMM on tensor cores (WMMA m16n16k16 s8 x s8 -> s32;
A's u8 codes shifted to s8, + 128 cs in the epilogue: the TE's S8 formulation,
te.base.gemm(s8=True)) when the plan's padded sizes fit 64 x 64 output tiles (wmma.wmma_tile)
and K >= 32 (the pipeline's two chunks); other shapes (small M buckets) take the dp4a rule.
The k loop is software-pipelined over double-buffered shared memory (wmma.wmma_gemm). Not run
on a GPU yet: compiled and checked to PTX here."""

from lrqc.backend.cuda.wmma import WmmaRule
from lrqc.backend.schedule.protocol import Formulation


class CudaWmma(WmmaRule):
    name = "cuda_wmma"
    formulation = Formulation.S8
