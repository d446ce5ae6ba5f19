"""x86 AVX2 on bytes: the u8 x s8 blocks of the VNNI formulation tensorized to vpmaddubsw then
vpmaddwd by ones (intrinsic lrqc_avx2_16x4x<n>_bytes_i16_u8s8s32): 32 multiply-adds in three
instructions where widened bytes take four. vpmaddubsw saturates its int16 pair sums, so the
rule applies only where the plan's range analysis proves every pair sum inside int16
(lrqc.plan.ranges): weights of at most 7 bits against u8 activations, or activations of at
most 7 bits. Where the bound leaves room (weights of at most 5 bits), each int16 lane adds up to
8 pair sums (vpmaddubsw + vpaddw) before one vpmaddwd by ones widens them (intrinsic
lrqc_avx2_16x4x<n>_bytes_i16_u8s8s32): two instructions per 32 multiply-adds. Elsewhere the
signed rule (17_avx2_signed) or the widened-bytes rule (20_avx2) runs. Per-vector groups with
two-level integer scales that fit int16 pairs (lrqc.plan.ranges.scale_pairs) are summed two
at a time per 8 columns by one vpmaddwd of the packed sums by the scales' products (intrinsic
lrqc_avx2_scale_pairs_i16_*), as the VNNI rule does with vpdpwssd, instead of a conversion and
two float scalings per group: VS-Quant w4a4 1.4-1.6x faster (knobs).

Measured on Zen 3 (2 cores, AVX2, loaded host, same-run A/B): 2048^3 int8 x int4 per_channel
166 GOPS with 8 int16 steps vs 134 widening every step; VS-Quant w4a4 at 512x3072x768 4 steps
1.39x faster than 1 (2026-12-02)."""

from __future__ import annotations

from lrqc.backend.compat import Schedule
from lrqc.backend.intrin.x86 import bytes_steps, register
from lrqc.backend.schedule import blocks, tiles
from lrqc.backend.schedule.protocol import Knob, ScheduleRule
from lrqc.backend.target import Target
from lrqc.plan import ranges
from lrqc.plan import signature as sig
from lrqc.plan.model import KernelPlan


class X86Avx2Bytes(ScheduleRule):
    name = "x86_avx2_bytes"
    family = "x86"
    fast = True
    instruction = "vpmaddubsw"
    sums_start = True
    scale_pairs = True
    pairs_instruction = "vpmaddwd"
    measured = "1.6-2.0x numpy float32 at 2048^3 int8 x int4, Zen 3 2 cores (2026-12-02)"

    def why_not(self, plan: KernelPlan, target: Target) -> str | None:
        r = ranges.ranges(plan)
        exact = r is not None and r.pair_exact
        return blocks.avx2_blocks_refused(plan, target, None if exact else
                                          ranges.proof(plan, self.instruction))

    def proof(self, plan: KernelPlan) -> str | None:
        """The range proof, and how many pair sums the hand schedule adds in int16."""
        if plan.float_path:
            return None
        return (f"{ranges.proof(plan, self.instruction)}; the kernel adds {steps(plan)} per lane "
                f"before widening{self.pairs_proof(plan)}")

    def variants(self, plan: KernelPlan) -> tuple:
        """Loop orders lrqc tune explores (blocks.variants): rows outer, k chunks outer, and
        for packed weights their unpacking in the k loop."""
        return blocks.variants(plan)

    def unit_safe(self, plan: KernelPlan) -> tuple:
        """Knobs that are pure split factors (as in the VNNI rule: the same tile structure)."""
        return () if plan.packed else ("nr",)

    def knobs(self, plan: KernelPlan) -> dict:
        """The tuning space (tiles.tile_knobs): rows per tile (hand 2), 16-column blocks per
        tile (hand 2) and the k chunk in blocks of steps(plan) 4-byte steps. Same-run A/B on
        Zen 3 (2026-12-02), int8 x int4: 2 x 2 1.27x faster than 4 x 1 at 2048^3 and 1.7x at
        1024x384x1536 (4 x 2 and 8 x 1 close to 2 x 2); VS-Quant w4a4 at 2048^3: 2 x 2 1.4x
        faster than 4 x 1. Groups summed as int16 pairs take 2 x 1 by hand: their int32 sums of
        two groups and the tile's total hold 12 of the 16 registers. VS-Quant w4a4 on a 2-core
        Zen 3, medians of 9 interleaved calls, 2 x 1 against 2 x 2, 4 x 1, 4 x 2 and 8 x 1 (and
        each group scaled in float32, 2 x 2), ms: 2048^3 57.7 / 66.3, 59.7, 89.0, 82.2 (90.2);
        512x3072x768 7.46 / 8.30, 7.53, 12.0, 10.1 (12.2); 256x1024x1024 2.68 / 2.78, 2.58,
        3.91, 3.77 (3.71); 16x4096x4096 2.51 / 2.47, 2.43, 3.20, 3.17 (3.95)."""
        if self.scale_pairs and sig.scale_pairs(plan):
            return tiles.tile_knobs(plan, (2, 4, 1), (1,), step=steps(plan))
        return tiles.tile_knobs(plan, (2, 4, 1), (2, 1), step=steps(plan))

    def schedule(self, fn: str, sch: Schedule, plan: KernelPlan, knob: Knob | None = None,
                 variant: str | None = None) -> None:
        n = steps(plan)
        intrin = register(*bytes_steps(n))
        blocks.schedule(fn, sch, plan, tiles.picks(self.knobs(plan), knob), intrin, n, variant,
                        avx2=True)


def steps(plan: KernelPlan) -> int:
    """How many 4-byte k steps one tensorized block adds in int16 before widening: the
    largest of 8, 4, 2 that the range proof allows (ranges.int16_steps) and that divides
    Kp / 4 (or the group's V / 4); 1: widen every step."""
    r = ranges.ranges(plan)
    cap = r.int16_steps if r is not None else 0
    width = plan.vector // 4 if plan.groups > 1 else plan.kp // 4
    return next((n for n in (8, 4, 2) if n <= cap and width % n == 0), 1)
