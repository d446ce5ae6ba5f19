"""The sparse products of sparse residual terms (segments.py), written directly as scheduled
TIR: C += deq(S · D) after the GEMM, with int32 accumulation per scale group (exact) and one
float multiply-add per output element and group.

side "a" (B's term): S = A's thresholded copy, per call, as centered codes [Mp, Kq];
  each row skips its zero codes (the codes are the format: no compaction pass), every nonzero
  code adds code * D[k, :] to the row's int32 accumulator, vectorized over N (on AVX-512 VNNI
  four nonzeros at a time where they fit: te/sparse_quads.py). D = B's residual
  codes [Kq, Np] int8, scales [G, Np].
side "b" (A's term): S = B's thresholded copy, static, as CSR of its columns (one row pointer
  per column and group: ptr[n * G + g]), D = A's residual codes transposed [Kq, Mp] from
  the quantization pass; vectorized over M, 16 columns of C at a time.

Work is nnz(S) times the dense operand's width, plus one pass over S's codes (side a).

dense (sparse{j}_dense, CPU): the same product as the integer GEMM computes it (te/gemm.py's
sums, scheduled by the x86 rule of its plan, signature.dense_plan): A's side the per-call
codes + 128 as u8 [Mp, Kq] (block names.DENSE_CODES: S itself, or Rt transposed), B's side
the static codes as VNNI blocks with their column sums; C = Cin + deq(acc - 128 cs), Cin
being C itself (elementwise: each element read before it is written)."""

from __future__ import annotations

from ...frontend.model import Quant
from ...plan import names
from ...plan.model import KernelPlan
from ...plan.support import centered_limit
from ..compat import PrimExpr, T, te, tir
from . import flipped, sparse_csr, sparse_quads
from .gemm import _int_sum


def code_dtype(q: Quant) -> str:
    """Storage of centered codes of quantizer q: int8 when they fit, else int16."""
    return "int8" if centered_limit(q) <= 127 else "int16"


def functions(p: KernelPlan, cuda: bool = False, form: str = "", avx2: bool = False
              ) -> list:
    """One PrimFunc per sparse product of plan p, in order (cuda: the GPU versions; form: the
    target's sparse_quads.form, in which the products sparse_quads.quads takes run four
    nonzeros at a time; avx2: the target has AVX2, so B's terms list A's int8 copy by masks,
    sparse_csr.masked)."""
    out = []
    for j, sp in enumerate(p.sparse):
        dims, dt = (p.mp, p.kq, p.np_, p.gq), code_dtype(sp.q)
        if cuda:
            out.append((sparse_a_cuda if sp.side == "a" else sparse_b_cuda)(*dims, dt))
        elif sparse_quads.quads(p, j, form):
            quad = sparse_quads.sparse_a_quads if sp.side == "a" else sparse_quads.sparse_b_quads
            out.append(quad(*dims, form))
        else:
            out.append(sparse_a(*dims, dt, avx2) if sp.side == "a" else sparse_b(*dims, dt))
    return out


