"""Tensor intrinsics of the scale pairs: C[j] += Σ_h P[h, j]·(SA[h]·SB[j, h]) over two K groups
h, for 16 columns: the int32 group sums P, the int16 integer scales of A (two groups) and of B
(each column's two, next to each other). P's two rows are packed into int16 pairs (each sum's
low 16 bits), the scales' products formed by vpmullw, and each pair's two products summed into
int32: AVX-512 VNNI + BW with one vpdpwssd per 16 columns (LLVM makes the packing one
vpermt2w), AVX2 with one vpmaddwd and one vpaddd per 8 columns (the packing a shift and a
blend). Exact only where every group sum and scale product fits int16
(lrqc.plan.ranges.scale_pairs: the rules' schedules use it only there); the products' pair sums
then fit int32 as the total does. With A's zero correction (its signed codes' offset, or the
centre of min-max codes stored centred) the packed sums first lose offset·cs, B's column sums W
in the same pairs times the constant (vpsllw for a power of two, vpsubw): exact modulo 2^16 as
each corrected sum fits int16."""

from __future__ import annotations

from collections.abc import Callable

from ..compat import PrimExpr, T, tir

SCALE_PAIRS = "lrqc_vnni_scale_pairs_i16"  # + "_o<offset>": less a zero correction
AVX2_PAIRS = "lrqc_avx2_scale_pairs_i16"


def _words(P, h: int, lanes: int) -> PrimExpr:
    """Columns h·lanes.. of P's two rows of int32 sums as 2·lanes int16 words, each sum's low
    half, the first row's in the even words: the operand pairs of vpdpwssd or vpmaddwd."""
    mask, shift = T.broadcast(T.int32(65535), lanes), T.broadcast(T.int32(16), lanes)
    low = T.bitwise_and(P.vload([0, h * lanes], dtype=f"int32x{lanes}"), mask)
    return T.reinterpret(T.bitwise_or(low, T.shift_left(
        P.vload([1, h * lanes], dtype=f"int32x{lanes}"), shift)), dtype=f"int16x{2 * lanes}")


def _pair(SA, lanes: int) -> PrimExpr:
    """Two int16 values broadcast as `lanes` pairs."""
    return T.reinterpret(T.broadcast(T.reinterpret(SA.vload([0], "int16x2"), dtype="int32"),
                                      lanes), dtype=f"int16x{2 * lanes}")


def _words16(buf, h: int, lanes: int) -> PrimExpr:
    """Rows h·lanes.. of a (16, 2) buffer as 2·lanes int16 words (widened from bytes: vpmovsxbw
    or vpmovzxbw of the load)."""
    v = buf.vload([h * lanes, 0], dtype=f"{buf.dtype}x{2 * lanes}")
    return v if buf.dtype == "int16" else T.cast(v, f"int16x{2 * lanes}")


def _dot(c, a, b, lanes: int) -> PrimExpr:
    """c plus the sums of each pair of a·b (int16 words into int32 lanes)."""
    if lanes == 16:
        return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id(
            "llvm.x86.avx512.vpdpwssd.512"), c, a, b, dtype="int32x16")
    return c + T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                                       a, b, dtype=f"int32x{lanes}")


def _scaled(P, SA, SB, vh, vj, less=None) -> PrimExpr:
    """One group sum (less its zero correction) times the two integer scales, in int32: the
    descriptions' update."""
    p = P[vh, vj] if less is None else P[vh, vj] - less
    return p * (T.cast(SA[vh], "int32") * T.cast(SB[vj, vh], "int32"))


def _pairs_dot(C, P, SA, SB, h: int, lanes: int, W=None, offset: int = 0) -> PrimExpr:
    """Columns h·lanes.. of C plus the pairs of P's sums (less offset·W in int16: exact modulo
    2^16 as each corrected sum fits int16) times the integer scales' products."""
    words = _words(P, h, lanes)
    if W is not None:
        words = words - _words16(W, h, lanes) * T.broadcast(T.int16(offset), 2 * lanes)
    return _dot(C.vload([h * lanes], dtype=f"int32x{lanes}"), words,
                _pair(SA, lanes) * _words16(SB, h, lanes), lanes)


