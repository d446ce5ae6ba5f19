"""CUDA fallback for every plan: TVM's dlight rules (threads bound per output element,
reductions across threads), no instruction chosen by lrqc. Float GEMMs whose values are not
exact in 16 bits (and small M buckets of those that are) use it, as do the integer sums of
per-group products (Kernel.int_accumulate)."""

from lrqc.backend.schedule.protocol import ScheduleRule


class CudaGeneric(ScheduleRule):
    name = "cuda_generic"
    family = "cuda"
    fast = False
    measured = "not measured on a GPU yet (compile-only host)"

    def why_not(self, plan, target):
        if "cuda" not in target.features:
            return "not a CUDA target"
        return None

    def handles(self, fn, plan) -> bool:
        return False

    def schedule(self, fn, sch, plan, knob=None, variant=None):  # pragma: no cover
        raise NotImplementedError("cuda_generic schedules nothing itself: handles() is False")