def dense(p: KernelPlan, j: int, pairs: bool = False, signed: bool = False
          ) -> list[te.Tensor]:
    """Tensors of sparse product j's dense formulation (module docstring), parameters in
    signature.dense_params order; pairs: the sums as vpmaddwd forms them (gemm._int_sum);
    signed: each product (a - 128)·b on the stored codes a, held flipped (te.flipped; vpsignb +
    vpmaddubsw), the sums then without the 128·cs correction."""
    side = p.sparse[j].side
    mp, kq, np_ = p.mp, p.kq, p.np_
    def stored(x: PrimExpr) -> PrimExpr:  # the code + 128, flipped for signed (te.flipped)
        v = (x.astype("int32") + 128).astype("uint8")
        return flipped.flip(v) if signed else v
    if side == "a":
        X = te.placeholder((mp, kq), "int8", name="S")
        aq = te.compute((mp, kq), lambda i, k: stored(X[i, k]), name=names.DENSE_CODES)
    else:
        X = te.placeholder((kq, mp), "int8", name="Rt")
        aq = te.compute((mp, kq), lambda i, k: stored(X[k, i]), name=names.DENSE_CODES)
    names_ = ("ss", "Dv", "dcs", "sd") if side == "a" else ("sr", "Sv", "scs", "ss")
    xs = te.placeholder((mp, 1), "float32", name=names_[0])
    bv = te.placeholder((np_ // 16, kq // 4, 16, 4), "int8", name=names_[1])
    cs = te.placeholder((1, np_), "int32", name=names_[2])
    bs = te.placeholder((1, np_), "float32", name=names_[3])
    cin = te.placeholder((mp, np_), "float32", name="Cin")

    def prod(i: PrimExpr, jj: PrimExpr, k: PrimExpr) -> PrimExpr:
        a = flipped.less_128(aq[i, k]) if signed else aq[i, k].astype("int32")
        return a * bv[jj // 16, k // 4, jj % 16, k % 4].astype("int32")

    acc = _int_sum((mp, np_), prod, kq, names.ACC, pairs)

    def total(i: PrimExpr, jj: PrimExpr) -> PrimExpr:
        return acc[i, jj] if signed else acc[i, jj] - 128 * cs[0, jj]

    out = te.compute((mp, np_), lambda i, jj: cin[i, jj] + total(i, jj).astype("float32")
                     * xs[i, 0] * bs[0, jj], name=names.OUT)
    return [X, xs, bv, cs, bs, cin, out]


def threads(width: int) -> int:
    """Threads per block along a dimension of `width` (a multiple of 4) elements."""
    return next(v for v in (256, 128, 64, 32, 16, 8, 4) if width % v == 0)


def sparse_a_cuda(mp: int, kq: int, np_: int, groups: int, sdt: str = "int16"
                  ) -> tir.PrimFunc:
    """sparse_a on a GPU: a block per row i and 256 (or fewer) columns, a thread per column;
    every thread of a block walks the row's codes, so the zero test is uniform in the block
    and the reads of D's rows are coalesced."""
    V, L = kq // groups, threads(np_)

    @T.prim_func
    def f(S: T.Buffer((mp, kq), sdt), ss: T.Buffer((mp, groups), "float32"),
          D: T.Buffer((kq, np_), "int8"), sd: T.Buffer((groups, np_), "float32"),
          C: T.Buffer((mp, np_), "float32")) -> None:
        T.func_attr({"tirx.noalias": True})
        for i in T.thread_binding(mp, thread="blockIdx.x"):  # rows: x allows 2^31 - 1 blocks
            for jo in T.thread_binding(np_ // L, thread="blockIdx.y"):
                for jt in T.thread_binding(L, thread="threadIdx.x"):
                    acc = T.alloc_buffer((1,), "int32", scope="local")
                    out = T.alloc_buffer((1,), "float32", scope="local")
                    out[0] = T.float32(0)
                    for g in range(groups):
                        acc[0] = 0
                        for kk in range(V):
                            if S[i, g * V + kk] != T.Cast(sdt, 0):
                                acc[0] = acc[0] + T.Cast("int32", S[i, g * V + kk]) * T.Cast(
                                    "int32", D[g * V + kk, jo * L + jt])
                        out[0] = out[0] + ss[i, g] * sd[g, jo * L + jt] * T.Cast("float32",
                                                                                 acc[0])
                    C[i, jo * L + jt] = C[i, jo * L + jt] + out[0]

    return f


def sparse_b_cuda(mp: int, kq: int, np_: int, groups: int, rdt: str = "int16"
                  ) -> tir.PrimFunc:
    """sparse_b on a GPU: a block per column n and 256 (or fewer) rows, a thread per row;
    every thread walks the column's CSR entries (uniform loop) and reads Rt's row k coalesced."""
    L = threads(mp)

    @T.prim_func
    def f(Rt: T.Buffer((kq, mp), rdt), sr: T.Buffer((mp, groups), "float32"),
          ptr: T.Buffer((np_ * groups + 1,), "int32"), idx_h: T.handle, val_h: T.handle,
          ss: T.Buffer((groups, np_), "float32"), C: T.Buffer((mp, np_), "float32")) -> None:
        T.func_attr({"tirx.noalias": True})
        nnz = T.int32()
        idx = T.match_buffer(idx_h, (nnz,), "int32")
        val = T.match_buffer(val_h, (nnz,), "int16")
        for n in T.thread_binding(np_, thread="blockIdx.x"):
            for io in T.thread_binding(mp // L, thread="blockIdx.y"):
                for it in T.thread_binding(L, thread="threadIdx.x"):
                    acc = T.alloc_buffer((1,), "int32", scope="local")
                    out = T.alloc_buffer((1,), "float32", scope="local")
                    out[0] = T.float32(0)
                    for g in range(groups):
                        acc[0] = 0
                        for t in range(ptr[n * groups + g], ptr[n * groups + g + 1]):
                            acc[0] = acc[0] + T.Cast("int32", val[t]) * T.Cast(
                                "int32", Rt[idx[t], io * L + it])
                        out[0] = out[0] + sr[io * L + it, g] * ss[g, n] * T.Cast("float32",
                                                                               acc[0])
                    C[io * L + it, n] = C[io * L + it, n] + out[0]

    return f


def tile(width: int) -> int:
    """The register tile of a loop over `width` (a multiple of 16) elements: 64 int32 lanes
    (eight AVX2 registers) where they divide it; one 64-byte cache line of int8 codes."""
    return next(v for v in (64, 32, 16) if width % v == 0)


def _mac2(x1: PrimExpr, y1: PrimExpr, x2: PrimExpr, y2: PrimExpr, narrow: bool) -> PrimExpr:
    """x1 y1 + x2 y2 as int32, exactly. narrow: every |x|, |y| <= 127, so the two products
    and their sum fit int16 (2 * 127² = 32258): 16-lane multiplies (vpmullw) and one widening
    per pair instead of 8-lane 32-bit multiplies (vpmulld, slow on many x86 cores)."""
    if narrow:
        return T.Cast("int32", T.Cast("int16", x1) * T.Cast("int16", y1)
                      + T.Cast("int16", x2) * T.Cast("int16", y2))
    return T.Cast("int32", x1) * T.Cast("int32", y1) + T.Cast("int32", x2) * T.Cast("int32", y2)


def sparse_a(mp: int, kq: int, np_: int, groups: int, sdt: str = "int16",
             avx2: bool = False) -> tir.PrimFunc:
    """C[i, :] += Σ_g ss[i, g] sd[g, :] Σ_{k in g, S[i,k] != 0} S[i, k] D[k, :].

    D arrives as panels of W columns, Dp[Np/W, Kq, W] (runtime.buckets.sparse_tensors; on
    AVX-512 VNNI or AVX2, sparse_quads.sparse_a_quads and its own layout). Three short parallel
    passes over S make a CSR of its nonzeros (k, code) per row and group, each list padded to
    an even length with a zero code; then, in parallel over the panels, every row's pairs of
    nonzeros add code * D[k, panel] to W int32 sums held in registers. A panel (Kq x W bytes)
    stays in L2 across all rows; the CSR is read once per panel. Each row also prefetches its
    share of the next panel's lines into L2: the rows' reads of a panel are random, and without
    the prefetch each line came from memory at its full latency (256 x 4096 x 4096 at 1 % on a
    2-core Zen 4, whose 16 MB of D do not stay in its caches: 5.6-6.0 ms, 1.6-3.3 with it; the
    function alone built for x86-avx2, prefetching into L2 against L1: 2.3 / 3.1 ms at 1 %,
    6.5 / 7.3 at 5 %, 22.0 / 23.2 at 20 %)."""
    V, W = kq // groups, tile(np_)
    RG = mp * groups
    PF = (kq + mp - 1) // mp
    narrow = sdt == "int8"

    @T.prim_func
    def f(S: T.Buffer((mp, kq), sdt), ss: T.Buffer((mp, groups), "float32"),
          D: T.Buffer((np_ // W, kq, W), "int8"), sd: T.Buffer((groups, np_), "float32"),
          C: T.Buffer((mp, np_), "float32")) -> None:
        T.func_attr({"tirx.noalias": True})
        ptr = T.alloc_buffer((RG + 1,), "int32")
        kidx = T.alloc_buffer((mp * kq + RG,), "int32")
        kval = T.alloc_buffer((mp * kq + RG,), sdt)
        sparse_csr.rows_csr(S, ptr, kidx, kval, None, mp, groups, V, 2, T.Cast(sdt, 0),
                            avx2 and sparse_csr.masked(sdt, V))
        for jo in T.parallel(np_ // W):
            for i in range(mp):
                sparse_csr.prefetch_next(D, jo, i, np_ // W, PF, kq)
                acc = T.alloc_buffer((W,), "int32")
                for g in range(groups):
                    for jv in T.vectorized(W):
                        acc[jv] = 0
                    for t in range((ptr[i * groups + g + 1] - ptr[i * groups + g]) // 2):
                        for jv in T.vectorized(W):
                            acc[jv] = acc[jv] + _mac2(
                                kval[ptr[i * groups + g] + 2 * t],
                                D[jo, kidx[ptr[i * groups + g] + 2 * t], jv],
                                kval[ptr[i * groups + g] + 2 * t + 1],
                                D[jo, kidx[ptr[i * groups + g] + 2 * t + 1], jv], narrow)
                    for jv in T.vectorized(W):
                        C[i, jo * W + jv] = C[i, jo * W + jv] + ss[i, g] * sd[g, jo * W + jv] \
                            * T.Cast("float32", acc[jv])

    return f


def sparse_b(mp: int, kq: int, np_: int, groups: int, rdt: str = "int16"
             ) -> tir.PrimFunc:
    """C[:, n] += Σ_g sr[:, g] ss[g, n] Σ_{(k, v) in CSR column n, group g} v Rt[k, :].

    Parallel over blocks of 16 columns; per block, tiles of W = 64 rows (one cache line of Rt's
    int8 rows) whose int32 sums stay in registers while a column's entries, two at a time, add
    v * Rt[k, tile]; the 16 columns' float sums of a tile are written to C row by row."""
    W = tile(mp) if mp % 16 == 0 else mp
    narrow = rdt == "int8"

    @T.prim_func
    def f(Rt: T.Buffer((kq, mp), rdt), sr: T.Buffer((mp, groups), "float32"),
          ptr: T.Buffer((np_ * groups + 1,), "int32"), idx_h: T.handle, val_h: T.handle,
          ss: T.Buffer((groups, np_), "float32"), C: T.Buffer((mp, np_), "float32")) -> None:
        T.func_attr({"tirx.noalias": True})
        nnz = T.int32()
        idx = T.match_buffer(idx_h, (nnz,), "int32")
        val = T.match_buffer(val_h, (nnz,), "int16")
        for no in T.parallel(np_ // 16):
            for io in range(mp // W):
                outf = T.alloc_buffer((16, W), "float32")
                acc = T.alloc_buffer((W,), "int32")
                for nj in range(16):
                    for iv in T.vectorized(W):
                        outf[nj, iv] = T.float32(0)
                    for g in range(groups):
                        for iv in T.vectorized(W):
                            acc[iv] = 0
                        for t in range((ptr[(no * 16 + nj) * groups + g + 1]
                                        - ptr[(no * 16 + nj) * groups + g]) // 2):
                            for iv in T.vectorized(W):
                                acc[iv] = acc[iv] + _mac2(
                                    val[ptr[(no * 16 + nj) * groups + g] + 2 * t],
                                    Rt[idx[ptr[(no * 16 + nj) * groups + g] + 2 * t], io * W + iv],
                                    val[ptr[(no * 16 + nj) * groups + g] + 2 * t + 1],
                                    Rt[idx[ptr[(no * 16 + nj) * groups + g] + 2 * t + 1],
                                       io * W + iv], narrow)
                        if (ptr[(no * 16 + nj) * groups + g + 1]
                                - ptr[(no * 16 + nj) * groups + g]) % 2 == 1:
                            for iv in T.vectorized(W):
                                acc[iv] = acc[iv] + T.Cast("int32", val[
                                    ptr[(no * 16 + nj) * groups + g + 1] - 1]) * T.Cast(
                                    "int32", Rt[idx[ptr[(no * 16 + nj) * groups + g + 1] - 1],
                                                io * W + iv])
                        for iv in T.vectorized(W):
                            outf[nj, iv] = outf[nj, iv] + sr[io * W + iv, g] \
                                * ss[g, no * 16 + nj] * T.Cast("float32", acc[iv])
                for i in range(W):
                    for nj in T.vectorized(16):
                        C[io * W + i, no * 16 + nj] = C[io * W + i, no * 16 + nj] + outf[nj, i]

    return f
