"""lowrank_w on CPUs with AVX-512's 32 vector registers: W_A = F_Aᵀ B̂ (A's lowrank term with
other=packed) as outer products read from B's int8 VNNI blocks, TIR written as scheduled.

A block of Bp holds 16 columns x 4 consecutive k, each column's four codes in one 32-bit word.
The block is read once as 16 words; for each of its 4 k a shift left and an arithmetic shift
right leave the code of that k, sign-extended, in each column's lane, converted to float32.
Two blocks side by side (32 columns, where B's columns pair up into at least PAIR_TASKS
pairs: paired) share a group of at most 8 ranks (rank_groups): each rank's F_A value at k, one
broadcast, multiplies both blocks' codes, into up to 2 x 8 vectors of column sums. Otherwise a
block takes groups of at most 16 ranks, one broadcast per multiply-add. Either way a group
holds at most 16 registers of sums and converts each of its blocks' codes once; so pairs of
blocks halve the broadcasts, which the load ports issue, but convert each code once per group
of 8 ranks instead of 16 (ranks 9-16: twice). Rank 16 at 256 x 4096 x 4096 (2-core Zen 5,
alternating kernels in one process, the same bits): inside whole calls 1.37 ms against
1.46-1.49, the calls 8.30-8.35 against 8.40-8.62; called back to back (B's codes in the
cache) 1.09 against 1.10-1.13; rank 2, 0.39 against 0.52 inside calls, 0.29 against 0.51 back
to back. The sums run over k in order, then take B's column scales. Against the panel form
(te.compensated.lowrank_w: each 16-column panel dequantized to memory, then a float32 GEMM),
16 ranks, same process, a 2-core Zen 4: 2.5 ms (one block a group) against 3.8-4.0 at N = K =
4096 (the float32 FMA peak's bound: 2.4 ms).

It takes plans whose B codes are a byte each in one K segment with one scale per column and
no zero points (compensated.byte_columns), rank 2 and up; rank 1 keeps lanes_w (one rank cannot
amortize the conversions)."""

from __future__ import annotations

from ...plan.model import KernelPlan
from ..compat import T, tir
from .compensated import byte_columns

LANES = 16  # columns of a VNNI block: one vector of float32 sums
SUMS = 16  # registers of sums a group holds at most: with the codes and F_A's values, they fit
PAIR_TASKS = 16  # pairs of blocks, at least, to pair them (as lanes_w keeps 16 tasks: N >= 512)


def takes(p: KernelPlan, wide_floats: bool) -> bool:
    """Whether lowrank_w of plan p is outer_w (wide_floats: the rule's targets have AVX-512's
    32 vector registers, ScheduleRule.wide_floats)."""
    return wide_floats and not p.float_path and p.rank_a >= 2 and byte_columns(p)


def paired(np_: int) -> int:
    """The blocks a group of ranks takes at once: 2 where B's 16-column blocks pair up (np_,
    B's columns padded to a multiple of 16, is a multiple of 32) into at least PAIR_TASKS
    pairs to run in parallel, else 1 (fewer, larger tasks would leave cores idle: rank 16 at
    N = 32, K = 16384 took 0.107 ms as one pair against 0.091 as two blocks, on 2 cores)."""
    return 2 if np_ % (2 * LANES) == 0 and np_ // (2 * LANES) >= PAIR_TASKS else 1


def rank_groups(rank: int, blocks: int = 1) -> tuple[tuple[int, int], tuple[int, int]]:
    """((count, size), (count, size)): the groups of ranks that share each conversion of
    `blocks` blocks (SUMS // blocks ranks at most), as few as that allows and as even as they
    divide (one block: 17 ranks, one group of 9 and one of 8; 24, two of 12; 16, one of 16 and
    none of 15; two blocks: 16, two of 8; 24, three of 8)."""
    g = -(-rank // (SUMS // blocks))
    size, extra = divmod(rank, g)
    return (extra, size + 1), (g - extra, size)


def _vec(x: tir.PrimExpr) -> tir.PrimExpr:
    return T.Broadcast(x, LANES)


def _code(word: tir.PrimExpr, kk: tir.PrimExpr) -> tir.PrimExpr:
    """The code of the block's k-th of 4 (kk) in each column's lane, as float32: byte kk of the
    column's word moved to the top byte, then shifted back down with its sign."""
    top = T.shift_left(word, _vec(24 - 8 * kk))
    return T.Cast("float32x16", T.shift_right(top, _vec(T.int32(24))))


def _word(Bp, n, q) -> tir.PrimExpr:
    """Block n's 16 words of 4 codes at k = 4 q."""
    return T.reinterpret("int32x16", Bp[n, q, 0, T.Ramp(0, 1, 4 * LANES)])


@T.macro
def _group(Bp, Ft, sb, out, n0, nb: int, c0, size: int, quads: int):
    """Ranks c0 .. c0 + size - 1 of the nb blocks from block n0 (16 nb columns): their sums in
    registers over every k, each of F_A's values broadcast once for all nb blocks, then scaled
    by the columns' scales into out."""
    acc = T.alloc_buffer((nb * size * LANES,), "float32")
    for x in T.vectorized(nb * size * LANES):
        acc[x] = T.float32(0)
    for q in range(quads):
        for kk in T.unroll(4):
            for c in T.unroll(size):
                for b in T.unroll(nb):
                    acc[T.Ramp((b * size + c) * LANES, 1, LANES)] = (
                        acc[T.Ramp((b * size + c) * LANES, 1, LANES)]
                        + _code(_word(Bp, n0 + b, q), kk) * _vec(Ft[q * 4 + kk, c0 + c]))
    for b in range(nb):
        for c in range(size):
            for j in T.vectorized(LANES):
                out[c0 + c, (n0 + b) * LANES + j] = (acc[(b * size + c) * LANES + j]
                                                     * sb[0, (n0 + b) * LANES + j])


def outer_w(p: KernelPlan) -> tir.PrimFunc:
    """lowrank_w as outer products: [Fa (r x Kq), Bp, sb, lowrank_w (r x Np)], the parameters
    of signature.params (te.compensated.lowrank_w's). F_A is transposed first (Kq x r, k in
    parallel), so a k's ranks lie side by side; then each pair of 16-column blocks (each block
    where they do not pair up; in parallel) runs each group of ranks (rank_groups) over every
    k."""
    r, kq, np_ = p.rank_a, p.kq, p.np_
    nb = paired(np_)
    (n1, s1), (n2, s2) = rank_groups(r, nb)
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
        for n in T.parallel(blocks // nb):
            for g in range(n1):
                _group(Bp, Ft, sb, lowrank_w, n * nb, nb, g * s1, s1, quads)
            for g in range(n2):
                _group(Bp, Ft, sb, lowrank_w, n * nb, nb, n1 * s1 + g * s2, s2, quads)

    return f.with_attr("global_symbol", "main")
