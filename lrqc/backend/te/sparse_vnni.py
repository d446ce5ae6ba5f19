"""The sparse product of B's sparse terms (side a, te/sparse.py's sparse_a) on AVX-512 VNNI:
each row's nonzero codes four at a time, one vpdpbusd per 16 columns.

C[i, :] += Σ_g ss[i, g] sd[g, :] Σ_{k in g, S[i,k] != 0} S[i, k] D[k, :], as sparse_a computes
it, with the static operand held as Dq = D + 128 (u8, VNNI's unsigned operand) in panels of 64
columns. A row's nonzeros (k1..k4, codes v1..v4: its CSR list padded to a multiple of four with
zero codes) take four lines of the panel, interleaved by byte, then by pair (eight unpacks) into
the quads (Dq[k1, j], .., Dq[k4, j]) of every column j; vpdpbusd adds Σ_t Dq[k_t, j] v_t to
column j's int32 sum, and the row's 128 Σ v (over the group) comes off the sums before they are
scaled: the exact integer Σ v D. The unpacks work within 128-bit lanes, so the columns of each
panel are stored in the order they come out in (panel_order). Against sparse_a's pairs of
nonzeros widened to int16, same run on a 2-core Zen 4, 256 x 4096 x 4096: 3.1 / 4.8 ms at 5 %
density, 5.3 / 9.9 ms at 10 %.

Exact where every |code| of S is at most 127 (s8), D is int8 and 255 · 127 · V < 2^31 (the
sums, offset included, stay int32): quads() decides, for the function and for pack's layout."""

from __future__ import annotations

import numpy as np

from ...plan.model import KernelPlan
from ...plan.support import centered_limit
from ..compat import T, tir

W = 64  # columns of a panel: four vpdpbusd of 16 int32 sums
VPDPBUSD = "llvm.x86.avx512.vpdpbusd.512"


def on(target) -> bool:
    """Whether a target (lrqc.backend.target.Target) compiles sparse products with VNNI: a CPU
    target with AVX-512 VNNI."""
    return not target.is_cuda and "avx512vnni" in target.features


