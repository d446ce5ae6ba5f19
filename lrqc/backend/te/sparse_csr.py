"""Pieces of TIR the CPU sparse products of B's terms share (te/sparse.py's sparse_a and
te/sparse_quads.py's sparse_a_quads), as TVMScript macros: the per-call CSR of A's copy, each
row and group's list of nonzeros padded to a multiple of `pad` with zero codes, and the
prefetch of the next panel of the static operand.

On targets with AVX2 (masked: int8 codes) the CSR reads A's copy 64 codes at a time: a
vector compare gives the 64-bit mask of the nonzero codes (two vpmovmskb), whose population
count is the count and whose set bits, found by tzcnt and cleared one by one, are the
nonzeros' positions, so the loops branch once per nonzero and once per 64 codes, not on every
code. The same lists as code by code."""

from __future__ import annotations

from ..compat import T

MASK = 64  # codes a mask covers (masked lists)
PMOVMSKB = "llvm.x86.avx2.pmovmskb"


def masked(dtype: str, v: int) -> bool:
    """Whether codes of this dtype in groups of v may be listed by masks (int8, whole masks;
    the caller checks that the target has AVX2's vpmovmskb)."""
    return dtype == "int8" and v % MASK == 0


def _mask(S, i, k0):
    """The 64-bit mask of the nonzero int8 codes S[i, k0:k0 + 64] (bit t: code k0 + t)."""
    half = []
    for h in range(2):
        v = S[i, T.Ramp(k0 + 32 * h, 1, 32)]
        nz = T.Select(v != T.Broadcast(T.int8(0), 32), T.Broadcast(T.int8(-1), 32),
                      T.Broadcast(T.int8(0), 32))
        half.append(T.Cast("uint64", T.Cast("uint32", T.call_llvm_pure_intrin(
            "int32", PMOVMSKB, nz))))
    return half[0] | (half[1] << T.uint64(32))


def _count(m):
    return T.Cast("int32", T.call_llvm_pure_intrin("uint64", "llvm.ctpop.i64", m))


def _lowest(m):
    """The position of m's lowest set bit (m != 0)."""
    return T.Cast("int32", T.call_llvm_pure_intrin("uint64", "llvm.cttz.i64", m, T.bool(True)))


@T.macro
def _fill_masked(S, i, g, V: int, kidx, kval, c, s, vsum):
    """Row i, group g's nonzeros appended at kidx[c[0]], kval[c[0]] (s[0]: their sum)."""
    for kv in range(V // MASK):
        m = T.alloc_buffer((1,), "uint64")
        m[0] = _mask(S, i, g * V + kv * MASK)
        while m[0] != T.uint64(0):
            k = g * V + kv * MASK + _lowest(m[0])
            kidx[c[0]] = k
            kval[c[0]] = S[i, k]
            if vsum is not None:
                s[0] = s[0] + T.Cast("int32", S[i, k])
            c[0] = c[0] + 1
            m[0] = m[0] & (m[0] - T.uint64(1))


@T.macro
def _fill_codes(S, i, g, V: int, kidx, kval, c, s, vsum, zero):
    """Row i, group g's nonzeros appended at kidx[c[0]], kval[c[0]], code by code."""
    for kk in range(V):
        if S[i, g * V + kk] != zero:
            kidx[c[0]] = g * V + kk
            kval[c[0]] = S[i, g * V + kk]
            if vsum is not None:
                s[0] = s[0] + T.Cast("int32", S[i, g * V + kk])
            c[0] = c[0] + 1


@T.macro
def rows_csr(S, ptr, kidx, kval, vsum, mp: int, groups: int, V: int, pad: int, zero,
             by_mask: bool = False):
    """ptr[mp * groups + 1], kidx, kval: the nonzero codes of S (mp x groups V) by row and
    group, each list padded to a multiple of pad with code 0 at the group's first k; vsum:
    each list's 128 Σ v (sparse_quads's offset), or None where not needed (no sums taken).
    Two parallel passes over S and a prefix sum; by_mask (masked()): 64 codes at a time."""
    for i in T.parallel(mp):
        for g in range(groups):
            c = T.alloc_buffer((1,), "int32")
            c[0] = 0
            if by_mask:
                for kv in range(V // MASK):
                    c[0] = c[0] + _count(_mask(S, i, g * V + kv * MASK))
            else:
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
            if by_mask:
                _fill_masked(S, i, g, V, kidx, kval, c, s, vsum)
            else:
                _fill_codes(S, i, g, V, kidx, kval, c, s, vsum, zero)
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
