"""x86 AVX-VNNI (the 256-bit VEX vpdpbusd of CPUs without AVX-512, e.g. Intel Alder Lake and
later client cores): the VNNI rule's u8 x s8 -> s32 block of 16 columns x 4 k as two 8-column
vpdpbusd, the same conditions and loop structure (blocks.DotBlockRule) with tiles for 16 ymm
registers: 4 rows x 16 columns (8 accumulators) by hand. Exact for every byte code, as the
512-bit form. Measured on an AMD Zen 5 (which has both forms) with the target x86-avxvnni: see
`measured` (3.3x the vpmaddwd rule's GEMM on the same machine)."""

from __future__ import annotations

from lrqc.backend.schedule import blocks, tiles


class X86AvxVnni(blocks.DotBlockRule):
    name = "x86_avxvnni"
    family = "x86"
    feature = "avxvnni"
    cols_pref = (1,)  # two ymm accumulators per row
    measured = ("GEMM stage 779-822 GOPS (roof 841-993 across runs) at 2048^3 and 512x3072x768 "
                "w8a8 per_channel, Zen 5 2 cores, target x86-avxvnni (2026-12-02)")

    def intrinsic(self) -> str:
        return tiles.register_avxvnni()
