"""The sparse products of te/sparse.py with nonzero codes four at a time, in two forms: on
AVX-512 VNNI ("vnni") one vpdpbusd per 16 output columns (B's terms) or rows (A's terms); on
AVX2 ("avx2") per 8 of them vpsignb, vpmaddubsw and vpmaddwd by ones, on the signed codes.

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

The AVX2 form makes quads the same way from lines of 32 bytes (panels of 32 columns, tiles of
32 rows: four sums of eight int32 lanes, so that the sums, the codes and the lines fit the
sixteen registers; with 64-byte lines LLVM kept the sums on the stack), without the offset:
the lines stay signed codes d, the four codes w of the nonzeros move their signs onto them
(vpsignb(quad, w)), vpmaddubsw multiplies by |w| and sums pairs into int16 (|w1 d1 + w2 d2| <=
2 · 127 · 127 = 32258: no saturation where no code is -128), vpmaddwd by ones sums each
column's two pairs into its int32 lane, as vpdpbusd leaves it. B's terms hold D as int8 in
panel_order(32). Against the pairs, the functions alone at 256 x 4096 x 4096, 5 %, on a 2-core
Zen 3: B's terms 7.1 -> 3.6 ms, A's terms (four tiles, prefetching) 8.4 -> 4.5 ms.

Exact where every |code| is at most 127 (s8; for the AVX2 form also no -128) and 255 · 127 ·
V < 2^31 (the sums, offset included, stay int32): quads() decides, for the function and for
pack's layout."""

from __future__ import annotations

import numpy as np

from ...plan.model import KernelPlan
from ...plan.support import centered_limit
from ..compat import T, tir
from . import sparse_csr

VNNI_W = 64  # the VNNI form's lines: four vpdpbusd of 16 int32 sums
AVX2_W = 32  # the AVX2 form's: four sums of 8 int32 lanes
TILES = {"vnni": 4, "avx2": 4}  # at most, the row tiles four entries of B's CSR serve at once
# quads ahead whose lines of Rt sparse_b_quads prefetches: at 256 x 4096 x 4096, 5 %, on a
# 2-core Zen 3 (whose 512 KiB L2 does not hold Rt), medians of 11 interleaved calls, four tiles:
# 5.56 ms without, 4.57 one quad ahead, 4.58 two, 4.52 three (two tiles: 6.07, 5.25 at two);
# on a Zen 4 (1 MiB L2) prefetching four entries ahead was no faster
PREFETCH = {"vnni": 0, "avx2": 2}
VPDPBUSD = "llvm.x86.avx512.vpdpbusd.512"
PSIGNB, PMADDUBSW = "llvm.x86.avx2.psign.b", "llvm.x86.avx2.pmadd.ub.sw"
PMADDWD = "llvm.x86.avx2.pmadd.wd"


def form(target) -> str:
    """The form a CPU target (lrqc.backend.target.Target) takes quads of nonzeros in: "vnni"
    with AVX-512 VNNI, "avx2" with AVX2 (vpsignb, vpmaddubsw), "" where neither (GPUs, portable
    CPUs: te/sparse.py's pairs)."""
    if target.is_cuda:
        return ""
    return "vnni" if "avx512vnni" in target.features else "avx2" if "avx2" in target.features \
        else ""


def width(form: str) -> int:
    """Bytes of a line (columns of a panel, rows of a tile) in a form."""
    return VNNI_W if form == "vnni" else AVX2_W


