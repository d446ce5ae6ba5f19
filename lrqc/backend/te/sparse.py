"""The sparse products of sparse residual terms (segments.py), written directly as scheduled
TIR: C += deq(S · D) after the GEMM, with int32 accumulation per scale group (exact) and one
float multiply-add per output element and group.

side "a" (B's term): S = A's thresholded copy, per call, as centered codes [Mp, Kq];
  each row skips its zero codes (the codes are the format: no compaction pass), every nonzero
  code adds code * D[k, :] to the row's int32 accumulator, vectorized over N. D = B's residual
  codes [Kq, Np] int8, scales [G, Np].
side "b" (A's term): S = B's thresholded copy, static, as CSR of its columns (one row pointer
  per column and group: ptr[n * G + g]), D = A's residual codes transposed [Kq, Mp] from
  the quantization pass; vectorized over M, 16 columns of C at a time.

Work is nnz(S) times the dense operand's width, plus one pass over S's codes (side a)."""

from __future__ import annotations

from ...frontend.model import Quant
from ...plan.model import KernelPlan
from ...plan.support import centered_limit
from ..compat import T, tir


def code_dtype(q: Quant) -> str:
    """Storage of centered codes of quantizer q: int8 when they fit, else int16."""
    return "int8" if centered_limit(q) <= 127 else "int16"


def functions(p: KernelPlan, cuda: bool = False) -> list:
    """One PrimFunc per sparse product of plan p, in order (cuda: the GPU versions)."""
    out = []
    for sp in p.sparse:
        if cuda:
            make = sparse_a_cuda if sp.side == "a" else sparse_b_cuda
        else:
            make = sparse_a if sp.side == "a" else sparse_b
        out.append(make(p.mp, p.kq, p.np_, p.gq, code_dtype(sp.q)))
    return out


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
        T.func_attr({"tir.noalias": True})
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
        T.func_attr({"tir.noalias": True})
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


def lanes(width: int) -> int:
    """The vector width of a loop over `width` (a multiple of 4) elements."""
    return next(v for v in (16, 8, 4) if width % v == 0)


def sparse_a(mp: int, kq: int, np_: int, groups: int, sdt: str = "int16"
             ) -> tir.PrimFunc:
    """C[i, :] += Σ_g ss[i, g] sd[g, :] Σ_{k in g, S[i,k] != 0} S[i, k] D[k, :]."""
    V, L = kq // groups, lanes(np_)

    @T.prim_func
    def f(S: T.Buffer((mp, kq), sdt), ss: T.Buffer((mp, groups), "float32"),
          D: T.Buffer((kq, np_), "int8"), sd: T.Buffer((groups, np_), "float32"),
          C: T.Buffer((mp, np_), "float32")) -> None:
        T.func_attr({"tir.noalias": True})
        for i in T.parallel(mp):
            acc = T.alloc_buffer((np_,), "int32")
            for g in range(groups):
                for jo in range(np_ // L):
                    for jv in T.vectorized(L):
                        acc[jo * L + jv] = 0
                for kk in range(V):
                    if S[i, g * V + kk] != T.Cast(sdt, 0):
                        for jo in range(np_ // L):
                            for jv in T.vectorized(L):
                                acc[jo * L + jv] = acc[jo * L + jv] + T.Cast(
                                    "int32", S[i, g * V + kk]) * T.Cast(
                                    "int32", D[g * V + kk, jo * L + jv])
                for jo in range(np_ // L):
                    for jv in T.vectorized(L):
                        C[i, jo * L + jv] = C[i, jo * L + jv] + ss[i, g] * sd[g, jo * L + jv] \
                            * T.Cast("float32", acc[jo * L + jv])

    return f


def sparse_b(mp: int, kq: int, np_: int, groups: int, rdt: str = "int16"
             ) -> tir.PrimFunc:
    """C[:, n] += Σ_g sr[:, g] ss[g, n] Σ_{(k, v) in CSR column n, group g} v Rt[k, :]."""
    L = lanes(mp)

    @T.prim_func
    def f(Rt: T.Buffer((kq, mp), rdt), sr: T.Buffer((mp, groups), "float32"),
          ptr: T.Buffer((np_ * groups + 1,), "int32"), idx_h: T.handle, val_h: T.handle,
          ss: T.Buffer((groups, np_), "float32"), C: T.Buffer((mp, np_), "float32")) -> None:
        T.func_attr({"tir.noalias": True})
        nnz = T.int32()
        idx = T.match_buffer(idx_h, (nnz,), "int32")
        val = T.match_buffer(val_h, (nnz,), "int16")
        for no in T.parallel(np_ // 16):
            accf = T.alloc_buffer((16, mp), "float32")
            acc = T.alloc_buffer((mp,), "int32")
            for nj in range(16):
                for io in range(mp // L):
                    for iv in T.vectorized(L):
                        accf[nj, io * L + iv] = T.float32(0)
                for g in range(groups):
                    for io in range(mp // L):
                        for iv in T.vectorized(L):
                            acc[io * L + iv] = 0
                    for t in range(ptr[(no * 16 + nj) * groups + g],
                                   ptr[(no * 16 + nj) * groups + g + 1]):
                        for io in range(mp // L):
                            for iv in T.vectorized(L):
                                acc[io * L + iv] = acc[io * L + iv] + T.Cast(
                                    "int32", val[t]) * T.Cast("int32", Rt[idx[t], io * L + iv])
                    for io in range(mp // L):
                        for iv in T.vectorized(L):
                            accf[nj, io * L + iv] = accf[nj, io * L + iv] \
                                + sr[io * L + iv, g] * ss[g, no * 16 + nj] \
                                * T.Cast("float32", acc[io * L + iv])
            for i in range(mp):
                for nj in T.vectorized(16):
                    C[i, no * 16 + nj] = C[i, no * 16 + nj] + accf[nj, i]

    return f
