"""pack(): the static operand B quantized by the reference quantizer and laid out for the
kernels: Bp[N/16, K/4, 16, 4] int8 (one 64-byte VNNI block per 16 columns x 4 k), scales
sb[G, N] and column sums cs[G, N] per K-group. numpy only."""

from __future__ import annotations

import numpy as np

from ..reference.inputs import as_matrix
from ..reference.minifloat import frac_bits
from ..reference.quant import integer_codes, quantize
from ..errors import InputError
from .plan import KernelPlan


def pack_codes(codes: np.ndarray, np_: int, kp: int) -> np.ndarray:
    """codes (N, K') int -> Bp (np_/16, kp/4, 16, 4) int8, zero padded."""
    n, k = codes.shape
    full = np.zeros((np_, kp), np.int8)
    full[:n, :k] = codes
    return np.ascontiguousarray(full.reshape(np_ // 16, 16, kp // 4, 4).transpose(0, 2, 1, 3))


def pack_nibbles(bp: np.ndarray) -> np.ndarray:
    """Bp (n16, k4, 16, 4) with values in [-8, 7] -> (n16, k4, 32) int8 "split-half" nibbles:
    in each 64-byte block (element e = 4*j + kk), byte b holds element b in its low nibble and
    element b + 32 in its high nibble, so one shift pair unpacks 32 lanes at once."""
    flat = bp.reshape(bp.shape[0], bp.shape[1], 64).astype(np.int16)
    lo, hi = flat[..., :32] & 0xF, flat[..., 32:] & 0xF
    return (lo | (hi << 4)).astype(np.uint8).view(np.int8)


def unpack_nibbles(b4: np.ndarray) -> np.ndarray:
    """Inverse of pack_nibbles, sign-extending each nibble."""
    lo = (b4.astype(np.int8) << 4) >> 4
    hi = b4.astype(np.int8) >> 4
    return np.concatenate([lo, hi], axis=-1).reshape(b4.shape[0], b4.shape[1], 16, 4)


def unpack_codes(bp: np.ndarray) -> np.ndarray:
    """Inverse of pack_codes: (N', K') int8."""
    a, b, c, d = bp.shape
    return bp.transpose(0, 2, 1, 3).reshape(a * c, b * d)


def pack(p: KernelPlan, B) -> dict[str, np.ndarray]:
    """Quantize and lay out B (K x N) for plan p: {"Bp", "sb", "cs"} numpy arrays."""
    B = as_matrix(B, "B")
    if B.shape != (p.k, p.n):
        raise InputError(f"B: expected shape {p.k}x{p.n} (K x N) for this kernel, got "
                         f"{B.shape[0]}x{B.shape[1]}")
    q = quantize(B, p.qb, "b")  # rows = N, columns = K (padded to V when grouped)
    codes = integer_codes(q)  # symmetric weights (zero = 0); MX values times 2^f
    frac = 0 if p.qb.is_int and p.qb.granularity != "per_block" else frac_bits(p.qb.fmt)
    bp = pack_codes(codes.astype(np.int8), p.np_, p.kp)
    full = unpack_codes(bp).astype(np.int64)  # (np_, kp)
    G, V = p.groups, p.vector
    cs = full.reshape(p.np_, G, V).sum(axis=2).T.astype(np.int32)  # (G, np_)
    scale = np.broadcast_to(q.scale, (q.scale.shape[0], q.scale.shape[1])) * 2.0**-frac
    if scale.shape[1] == 1:
        scale = np.repeat(scale, G, axis=1)
    sb = np.zeros((G, p.np_), np.float32)
    sb[:, : p.n] = np.broadcast_to(scale.T, (G, p.n))
    if p.nibbles:
        bp = pack_nibbles(bp)
    return {"Bp": bp, "sb": sb, "cs": cs}