def quads(p: KernelPlan, j: int, form: str) -> bool:
    """Whether sparse product j of plan p runs four nonzeros at a time (form: form(target)):
    B's terms (side a) over panels of width(form) columns, their static D then held as
    panel_codes(D, form); A's terms (side b) over tiles of width(form) rows (B's CSR as it
    is)."""
    sp = p.sparse[j]
    fits = centered_limit(sp.q) <= 127 and 255 * 127 * (p.kq // p.gq) < 2**31
    return bool(form) and fits and (p.np_ if sp.side == "a" else p.mp) % width(form) == 0


def panel_order(w: int = VNNI_W) -> np.ndarray:
    """For each stored column s of a w-column panel, the column it holds: the unpacks leave
    byte x of 128-bit lane L of a line in quad lane x % 4 of the (x // 4)-th sum vector, lane
    group L, so stored column 16 L + 4 a + u holds column (w / 4) a + 4 L + u (the sums then
    come out in column order)."""
    s = np.arange(w)
    lane, a, u = s // 16, (s % 16) // 4, s % 4
    return w // 4 * a + 4 * lane + u


def panel_codes(d: np.ndarray, form: str = "vnni") -> np.ndarray:
    """Dq panels [Np / w, Kq, w] (w = width(form), columns in panel_order(w)) of D [Kq, Np]
    int8: for "vnni" uint8 D + 128, for "avx2" D itself."""
    kq, np_ = d.shape
    w = width(form)
    q = d if form == "avx2" else (d.astype(np.int16) + 128).astype(np.uint8)
    q = q.reshape(kq, np_ // w, w)
    return np.ascontiguousarray(q[:, :, panel_order(w)].transpose(1, 0, 2))


def _unpack(lo: bool, unit: int, size: int) -> list[int]:
    """Indices of punpckl/h{bw, wd} on two `size`-byte vectors of `unit`-byte elements (the
    second vector's indices follow the first's)."""
    n = size // unit  # elements per vector
    lanes = size // 16
    per = n // lanes  # per 128-bit lane
    half = range(per // 2) if lo else range(per // 2, per)
    return [x for lane in range(lanes) for i in half for x in (lane * per + i, n + lane * per + i)]


def _quad(r0: tir.PrimExpr, r1: tir.PrimExpr, r2: tir.PrimExpr, r3: tir.PrimExpr,
          a: int, size: int) -> tir.PrimExpr:
    """Quad vector a (0..3) of four `size`-byte lines: bytes interleaved (r0 with r1, r2 with
    r3), then pairs, within 128-bit lanes; LLVM keeps one copy of the unpacks the four share."""
    first = _unpack(a < 2, 1, size)
    x = T.reinterpret(f"uint16x{size // 2}", T.Shuffle([r0, r1], first))
    y = T.reinterpret(f"uint16x{size // 2}", T.Shuffle([r2, r3], first))
    return T.reinterpret(f"uint8x{size}", T.Shuffle([x, y], _unpack(a % 2 == 0, 2, size)))


def _dot(acc: tir.PrimExpr, quad: tir.PrimExpr, w: tir.PrimExpr, how: str) -> tir.PrimExpr:
    """acc + the quads' bytes times w's s8 bytes, four products per int32 lane: vpdpbusd on
    u8 quads ("vnni"), or on signed quads vpsignb, vpmaddubsw by |w| and vpmaddwd by ones."""
    if how == "vnni":
        return T.call_llvm_pure_intrin("int32x16", VPDPBUSD, acc, quad, w)
    q = T.reinterpret("int8x32", quad)
    pairs = T.call_llvm_pure_intrin("int16x16", PMADDUBSW,
                                    T.call_llvm_pure_intrin("int8x32", PSIGNB, w, w),
                                    T.call_llvm_pure_intrin("int8x32", PSIGNB, q, w))
    return acc + T.call_llvm_pure_intrin("int32x8", PMADDWD, pairs, T.Broadcast(T.int16(1), 16))


@T.macro
def add_quads(acc, r0, r1, r2, r3, w, at, how, size):
    """acc[at:at + size] += the quads of the `size`-byte lines r0..r3 times the four codes of
    w, size / 4 lanes a _dot."""
    acc[T.Ramp(at, 1, size // 4)] = _dot(acc[T.Ramp(at, 1, size // 4)],
                                         _quad(r0, r1, r2, r3, 0, size), w, how)
    acc[T.Ramp(at + size // 4, 1, size // 4)] = _dot(
        acc[T.Ramp(at + size // 4, 1, size // 4)], _quad(r0, r1, r2, r3, 1, size), w, how)
    acc[T.Ramp(at + size // 2, 1, size // 4)] = _dot(
        acc[T.Ramp(at + size // 2, 1, size // 4)], _quad(r0, r1, r2, r3, 2, size), w, how)
    acc[T.Ramp(at + 3 * size // 4, 1, size // 4)] = _dot(
        acc[T.Ramp(at + 3 * size // 4, 1, size // 4)], _quad(r0, r1, r2, r3, 3, size), w, how)


def _u8(line: tir.PrimExpr) -> tir.PrimExpr:
    """A line of 64 int8 codes as u8 codes + 128 (the sign bit flipped)."""
    return T.reinterpret("uint8x64", line) ^ T.Broadcast(T.uint8(128), 64)


def _four(word: tir.PrimExpr, size: int) -> tir.PrimExpr:
    """An int32 of four codes as the s8 quad of every lane of a `size`-byte vector."""
    return T.reinterpret(f"int8x{size}", T.Broadcast(word, size // 4))


def sparse_a_quads(mp: int, kq: int, np_: int, groups: int, form: str = "vnni"
                   ) -> tir.PrimFunc:
    """sparse_a (te/sparse.py: the same three passes making the CSR of S, here padded to
    multiples of four, for "vnni" with each list's 128 Σ v; the next panel's lines prefetched
    row by row) on quads of nonzeros: see the module docstring."""
    vnni = form == "vnni"
    W = width(form)
    V = kq // groups
    RG = mp * groups
    PF = (kq + mp - 1) // mp

    @T.prim_func
    def f(S: T.Buffer((mp, kq), "int8"), ss: T.Buffer((mp, groups), "float32"),
          D: T.Buffer((np_ // W, kq, W), "uint8" if vnni else "int8"),
          sd: T.Buffer((groups, np_), "float32"),
          C: T.Buffer((mp, np_), "float32")) -> None:
        T.func_attr({"tirx.noalias": True})
        ptr = T.alloc_buffer((RG + 1,), "int32")
        vsum = T.alloc_buffer((RG,), "int32")
        kidx = T.alloc_buffer((mp * kq + 3 * RG,), "int32")
        kval = T.alloc_buffer((mp * kq + 3 * RG,), "int8")
        if vnni:  # the lists' 128 Σ v: VNNI's u8 lines only
            sparse_csr.rows_csr(S, ptr, kidx, kval, vsum, mp, groups, V, 4, T.int8(0),
                                sparse_csr.masked("int8", V))
        else:
            sparse_csr.rows_csr(S, ptr, kidx, kval, None, mp, groups, V, 4, T.int8(0),
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
                        r0 = D[jo, kidx[b], T.Ramp(0, 1, W)]
                        r1 = D[jo, kidx[b + 1], T.Ramp(0, 1, W)]
                        r2 = D[jo, kidx[b + 2], T.Ramp(0, 1, W)]
                        r3 = D[jo, kidx[b + 3], T.Ramp(0, 1, W)]
                        w = _four(T.reinterpret("int32", kval[T.Ramp(b, 1, 4)]), W)
                        add_quads(acc, r0, r1, r2, r3, w, 0, form, W)
                    if vnni:
                        for jv in T.vectorized(W):
                            acc[jv] = acc[jv] - vsum[i * groups + g]
                    for jv in T.vectorized(W):
                        C[i, jo * W + jv] = C[i, jo * W + jv] + ss[i, g] * sd[g, jo * W + jv] \
                            * T.Cast("float32", acc[jv])

    return f


def _row(iv: tir.PrimExpr, rw: int) -> tir.PrimExpr:
    """The sum lane of row iv of an rw-row tile (sparse_b_quads: the quads leave row
    16 L + 4 a + u in lane (rw / 4) a + 4 L + u, panel_order's exchange)."""
    return (iv % 16) // 4 * (rw // 4) + iv // 16 * 4 + iv % 4


def _line(Rt, k: tir.PrimExpr, i0: tir.PrimExpr, rw: int) -> tir.PrimExpr:
    """The rw rows i0.. of Rt's row k: as u8 codes + 128 for VNNI's lines of 64, signed
    codes for AVX2's of 32."""
    line = Rt[k, T.Ramp(i0, 1, rw)]
    return _u8(line) if rw == VNNI_W else line


def _codes(v0: tir.PrimExpr, v1: tir.PrimExpr, v2: tir.PrimExpr,
           v3: tir.PrimExpr, size: int) -> tir.PrimExpr:
    """Four int32 codes (|v| <= 127) as the s8 quad of every lane."""
    return _four((v0 & 255) | ((v1 & 255) << 8) | ((v2 & 255) << 16) | (v3 << 24), size)


@T.macro
def _prefetch_rows(Rt, idx, b, hi, i0, rb: int):
    """Into L1, the rb rows i0.. of Rt's rows k = idx[b..b + 3] (those before hi)."""
    for q in range(4 * ((rb + 63) // 64)):
        if b + q // ((rb + 63) // 64) < hi:
            T.evaluate(T.call_llvm_intrin("void", "llvm.prefetch.p0", T.address_of(
                Rt[idx[b + q // ((rb + 63) // 64)], i0 + q % ((rb + 63) // 64) * 64]), 0, 3, 1))


def sparse_b_quads(mp: int, kq: int, np_: int, groups: int, form: str = "vnni"
                   ) -> tir.PrimFunc:
    """sparse_b (te/sparse.py: C[:, n] += Σ_g sr[:, g] ss[g, n] Σ_{(k, v) in CSR column n,
    group g} v Rt[k, :]; parallel over blocks of 16 columns) with the column's entries four at
    a time: per four entries, the codes made once, then for each of TL tiles (up to
    TILES[form]) of width(form) rows four lines of Rt (for "vnni" int8 read as u8 + 128: the
    sign bit flipped; the tiles' lines of one k are contiguous) unpacked into quads, one _dot
    per 16 (8) rows, and for "vnni" 128 Σ v off the sums; a list's last one to three entries
    form one more quad padded with zero codes. The sums leave the rows in panel_order's
    exchanged order, put back as they are scaled (_row)."""
    vnni = form == "vnni"
    RW = width(form)  # rows of a tile
    TL = next(v for v in range(TILES[form], 0, -1) if mp // RW % v == 0)  # tiles a pass
    RB = RW * TL
    off = 128 if vnni else 0  # the u8 lines' offset, taken off the sums
    PF = PREFETCH[form]

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
                            if PF > 0:
                                _prefetch_rows(Rt, idx, b + 4 * PF, hi, io * RB, RB)
                            v0 = T.Cast("int32", val[b])
                            v1 = T.Cast("int32", val[b + 1])
                            v2 = T.Cast("int32", val[b + 2])
                            v3 = T.Cast("int32", val[b + 3])
                            vs[0] = vs[0] + v0 + v1 + v2 + v3
                            w = _codes(v0, v1, v2, v3, RW)
                            for tl in T.unroll(TL):
                                i0 = io * RB + tl * RW
                                add_quads(acc, _line(Rt, idx[b], i0, RW),
                                          _line(Rt, idx[b + 1], i0, RW),
                                          _line(Rt, idx[b + 2], i0, RW),
                                          _line(Rt, idx[b + 3], i0, RW), w, tl * RW, form, RW)
                        if (hi - lo) % 4 > 0:  # the last 1..3 entries, zero codes after them
                            b = hi - (hi - lo) % 4
                            v0 = T.Cast("int32", val[b])
                            v1 = T.Select(b + 1 < hi, T.Cast("int32", val[T.min(b + 1, hi - 1)]), 0)
                            v2 = T.Select(b + 2 < hi, T.Cast("int32", val[T.min(b + 2, hi - 1)]), 0)
                            vs[0] = vs[0] + v0 + v1 + v2
                            w = _codes(v0, v1, v2, 0, RW)
                            for tl in T.unroll(TL):
                                i0 = io * RB + tl * RW
                                r0 = _line(Rt, idx[b], i0, RW)
                                add_quads(acc, r0,
                                          _line(Rt, idx[T.min(b + 1, hi - 1)], i0, RW),
                                          _line(Rt, idx[T.min(b + 2, hi - 1)], i0, RW), r0, w,
                                          tl * RW, form, RW)
                        for iv in T.vectorized(RB):
                            outf[nj, iv] = outf[nj, iv] + sr[io * RB + iv, g] \
                                * ss[g, no * 16 + nj] * T.Cast(
                                    "float32", acc[iv // RW * RW + _row(iv % RW, RW)] - vs[0] * off)
                for i in range(RB):
                    for nj in T.vectorized(16):
                        C[io * RB + i, no * 16 + nj] = C[io * RB + i, no * 16 + nj] + outf[nj, i]

    return f