def quads(p: KernelPlan, j: int, vnni: bool) -> bool:
    """Whether sparse product j of plan p runs four nonzeros at a time (vnni: on(target)); its
    static operand D is then held as panel_codes(D)."""
    sp = p.sparse[j]
    return (vnni and sp.side == "a" and centered_limit(sp.q) <= 127 and p.np_ % W == 0
            and 255 * 127 * (p.kq // p.gq) < 2**31)


def panel_order() -> np.ndarray:
    """For each stored column s of a 64-column panel, the column it holds: the unpacks leave
    byte x of 128-bit lane L of a line in quad lane x % 4 of the (x // 4)-th sum vector, lane
    group L, so stored column 16 L + 4 a + u holds column 16 a + 4 L + u (the sums then come
    out in column order)."""
    s = np.arange(W)
    lane, a, u = s // 16, (s % 16) // 4, s % 4
    return 16 * a + 4 * lane + u


def panel_codes(d: np.ndarray) -> np.ndarray:
    """Dq panels [Np / 64, Kq, 64] (uint8, D + 128, columns in panel_order) of D [Kq, Np] int8."""
    kq, np_ = d.shape
    q = (d.astype(np.int16) + 128).astype(np.uint8).reshape(kq, np_ // W, W)
    return np.ascontiguousarray(q[:, :, panel_order()].transpose(1, 0, 2))


def _unpack(lo: bool, unit: int) -> list[int]:
    """Indices of punpckl/h{bw, wd} on two 64-byte vectors of `unit`-byte elements (the
    second vector's indices follow the first's)."""
    n = 64 // unit  # elements per vector
    per = n // 4  # per 128-bit lane
    half = range(per // 2) if lo else range(per // 2, per)
    return [x for lane in range(4) for i in half for x in (lane * per + i, n + lane * per + i)]


def _dot(acc: tir.PrimExpr, quad: tir.PrimExpr, w: tir.PrimExpr) -> tir.PrimExpr:
    return T.call_llvm_pure_intrin("int32x16", VPDPBUSD, acc, T.reinterpret("uint8x64", quad), w)


def sparse_a_quads(mp: int, kq: int, np_: int, groups: int) -> tir.PrimFunc:
    """sparse_a (te/sparse.py: the same three passes making the CSR of S, here padded to
    multiples of four, with each list's 128 Σ v; the next panel's lines prefetched row by row)
    with vpdpbusd on quads of nonzeros: see the module docstring."""
    V = kq // groups
    RG = mp * groups
    PF = (kq + mp - 1) // mp
    LOB, HIB, LOW, HIW = _unpack(True, 1), _unpack(False, 1), _unpack(True, 2), _unpack(False, 2)

    @T.prim_func
    def f(S: T.Buffer((mp, kq), "int8"), ss: T.Buffer((mp, groups), "float32"),
          D: T.Buffer((np_ // W, kq, W), "uint8"), sd: T.Buffer((groups, np_), "float32"),
          C: T.Buffer((mp, np_), "float32")) -> None:
        T.func_attr({"tirx.noalias": True})
        ptr = T.alloc_buffer((RG + 1,), "int32")
        vsum = T.alloc_buffer((RG,), "int32")
        kidx = T.alloc_buffer((mp * kq + 3 * RG,), "int32")
        kval = T.alloc_buffer((mp * kq + 3 * RG,), "int8")
        for i in T.parallel(mp):
            for g in range(groups):
                c = T.alloc_buffer((1,), "int32")
                c[0] = 0
                for kk in range(V):
                    if S[i, g * V + kk] != T.int8(0):
                        c[0] = c[0] + 1
                ptr[i * groups + g + 1] = (c[0] + 3) // 4 * 4
        ptr[0] = 0
        for r in range(RG):
            ptr[r + 1] = ptr[r + 1] + ptr[r]
        for i in T.parallel(mp):
            for g in range(groups):
                c = T.alloc_buffer((1,), "int32")
                s = T.alloc_buffer((1,), "int32")
                c[0] = ptr[i * groups + g]
                s[0] = 0
                for kk in range(V):
                    if S[i, g * V + kk] != T.int8(0):
                        kidx[c[0]] = g * V + kk
                        kval[c[0]] = S[i, g * V + kk]
                        s[0] = s[0] + T.Cast("int32", S[i, g * V + kk])
                        c[0] = c[0] + 1
                for t in range(ptr[i * groups + g + 1] - c[0]):
                    kidx[c[0] + t] = g * V
                    kval[c[0] + t] = T.int8(0)
                vsum[i * groups + g] = s[0] * 128
        for jo in T.parallel(np_ // W):
            for i in range(mp):
                for q in range(PF):
                    if jo + 1 < np_ // W and i * PF + q < kq:
                        T.evaluate(T.call_llvm_intrin("void", "llvm.prefetch.p0",
                                   T.address_of(D[jo + 1, i * PF + q, 0]), 0, 3, 1))
                acc = T.alloc_buffer((W,), "int32")
                for g in range(groups):
                    for jv in T.vectorized(W):
                        acc[jv] = 0
                    for t in range((ptr[i * groups + g + 1] - ptr[i * groups + g]) // 4):
                        b = ptr[i * groups + g] + 4 * t
                        r0 = D[jo, kidx[b], T.Ramp(0, 1, 64)]
                        r1 = D[jo, kidx[b + 1], T.Ramp(0, 1, 64)]
                        r2 = D[jo, kidx[b + 2], T.Ramp(0, 1, 64)]
                        r3 = D[jo, kidx[b + 3], T.Ramp(0, 1, 64)]
                        w = T.reinterpret("int8x64", T.Broadcast(
                            T.reinterpret("int32", kval[T.Ramp(b, 1, 4)]), 16))
                        lo = T.reinterpret("uint16x32", T.Shuffle([r0, r1], LOB))
                        hi = T.reinterpret("uint16x32", T.Shuffle([r0, r1], HIB))
                        lo2 = T.reinterpret("uint16x32", T.Shuffle([r2, r3], LOB))
                        hi2 = T.reinterpret("uint16x32", T.Shuffle([r2, r3], HIB))
                        acc[T.Ramp(0, 1, 16)] = _dot(acc[T.Ramp(0, 1, 16)],
                                                     T.Shuffle([lo, lo2], LOW), w)
                        acc[T.Ramp(16, 1, 16)] = _dot(acc[T.Ramp(16, 1, 16)],
                                                      T.Shuffle([lo, lo2], HIW), w)
                        acc[T.Ramp(32, 1, 16)] = _dot(acc[T.Ramp(32, 1, 16)],
                                                      T.Shuffle([hi, hi2], LOW), w)
                        acc[T.Ramp(48, 1, 16)] = _dot(acc[T.Ramp(48, 1, 16)],
                                                      T.Shuffle([hi, hi2], HIW), w)
                    for jv in T.vectorized(W):
                        C[i, jo * W + jv] = C[i, jo * W + jv] + ss[i, g] * sd[g, jo * W + jv] \
                            * T.Cast("float32", acc[jv] - vsum[i * groups + g])

    return f
