"""x86 AVX-512 VNNI: u8 x s8 -> s32 GEMM tensorized to vpdpbusd, epilogue fused in the tile.

Skeleton: jo(par) -> io -> ko(kc 256) -> kk -> ii(4) -> jm(4) -> [16 x 4 vpdpbusd]; the GEMM
stage of lrqc's w8a8 per_channel kernel at 2048^3 runs at 1.64-1.81 TOPS on a 2-core Zen 5,
0.90-0.95 of bench/peak.c's vpdpbusd roof (2026-12-02). Nibble weights: order jo -> ko -> io
so each packed tile is unpacked once (split-half packing: -6 to -8 % vs int8 weights).
Per-vector scales: the output is the loop anchor and the per-group accumulator is computed at
g (+14 % at V=64, +55 % at V=16). The conditions, knobs and loop structure are those of
blocks.DotBlockRule."""

from __future__ import annotations

from lrqc.backend.schedule import blocks, tiles


class X86Vnni(blocks.DotBlockRule):
    name = "x86_vnni"
    family = "x86"
    feature = "avx512vnni"
    wide_floats = True
    scale_pairs = True
    measured = ("GEMM stage 1.64-1.81 TOPS (0.90-0.95 of the vpdpbusd roof) at 2048^3 w8a8 "
                "per_channel, Zen 5 2 cores (2026-12-02)")

    def intrinsic(self) -> str:
        return tiles.register_vnni()