def _plain(sb_type: str, lanes: int) -> Callable[[], tuple[tir.PrimFunc, tir.PrimFunc]]:
    """C[j] += Σ_h P[h, j]·SA[h]·SB[j, h]: no zero correction (SB of type sb_type), in
    16 // lanes steps of `lanes` columns."""

    def make() -> tuple[tir.PrimFunc, tir.PrimFunc]:
        sbt = sb_type  # a local: the parser reads the annotations' names here
        @T.prim_func(s_tir=True)
        def desc(p: T.handle, SA: T.Buffer((2,), "int16", offset_factor=1),
                 SB: T.Buffer((16, 2), sbt, offset_factor=1),
                 C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
            stride = T.int32()
            P = T.match_buffer(p, (2, 16), "int32", strides=[stride, 1], offset_factor=1)
            with T.sblock("root"):
                T.reads(C[0:16], P[0:2, 0:16], SA[0:2], SB[0:16, 0:2])
                T.writes(C[0:16])
                for j in T.serial(0, 16):
                    for h in T.serial(0, 2):
                        with T.sblock("update"):
                            vj, vh = T.axis.remap("SR", [j, h])
                            C[vj] = C[vj] + _scaled(P, SA, SB, vh, vj)

        @T.prim_func(s_tir=True)
        def impl(p: T.handle, SA: T.Buffer((2,), "int16", offset_factor=1),
                 SB: T.Buffer((16, 2), sbt, offset_factor=1),
                 C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
            stride = T.int32()
            P = T.match_buffer(p, (2, 16), "int32", strides=[stride, 1], offset_factor=1)
            with T.sblock("root"):
                T.reads(C[0:16], P[0:2, 0:16], SA[0:2], SB[0:16, 0:2])
                T.writes(C[0:16])
                for h in T.unroll(16 // lanes):
                    C[T.ramp(h * lanes, 1, lanes)] = _pairs_dot(C, P, SA, SB, h, lanes)

        return desc, impl

    return make


def _offset(offset: int, sb_type: str, w_type: str, lanes: int
            ) -> Callable[[], tuple[tir.PrimFunc, tir.PrimFunc]]:
    """C[j] += Σ_h (P[h, j] - W[j, h]·offset)·SA[h]·SB[j, h]: A's fixed zero correction (W:
    B's column sums; SB and W of types sb_type and w_type)."""

    def make() -> tuple[tir.PrimFunc, tir.PrimFunc]:
        sbt, wt = sb_type, w_type  # locals: the parser reads the annotations' names here
        @T.prim_func(s_tir=True)
        def desc(p: T.handle, SA: T.Buffer((2,), "int16", offset_factor=1),
                 SB: T.Buffer((16, 2), sbt, offset_factor=1),
                 W: T.Buffer((16, 2), wt, offset_factor=1),
                 C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
            stride = T.int32()
            P = T.match_buffer(p, (2, 16), "int32", strides=[stride, 1], offset_factor=1)
            with T.sblock("root"):
                T.reads(C[0:16], P[0:2, 0:16], W[0:16, 0:2], SA[0:2], SB[0:16, 0:2])
                T.writes(C[0:16])
                for j in T.serial(0, 16):
                    for h in T.serial(0, 2):
                        with T.sblock("update"):
                            vj, vh = T.axis.remap("SR", [j, h])
                            C[vj] = C[vj] + _scaled(P, SA, SB, vh, vj, T.cast(
                                W[vj, vh], "int32") * T.int32(offset))

        @T.prim_func(s_tir=True)
        def impl(p: T.handle, SA: T.Buffer((2,), "int16", offset_factor=1),
                 SB: T.Buffer((16, 2), sbt, offset_factor=1),
                 W: T.Buffer((16, 2), wt, offset_factor=1),
                 C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
            stride = T.int32()
            P = T.match_buffer(p, (2, 16), "int32", strides=[stride, 1], offset_factor=1)
            with T.sblock("root"):
                T.reads(C[0:16], P[0:2, 0:16], W[0:16, 0:2], SA[0:2], SB[0:16, 0:2])
                T.writes(C[0:16])
                for h in T.unroll(16 // lanes):
                    C[T.ramp(h * lanes, 1, lanes)] = _pairs_dot(C, P, SA, SB, h, lanes, W,
                                                                offset)

        return desc, impl

    return make


def scale_pairs(offset: int, sb: str = "int16", w: str = "int16", avx2: bool = False
                ) -> tuple[str, Callable[[], tuple[tir.PrimFunc, tir.PrimFunc]]]:
    """(name, its maker) of the pair sums' intrinsic less A's zero correction offset·cs (none
    for offset 0), B's integer scales of type sb and its column sums of type w: vpdpwssd on
    16 columns, or (avx2) vpmaddwd on 8 columns twice."""
    base, lanes = (AVX2_PAIRS, 8) if avx2 else (SCALE_PAIRS, 16)
    if offset == 0:
        return f"{base}_{sb}", _plain(sb, lanes)
    return f"{base}_o{offset}_{sb}_{w}", _offset(offset, sb, w, lanes)
