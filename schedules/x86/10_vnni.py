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
    # 8 rows x 2 column blocks for packed weights at up to 16 rows: two tiles, so the weights
    # are unpacked next to their use (blocks.few_tiles), each unpacked block serving 8 rows.
    # Int8 x int4 on a 2-core Zen 4, medians of 21 interleaved calls, 8 x 2 against the 4 x 4
    # hand tile (which unpacks each column panel into memory first): 16 x 4096 x 4096 0.75 /
    # 0.84, 0.81 / 0.98 ms; 8 x 4096 x 4096 0.44 / 0.56; 16 x 11008 x 4096 2.49 / 3.12; 16 x
    # 4096 x 11008 2.15 / 2.68; at 32 rows (4 tiles, no change of order) 1.66 / 1.66. Int8
    # weights (not packed) keep 4 x 4: 0.74 / 0.67 ms at 8 rows.
    packed_few_rows = (8, 2)
    # groups summed as int16 pairs at up to 32 rows: 8 rows x 16 columns (else 4 x 32); at 16
    # rows B's panel is unpacked next to its use and each unpacked block serves 8 rows.
    # VS-Quant w4a4 at N = K = 4096 on a 2-core Zen 4, medians of 15 interleaved calls, 8 x 16
    # against 4 x 32: 8 rows 0.757 / 0.825 ms, 16 rows 1.19 / 1.41, 32 rows 2.25 / 2.31; at 64
    # rows 5.14 / 4.79, and 2048^3 30.9 / 29.8.
    pairs_few_rows = 32
    measured = ("GEMM stage 1.64-1.81 TOPS (0.90-0.95 of the vpdpbusd roof) at 2048^3 w8a8 "
                "per_channel, Zen 5 2 cores (2026-12-02)")

    def intrinsic(self) -> str:
        return tiles.register_vnni()
