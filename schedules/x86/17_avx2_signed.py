"""x86 AVX2, int8 x int8: A's stored u8 codes read as signed bytes a = code - 128 (the
quantization pass writes them so, each with its top bit flipped: te.flipped, so the 4 bytes are
broadcast straight from memory), |a| times B's codes with a's signs moved onto them (vpsignb),
summed in pairs by vpmaddubsw, then vpmaddwd by ones (intrinsic
lrqc_avx2_16x4_flipped_s8s8s32); the sums
Σ (code - 128)·b are the u8 sums less 128·colsum, which the epilogue adds back (te.gemm's
SIGNED formulation). A pair sum lies within 2·128·127, inside int16, wherever B has no code
-128: symmetric int8 weights against any A codes, which the bytes rule (15_avx2_bytes) cannot
prove for 8-bit codes on both sides. Per-vector groups of whole blocks of 4 k, and the K
segments of dense residual terms, take it too (te.gemm subtracts each group's zero correction
less 128·colsum). Elsewhere (weights with the code -128: unsigned or min-max int8) the
widened-bytes rule (20_avx2) runs.

Four instructions per 32 multiply-adds (vpsignb, vpmaddubsw, vpmaddwd, vpaddd), where widened
bytes take six (vpmovsxbw of B per 16 bytes, vpmaddwd, vpaddd). Int8 x int8 per_channel on a
2-core Zen 3, this rule against the widened-bytes one in one process, medians of 9 interleaved
calls, ms: 2048^3 76.2 / 98.3, 512x3072x768 11.2 / 11.9, 1024x1536x384 8.2 / 9.6,
1024x384x1536 5.7 / 6.3, 16x4096x4096 3.0 / 3.8, 256x1024x1024 2.4 / 2.6 (2026-12-07). With A's
codes stored flipped, so no xor per broadcast (two processes alternating, twice, medians of 15
calls after half a second of calls), ms: 2048^3 73.7, 77.7 -> 64.8, 66.6; 512x3072x768 10.4,
10.4 -> 9.4, 9.1; 256x1024x1024 2.32, 2.36 -> 2.13, 2.07."""

from __future__ import annotations

from lrqc.backend.compat import Schedule
from lrqc.backend.intrin.x86 import register, signed_block
from lrqc.backend.schedule import blocks, tiles
from lrqc.backend.schedule.protocol import Formulation, Knob, ScheduleRule
from lrqc.backend.target import Target
from lrqc.plan import ranges
from lrqc.plan.model import KernelPlan


class X86Avx2Signed(ScheduleRule):
    name = "x86_avx2_signed"
    family = "x86"
    fast = True
    instruction = "vpsignb"
    formulation = Formulation.SIGNED
    measured = "1.07-1.29x the widened-bytes rule, int8 x int8, Zen 3 2 cores (2026-12-07)"

    def why_not(self, plan: KernelPlan, target: Target) -> str | None:
        r = ranges.ranges(plan)
        exact = r is not None and r.signed_exact
        return blocks.avx2_blocks_refused(plan, target, None if exact else
                                          ranges.proof(plan, self.instruction))

    def variants(self, plan: KernelPlan) -> tuple:
        """Loop orders lrqc tune explores (blocks.variants)."""
        return blocks.variants(plan)

    def unit_safe(self, plan: KernelPlan) -> tuple:
        """Knobs that are pure split factors (the VNNI rule's tile structure)."""
        return () if plan.packed else ("nr",)

    def knobs(self, plan: KernelPlan) -> dict:
        """The tuning space (tiles.tile_knobs): rows per tile, 16-column blocks and the k
        chunk; by hand 2 x 2. Zen 3, medians of 9 interleaved calls, ms, 2 x 2 against 1 x 4,
        1 x 2, 4 x 1 and 2 x 1: 2048^3 76.5 / 73.9, 92.8, 93.9, 93.6; 512x3072x768 12.3 /
        11.9, 13.1, 14.5, 13.8; 16x4096x4096 2.89 / 2.84, 3.20, 3.26, 3.57; 256x1024x1024 2.95
        / 3.27, 3.21, 3.83, 3.55. With groups (int8 + dense(int8) residual segments, 256 x 4096
        x 4096) 2 x 2 129 against 2 x 1 145 and 4 x 1 142."""
        return tiles.tile_knobs(plan, (2, 4, 1), (2, 1))

    def schedule(self, fn: str, sch: Schedule, plan: KernelPlan, knob: Knob | None = None,
                 variant: str | None = None) -> None:
        intrin = register(*signed_block())
        blocks.schedule(fn, sch, plan, tiles.picks(self.knobs(plan), knob), intrin, 1, variant)
