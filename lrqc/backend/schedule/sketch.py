"""CPU schedules of the sketch products' passes over A's residual R (te.sketch): in the
compensated quantize_a, the rank-1 sketch's codes' rows and R's chunks of rows under one loop
nest, each row's fastcodes scores, codes, R, max |R|, R s and share of Rᵀ (R s) while the row
is in cache, and sketch_ab's R u and Rᵀ R u the same way; the randomized SVD's R Ω right after
each block of R's rows (sketch_with_resid); each row's max |R| (top_after)."""

from __future__ import annotations

from ...plan import names
from ..compat import LoopRV, Schedule
from ..te import fastcodes
from .lanes import decompose_lanes, kq_chunks, lanes_inside, rank_blocks
from .outer import across_at, sums_at
from .protocol import Knob
from .tiles import block_names, has_block


def codes_with_resid(sch: Schedule) -> bool:
    """The codes' rows and R's (in chunks: te.sketch) under one loop nest, chunks in parallel,
    so each row of A is read once for both. The merged loop stands where R's did, so the
    codes move past the blocks between them: False (nothing changed) where one of those reads
    the codes (the row sums of weights with zero points), where A's own codes are a block
    apart (several segments: R reads those) or where the codes' loop runs over other rows."""
    order = block_names(sch)
    between = order[order.index(names.QUANT_CODES) + 1: order.index(names.RESID)]
    if has_block(sch, names.BASE_CODES) or any(
            r.source.name == names.QUANT_CODES
            for n in between for r in sch.get(sch.get_sblock(n)).reads):
        return False
    codes, resid = sch.get_sblock(names.QUANT_CODES), sch.get_sblock(names.RESID)
    c, r = sch.get_loops(resid)[:2]
    chunks, per = (int(sch.get(lp).extent) for lp in (c, r))
    i = sch.get_loops(codes)[0]
    if int(sch.get(i).extent) != chunks * per:
        return False
    ci, _ = sch.split(i, [chunks, per])
    mc = sch.merge(ci, c)
    sch.merge(*(sch.get_loops(b)[1] for b in (codes, resid)))
    sch.parallel(mc)
    return True


def scores_before_codes(sch: Schedule) -> None:
    """After codes_with_resid: fastcodes' row scores and scale checks (blocks of its own) under
    the same row loop, just before the row's codes."""
    row = sch.get_loops(sch.get_sblock(names.QUANT_CODES))[1]
    for n in (fastcodes.AMB, fastcodes.AMB + "_rf", fastcodes.OKS, fastcodes.OKS + "_rf"):
        if has_block(sch, n):
            blk = sch.get_sblock(n)
            sch.compute_at(blk, row)
            if n == fastcodes.AMB + "_rf":  # (lanes, k chunks): the lanes inside
                lanes_inside(sch, blk)


def sketch_ab(sch: Schedule) -> None:
    """te.sketch.sketch_ab: the chunks of rows in parallel, each row's a_i = R_i u then its
    share a_i R_i of Rᵀ a while the row is in cache."""
    c, row = sch.get_loops(sch.get_sblock(names.SKETCH_A))[:2]
    sch.parallel(c)
    dots_under(sch, names.SKETCH_A, row, after=False)
    sums_under(sch, names.SKETCH_B, row)


def dots_under(sch: Schedule, name: str, row: LoopRV, after: bool) -> None:
    """A te.sketch.row_dots of one column under the loop over its rows' `row` (after the
    block of that loop: its lane partials and their sum follow it; else the sum's own loop,
    its lane partials computed first), 16 lanes vectorized with the k chunks outside."""
    part = sch.get_sblock(name + names.LANES)
    if after:
        sch.reverse_compute_at(part, row)
        sch.reverse_compute_at(sch.get_sblock(name), row)
    else:
        sch.compute_at(part, row)
    if kq_chunks(sch, part) > 1:
        lanes_inside(sch, part)


def sums_under(sch: Schedule, name: str, row: LoopRV) -> None:
    """A te.sketch.chunk_sums block after the per-row work under `row`: its row's share,
    vectorized by 16 along k."""
    blk = sch.get_sblock(name)
    sch.reverse_compute_at(blk, row)
    k = sch.get_loops(blk)[-1]
    if int(sch.get(k).extent) % 16 == 0:
        sch.vectorize(sch.split(k, [None, 16])[1])


def sketch_with_resid(sch: Schedule, knob: Knob | None, rows: int, wide: bool = True
                      ) -> bool:
    """The randomized SVD's R Ω (te.sketch.row_dots of R, block names.SKETCH) right after
    each block of `rows` rows of R (rows divide R's), which stay in cache: R's loop over its
    blocks of rows and R Ω's (as row_dots_at makes it) merged into one parallel loop, each
    row's max |R| under R's row loop first. False (nothing changed) where another block
    stands between R and R Ω (the merged loop stands where R Ω's did). wide: the rule's
    targets have AVX-512's registers (lanes.DOT_BLOCK)."""
    order = block_names(sch)
    outer = has_block(sch, names.SKETCH + names.ACROSS)  # te.outer_dots' narrow form
    part_name = names.SKETCH + (names.PARTS if outer else names.LANES)
    between = order[order.index(names.RESID) + 1: order.index(part_name)]
    if any(not n.startswith(names.RESID_TOP) and n != names.SKETCH + names.ACROSS
           for n in between):
        return False
    if outer:
        across_at(sch, names.SKETCH)
    io, ii = sch.split(sch.get_loops(sch.get_sblock(names.RESID))[0], [None, rows])
    top_after(sch, ii, decompose=False)
    i, _ = sch.split(sch.get_loops(sch.get_sblock(names.SKETCH))[0], [None, rows])
    both = sch.merge(io, i)
    sch.parallel(both)  # (before any reduction is decomposed under it)
    top = sch.get_sblock(names.RESID_TOP + names.LANES)
    if kq_chunks(sch, top) > 1:
        decompose_lanes(sch, top)
    if outer:
        sums_at(sch, names.SKETCH, both, False)
        return True
    part = sch.get_sblock(part_name)
    sch.compute_at(part, both)
    rank_blocks(sch, names.SKETCH, part, rows, knob, wide)
    return True


def top_after(sch: Schedule, row: LoopRV, decompose: bool = True) -> None:
    """Each row's max |R| (te.compensated.lane_top) under R's loop `row`, after the row
    (decompose: lanes_inside's)."""
    part = sch.get_sblock(names.RESID_TOP + names.LANES)
    sch.reverse_compute_at(part, row)
    if kq_chunks(sch, part) > 1:  # (a chunk of one: its loop elided, plain loops)
        lanes_inside(sch, part, decompose)
    sch.reverse_compute_at(sch.get_sblock(names.RESID_TOP), row)
