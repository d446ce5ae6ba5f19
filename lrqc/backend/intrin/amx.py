"""Tensor intrinsics of Intel AMX's int8 tiles (TMUL: tdpbusd, u8·s8 -> s32 in fours, as
vpdpbusd), used as a pair on one block of R x C output tiles of `rows` x 16 int32 held in tile
registers: `zero` configures the tiles and zeroes the accumulators (the init of the block's
sums), and `tiles`, right after it, runs a k extent of kc bytes (a multiple of 64), each step
loading R tiles of A (rows x 64 bytes, A's row stride) and C tiles of B (16 rows of 64 bytes:
16 k groups of 4 x 16 columns, the packed weight layout [N/16][K/4][16][4] as it lies in
memory) and issuing R x C tdpbusd, then stores the accumulators.

`tiles` reads its accumulators from the tile registers `zero` left, not from memory: the pair
is exact only where the schedule puts `tiles` directly after `zero` on the same thread with
the whole k extent in one call (schedule.amx does). Tile registers: the R·C accumulators first
(at most 4), then A's R, then B's C (at most 8 in all). Each block loads the tile configuration
(palette 1; every tile used is rows x 64 bytes, B's 16 x 64) before its first tile
instruction, so a block is correct on any thread whatever ran there before (about 50 ns per
ldtilecfg on Sapphire Rapids class cores). The OS must have granted the process the tile data
state (lrqc.resources.enable_amx) before any block runs."""

from __future__ import annotations

from collections.abc import Callable

from ..compat import T, tir

CFG_BYTES = 64  # ldtilecfg's memory operand: palette, start row, 16 x colsb (u16), 16 x rows


def _cfg_byte(q, rows: int, tiles: int, b_first: int):
    """Byte q of the configuration: palette 1; tile t: 64 bytes per row (colsb at 16 + 2t),
    `rows` rows (at 48 + t), B's tiles (t >= b_first) 16 rows; unused tiles 0."""
    colsb = tir.all(q >= 16, q < 16 + 2 * tiles, q % 2 == 0)
    row_b = tir.all(q >= 48 + b_first, q < 48 + tiles)
    row_a = tir.all(q >= 48, q < 48 + b_first)
    return T.Select(q == 0, T.uint8(1), T.Select(colsb, T.uint8(64), T.Select(
        row_b, T.uint8(16), T.Select(row_a, T.uint8(rows), T.uint8(0)))))


def _call(name: str, *args) -> tir.PrimExpr:
    return T.call_llvm_intrin("void", f"llvm.x86.{name}", *args)


