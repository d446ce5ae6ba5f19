"""x86 AVX2, int8 x int8: A's stored u8 codes read as signed bytes a = code - 128 (one xor of
the broadcast 4 bytes), |a| times B's codes with a's signs moved onto them (vpsignb), summed in
pairs by vpmaddubsw, then vpmaddwd by ones (intrinsic lrqc_avx2_16x4_signed_s8s8s32); the sums
Σ (code - 128)·b are the u8 sums less 128·colsum, which the epilogue adds back (te.gemm's
SIGNED formulation). A pair sum lies within 2·128·127, inside int16, wherever B has no code
-128: symmetric int8 weights against any A codes, which the bytes rule (15_avx2_bytes) cannot
prove for 8-bit codes on both sides. Single scale group only; elsewhere the widened-bytes rule
(20_avx2) runs."""

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
    measured = ""

    def why_not(self, plan: KernelPlan, target: Target) -> str | None:
        if "avx2" not in target.features:
            return "target lacks avx2"
        if plan.chunked:
            return "int64 accumulation over K chunks (the portable rule)"
        if plan.groups > 1 and plan.vector % 4:
            return f"per-group vectors of {plan.vector} (not whole blocks of 4 k)"
        r = ranges.ranges(plan)
        if r is None or not r.signed_exact:
            return ranges.proof(plan, self.instruction)
        return None

    def variants(self, plan: KernelPlan) -> tuple:
        return blocks.variants(plan)

    def unit_safe(self, plan: KernelPlan) -> tuple:
        return () if plan.packed else ("nr",)

    def knobs(self, plan: KernelPlan) -> dict:
        return tiles.tile_knobs(plan, (2, 4, 1), (2, 1))

    def schedule(self, fn: str, sch: Schedule, plan: KernelPlan, knob: Knob | None = None,
                 variant: str | None = None) -> None:
        intrin = register(*signed_block())
        blocks.schedule(fn, sch, plan, tiles.picks(self.knobs(plan), knob), intrin, 1, variant)
