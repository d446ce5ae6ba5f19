"""A's codes as the AVX2 signed rule reads them ("flipped"): each stored u8 code (the code plus
A's offset) with its top bit flipped, which is the stored code less 128 as an int8 bit pattern.
The rule's inner loop then broadcasts A's four bytes straight from memory (vpsignb and
vpmaddubsw take them as they are), where unflipped codes took one more xor per broadcast.
Every function that writes or reads A's codes for such a kernel agrees on it: the
quantization passes write them flipped, the GEMM reads them as int8, and the passes' own
readers (row sums, residuals, low-rank U) take the stored code back."""

from __future__ import annotations

from ..compat import PrimExpr, tir


def flip(v: PrimExpr) -> PrimExpr:
    """A stored u8 code as the signed rule holds it (top bit flipped)."""
    return tir.bitwise_xor(v, tir.const(128, "uint8"))


def stored(a: PrimExpr, flipped: bool) -> PrimExpr:
    """The stored code (code plus A's offset) as int32 from a byte of A's codes, flipped or
    not."""
    return a.astype("int8").astype("int32") + 128 if flipped else a.astype("int32")


def less_128(a: PrimExpr) -> PrimExpr:
    """The stored code less 128 as int32 from a flipped byte: the byte read as int8."""
    return a.astype("int8").astype("int32")


def maybe(v: PrimExpr, flipped: bool) -> PrimExpr:
    """A stored u8 code as Aq holds it: flipped, or as it is."""
    return flip(v) if flipped else v
