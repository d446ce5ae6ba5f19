"""The sparse products of te/sparse.py on AVX-512 VNNI: nonzero codes four at a time, one
vpdpbusd per 16 output columns (B's terms) or rows (A's terms).

B's terms (sparse_a_quads): C[i, :] += Σ_g ss[i, g] sd[g, :] Σ_{k in g, S[i,k] != 0} S[i, k]
D[k, :], as sparse_a computes it, with the static operand held as Dq = D + 128 (u8, VNNI's
unsigned operand) in panels of 64 columns. A row's nonzeros (k1..k4, codes v1..v4: its CSR list
padded to a multiple of four with zero codes) take four lines of the panel, interleaved by
byte, then by pair (eight unpacks) into the quads (Dq[k1, j], .., Dq[k4, j]) of every column j;
vpdpbusd adds Σ_t Dq[k_t, j] v_t to column j's int32 sum, and the row's 128 Σ v (over the
group) comes off the sums before they are scaled: the exact integer Σ v D. The unpacks work
within 128-bit lanes, so the columns of each panel are stored in the order they come out in
(panel_order). Against sparse_a's pairs of nonzeros widened to int16, same run on a 2-core
Zen 4, 256 x 4096 x 4096: 3.1 / 4.8 ms at 5 % density, 5.3 / 9.9 ms at 10 %.

A's terms (sparse_b_quads): the same on four lines of A's residual codes transposed (the
per-call Rt, read as u8 + 128 by flipping the sign bit) per four entries of a column of B's
CSR, in tiles of 64 rows; the four entries' codes serve up to TILES tiles at once (the most
that divides the tiles). Against sparse_b's pairs, interleaved rounds at 256 x 4096 x 4096 with
one tile a pass, 3.2 / 3.4 ms at 2 %, 3.6 / 4.2 at 5 %, 11.2 / 14.6 at 15 % (with the row tiles
outside the parallel loop over columns, each tile's slice of Rt kept in L2: 3.9, 4.1 and 12.0,
slower); four tiles against one: 4.1 / 4.6 ms at 5 %, 9.3 / 10.9 at 15 % (another run: 3.7 /
4.3 and 8.9 / 11.0). Its instructions bound it, not its reads of Rt: with Rt in L2 (K = 1024) a
tile and four entries take 21-24 cycles, as at K = 4096.

Exact where every |code| is at most 127 (s8) and 255 · 127 · V < 2^31 (the sums, offset
included, stay int32): quads() decides, for the function and for pack's layout."""

from __future__ import annotations

import numpy as np

from ...plan.model import KernelPlan
from ...plan.support import centered_limit
from ..compat import T, tir
from . import sparse_csr

W = 64  # columns of a panel: four vpdpbusd of 16 int32 sums
TILES = 4  # at most, the tiles of 64 rows each four entries of B's CSR serve (sparse_b_quads)
VPDPBUSD = "llvm.x86.avx512.vpdpbusd.512"


def on(target) -> bool:
    """Whether a target (lrqc.backend.target.Target) compiles sparse products with VNNI: a CPU
    target with AVX-512 VNNI."""
    return not target.is_cuda and "avx512vnni" in target.features


