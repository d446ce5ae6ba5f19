"""CUDA tensor-core intrinsics for the int8 GEMM: WMMA m16n16k16, s8 x s8 -> s32, A row-major
and B stored [n][k] (col-major as K x N) in shared memory, the accumulator stored row-major to
shared memory. lrqc registers its own (importing TVM's tvm.s_tir.tensor_intrin registers every
target's intrinsics and takes over a minute); the fragment index arithmetic follows TVM's
convention (a fragment buffer's elem_offset locates the 16 x 16 tile)."""

from __future__ import annotations

from .compat import T
from .intrin import register

M = N = K = 16
LOAD_A = "lrqc_wmma_load_a_s8"
LOAD_B = "lrqc_wmma_load_b_s8"
FILL = "lrqc_wmma_fill_s32"
STORE = "lrqc_wmma_store_s32"
SYNC = "lrqc_wmma_sync_s8s8s32"


def _frag(buf, stride):
    """Index of the 16 x 16 fragment a buffer view starts at, in its fragment array."""
    return buf.elem_offset // stride // 16 * (stride // 16) + buf.elem_offset % stride // 16


def _load(scope: str, layout: str):
    @T.prim_func(s_tir=True)
    def desc(a: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (16, 16), "int8", align=64, offset_factor=16, scope="shared")
        C = T.match_buffer(c, (16, 16), "int8", align=64, offset_factor=16, scope=scope)
        with T.sblock("root"):
            T.reads(A[0:16, 0:16])
            T.writes(C[0:16, 0:16])
            for i, j in T.grid(16, 16):
                with T.sblock("load"):
                    vi, vj = T.axis.remap("SS", [i, j])
                    C[vi, vj] = A[vi, vj]

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, c: T.handle) -> None:
        s1 = T.int32()
        s0 = T.int32()
        d1 = T.int32()
        d0 = T.int32()
        A = T.match_buffer(a, (16, 16), "int8", align=64, offset_factor=16, scope="shared",
                           strides=[s1, s0])
        C = T.match_buffer(c, (16, 16), "int8", align=64, offset_factor=16, scope=scope,
                           strides=[d1, d0])
        with T.sblock("root"):
            T.reads(A[0:16, 0:16])
            T.writes(C[0:16, 0:16])
            T.evaluate(T.tvm_load_matrix_sync(C.data, M, N, K, _frag(C, d1),
                                              A.access_ptr("r", ptr_type="int8"), s1, layout,
                                              dtype="void"))

    return desc, impl


@T.prim_func(s_tir=True)
def _fill_desc(c: T.handle) -> None:
    C = T.match_buffer(c, (16, 16), "int32", align=64, offset_factor=16, scope="wmma.accumulator")
    with T.sblock("root"):
        T.reads()
        T.writes(C[0:16, 0:16])
        for i, j in T.grid(16, 16):
            with T.sblock("init"):
                vi, vj = T.axis.remap("SS", [i, j])
                C[vi, vj] = T.int32(0)


@T.prim_func(s_tir=True)
def _fill_impl(c: T.handle) -> None:
    d1 = T.int32()
    d0 = T.int32()
    C = T.match_buffer(c, (16, 16), "int32", align=64, offset_factor=16, scope="wmma.accumulator",
                       strides=[d1, d0])
    with T.sblock("root"):
        T.reads()
        T.writes(C[0:16, 0:16])
        T.evaluate(T.tvm_fill_fragment(C.data, M, N, K, _frag(C, d1), T.float32(0), dtype="void"))


@T.prim_func(s_tir=True)
def _store_desc(a: T.handle, c: T.handle) -> None:
    A = T.match_buffer(a, (16, 16), "int32", align=64, offset_factor=16, scope="wmma.accumulator")
    C = T.match_buffer(c, (16, 16), "int32", align=64, offset_factor=16, scope="shared")
    with T.sblock("root"):
        T.reads(A[0:16, 0:16])
        T.writes(C[0:16, 0:16])
        for i, j in T.grid(16, 16):
            with T.sblock("store"):
                vi, vj = T.axis.remap("SS", [i, j])
                C[vi, vj] = A[vi, vj]


@T.prim_func(s_tir=True)
def _store_impl(a: T.handle, c: T.handle) -> None:
    s1 = T.int32()
    s0 = T.int32()
    d1 = T.int32()
    d0 = T.int32()
    A = T.match_buffer(a, (16, 16), "int32", align=64, offset_factor=16, scope="wmma.accumulator",
                       strides=[d1, d0])
    C = T.match_buffer(c, (16, 16), "int32", align=64, offset_factor=16, scope="shared",
                       strides=[s1, s0])
    with T.sblock("root"):
        T.reads(A[0:16, 0:16])
        T.writes(C[0:16, 0:16])
        T.evaluate(T.tvm_store_matrix_sync(A.data, M, N, K, _frag(A, d1),
                                           C.access_ptr("w", ptr_type="int32"), s1, "row_major",
                                           dtype="void"))


@T.prim_func(s_tir=True)
def _sync_desc(a: T.handle, b: T.handle, c: T.handle) -> None:
    A = T.match_buffer(a, (16, 16), "int8", align=64, offset_factor=16, scope="wmma.matrix_a")
    B = T.match_buffer(b, (16, 16), "int8", align=64, offset_factor=16, scope="wmma.matrix_b")
    C = T.match_buffer(c, (16, 16), "int32", align=64, offset_factor=16, scope="wmma.accumulator")
    with T.sblock("root"):
        T.reads(C[0:16, 0:16], A[0:16, 0:16], B[0:16, 0:16])
        T.writes(C[0:16, 0:16])
        for i, j, k in T.grid(16, 16, 16):
            with T.sblock(""):
                vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                C[vi, vj] = C[vi, vj] + T.Cast("int32", A[vi, vk]) * T.Cast("int32", B[vj, vk])


@T.prim_func(s_tir=True)
def _sync_impl(a: T.handle, b: T.handle, c: T.handle) -> None:
    a1 = T.int32()
    a0 = T.int32()
    b1 = T.int32()
    b0 = T.int32()
    c1 = T.int32()
    c0 = T.int32()
    A = T.match_buffer(a, (16, 16), "int8", align=64, offset_factor=16, scope="wmma.matrix_a",
                       strides=[a1, a0])
    B = T.match_buffer(b, (16, 16), "int8", align=64, offset_factor=16, scope="wmma.matrix_b",
                       strides=[b1, b0])
    C = T.match_buffer(c, (16, 16), "int32", align=64, offset_factor=16, scope="wmma.accumulator",
                       strides=[c1, c0])
    with T.sblock("root"):
        T.reads(C[0:16, 0:16], A[0:16, 0:16], B[0:16, 0:16])
        T.writes(C[0:16, 0:16])
        T.evaluate(T.tvm_mma_sync(C.data, _frag(C, c1), A.data, _frag(A, a1), B.data,
                                  _frag(B, b1), C.data, _frag(C, c1), dtype="void"))


_INTRINSICS = {
    LOAD_A: _load("wmma.matrix_a", "row_major"),
    LOAD_B: _load("wmma.matrix_b", "col_major"),
    FILL: (_fill_desc, _fill_impl),
    STORE: (_store_desc, _store_impl),
    SYNC: (_sync_desc, _sync_impl),
}


def register_all() -> dict:
    """Register the five intrinsics once per process; returns {role: name}."""
    for name, pair in _INTRINSICS.items():
        register(name, pair)
    return {"load_a": LOAD_A, "load_b": LOAD_B, "init": FILL, "store": STORE, "compute": SYNC}
