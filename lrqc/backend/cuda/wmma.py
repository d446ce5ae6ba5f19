"""GEMMs on tensor cores (WMMA m16n16k16) and the rule class behind cuda_wmma (the integer
GEMM, s8 x s8 -> s32) and cuda_wmma_half (float GEMMs of 16-bit values, f16 / bf16 -> f32): one
tile and software pipeline for both, the TE formulation (Formulation.S8 or HALF) choosing the
operand type."""

from __future__ import annotations

from ...plan import names
from ...plan.model import KernelPlan
from ..compat import Schedule
from ..intrin.cuda import register_all
from ..schedule.protocol import Formulation, Knob, ScheduleRule
from ..schedule.tiles import has_block, picks
from ..target import Target


def wmma_knobs(plan: KernelPlan) -> dict:
    """The tensor-core GEMM's tuning space, name -> (candidates, hand choice): warps per block
    along rows and columns ("wy", "wx") and 16 x 16 fragments per warp ("fy", "fx"), so any
    combination's block tile divides the bucket's padded sizes (which the rule checks are
    multiples of 64). Hand: 2 x 2 warps of 2 x 2 fragments (a 64 x 64 output tile). The k
    chunk "kf" stays one fragment: WMMA loads need 32-byte aligned fragment pointers, which a
    second int8 fragment 16 bytes into a 32-byte row breaks, and with 16-bit values two
    fragments make a 16-row tile's staging buffer larger than its accumulator tile (see
    _fragments' storage_align)."""
    def along(extent: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return ((1, 2, 4) if extent % 128 == 0 else (1, 2)), (1, 2)

    (wy, fy), (wx, fx) = along(plan.mp), along(plan.np_)
    return {"wy": (wy, 2), "wx": (wx, 2), "fy": (fy, 2), "fx": (fx, 2), "kf": ((1,), 1)}


def wmma_tile(plan: KernelPlan, knob: Knob | None = None) -> dict:
    """The tensor-core tile (wmma_knobs) at the hand choices, or as knob picks them. Which
    plans fit it is the rule's call (WmmaRule.why_not)."""
    return picks(wmma_knobs(plan), knob)


def wmma_gemm(sch: Schedule, plan: KernelPlan, acc: str = names.ACC, out: str = names.OUT,
              knob: Knob | None = None) -> None:
    """A GEMM on tensor cores: the single-group integer GEMM (WMMA m16n16k16 s8 x s8 -> s32,
    A's codes shifted to s8: block names.A_S8) or the float GEMM of 16-bit values (f16 / bf16
    -> f32, block names.A_HALF). Block (bi, bj) -> warp (wy x wx) -> k chunks ko,
    software-pipelined (A's tile and B's N x K view staged in double-buffered shared memory by
    all threads, 4 elements per thread-copy) -> 16-k steps -> fy x fx fragments per warp; each
    warp's accumulators stored to shared memory, then the output block (scales, zero-point
    correction, low-rank epilogue) computed from them by the warp's 32 threads."""
    s8 = has_block(sch, names.A_S8)
    intrin = register_all("int8" if s8 else plan.half)
    t = wmma_tile(plan, knob)
    blk = sch.get_sblock(acc)
    packed = has_block(sch, names.UNPACK)
    if packed:
        sch.compute_inline(sch.get_sblock(names.UNPACK))
    i, j, k = sch.get_loops(blk)
    i, ii = sch.split(i, [None, 16])
    j, jj = sch.split(j, [None, 16])
    k, kk = sch.split(k, [None, 16])
    sch.reorder(i, j, k, ii, jj, kk)
    outer = sch.blockize(ii)
    bi, wy, fy = sch.split(i, [None, t["wy"], t["fy"]])
    bj, wx, fx = sch.split(j, [None, t["wx"], t["fx"]])
    ko, ki = sch.split(k, [None, t["kf"]])
    sch.reorder(bi, bj, wy, wx, ko, ki, fy, fx)
    sch.bind(bi, "blockIdx.y")
    sch.bind(bj, "blockIdx.x")
    warp = sch.fuse(wy, wx)
    sch.bind(warp, "threadIdx.y")
    _stage_shared(sch, names.A_S8 if s8 else names.A_HALF, ko, t, packed)
    acc_sh = _fragments(sch, blk, outer, ko, ki, warp, intrin)
    # software pipeline over the k chunks: the next chunk's A and B tiles are copied into the
    # other half of double-buffered shared memory while the fragments of this one multiply
    # (TVM's InjectSoftwarePipeline; the fragment loads stay inside the compute stage, which
    # is what makes it work: dlight's WMMA rule pipelines them too and crashes in TVM 0.27)
    sch.annotate(ko, "software_pipeline_stage", [0, 0, 1])
    sch.annotate(ko, "software_pipeline_order", [0, 1, 2])
    _output_per_warp(sch, acc_sh, out, warp)


def _stage_shared(sch, a_name: str, ko, t: dict, packed: bool = False) -> None:
    """A's tile (block a_name) and B's N x K view copied from global to shared memory under the
    k chunk ko (converted / re-laid on the way) by all threads, 4 elements per thread-copy
    (B's densely packed codes: decoded one by one, unrolled; CUDA's code generator has no
    vectors of their per-lane shifts)."""
    for name in (a_name, names.B_NK):
        b = sch.get_sblock(name)
        sch.set_scope(b, 0, "shared")
        sch.compute_at(b, ko)
        fused = sch.fuse(*sch.get_loops(b)[-2:])
        _, f1y, f1x, f2, f3 = sch.split(fused, [None, t["wy"], t["wx"], 32, 4])
        sch.bind(sch.fuse(f1y, f1x), "threadIdx.y")  # (no product of knobs: traces need RVs)
        sch.bind(f2, "threadIdx.x")
        if packed and name == names.B_NK:
            sch.unroll(f3)
        else:
            sch.vectorize(f3)


def _fragments(sch, blk, outer, ko, ki, warp, intrin: dict):
    """The fragments of the blockized GEMM `outer`: A's and B's loaded from shared memory under
    ki, the accumulators filled, multiplied and stored per warp to a shared tile; every step
    tensorized to WMMA. Returns the shared accumulator tile's block."""
    a_frag = sch.cache_read(outer, 0, "wmma.matrix_a")
    b_frag = sch.cache_read(outer, 1, "wmma.matrix_b")
    sch.compute_at(a_frag, ki)
    sch.compute_at(b_frag, ki)
    acc_sh = sch.cache_write(outer, 0, "shared")
    store = sch.cache_write(outer, 0, "wmma.accumulator")
    sch.reverse_compute_at(store, warp)
    si, sj = sch.get_loops(store)[-2:]
    si0, si1 = sch.split(si, [None, 16])
    sj0, sj1 = sch.split(sj, [None, 16])
    sch.reorder(si0, sj0, si1, sj1)
    init = sch.decompose_reduction(outer, ko)
    for frag, role in ((a_frag, "load_a"), (b_frag, "load_b")):
        fi, fj = sch.get_loops(frag)[-2:]
        fi0, fi1 = sch.split(fi, [None, 16])
        fj0, fj1 = sch.split(fj, [None, 16])
        sch.reorder(fi0, fj0, fi1, fj1)
        sch.tensorize(fi1, intrin[role])
    sch.tensorize(sch.get_loops(sch.get_child_blocks(init)[0])[-2], intrin["init"])
    sch.tensorize(si1, intrin["store"])
    # rows of the shared accumulator tile padded to 8 words past a multiple of 32 (fragment
    # stores stay 32-byte aligned; threads reading a column back hit other banks). With one
    # fragment of k per chunk this also keeps the tile larger than either staging buffer:
    # TVM's StorageRewrite would otherwise reuse one for it and then reject the store's typed
    # access pointer (float32 into float16 memory)
    sch.storage_align(sch.get_child_blocks(sj0)[0], 0, axis=0, factor=32, offset=8)
    sch.tensorize(sch.get_loops(blk)[-3], intrin["compute"])
    return acc_sh


def _output_per_warp(sch, acc_sh, out: str, warp) -> None:
    """The shared accumulator tile feeds the output block directly, per warp, its outputs
    spread over the warp's 32 threads."""
    sch.compute_inline(acc_sh)
    o = sch.get_sblock(out)
    sch.reverse_compute_at(o, warp)
    ol = sch.get_loops(o)
    n_out = 2 if len(sch.get(o).iter_vars) == 2 else 3  # i, j (, ranks c)
    spatial = ol[len(ol) - n_out: len(ol) - n_out + 2]
    fused = sch.fuse(*spatial)
    _, tx = sch.split(fused, [None, 32])
    sch.bind(tx, "threadIdx.x")


class WmmaRule(ScheduleRule):
    """Tensor-core GEMMs in 64 x 64 output tiles (K a multiple of 32: the pipeline's two
    chunks), parametrised by formulation: S8 (the single-group integer GEMM, int8 tensor cores)
    or HALF (float GEMMs whose values are exact in 16 bits, fp16 / bf16 tensor cores)."""

    family = "cuda"
    fast = True
    measured = ("H200 (sm_90), 4096^3: int8 0.70 ms (195 TOPS, 1.59x torch._int_mm), float16 x "
                "int4 1.72 ms (80 TOPS, 0.11x torch's float16 matmul); kernel time, GPU-side")

    def why_not(self, plan: KernelPlan, target: Target) -> str | None:
        if self.formulation is Formulation.S8:
            why = _why_not_int8(plan, target.features)
        else:
            why = _why_not_half(plan, target.features)
        if why is None and (plan.mp % 64 or plan.np_ % 64 or plan.kp % 32):
            why = (f"sizes {plan.mp}x{plan.np_}x{plan.kp} do not fit 64 x 64 tiles (K a "
                   "multiple of 32)")
        return why

    def unit_safe(self, plan: KernelPlan) -> tuple:
        """Knobs that may take 1 where the hand choice is 2 (their traces replay into the same
        loops at every value: a compile-only test replays each corner)."""
        return ("wy", "wx", "fy", "fx")

    def knobs(self, plan: KernelPlan) -> dict:
        """The tuning space (wmma_knobs); lrqc tune samples it on a GPU."""
        return wmma_knobs(plan)

    def schedule(self, fn: str, sch: Schedule, plan: KernelPlan, knob: Knob | None = None,
                 variant: str | None = None) -> None:
        wmma_gemm(sch, plan, knob=knob)


def _why_not_int8(plan, features) -> str | None:
    if "mma_s8" not in features:
        return "target lacks int8 tensor cores (sm_75+)"
    if plan.float_path:
        return "a float operand: no integer GEMM"
    if plan.groups > 1:
        return "per-group scales: not yet"
    return None


def _why_not_half(plan, features) -> str | None:
    if not plan.float_path:
        return "an integer product (the int8 rules take it)"
    if plan.half is None:
        return ("values not exact in 16 bits (a float32 operand, scales inside the K sum, "
                "or B's dense terms folded into float weights)")
    need = "mma_bf16" if plan.half == "bfloat16" else "mma_f16"
    if need not in features:
        return (f"target lacks {plan.half} tensor cores "
                f"({'sm_80' if need == 'mma_bf16' else 'sm_75'}+)")
    return None
