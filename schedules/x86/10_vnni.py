"""x86 AVX-512 VNNI: u8 x s8 -> s32 GEMM tensorized to vpdpbusd, epilogue fused in the tile.

Skeleton: jo(par) -> io -> ko(kc 256) -> kk -> ii(4) -> jm(4) -> [16 x 4 vpdpbusd]; the GEMM
stage of lrqc's w8a8 per_channel kernel at 2048^3 runs at 1.64-1.81 TOPS on a 2-core Zen 5,
0.90-0.95 of bench/peak.c's vpdpbusd roof (2026-12-02). Nibble weights: order jo -> ko -> io
so each packed tile is unpacked once (split-half packing: -6 to -8 % vs int8 weights).
Per-vector scales: the output is the loop anchor and the per-group accumulator is computed at
g (+14 % at V=64, +55 % at V=16)."""

from __future__ import annotations

from lrqc.backend.compat import Schedule
from lrqc.backend.schedule import blocks, tiles
from lrqc.backend.schedule.protocol import Knob, ScheduleRule
from lrqc.backend.target import Target
from lrqc.plan.model import KernelPlan


class X86Vnni(ScheduleRule):
    name = "x86_vnni"
    family = "x86"
    instruction = "vpdpbusd"
    fast = True
    measured = ("GEMM stage 1.64-1.81 TOPS (0.90-0.95 of the vpdpbusd roof) at 2048^3 w8a8 "
                "per_channel, Zen 5 2 cores (2026-12-02)")

    def why_not(self, plan: KernelPlan, target: Target) -> str | None:
        if "avx512vnni" not in target.features:
            return "target lacks avx512vnni"
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
        """Knobs that are pure split factors (as in the AVX2 rule: the same tile structure)."""
        return () if plan.packed else ("nr",)

    def knobs(self, plan: KernelPlan) -> dict:
        """The tuning space (tiles.tile_knobs): rows per tile (hand 4), 16-column blocks per
        tile (hand 4) and the k chunk (hand 64 steps of 4 bytes = 256). lrqc tune checks
        candidates on the host, so it samples them only on a VNNI machine; tests compile every
        corner of the space for a VNNI target."""
        return tiles.tile_knobs(plan, (4, 2, 1), (4, 2, 1))

    def schedule(self, fn: str, sch: Schedule, plan: KernelPlan, knob: Knob | None = None,
                 variant: str | None = None) -> None:
        blocks.schedule(fn, sch, plan, tiles.picks(self.knobs(plan), knob), tiles.register_vnni(),
                        variant=variant)

