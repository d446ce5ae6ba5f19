"""Dense bit packing of the static operand's integer codes (numpy; the kernels' decoding is
lrqc/backend/te/unpack.py).

A w-bit code (w = 1..7, two's complement: its low w bits u = code mod 2^w) takes w/8 bytes.
Codes are packed in the order the kernel reads them (a stream per 16-column panel: the VNNI
blocks' order for the integer GEMM), 256 codes to a group of 32·w bytes. A group holds w as a
sum of bit planes of widths 4, 2 and 1 (the binary digits of w), the widest plane first and
holding the most significant bits of u: w = 7 is a 4-bit plane (bits 3..6 of u, 128 bytes), a
2-bit plane (bits 1..2, 64 bytes) and a 1-bit plane (bit 0, 32 bytes). In a plane of width p
(32·p bytes) code E of the group (0..255) sits in byte E mod 32p, at bits p·(E div 32p) ..
p·(E div 32p) + p - 1. So 32 consecutive codes read 32 consecutive bytes of every plane with
one shift each: a kernel unpacks them with whole-vector shifts and masks. 4-bit codes are one
4-bit plane (two codes per byte, the low nibble holding code E of byte E mod 128 for E < 128).
"""

from __future__ import annotations

import numpy as np

GROUP = 256  # codes per packed group
PLANE_WIDTHS = (4, 2, 1)


def planes(w: int) -> tuple[tuple[int, int, int], ...]:
    """(width p, byte offset in the group, shift of the plane's field in u) of each plane of
    w-bit codes, widest (most significant) first."""
    if not 1 <= w <= 7:
        raise ValueError(f"dense packing holds 1..7-bit codes, not {w}")
    out, offset, shift = [], 0, w
    for p in PLANE_WIDTHS:
        if w & p:
            shift -= p
            out.append((p, offset, shift))
            offset += 32 * p
    return tuple(out)


def group_bytes(w: int) -> int:
    """Bytes of one group of GROUP codes."""
    return 32 * w


def code_range(w: int) -> tuple[int, int]:
    """The codes w bits hold (two's complement)."""
    return -(2 ** (w - 1)), 2 ** (w - 1) - 1


def pack_stream(codes: np.ndarray, w: int) -> np.ndarray:
    """codes (rows, L) integers within code_range(w) -> (rows, ceil(L / 256), 32·w) uint8, the
    stream zero padded to whole groups. ValueError for a code out of range."""
    codes = np.asarray(codes, dtype=np.int64)
    lo, hi = code_range(w)
    if codes.size and (codes.min() < lo or codes.max() > hi):
        raise ValueError(f"codes in [{codes.min()}, {codes.max()}] do not fit {w} bits")
    rows, length = codes.shape
    groups = -(-length // GROUP)
    u = np.zeros((rows, groups * GROUP), np.int64)
    u[:, :length] = codes & ((1 << w) - 1)
    u = u.reshape(rows, groups, GROUP)
    out = np.zeros((rows, groups, group_bytes(w)), np.uint8)
    for p, offset, shift in planes(w):
        nbytes = 32 * p
        field = ((u >> shift) & ((1 << p) - 1)).reshape(rows, groups, 8 // p, nbytes)
        plane = np.zeros((rows, groups, nbytes), np.int64)
        for slot in range(8 // p):
            plane |= field[:, :, slot] << (p * slot)
        out[:, :, offset:offset + nbytes] = plane
    return out


def unpack_stream(packed: np.ndarray, w: int, length: int) -> np.ndarray:
    """Inverse of pack_stream: (rows, groups, 32·w) uint8 -> (rows, length) int64 codes."""
    packed = np.asarray(packed, dtype=np.int64)
    rows, groups, nb = packed.shape
    if nb != group_bytes(w) or length > groups * GROUP:
        raise ValueError(f"packed shape {packed.shape} does not hold {length} {w}-bit codes")
    u = np.zeros((rows, groups, GROUP), np.int64)
    for p, offset, shift in planes(w):
        nbytes = 32 * p
        plane = packed[:, :, offset:offset + nbytes]
        fields = [(plane >> (p * slot)) & ((1 << p) - 1) for slot in range(8 // p)]
        u |= np.concatenate(fields, axis=-1) << shift
    half = 1 << (w - 1)
    return ((u ^ half) - half).reshape(rows, groups * GROUP)[:, :length]
