"""lowrank_w on CPUs with AVX-512's 32 vector registers: W_A = F_Aᵀ B̂ (A's lowrank term with
other=packed) as outer products read from B's int8 VNNI blocks, TIR written as scheduled.

A block of Bp holds 16 columns x 4 consecutive k, each column's four codes in one 32-bit word.
The block is read once as 16 words; for each of its 4 k a shift left and an arithmetic shift
right leave the code of that k, sign-extended, in each column's lane, converted to float32.
Every rank of a group of at most 16 (rank_groups) then takes that vector times F_A's value at
(k, rank), a folded broadcast, into its own 16 column sums: 16 registers of sums, one load and
7 shifts and 4 conversions per 64 multiply-adds where 16 ranks share the block. The sums run
over k in order, then take B's column scales. Against the panel form (te.compensated.lowrank_w: each
16-column panel dequantized to memory, then a float32 GEMM), 16 ranks, same process, a 2-core
Zen 4: 2.5 ms against 3.8-4.0 at N = K = 4096 (the float32 FMA peak's bound: 2.4 ms).

It takes plans whose B codes are a byte each in one K segment with one scale per column and
no zero points (compensated.byte_columns), rank 2 and up; rank 1 keeps lanes_w (one rank cannot
amortize the conversions)."""

from __future__ import annotations

from ...plan.model import KernelPlan
from ..compat import T, tir
from .compensated import byte_columns

LANES = 16  # columns of a VNNI block: one vector of float32 sums
MAX_RANKS = 16  # ranks of a group: their 16 vectors of sums, next to the codes, fit in 32


def takes(p: KernelPlan, wide_floats: bool) -> bool:
    """Whether lowrank_w of plan p is outer_w (wide_floats: the rule's targets have AVX-512's
    32 vector registers, ScheduleRule.wide_floats)."""
    return wide_floats and not p.float_path and p.rank_a >= 2 and byte_columns(p)


def rank_groups(rank: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((count, size), (count, size)): the groups of ranks that share each conversion of a
    block, as few as MAX_RANKS allows and as even as they divide (17: one of 9 and one of 8;
    24: two of 12; 16: one of 16 and none of 15)."""
    g = -(-rank // MAX_RANKS)
    size, extra = divmod(rank, g)
    return (extra, size + 1), (g - extra, size)


def _vec(x: tir.PrimExpr) -> tir.PrimExpr:
    return T.Broadcast(x, LANES)


def _code(word: tir.PrimExpr, kk: tir.PrimExpr) -> tir.PrimExpr:
    """The code of the block's k-th of 4 (kk) in each column's lane, as float32: byte kk of the
    column's word moved to the top byte, then shifted back down with its sign."""
    top = T.shift_left(word, _vec(24 - 8 * kk))
    return T.Cast("float32x16", T.shift_right(top, _vec(T.int32(24))))


@T.macro
def _group(Bp, Ft, sb, out, n, c0, size: int, quads: int):
    """Ranks c0 .. c0 + size - 1 of the 16 columns of block n: their sums in registers over
    every k, then scaled by the columns' scales into out."""
    acc = T.alloc_buffer((size * LANES,), "float32")
    for x in T.vectorized(size * LANES):
        acc[x] = T.float32(0)
    for q in range(quads):
        word = T.reinterpret("int32x16", Bp[n, q, 0, T.Ramp(0, 1, 4 * LANES)])
        for kk in T.unroll(4):
            for c in T.unroll(size):
                acc[T.Ramp(c * LANES, 1, LANES)] = (
                    acc[T.Ramp(c * LANES, 1, LANES)]
                    + _code(word, kk) * _vec(Ft[q * 4 + kk, c0 + c]))
    for c in range(size):
        for j in T.vectorized(LANES):
            out[c0 + c, n * LANES + j] = acc[c * LANES + j] * sb[0, n * LANES + j]


def outer_w(p: KernelPlan) -> tir.PrimFunc:
    """lowrank_w as outer products: [Fa (r x Kq), Bp, sb, lowrank_w (r x Np)], the parameters
    of signature.params (te.compensated.lowrank_w's). F_A is transposed first (Kq x r, k in
    parallel), so a k's ranks lie side by side; then each 16-column block (in parallel) runs
    each group of ranks (rank_groups) over every k."""
    r, kq, np_ = p.rank_a, p.kq, p.np_
    (n1, s1), (n2, s2) = rank_groups(r)
    blocks, quads = np_ // LANES, kq // 4

    @T.prim_func
    def f(Fa: T.Buffer((r, kq), "float32"), Bp: T.Buffer((blocks, p.kp // 4, LANES, 4), "int8"),
          sb: T.Buffer((p.groups, np_), "float32"),
          lowrank_w: T.Buffer((r, np_), "float32")) -> None:
        T.func_attr({"tirx.noalias": True})
        Ft = T.alloc_buffer((kq, r), "float32")
        for k in T.parallel(kq):
            for c in range(r):
                Ft[k, c] = Fa[c, k]
        for n in T.parallel(blocks):
            for g in range(n1):
                _group(Bp, Ft, sb, lowrank_w, n, g * s1, s1, quads)
            for g in range(n2):
                _group(Bp, Ft, sb, lowrank_w, n, n1 * s1 + g * s2, s2, quads)

    return f.with_attr("global_symbol", "main")
