"""Tensor intrinsics on one 64-byte weight block (16 columns x 4 k) and 4 bytes of A.

VNNI: u8·s8 -> s32 with LLVM 22's vpdpbusd signature. TVM 0.27's built-in `dot_16x4_vnni`
passes <16 x i32> operands, which LLVM 22 rejects (vpdpbusd.512 now takes <64 x i8>); this one
reinterprets A's 4 bytes and B's 64 bytes. AVX-VNNI (the VEX form, 256-bit, on CPUs without
AVX-512): the same block as two vpdpbusd of 8 columns (LLVM's vpdpbusd.256, encoded as VEX
where the target has avxvnni and not avx512vl).

AVX2: the same block with vpmaddwd on bytes widened to int16 (u8 zero-, s8 sign-extended), which
sums adjacent k pairs: C[j, h] += Σ_t A[2h+t]·B[j, 2h+t], 32 int32 lanes in vpmaddwd order.
Exact: |u8·s8| <= 255·128, a pair sum fits int32 without saturation.

AVX2 bytes (bytes_steps(n)): the VNNI block's contract over n 4-byte k steps
(C[j] += Σ_k A[k]·B[j, k]) with vpmaddubsw (u8·s8 products summed in adjacent pairs into int16,
saturating), the n pair sums of each lane added in int16, then vpmaddwd by ones (into int32),
per 8 columns. Exact only where no pair sum (nor n of them) can leave int16: the schedule rule
that uses it checks the plan's proven code ranges (lrqc.plan.ranges).

AVX2 signed (signed_block): the VNNI block's contract on A's stored codes less 128, which the
quantization pass writes so (te.flipped: the top bit flipped, read as int8), C[j] += Σ_k
int8(A[k])·B[j, k]: B's codes take the signs of A's
(vpsignb), vpmaddubsw multiplies them by |A - 128| (vpsignb of A by itself; -128 becomes the
unsigned 128) and sums pairs in int16, vpmaddwd by ones widens. Exact where B has no code -128
(vpsignb cannot negate it): the pairs then lie within 2·128·127.

Scale pairs (the groups of two-level integer scales summed as int16 pairs): pairs.py.

CUDA dp4a: 4 bytes of A (u8) and of B (s8) from shared memory into one int32 register."""

from __future__ import annotations

from collections.abc import Callable

from ..compat import PrimExpr, T, TensorIntrin, tir

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


def _dot_impl(lanes: int, llvm_name: str) -> tir.PrimFunc:
    """The block as 16 / lanes vpdpbusd of `lanes` int32 columns each (llvm_name: the
    512-bit or 256-bit form): A's 4 bytes broadcast to every column, B's 4·lanes bytes."""
    a_type, b_type, c_type = f"uint8x{4 * lanes}", f"int8x{4 * lanes}", f"int32x{lanes}"

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((16, 4), "int8", offset_factor=1),
        C: T.Buffer((16,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            a4 = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
            a = T.reinterpret(T.broadcast(a4, lanes), dtype=a_type)
            for h in T.unroll(16 // lanes):
                C[T.ramp(h * lanes, 1, lanes)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(llvm_name),
                    C.vload([h * lanes], dtype=c_type), a, B.vload([h * lanes, 0], dtype=b_type),
                    dtype=c_type)

    return impl


AVXVNNI_16x4 = "lrqc_avxvnni_16x4_u8s8s32"


AVX2_16x4 = "lrqc_avx2_16x4_pairs_u8s8s32"


@T.prim_func(s_tir=True)
def _desc_pairs(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16, 2), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16, 0:2], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16, 0:2])
        for i in T.serial(0, 16):
            for h in T.serial(0, 2):
                for t in T.serial(0, 2):
                    with T.sblock("update"):
                        vi, vh, vt = T.axis.remap("SSR", [i, h, t])
                        C[vi, vh] = C[vi, vh] + T.cast(A[vh * 2 + vt], "int32") * T.cast(
                            B[vi, vh * 2 + vt], "int32")


@T.prim_func(s_tir=True)
def _impl_pairs(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16, 2), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16, 0:2], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16, 0:2])
        a4 = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
        a16 = T.cast(T.reinterpret(T.broadcast(a4, 4), dtype="uint8x16"), "int16x16")
        for q in T.unroll(4):
            C.vstore([q * 4, 0], C.vload([q * 4, 0], dtype="int32x8") + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                T.cast(B.vload([q * 4, 0], dtype="int8x16"), "int16x16"), a16, dtype="int32x8"))


