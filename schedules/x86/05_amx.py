"""x86 AMX (Intel Sapphire Rapids and later): u8 x s8 -> s32 GEMM on int8 tiles (tdpbusd, 16
rows x 64 bytes of A against 16 k groups of 4 x 16 columns of B per instruction), epilogue fused
per output tile. Loop structure and tile blocks: lrqc.backend.schedule.amx; the instruction:
lrqc.backend.intrin.amx. Products whose k extent is whole 64-byte tile rows, with one scale
group or groups (per-vector scales, K segments of residual terms) of at least amx.MIN_VECTOR k;
the others take the VNNI rule. Exact for every byte code, as vpdpbusd.
Kernels need the OS to grant the tile state (Linux >= 5.16: lrqc asks when it loads one)."""

from __future__ import annotations

from lrqc.backend.schedule import amx, tiles
from lrqc.backend.schedule.protocol import Knob, ScheduleRule
from lrqc.plan.model import KernelPlan


class X86Amx(ScheduleRule):
    name = "x86_amx"
    family = "x86"
    fast = True
    instruction = "tdpbusd"
    wide_floats = True
    measured = ("GEMM stage 3.9-4.1 TOPS at 2048^3 w8a8 per_channel on a 2-core Sapphire "
                "Rapids class VM (tdpbusd roof 10.2-12.2 TOPS, 2026-12-02)")

    def why_not(self, plan: KernelPlan, target) -> str | None:
        if "amx-int8" not in target.features:
            return "target lacks amx-int8"
        if plan.chunked:
            return "int64 accumulation over K chunks (the portable rule)"
        if plan.groups > 1 and (plan.vector % 64 or plan.vector < amx.MIN_VECTOR):
            return (f"per-group vectors of {plan.vector} (AMX takes groups of whole tile rows "
                    f"from {amx.MIN_VECTOR} k: smaller ones spend more on each group's "
                    "dequantization than the tiles save; the VNNI rule)")
        if plan.kp % 64:
            return f"K padded to {plan.kp}, not whole 64-byte tile rows"
        return None

    def knobs(self, plan: KernelPlan) -> dict:
        return amx.knobs(plan)

    def schedule(self, fn: str, sch, plan: KernelPlan, knob: Knob | None = None,
                 variant: str | None = None) -> None:
        amx.schedule(sch, plan, tiles.picks(amx.knobs(plan), knob), fn)