def tiles(rows: int, R: int, C: int, kc: int
          ) -> tuple[str, Callable[[], tuple[tir.PrimFunc, tir.PrimFunc]]]:
    """(name, maker) of the block of R x C tiles of `rows` rows x 16 columns over kc bytes of
    k: C[i, j] += Σ_k A[i, k]·B[j / 16, k / 4, j % 16, k % 4] for i < R·rows, j < 16·C."""
    assert 1 <= rows <= 16 and R * C <= 4 and R * C + R + C <= 8 and kc % 64 == 0
    m, n, b0 = R * rows, 16 * C, R * C + R

    def make() -> tuple[tir.PrimFunc, tir.PrimFunc]:
        @T.prim_func(s_tir=True)
        def desc(A: T.Buffer((m, kc), "uint8", offset_factor=1),
                 B: T.Buffer((C, kc // 4, 16, 4), "int8", offset_factor=1),
                 Acc: T.Buffer((m, n), "int32", offset_factor=1)) -> None:
            with T.sblock("root"):
                T.reads(Acc[0:m, 0:n], A[0:m, 0:kc], B[0:C, 0:kc // 4, 0:16, 0:4])
                T.writes(Acc[0:m, 0:n])
                for i, j, k in T.grid(m, n, kc):
                    with T.sblock("update"):
                        vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                        Acc[vi, vj] = Acc[vi, vj] + T.cast(A[vi, vk], "int32") * T.cast(
                            B[vj // 16, vk // 4, vj % 16, vk % 4], "int32")

        @T.prim_func(s_tir=True)
        def impl(a: T.handle, b: T.handle, acc: T.handle) -> None:
            sa = T.int32()
            sb = T.int32()
            sc = T.int32()
            A = T.match_buffer(a, (m, kc), "uint8", offset_factor=1, strides=[sa, 1])
            B = T.match_buffer(b, (C, kc // 4, 16, 4), "int8", offset_factor=1,
                               strides=[sb, 64, 4, 1])
            Acc = T.match_buffer(acc, (m, n), "int32", offset_factor=1, strides=[sc, 1])
            with T.sblock("root"):
                T.reads(Acc[0:m, 0:n], A[0:m, 0:kc], B[0:C, 0:kc // 4, 0:16, 0:4])
                T.writes(Acc[0:m, 0:n])
                for t in range(kc // 64):
                    for r in T.unroll(R):
                        T.evaluate(_call("tileloadd64", T.int8(R * C + r),
                                         T.address_of(A[rows * r, t * 64]), T.int64(sa)))
                    for s in T.unroll(C):
                        T.evaluate(_call("tileloadd64", T.int8(b0 + s),
                                         T.address_of(B[s, t * 16, 0, 0]), T.int64(64)))
                    for r in T.unroll(R):
                        for s in T.unroll(C):
                            T.evaluate(_call("tdpbusd", T.int8(r * C + s), T.int8(R * C + r),
                                             T.int8(b0 + s)))
                for r in T.unroll(R):
                    for s in T.unroll(C):
                        T.evaluate(_call("tilestored64", T.int8(r * C + s),
                                         T.address_of(Acc[rows * r, 16 * s]), T.int64(sc * 4)))

        return desc, impl

    return f"lrqc_amx_{rows}x{R}x{C}_k{kc}_u8s8s32", make


def zero(rows: int, R: int, C: int
         ) -> tuple[str, Callable[[], tuple[tir.PrimFunc, tir.PrimFunc]]]:
    """(name, maker) of the init of a block of R x C tiles: Acc[i, j] = 0 for i < R·rows,
    j < 16·C, done as the tile configuration and R·C tilezero (the accumulators `tiles`
    continues from; nothing is written to memory)."""
    assert 1 <= rows <= 16 and R * C <= 4 and R * C + R + C <= 8
    m, n, b0 = R * rows, 16 * C, R * C + R

    def make() -> tuple[tir.PrimFunc, tir.PrimFunc]:
        @T.prim_func(s_tir=True)
        def desc(Acc: T.Buffer((m, n), "int32", offset_factor=1)) -> None:
            with T.sblock("root"):
                T.reads()
                T.writes(Acc[0:m, 0:n])
                for i, j in T.grid(m, n):
                    with T.sblock("init"):
                        vi, vj = T.axis.remap("SS", [i, j])
                        Acc[vi, vj] = T.int32(0)

        @T.prim_func(s_tir=True)
        def impl(acc: T.handle) -> None:
            sc = T.int32()
            Acc = T.match_buffer(acc, (m, n), "int32", offset_factor=1, strides=[sc, 1])
            with T.sblock("root"):
                T.reads()
                T.writes(Acc[0:m, 0:n])
                cfg = T.decl_buffer((CFG_BYTES,), "uint8", scope="local")
                for q in range(CFG_BYTES):
                    cfg[q] = _cfg_byte(q, rows, b0 + C, b0)
                T.evaluate(_call("ldtilecfg", T.address_of(cfg[0])))
                for t in T.unroll(R * C):
                    T.evaluate(_call("tilezero", T.int8(t)))

        return desc, impl

    return f"lrqc_amx_zero_{rows}x{R}x{C}_s32", make