def _pair_sums(A, B, q, n: int):
    """int16x16: Σ over the n 4-byte steps s of vpmaddubsw(A's 4 bytes of step s broadcast,
    B's 8 columns q*8.. of step s), added in int16 (exact where the caller proved it)."""
    total = None
    for s in range(n):
        a32 = T.reinterpret(T.broadcast(T.reinterpret(A.vload([s * 4], "uint8x4"), dtype="int32"),
                                        8), dtype="uint8x32")
        p = T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.ub.sw"), a32,
                                    B.vload([s, q * 8, 0], dtype="int8x32"), dtype="int16x16")
        total = p if total is None else total + p
    return total


def bytes_steps(n: int) -> tuple[str, Callable[[], tuple[tir.PrimFunc, tir.PrimFunc]]]:
    """(name, maker) of the AVX2 bytes block over n 4-byte k steps: the n vpmaddubsw pair sums
    of each int16 lane are added in int16, then one vpmaddwd by ones widens them into the 16
    int32 sums. Exact only where n pair sums fit int16 (lrqc.plan.ranges: int16_steps)."""

    def make() -> tuple[tir.PrimFunc, tir.PrimFunc]:
        @T.prim_func(s_tir=True)
        def desc(
            A: T.Buffer((n * 4,), "uint8", offset_factor=1),
            B: T.Buffer((n, 16, 4), "int8", offset_factor=1),
            C: T.Buffer((16,), "int32", offset_factor=1),
        ) -> None:
            with T.sblock("root"):
                T.reads(C[0:16], A[0:n * 4], B[0:n, 0:16, 0:4])
                T.writes(C[0:16])
                for j in T.serial(0, 16):
                    for k in T.serial(0, n * 4):
                        with T.sblock("update"):
                            vj, vk = T.axis.remap("SR", [j, k])
                            C[vj] = C[vj] + T.cast(A[vk], "int32") * T.cast(
                                B[vk // 4, vj, vk % 4], "int32")

        @T.prim_func(s_tir=True)
        def impl(
            A: T.Buffer((n * 4,), "uint8", offset_factor=1),
            B: T.Buffer((n, 16, 4), "int8", offset_factor=1),
            C: T.Buffer((16,), "int32", offset_factor=1),
        ) -> None:
            with T.sblock("root"):
                T.reads(C[0:16], A[0:n * 4], B[0:n, 0:16, 0:4])
                T.writes(C[0:16])
                for q in T.unroll(2):
                    C[T.ramp(q * 8, 1, 8)] = C.vload([q * 8], dtype="int32x8") + (
                        T.call_llvm_pure_intrin(
                            T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                            _pair_sums(A, B, q, n), T.broadcast(T.int16(1), 16),
                            dtype="int32x8"))

        return desc, impl

    return f"lrqc_avx2_16x4x{n}_bytes_i16_u8s8s32", make


def _sign(x: PrimExpr, y: PrimExpr) -> PrimExpr:
    """vpsignb: x's bytes negated where y's are negative, zeroed where they are zero."""
    return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx2.psign.b"), x, y,
                                   dtype="int8x32")


def _signed_sums(A, B, q) -> PrimExpr:
    """int32x8: Σ_k a[k]·B[8q + j, k] over A's 4 bytes a, read as int8 (vpsignb, vpmaddubsw,
    vpmaddwd by ones)."""
    a4 = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")  # broadcast from memory
    a = T.reinterpret(T.broadcast(a4, 8), dtype="int8x32")
    pairs = T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.ub.sw"),
                                    _sign(a, a), _sign(B.vload([0, q * 8, 0], dtype="int8x32"), a),
                                    dtype="int16x16")
    return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"), pairs,
                                   T.broadcast(T.int16(1), 16), dtype="int32x8")


