"""CUDA fallback for every plan: TVM's dlight rules other than its matmul rule (a GEMM: a
thread block per output element, K reduced across its threads), no instruction chosen by
lrqc. Float GEMMs whose values are not exact in 16 bits (and small M buckets of those that
are) use it, as do the integer sums of per-group products (Kernel.int_accumulate)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lrqc.backend.schedule.protocol import Knob, ScheduleRule
from lrqc.plan.model import KernelPlan

if TYPE_CHECKING:  # for annotations only: the target module imports TVM, this one does not
    from lrqc.backend.target import Target


class CudaGeneric(ScheduleRule):
    name = "cuda_generic"
    family = "cuda"
    fast = False
    output_start = False  # dlight reduces a sum from its identity
    measured = ("correct on an H200 (sm_90); speed not measured: a thread block per output "
                "element, K reduced across its threads")

    def why_not(self, plan: KernelPlan, target: Target) -> str | None:
        if "cuda" not in target.features:
            return "not a CUDA target"
        return None

    def handles(self, fn: str, plan: KernelPlan) -> bool:
        return False

    def schedule(self, fn: str, sch: Any, plan: KernelPlan,  # pragma: no cover
                 knob: Knob | None = None, variant: str | None = None) -> None:
        raise NotImplementedError("cuda_generic schedules nothing itself: handles() is False")
