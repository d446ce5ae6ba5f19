"""Generic CPU schedule (AVX2, aarch64, anything LLVM targets): plain loops, j vectorized by
16 int32 lanes, rows parallel. Correct everywhere, several times slower than VNNI; lrqc build
warns when this rule is used."""

from __future__ import annotations

from lrqc.backend.compat import Schedule
from lrqc.backend.schedule import tiles
from lrqc.backend.schedule.protocol import Knob, ScheduleRule
from lrqc.backend.target import Target
from lrqc.plan.model import KernelPlan


class Generic(ScheduleRule):
    name = "generic"
    family = "x86"
    fast = False
    sums_start = True
    measured = "not tuned: the portable fallback"

    def why_not(self, plan: KernelPlan, target: Target) -> str | None:
        return None

    def schedule(self, fn: str, sch: Schedule, plan: KernelPlan, knob: Knob | None = None,
                 variant: str | None = None) -> None:
        """Hand choices only (no knobs)."""
        if tiles.has_block(sch, "b_unpack"):
            sch.compute_inline(sch.get_sblock("b_unpack"))
        acc = "acc" if plan.groups == 1 else "partial"
        blk = sch.get_sblock(acc)
        loops = sch.get_loops(blk)
        if plan.groups == 1:
            i, j, k = loops
            jo, jv = sch.split(j, [None, 16])
            sch.reorder(i, jo, k, jv)
            sch.parallel(i)
        else:
            i, g, j, k = loops
            jo, jv = sch.split(j, [None, 16])
            sch.reorder(i, g, jo, k, jv)
            sch.parallel(i)
        sch.vectorize(jv)
        init = sch.decompose_reduction(blk, k)
        sch.vectorize(sch.get_loops(init)[-1])
