"""CUDA tensor-core intrinsics: WMMA m16n16k16, s8 x s8 -> s32 (integer GEMMs) and f16 x f16 /
bf16 x bf16 -> f32 (float GEMMs whose values are exact in 16 bits, KernelPlan.half), A
row-major and B stored [n][k] (col-major as K x N) in shared memory, the accumulator stored
row-major to shared memory. lrqc registers its own (importing TVM's tvm.s_tir.tensor_intrin
registers every target's intrinsics and takes over a minute); the fragment index arithmetic
follows TVM's convention (a fragment buffer's elem_offset locates the 16 x 16 tile)."""

from __future__ import annotations

from ..compat import T
from .x86 import register

M = N = K = 16
ACC = {"int8": "int32", "float16": "float32", "bfloat16": "float32"}  # accumulator per input
SHORT = {"int8": "s8", "float16": "f16", "bfloat16": "bf16", "int32": "s32", "float32": "f32"}


def _frag(buf, stride):
    """Index of the 16 x 16 fragment a buffer view starts at, in its fragment array."""
    return buf.elem_offset // stride // 16 * (stride // 16) + buf.elem_offset % stride // 16


def _load(dt: str, scope: str, layout: str):
    @T.prim_func(s_tir=True)
    def desc(a: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (16, 16), dt, align=64, offset_factor=16, scope="shared")
        C = T.match_buffer(c, (16, 16), dt, align=64, offset_factor=16, scope=scope)
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
        A = T.match_buffer(a, (16, 16), dt, align=64, offset_factor=16, scope="shared",
                           strides=[s1, s0])
        C = T.match_buffer(c, (16, 16), dt, align=64, offset_factor=16, scope=scope,
                           strides=[d1, d0])
        with T.sblock("root"):
            T.reads(A[0:16, 0:16])
            T.writes(C[0:16, 0:16])
            T.evaluate(T.tvm_load_matrix_sync(C.data, M, N, K, _frag(C, d1),
                                              A.access_ptr("r", ptr_type=dt), s1, layout,
                                              dtype="void"))

    return desc, impl


def _fill(acc: str):
    zero = T.int32(0) if acc == "int32" else T.float32(0)

    @T.prim_func(s_tir=True)
    def desc(c: T.handle) -> None:
        C = T.match_buffer(c, (16, 16), acc, align=64, offset_factor=16,
                           scope="wmma.accumulator")
        with T.sblock("root"):
            T.reads()
            T.writes(C[0:16, 0:16])
            for i, j in T.grid(16, 16):
                with T.sblock("init"):
                    vi, vj = T.axis.remap("SS", [i, j])
                    C[vi, vj] = zero

    @T.prim_func(s_tir=True)
    def impl(c: T.handle) -> None:
        d1 = T.int32()
        d0 = T.int32()
        C = T.match_buffer(c, (16, 16), acc, align=64, offset_factor=16,
                           scope="wmma.accumulator", strides=[d1, d0])
        with T.sblock("root"):
            T.reads()
            T.writes(C[0:16, 0:16])
            T.evaluate(T.tvm_fill_fragment(C.data, M, N, K, _frag(C, d1), T.float32(0),
                                           dtype="void"))

    return desc, impl


def _store(acc: str):
    @T.prim_func(s_tir=True)
    def desc(a: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (16, 16), acc, align=64, offset_factor=16,
                           scope="wmma.accumulator")
        C = T.match_buffer(c, (16, 16), acc, align=64, offset_factor=16, scope="shared")
        with T.sblock("root"):
            T.reads(A[0:16, 0:16])
            T.writes(C[0:16, 0:16])
            for i, j in T.grid(16, 16):
                with T.sblock("store"):
                    vi, vj = T.axis.remap("SS", [i, j])
                    C[vi, vj] = A[vi, vj]

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, c: T.handle) -> None:
        s1 = T.int32()
        s0 = T.int32()
        d1 = T.int32()
        d0 = T.int32()
        A = T.match_buffer(a, (16, 16), acc, align=64, offset_factor=16,
                           scope="wmma.accumulator", strides=[d1, d0])
        C = T.match_buffer(c, (16, 16), acc, align=64, offset_factor=16, scope="shared",
                           strides=[s1, s0])
        with T.sblock("root"):
            T.reads(A[0:16, 0:16])
            T.writes(C[0:16, 0:16])
            T.evaluate(T.tvm_store_matrix_sync(A.data, M, N, K, _frag(A, d1),
                                               C.access_ptr("w", ptr_type=acc), s1,
                                               "row_major", dtype="void"))

    return desc, impl


def _sync(dt: str, acc: str):
    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (16, 16), dt, align=64, offset_factor=16, scope="wmma.matrix_a")
        B = T.match_buffer(b, (16, 16), dt, align=64, offset_factor=16, scope="wmma.matrix_b")
        C = T.match_buffer(c, (16, 16), acc, align=64, offset_factor=16,
                           scope="wmma.accumulator")
        with T.sblock("root"):
            T.reads(C[0:16, 0:16], A[0:16, 0:16], B[0:16, 0:16])
            T.writes(C[0:16, 0:16])
            for i, j, k in T.grid(16, 16, 16):
                with T.sblock(""):
                    vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                    C[vi, vj] = C[vi, vj] + T.Cast(acc, A[vi, vk]) * T.Cast(acc, B[vj, vk])

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        a1 = T.int32()
        a0 = T.int32()
        b1 = T.int32()
        b0 = T.int32()
        c1 = T.int32()
        c0 = T.int32()
        A = T.match_buffer(a, (16, 16), dt, align=64, offset_factor=16, scope="wmma.matrix_a",
                           strides=[a1, a0])
        B = T.match_buffer(b, (16, 16), dt, align=64, offset_factor=16, scope="wmma.matrix_b",
                           strides=[b1, b0])
        C = T.match_buffer(c, (16, 16), acc, align=64, offset_factor=16,
                           scope="wmma.accumulator", strides=[c1, c0])
        with T.sblock("root"):
            T.reads(C[0:16, 0:16], A[0:16, 0:16], B[0:16, 0:16])
            T.writes(C[0:16, 0:16])
            T.evaluate(T.tvm_mma_sync(C.data, _frag(C, c1), A.data, _frag(A, a1), B.data,
                                      _frag(B, b1), C.data, _frag(C, c1), dtype="void"))

    return desc, impl


def register_all(dt: str = "int8") -> dict:
    """Register the five intrinsics of input type dt (int8, float16, bfloat16) once per
    process; returns {role: name}."""
    acc = ACC[dt]
    a, c = SHORT[dt], SHORT[acc]
    made = {
        "load_a": (f"lrqc_wmma_load_a_{a}", lambda: _load(dt, "wmma.matrix_a", "row_major")),
        "load_b": (f"lrqc_wmma_load_b_{a}", lambda: _load(dt, "wmma.matrix_b", "col_major")),
        "init": (f"lrqc_wmma_fill_{c}", lambda: _fill(acc)),
        "store": (f"lrqc_wmma_store_{c}", lambda: _store(acc)),
        "compute": (f"lrqc_wmma_sync_{a}{a}{c}", lambda: _sync(dt, acc)),
    }
    for name, make in made.values():
        register(name, make)
    return {role: name for role, (name, _) in made.items()}
