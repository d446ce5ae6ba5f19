"""CPU schedules of te.outer_dots' outer-product forms: the transposed operand once per
call, then blocks of OUTER_ROWS rows in parallel, each block's sums in registers while each
step of k loads the transposed operand's vectors once and takes each row's value as a
broadcast. Used on their own (exact_w, resid_z, lowrank_u: outer_dots_at) and for R Ω under
the quantization pass's loop over blocks of R's rows (sketch.sketch_with_resid: sums_at); Rᵀ Q,
whose sums run down R's rows, in blocks of R's columns (outer_columns_at)."""

from __future__ import annotations

from ...plan import names
from ..compat import ExprRV, LoopRV, SBlockRV, Schedule
from ..te.outer_dots import OUTER_LANES, OUTER_ROWS, narrow_group
from .tiles import has_block, pick_split


def outer_dots_at(sch: Schedule, name: str, wide: bool) -> None:
    """te.outer_dots.outer_dots: the transposed operand first (across_at), then blocks of
    OUTER_ROWS[wide] rows in parallel, each block's sums as sums_at places them (its rows
    first widened to float32 where the product computes them: block name + FLOATS)."""
    across_at(sch, name)
    i = sch.get_loops(sch.get_sblock(name))[0]
    io, _ = sch.split(i, [None, OUTER_ROWS[wide]])
    sch.parallel(io)
    sums_at(sch, name, io, wide)
    if has_block(sch, name + names.FLOATS):  # the block's rows in float32, 16 lanes a step
        floats = sch.get_sblock(name + names.FLOATS)
        sch.compute_at(floats, io)
        sch.vectorize(sch.split(sch.get_loops(floats)[-1], [None, 16])[1])


def across_at(sch: Schedule, name: str) -> None:
    """The transposed operand (block name + ACROSS): its k in parallel, its columns in
    vectors."""
    k, c = sch.get_loops(sch.get_sblock(name + names.ACROSS))
    sch.parallel(k)
    sch.vectorize(c)


def sums_block(sch: Schedule, name: str, wide: bool) -> SBlockRV:
    """The block of an outer-product form's sums: name + HALVES (wide) or + PARTS (narrow)."""
    return sch.get_sblock(name + (names.HALVES if wide else names.PARTS))


def group_split(sch: Schedule, c: LoopRV) -> list[LoopRV]:
    """Loop c over w columns (a multiple of 8) split as the narrow forms take them: groups of
    narrow_group(w), their 8-lane vectors, the lanes."""
    w, lanes = int(sch.get(c).extent), OUTER_LANES[False]
    return list(sch.split(c, [None, narrow_group(w) // lanes, lanes]))


def sums_at(sch: Schedule, name: str, rows: ExprRV, wide: bool) -> None:
    """The sums of product name computed under the loop `rows` over its blocks of rows: k
    outside the block's rows, so each step loads the transposed operand's vectors once and
    takes each row's value as a broadcast. Wide: per vector of 16 columns, the halves
    unrolled inside each step; narrow: per group of columns (narrow_group), the parts one
    after another, and each step's vectors of 8 columns unrolled inside the rows."""
    sums = sums_block(sch, name, wide)
    sch.compute_at(sums, rows)
    ii, h, c, k = sch.get_loops(sums)[-4:]
    if wide:
        co, cv = sch.split(c, [None, OUTER_LANES[wide]])
        sch.reorder(co, k, ii, h, cv)
        sch.unroll(h)
    else:
        cg, co, cv = group_split(sch, c)
        sch.reorder(cg, h, k, ii, co, cv)
        sch.unroll(co)
    sch.unroll(ii)
    sch.vectorize(cv)
    init = sch.decompose_reduction(sums, k)
    sch.vectorize(sch.get_loops(init)[-1])


# Rᵀ Q's narrow form: R's rows a part, and R's columns a chunk (a task); a chunk's sums (256
# columns x 24: 24 KB) stay in L1 between parts. A part's rows are unrolled: LLVM otherwise
# unrolls them by 2 itself and spills sums (12 of AVX2's 16 registers, with 3 vectors of Q and
# a broadcast). On a 2-core Zen 3, 2048 x 2048, 24 columns, same process: 1.47-1.48 ms against
# 1.76-1.83 for the row pieces of passes.col_dots_at, 5.5 with a part's rows not unrolled
# (unrolled parts of 8 rows: 1.9, 16: 1.7, 64: 1.5); at 256 x 4096, 0.44 against 0.50.
COLUMN_PART, COLUMN_CHUNK = 32, 256


def outer_columns_at(sch: Schedule, name: str) -> None:
    """te.outer_dots.outer_columns (narrow): the basis transposed first (across_at), then R's
    columns in chunks of up to COLUMN_CHUNK, in parallel (at least two chunks where there
    are 8 columns); in a chunk, per group of the basis' columns (narrow_group), R's rows in
    parts of COLUMN_PART in order, and per part each block of OUTER_ROWS[False] columns
    keeps its sums in registers while the part's rows go by (unrolled), each row's values of
    the block taken as broadcasts against the vectors of the basis' row. The output,
    transposed back, under the chunk."""
    across_at(sch, name)
    sums = sch.get_sblock(name + names.COLUMNS)
    k, c, i = sch.get_loops(sums)
    cols, rows = (int(sch.get(lp).extent) for lp in (k, i))
    block = OUTER_ROWS[False]
    chunk = max([v for v in range(block, min(COLUMN_CHUNK, cols // 2) + 1, block)
                 if cols % v == 0] or [cols])
    kt, kb, k4 = sch.split(k, [None, chunk // block, block])
    io, ii = sch.split(i, [None, pick_split(rows, (COLUMN_PART, 16, 8, 4, 2, 1))])
    cg, co, cv = group_split(sch, c)
    sch.reorder(kt, cg, io, kb, ii, k4, co, cv)
    sch.parallel(kt)
    sch.unroll(ii)
    sch.unroll(k4)
    sch.unroll(co)
    sch.vectorize(cv)
    init = sch.decompose_reduction(sums, io)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.reverse_compute_at(sch.get_sblock(name), kt)
