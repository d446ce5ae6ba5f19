"""x86 AVX2 on bytes: the u8 x s8 blocks of the VNNI formulation tensorized to vpmaddubsw then
vpmaddwd by ones (intrinsic lrqc_avx2_16x4_bytes_u8s8s32): 32 multiply-adds in three
instructions where widened bytes take four. vpmaddubsw saturates its int16 pair sums, so the
rule applies only where the plan's range analysis proves every pair sum inside int16
(lrqc.plan.ranges): weights of at most 7 bits against u8 activations, or activations of at
most 7 bits. Elsewhere the widened-bytes rule (20_avx2) runs."""

from __future__ import annotations

from lrqc.backend.compat import Schedule
from lrqc.backend.intrin.x86 import AVX2_BYTES_16x4, register
from lrqc.backend.schedule import blocks, tiles
from lrqc.backend.schedule.protocol import Knob, ScheduleRule
from lrqc.backend.target import Target
from lrqc.plan import ranges
from lrqc.plan.model import KernelPlan


class X86Avx2Bytes(ScheduleRule):
    name = "x86_avx2_bytes"
    family = "x86"
    fast = True
    instruction = "vpmaddubsw"
    measured = "not yet measured"

    def why_not(self, plan: KernelPlan, target: Target) -> str | None:
        if "avx2" not in target.features:
            return "target lacks avx2"
        if plan.chunked:
            return "int64 accumulation over K chunks (the portable rule)"
        if plan.groups > 1 and plan.vector % 4:
            return f"per-group vectors of {plan.vector} (not whole blocks of 4 k)"
        r = ranges.ranges(plan)
        if r is None or not r.pair_exact:
            return ranges.proof(plan, self.instruction)
        return None

    def unit_safe(self, plan: KernelPlan) -> tuple:
        """Knobs that are pure split factors (as in the VNNI rule: the same tile structure)."""
        return () if plan.nibbles else ("nr",)

    def knobs(self, plan: KernelPlan) -> dict:
        """The tuning space (tiles.tile_knobs): rows per tile (hand 4), 16-column blocks per
        tile (hand 1: 4 rows x 2 ymm accumulators of 8 lanes, two of B, A and the ones fill
        12 of AVX2's 16 registers) and the k chunk."""
        return tiles.tile_knobs(plan, (4, 2, 1), (1, 2))

    def schedule(self, fn: str, sch: Schedule, plan: KernelPlan, knob: Knob | None = None,
                 variant: str | None = None) -> None:
        blocks.schedule(fn, sch, plan, tiles.picks(self.knobs(plan), knob),
                        register(AVX2_BYTES_16x4))
