"""The 16x4 u8·s8 -> s32 VNNI tensor intrinsic with LLVM 22's vpdpbusd signature.

TVM 0.27's built-in `dot_16x4_vnni` passes <16 x i32> operands, which LLVM 22 rejects
(vpdpbusd.512 now takes <64 x i8>); this one reinterprets A's 4 bytes and B's 64 bytes."""

from __future__ import annotations

from .compat import T, TensorIntrin

VNNI_16x4 = "lrqc_vnni_16x4_u8s8s32"


@T.prim_func(s_tir=True)
def _desc(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        for i in T.serial(0, 16):
            for k in T.serial(0, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")


@T.prim_func(s_tir=True)
def _impl(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        a4 = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
        a64 = T.reinterpret(T.broadcast(a4, 16), dtype="uint8x64")
        C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
            C.vload([0], dtype="int32x16"), a64, B.vload([0, 0], dtype="int8x64"),
            dtype="int32x16")


_done = False


def register() -> str:
    """Register the intrinsic once per process; returns its name."""
    global _done
    if not _done:
        TensorIntrin.register(VNNI_16x4, _desc, _impl)
        _done = True
    return VNNI_16x4