def signed_block() -> tuple[str, Callable[[], tuple[tir.PrimFunc, tir.PrimFunc]]]:
    """(name, maker) of the AVX2 signed block: C[j] += Σ_k a[k]·B[j, k] over 4 k, A's codes
    held flipped (te.flipped: each stored code less 128 as an int8, a = int8(A)), broadcast
    from memory, B's signs moved by a's: vpsignb(B, a) (b·sign(a)), vpmaddubsw(|a|, that) (|a|
    by vpsignb(a, a): 128 for -128, read unsigned), vpmaddwd by ones. A pair sum lies within
    2·128·127 = 32512: exact wherever B has no code -128 (vpsignb would leave -128 for 128)."""

    def make() -> tuple[tir.PrimFunc, tir.PrimFunc]:
        @T.prim_func(s_tir=True)
        def desc(
            A: T.Buffer((4,), "uint8", offset_factor=1),
            B: T.Buffer((1, 16, 4), "int8", offset_factor=1),
            C: T.Buffer((16,), "int32", offset_factor=1),
        ) -> None:
            with T.sblock("root"):
                T.reads(C[0:16], A[0:4], B[0:1, 0:16, 0:4])
                T.writes(C[0:16])
                for j in T.serial(0, 16):
                    for k in T.serial(0, 4):
                        with T.sblock("update"):
                            vj, vk = T.axis.remap("SR", [j, k])
                            C[vj] = C[vj] + T.cast(T.cast(A[vk], "int8"), "int32") * T.cast(
                                B[vk // 4, vj, vk % 4], "int32")

        @T.prim_func(s_tir=True)
        def impl(
            A: T.Buffer((4,), "uint8", offset_factor=1),
            B: T.Buffer((1, 16, 4), "int8", offset_factor=1),
            C: T.Buffer((16,), "int32", offset_factor=1),
        ) -> None:
            with T.sblock("root"):
                T.reads(C[0:16], A[0:4], B[0:1, 0:16, 0:4])
                T.writes(C[0:16])
                for q in T.unroll(2):
                    C[T.ramp(q * 8, 1, 8)] = C.vload([q * 8], dtype="int32x8") + _signed_sums(
                        A, B, q)

        return desc, impl

    return "lrqc_avx2_16x4_flipped_s8s8s32", make


DP4A = "lrqc_dp4a_u8s8s32"  # CUDA: own registration (importing TVM's tensor_intrin takes 100 s)


@T.prim_func(s_tir=True)
def _desc_dp4a(
    A: T.Buffer((4,), "uint8", offset_factor=1, align=4, scope="shared"),
    B: T.Buffer((4,), "int8", offset_factor=1, align=4, scope="shared"),
    C: T.Buffer((1,), "int32", offset_factor=1, align=4, scope="local"),
) -> None:
    with T.sblock("root"):
        T.reads(C[0], A[0:4], B[0:4])
        T.writes(C[0])
        for k in range(4):
            with T.sblock("update"):
                vk = T.axis.remap("R", [k])
                C[0] = C[0] + T.cast(A[vk], "int32") * T.cast(B[vk], "int32")


@T.prim_func(s_tir=True)
def _impl_dp4a(
    A: T.Buffer((4,), "uint8", offset_factor=1, align=4, scope="shared"),
    B: T.Buffer((4,), "int8", offset_factor=1, align=4, scope="shared"),
    C: T.Buffer((1,), "int32", offset_factor=1, align=4, scope="local"),
) -> None:
    with T.sblock("root"):
        T.reads(C[0], A[0:4], B[0:4])
        T.writes(C[0])
        C[0] += T.call_pure_extern("__dp4a", A.vload([0], "uint8x4"), B.vload([0], "int8x4"),
                                   T.int32(0), dtype="int32")


_INTRINSICS = {VNNI_16x4: (_desc, _dot_impl(16, "llvm.x86.avx512.vpdpbusd.512")),
               AVXVNNI_16x4: (_desc, _dot_impl(8, "llvm.x86.avx512.vpdpbusd.256")),
               AVX2_16x4: (_desc_pairs, _impl_pairs),
               DP4A: (_desc_dp4a, _impl_dp4a)}
_done: set[str] = set()


def register(name: str = VNNI_16x4, pair: tuple[tir.PrimFunc, tir.PrimFunc]
             | Callable[[], tuple[tir.PrimFunc, tir.PrimFunc]] | None = None) -> str:
    """Register an intrinsic once per process (pair: its (desc, impl), or a function making
    them, when not one of this module's); returns its name."""
    if name not in _done:
        pair = pair() if callable(pair) else pair
        TensorIntrin.register(name, *(pair or _INTRINSICS[name]))
        _done.add(name)
    return name
