"""x86 AVX-VNNI (the 256-bit VEX vpdpbusd of CPUs without AVX-512, e.g. Intel Alder Lake and
later client cores): the VNNI rule's u8 x s8 -> s32 block of 16 columns x 4 k as two 8-column
vpdpbusd, the same loop structure (blocks.schedule) with tiles for 16 ymm registers: 4 rows x 16
columns (8 accumulators) by hand. Exact for every byte code, as the 512-bit form. Measured on
an AMD Zen 5 (which has both forms) with the target x86-avxvnni: see the rule's `measured`
(3.3x the vpmaddwd rule's GEMM on the same machine)."""

from __future__ import annotations

from lrqc.backend.compat import Schedule
from lrqc.backend.schedule import blocks, tiles
from lrqc.backend.schedule.protocol import Knob, ScheduleRule
from lrqc.backend.target import Target
from lrqc.plan.model import KernelPlan


class X86AvxVnni(ScheduleRule):
    name = "x86_avxvnni"
    family = "x86"
    instruction = "vpdpbusd"
    fast = True
    measured = ("GEMM stage 804-822 GOPS (0.83-0.96 of the 256-bit vpdpbusd roof) at 2048^3 and "
                "512x3072x768 w8a8 per_channel, Zen 5 2 cores, target x86-avxvnni (2026-12-02)")

    def why_not(self, plan: KernelPlan, target: Target) -> str | None:
        if "avxvnni" not in target.features:
            return "target lacks avxvnni"
        if plan.chunked:
            return "int64 accumulation over K chunks (the portable rule)"
        if plan.groups > 1 and plan.vector % 4:
            return (f"per-group vectors of {plan.vector} (not whole blocks of 4 k: the portable "
                    "rule)")
        return None

    def variants(self, plan: KernelPlan) -> tuple:
        """Loop orders lrqc tune explores (blocks.variants): rows outer or k chunks outer."""
        return blocks.variants(plan)

    def unit_safe(self, plan: KernelPlan) -> tuple:
        """Knobs that are pure split factors (as in the VNNI rule: the same tile structure)."""
        return () if plan.packed else ("nr",)

    def knobs(self, plan: KernelPlan) -> dict:
        """Rows per tile (hand 4), 16-column blocks per tile (hand 1: two ymm accumulators
        per row) and the k chunk (hand 256 bytes)."""
        return tiles.tile_knobs(plan, (4, 2, 1), (1,))

    def schedule(self, fn: str, sch: Schedule, plan: KernelPlan, knob: Knob | None = None,
                 variant: str | None = None) -> None:
        blocks.schedule(fn, sch, plan, tiles.picks(self.knobs(plan), knob),
                        tiles.register_avxvnni(), variant=variant)
