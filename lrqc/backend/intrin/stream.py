"""Tensor intrinsic writing a tile of float32 outputs to C with non-temporal stores (`vmovntps`):
C is written once and read by the caller after the call, so each store goes straight to memory
instead of first reading C's lines into the cache (the read for ownership a plain store costs:
at small K the GEMM's time is mostly C's writes). The tile is computed into a local buffer (the
epilogue's cache_write) and copied out 16 lanes at a time.

Non-temporal stores are weakly ordered: an `sfence` must follow a thread's stores before the
call returns C. One per tile would wait for every tile's stores to reach memory (the GEMM then
runs slower than with plain stores), so either only the tiles that start `period` - rows past
a multiple of `period` (the schedule passes C's rows: the tiles of C's last rows) end with one,
`sfence` ordering every earlier store of the thread (schedule.tiles.stream_out says when this
suffices), or, with period 0, no tile does and the schedule fences after its loop of row
tiles (rowbound.fence_after: that loop may end before C's last rows).

TVM emits no non-temporal stores: the store is a small LLVM function imported into the module
(the `pragma_import_llvm` annotation, STORE_LL) and called per vector; LLVM inlines it. C's
rows must start on 64-byte boundaries (TVM's tensors do; N padded to 16)."""

from __future__ import annotations

from collections.abc import Callable

from ..compat import T, tir

STORE = "lrqc_nt_store_f32x16"
STORE_LL = f"""
define internal void @{STORE}(ptr %p, <16 x float> %v) alwaysinline {{
  store <16 x float> %v, ptr %p, align 64, !nontemporal !0
  ret void
}}
!0 = !{{i32 1}}
"""


def tile(rows: int, cols: int, period: int
         ) -> tuple[str, Callable[[], tuple[tir.PrimFunc, tir.PrimFunc]]]:
    """(name, maker) of C[i, j] = S[i, j] for i < rows, j < cols (a multiple of 16): S the
    local tile, C's rows 64-byte aligned; a tile whose first row r has r % period == period -
    rows ends with sfence (period 0: none does)."""
    assert cols % 16 == 0 and period % rows == 0
    fence = period > 0

    def make() -> tuple[tir.PrimFunc, tir.PrimFunc]:
        @T.prim_func(s_tir=True)
        def desc(S: T.Buffer((rows, cols), "float32", offset_factor=1, scope="local"),
                 C: T.Buffer((rows, cols), "float32", offset_factor=16)) -> None:
            with T.sblock("root"):
                T.reads(S[0:rows, 0:cols])
                T.writes(C[0:rows, 0:cols])
                for i, j in T.grid(rows, cols):
                    with T.sblock("copy"):
                        vi, vj = T.axis.remap("SS", [i, j])
                        C[vi, vj] = S[vi, vj]

        @T.prim_func(s_tir=True)
        def row_desc(S: T.Buffer((1, cols), "float32", offset_factor=1, scope="local"),
                     C: T.Buffer((1, cols), "float32", offset_factor=16)) -> None:
            with T.sblock("root"):  # tiles of one row: the schedule has no loop over rows
                T.reads(S[0:1, 0:cols])
                T.writes(C[0:1, 0:cols])
                for j in T.serial(cols):
                    with T.sblock("copy"):
                        vj = T.axis.remap("S", [j])
                        C[0, vj] = S[0, vj]

        @T.prim_func(s_tir=True)
        def impl(s: T.handle, c: T.handle) -> None:
            ss = T.int32()
            sc = T.int32()
            S = T.match_buffer(s, (rows, cols), "float32", offset_factor=1, scope="local",
                               strides=[ss, 1])
            C = T.match_buffer(c, (rows, cols), "float32", offset_factor=16, strides=[sc, 1])
            with T.sblock("root"):
                T.reads(S[0:rows, 0:cols])
                T.writes(C[0:rows, 0:cols])
                for i in T.unroll(rows):
                    for v in T.unroll(cols // 16):
                        T.evaluate(T.call_extern("void", STORE, T.address_of(C[i, v * 16]),
                                                 S.vload([i, v * 16], "float32x16")))
                if fence:  # (a Python bool: the parser keeps or drops the branch)
                    if C.elem_offset // sc % period == period - rows:
                        T.evaluate(T.call_llvm_intrin("void", "llvm.x86.sse.sfence"))

        return (row_desc if rows == 1 else desc), impl

    return f"lrqc_stream_{rows}x{cols}_p{period}_f32", make