def quads(p: KernelPlan, j: int, vnni: bool) -> bool:
    """Whether sparse product j of plan p runs four nonzeros at a time (vnni: on(target)):
    B's terms (side a) over panels of 64 columns, their static D then held as panel_codes(D);
    A's terms (side b) over tiles of 64 rows (B's CSR as it is)."""
    sp = p.sparse[j]
    fits = centered_limit(sp.q) <= 127 and 255 * 127 * (p.kq // p.gq) < 2**31
    return vnni and fits and (p.np_ if sp.side == "a" else p.mp) % W == 0


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


LOB, HIB, LOW, HIW = _unpack(True, 1), _unpack(False, 1), _unpack(True, 2), _unpack(False, 2)


def _quad(r0: tir.PrimExpr, r1: tir.PrimExpr, r2: tir.PrimExpr, r3: tir.PrimExpr,
          a: int) -> tir.PrimExpr:
    """Quad vector a (0..3) of four 64-byte lines: bytes interleaved (r0 with r1, r2 with r3),
    then pairs, within 128-bit lanes; LLVM keeps one copy of the unpacks the four share."""
    first = LOB if a < 2 else HIB
    x = T.reinterpret("uint16x32", T.Shuffle([r0, r1], first))
    y = T.reinterpret("uint16x32", T.Shuffle([r2, r3], first))
    return T.reinterpret("uint8x64", T.Shuffle([x, y], LOW if a % 2 == 0 else HIW))


def _dot(acc: tir.PrimExpr, quad: tir.PrimExpr, w: tir.PrimExpr) -> tir.PrimExpr:
    """acc + the quads' u8 bytes times w's s8 bytes, four products per int32 lane."""
    return T.call_llvm_pure_intrin("int32x16", VPDPBUSD, acc, quad, w)


@T.macro
def add_quads(acc, r0, r1, r2, r3, w, at):
    """acc[at:at + 64] += the quads of lines r0..r3 times the four codes of w, 16 lanes a
    vpdpbusd."""
    acc[T.Ramp(at, 1, 16)] = _dot(acc[T.Ramp(at, 1, 16)], _quad(r0, r1, r2, r3, 0), w)
    acc[T.Ramp(at + 16, 1, 16)] = _dot(acc[T.Ramp(at + 16, 1, 16)], _quad(r0, r1, r2, r3, 1), w)
    acc[T.Ramp(at + 32, 1, 16)] = _dot(acc[T.Ramp(at + 32, 1, 16)], _quad(r0, r1, r2, r3, 2), w)
    acc[T.Ramp(at + 48, 1, 16)] = _dot(acc[T.Ramp(at + 48, 1, 16)], _quad(r0, r1, r2, r3, 3), w)


def _u8(line: tir.PrimExpr) -> tir.PrimExpr:
    """A line of 64 int8 codes as u8 codes + 128 (the sign bit flipped)."""
    return T.reinterpret("uint8x64", line) ^ T.Broadcast(T.uint8(128), 64)


def sparse_a_quads(mp: int, kq: int, np_: int, groups: int) -> tir.PrimFunc:
    """sparse_a (te/sparse.py: the same three passes making the CSR of S, here padded to
    multiples of four, with each list's 128 Σ v; the next panel's lines prefetched row by row)
    with vpdpbusd on quads of nonzeros: see the module docstring."""
    V = kq // groups
    RG = mp * groups
    PF = (kq + mp - 1) // mp

    @T.prim_func
    def f(S: T.Buffer((mp, kq), "int8"), ss: T.Buffer((mp, groups), "float32"),
          D: T.Buffer((np_ // W, kq, W), "uint8"), sd: T.Buffer((groups, np_), "float32"),
          C: T.Buffer((mp, np_), "float32")) -> None:
        T.func_attr({"tirx.noalias": True})
        ptr = T.alloc_buffer((RG + 1,), "int32")
        vsum = T.alloc_buffer((RG,), "int32")
        kidx = T.alloc_buffer((mp * kq + 3 * RG,), "int32")
        kval = T.alloc_buffer((mp * kq + 3 * RG,), "int8")
        sparse_csr.rows_csr(S, ptr, kidx, kval, vsum, mp, groups, V, 4, T.int8(0),
                            sparse_csr.masked("int8", V))
        for jo in T.parallel(np_ // W):
            for i in range(mp):
                sparse_csr.prefetch_next(D, jo, i, np_ // W, PF, kq)
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
                        add_quads(acc, r0, r1, r2, r3, w, 0)
                    for jv in T.vectorized(W):
                        C[i, jo * W + jv] = C[i, jo * W + jv] + ss[i, g] * sd[g, jo * W + jv] \
                            * T.Cast("float32", acc[jv] - vsum[i * groups + g])

    return f


def _row(iv: tir.PrimExpr) -> tir.PrimExpr:
    """The sum lane of row iv of a 64-row tile (sparse_b_quads: the quads leave row
    16 L + 4 a + u in lane 16 a + 4 L + u, panel_order's exchange)."""
    return (iv % 16) // 4 * 16 + iv // 16 * 4 + iv % 4


def _line(Rt, k: tir.PrimExpr, i0: tir.PrimExpr) -> tir.PrimExpr:
    return _u8(Rt[k, T.Ramp(i0, 1, 64)])


def _codes(v0: tir.PrimExpr, v1: tir.PrimExpr, v2: tir.PrimExpr,
           v3: tir.PrimExpr) -> tir.PrimExpr:
    """Four int32 codes (|v| <= 127) as the s8 quad of every lane."""
    four = (v0 & 255) | ((v1 & 255) << 8) | ((v2 & 255) << 16) | (v3 << 24)
    return T.reinterpret("int8x64", T.Broadcast(four, 16))


def sparse_b_quads(mp: int, kq: int, np_: int, groups: int) -> tir.PrimFunc:
    """sparse_b (te/sparse.py: C[:, n] += Σ_g sr[:, g] ss[g, n] Σ_{(k, v) in CSR column n,
    group g} v Rt[k, :]; parallel over blocks of 16 columns) with the column's entries four at
    a time: per four entries, the codes made once, then for each of TL tiles (up to TILES) of
    64 rows four lines of Rt (int8, read as u8 + 128: the sign bit flipped; the tiles' lines of
    one k are contiguous) unpacked into quads, one vpdpbusd per 16 rows, and 128 Σ v off the
    sums; a list's last one to three entries form one more quad padded with zero codes. The
    sums leave the rows in panel_order's exchanged order, put back as they are scaled
    (_row)."""
    RW = 64  # rows of a tile
    TL = next(v for v in range(TILES, 0, -1) if mp // RW % v == 0)  # tiles a pass: up to TILES
    RB = RW * TL

    @T.prim_func
    def f(Rt: T.Buffer((kq, mp), "int8"), sr: T.Buffer((mp, groups), "float32"),
          ptr: T.Buffer((np_ * groups + 1,), "int32"), idx_h: T.handle, val_h: T.handle,
          ss: T.Buffer((groups, np_), "float32"), C: T.Buffer((mp, np_), "float32")) -> None:
        T.func_attr({"tirx.noalias": True})
        nnz = T.int32()
        idx = T.match_buffer(idx_h, (nnz,), "int32")
        val = T.match_buffer(val_h, (nnz,), "int16")
        for no in T.parallel(np_ // 16):
            for io in range(mp // RB):
                outf = T.alloc_buffer((16, RB), "float32")
                acc = T.alloc_buffer((RB,), "int32")
                vs = T.alloc_buffer((1,), "int32")
                for nj in range(16):
                    for iv in T.vectorized(RB):
                        outf[nj, iv] = T.float32(0)
                    for g in range(groups):
                        lo = ptr[(no * 16 + nj) * groups + g]
                        hi = ptr[(no * 16 + nj) * groups + g + 1]
                        for iv in T.vectorized(RB):
                            acc[iv] = 0
                        vs[0] = 0
                        for t in range((hi - lo) // 4):
                            b = lo + 4 * t
                            v0 = T.Cast("int32", val[b])
                            v1 = T.Cast("int32", val[b + 1])
                            v2 = T.Cast("int32", val[b + 2])
                            v3 = T.Cast("int32", val[b + 3])
                            vs[0] = vs[0] + v0 + v1 + v2 + v3
                            w = _codes(v0, v1, v2, v3)
                            for tl in T.unroll(TL):
                                i0 = io * RB + tl * RW
                                add_quads(acc, _line(Rt, idx[b], i0), _line(Rt, idx[b + 1], i0),
                                          _line(Rt, idx[b + 2], i0), _line(Rt, idx[b + 3], i0),
                                          w, tl * RW)
                        if (hi - lo) % 4 > 0:  # the last 1..3 entries, zero codes after them
                            b = hi - (hi - lo) % 4
                            v0 = T.Cast("int32", val[b])
                            v1 = T.Select(b + 1 < hi, T.Cast("int32", val[T.min(b + 1, hi - 1)]), 0)
                            v2 = T.Select(b + 2 < hi, T.Cast("int32", val[T.min(b + 2, hi - 1)]), 0)
                            vs[0] = vs[0] + v0 + v1 + v2
                            w = _codes(v0, v1, v2, 0)
                            for tl in T.unroll(TL):
                                i0 = io * RB + tl * RW
                                r0 = _line(Rt, idx[b], i0)
                                add_quads(acc, r0, _line(Rt, idx[T.min(b + 1, hi - 1)], i0),
                                          _line(Rt, idx[T.min(b + 2, hi - 1)], i0), r0, w,
                                          tl * RW)
                        for iv in T.vectorized(RB):
                            outf[nj, iv] = outf[nj, iv] + sr[io * RB + iv, g] \
                                * ss[g, no * 16 + nj] * T.Cast(
                                    "float32", acc[iv // RW * RW + _row(iv % RW)] - vs[0] * 128)
                for i in range(RB):
                    for nj in T.vectorized(16):
                        C[io * RB + i, no * 16 + nj] = C[io * RB + i, no * 16 + nj] + outf[nj, i]

    return f
