"""Pieces of TIR the CPU sparse products of B's terms share (te/sparse.py's sparse_a and
te/sparse_vnni.py's sparse_a_quads), as TVMScript macros: the per-call CSR of A's copy, each
row and group's list of nonzeros padded to a multiple of `pad` with zero codes, and the
prefetch of the next panel of the static operand."""

from __future__ import annotations

from ..compat import T


@T.macro
def rows_csr(S, ptr, kidx, kval, vsum, mp: int, groups: int, V: int, pad: int, zero):
    """ptr[mp * groups + 1], kidx, kval: the nonzero codes of S (mp x groups V) by row and
    group, each list padded to a multiple of pad with code 0 at the group's first k; vsum:
    each list's 128 Σ v (sparse_vnni's offset), or None where not needed (no sums taken).
    Two parallel passes over S and a prefix sum."""
    for i in T.parallel(mp):
        for g in range(groups):
            c = T.alloc_buffer((1,), "int32")
            c[0] = 0
            for kk in range(V):
                if S[i, g * V + kk] != zero:
                    c[0] = c[0] + 1
            ptr[i * groups + g + 1] = (c[0] + pad - 1) // pad * pad
    ptr[0] = 0
    for r in range(mp * groups):
        ptr[r + 1] = ptr[r + 1] + ptr[r]
    for i in T.parallel(mp):
        for g in range(groups):
            c = T.alloc_buffer((1,), "int32")
            s = T.alloc_buffer((1,), "int32")
            c[0] = ptr[i * groups + g]
            s[0] = 0
            for kk in range(V):
                if S[i, g * V + kk] != zero:
                    kidx[c[0]] = g * V + kk
                    kval[c[0]] = S[i, g * V + kk]
                    if vsum is not None:
                        s[0] = s[0] + T.Cast("int32", S[i, g * V + kk])
                    c[0] = c[0] + 1
            for t in range(ptr[i * groups + g + 1] - c[0]):
                kidx[c[0] + t] = g * V
                kval[c[0] + t] = zero
            if vsum is not None:
                vsum[i * groups + g] = s[0] * 128


@T.macro
def prefetch_next(D, jo, i, panels: int, pf: int, kq: int):
    """Row i's share (pf lines) of panel jo + 1 of D[panels, kq, W], into L2 (a panel of 4096
    lines is 256 KiB: into L1 it only evicted the lines in use): the rows' reads of a panel
    are random, and without it each line came from memory at its full latency. The quads at
    256 x 4096 x 4096 on a Zen 4: at 1 % density 3.7 ms without, 2.4 into L1, 1.8 into L2; at
    5 %, 5.0, 3.3 and 2.9."""
    for q in range(pf):
        if jo + 1 < panels and i * pf + q < kq:
            T.evaluate(T.call_llvm_intrin("void", "llvm.prefetch.p0",
                                          T.address_of(D[jo + 1, i * pf + q, 0]), 0, 2, 1))
