"""CUDA, any arch from sm_61: integer GEMMs on dp4a (u8 x s8 -> s32, 4 k per instruction) with
A's and B's k chunks staged in shared memory (packed codes unpacked on the way) and register
tiles per thread (dp4a.dp4a_gemm; tiles of up to 64 x 64 outputs, 16 x 16 threads, up to 4 x 4
accumulators each: dp4a.gemm_tile / dp4a_knobs). Single-group products (per_tensor /
per_channel, int2..int8 weights, zero points, low-rank epilogues) fuse the epilogue per thread;
per-group products (per_vector, two-level scales, MX, dense residual segments) run group by
group, the group's int32 partial sums and the float32 output sums in registers
(dp4a._dp4a_groups). Buckets that fit tensor-core tiles take cuda_wmma instead. The other
functions (quantization pass, row dot products) get schedules.per_block. Run on an H200
(sm_90) against lrqc.reference; its speed there is not measured."""

from __future__ import annotations

from lrqc.backend.compat import Schedule
from lrqc.backend.cuda import dp4a
from lrqc.backend.schedule.protocol import Knob, ScheduleRule
from lrqc.backend.target import Target
from lrqc.plan import names
from lrqc.plan.model import KernelPlan


class CudaDp4a(ScheduleRule):
    name = "cuda_dp4a"
    family = "cuda"
    fast = True
    measured = "correct on an H200 (sm_90); speed not measured"

    def why_not(self, plan: KernelPlan, target: Target) -> str | None:
        if "dp4a" not in target.features:
            return "target lacks dp4a (sm_61+)"
        if plan.float_path:
            return "a float operand: no integer GEMM"
        if plan.chunked:
            return "int64 accumulation over K chunks (dlight)"
        if plan.groups > 1 and plan.vector % 4:
            return f"per-group vectors of {plan.vector} (not whole dp4a blocks of 4: dlight)"
        return None

    def handles(self, fn: str, plan: KernelPlan) -> bool:
        """The functions this rule schedules itself (the rest: per_block or dlight): the GEMM,
        and the integer sums of single-group products (int_accumulate; per group: dlight's
        matmul rule)."""
        return fn == names.FN_GEMM or (fn == names.FN_ACC and plan.groups == 1)

    def knobs(self, plan: KernelPlan) -> dict:
        """The tuning space (dp4a.dp4a_knobs); lrqc tune samples it on a GPU."""
        return dp4a.dp4a_knobs(plan)

    def schedule(self, fn: str, sch: Schedule, plan: KernelPlan, knob: Knob | None = None,
                 variant: str | None = None) -> None:
        dp4a.dp4a_gemm(sch, plan, knob=knob)
