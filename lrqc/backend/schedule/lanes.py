"""Helpers for blocks of 16-lane partial results (te's row dot products and lane maxima):
how many k chunks they reduce, their lanes vectorized inside the reduction, and the loops of a
row dot product's partials under its block of rows (rank_blocks)."""

from __future__ import annotations

from ..compat import SBlockRV, Schedule
from .protocol import Knob
from .tiles import hand


def kq_chunks(sch: Schedule, part: SBlockRV) -> int:
    """The extent of the reduction (the k chunks ko) of a te.sketch.row_dots lanes block: a
    loop of extent 1 is elided under compute_at, so the loop nest has one loop less."""
    return next(int(v.dom.extent) for v in sch.get(part).iter_vars if int(v.iter_type) == 2)


def lanes_inside(sch: Schedule, part: SBlockRV, decompose: bool = True) -> None:
    """A lane partials block whose last two loops are (lanes, reduction): the reduction
    outside, the lanes vectorized, their initialization decomposed and vectorized too
    (decompose=False: later, by decompose_lanes; a loop above it may then still be made
    parallel)."""
    lane, red = sch.get_loops(part)[-2:]
    sch.reorder(red, lane)
    sch.vectorize(lane)
    if decompose:
        decompose_lanes(sch, part)


def decompose_lanes(sch: Schedule, part: SBlockRV) -> None:
    """lanes_inside's initialization of the lanes, decomposed and vectorized."""
    init = sch.decompose_reduction(part, sch.get_loops(part)[-2])
    sch.vectorize(sch.get_loops(init)[-1])


def dot_rows(rows: int, wide: bool) -> int:
    """Rows of a row dot product's block (passes.row_dots_at) for a matrix of `rows` rows:
    DOT_BLOCK's (wide: the rule's targets have AVX-512's 32 registers) where they divide them,
    else 1."""
    want = DOT_BLOCK[wide][0]
    return want if rows % want == 0 else 1


def rank_blocks(sch: Schedule, name: str, part: SBlockRV, rows: int, knob: Knob | None,
                wide: bool = True) -> None:
    """passes.row_dots_at's loops of a lane partials block under its block of `rows` rows,
    DOT_BLOCK's ranks a block by hand (wide: AVX-512's registers)."""
    if kq_chunks(sch, part) == 1:  # K of one 16-lane chunk: nothing to reorder, plain loops
        return
    loops = sch.get_loops(part)[1:]  # under i: (ii, c, kk, ko), ii and c elided when 1
    kk, ko = loops[-2:]
    ii = loops[0] if rows > 1 else None
    c = loops[-3] if len(loops) - (rows > 1) >= 3 else None
    n = kq_chunks(sch, part)
    outer: tuple = ()
    if n > K_CHUNK and n % K_CHUNK == 0:
        kc, ko = sch.split(ko, [None, K_CHUNK])
        outer = (kc,)
    if c is not None:
        ranks = int(sch.get(c).extent)
        cands = tuple(v for v in (2, 4, 8, 16) if ranks % v == 0) or (1,)
        pick = max((v for v in cands if v <= DOT_BLOCK[wide][1]), default=cands[0])
        cb = (knob or hand)(name + "_ranks", cands, pick)
        co, ci = sch.split(c, [None, cb])
        sch.reorder(*outer, co, ko, *((ii,) if ii is not None else ()), ci, kk)
        sch.unroll(ci)
    else:
        sch.reorder(*outer, ko, *((ii,) if ii is not None else ()), kk)
    if ii is not None:
        sch.unroll(ii)
    sch.vectorize(kk)
    init = sch.decompose_reduction(part, outer[0] if outer else ko)
    sch.vectorize(sch.get_loops(init)[-1])


# k chunks (of 16 lanes) of a row_dots piece: 2 KB of each row. At 4 rows x 4 ranks on the AMX
# Xeon (2 cores): Bᵀ's 4096 x 4096 times 16 ranks 2.2-2.4 ms against 4.3-5.2 unchunked, where the
# rows and ranks of a block (64 KB each) left L1; R Z at 2048 x 2048, 24 ranks, 0.82 against 0.95
K_CHUNK = 32

# (rows, ranks) of a row dot product's block by hand, by whether the schedule rule's targets
# have AVX-512's 32 vector registers (ScheduleRule.wide_floats: the VNNI and AMX rules): a
# 16-lane sum takes one register there (4 x 4: 16 sums in 16 registers) and two of AVX2's 16
# (2 x 2: 4 sums in 8 registers; 4 x 4 spilled the sums to the stack). A Zen 3 (AVX2, 2 cores),
# 2048 x 2048 and 24 test columns, medians of 11 interleaved calls, ms, 4 x 4 -> 2 x 2: R Z
# 4.4-6.3 -> 2.0-2.6, Bᵀ (2048 x 2048) times 16 ranks 2.9-4.3 -> 1.5-2.0, A' L_B 2.7-5.5 ->
# 1.7-2.2 (4 x 1, 1 x 4, 2 x 1, 2 x 4 and 4 x 2 were no faster; 8-lane sums, 4 x 3 in 12
# registers, neither). Without AVX-512's registers, R Z, R Ω, Bᵀ F_A and A' L_B now take
# te.outer_dots' narrow form where its shapes allow; 2 x 2 is for the others.
DOT_BLOCK = {True: (4, 4), False: (2, 2)}
