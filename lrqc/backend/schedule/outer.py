"""CPU schedules of te.outer_dots' outer-product forms: the transposed operand once per
call, then blocks of OUTER_ROWS rows in parallel, each block's sums in registers while each
step of k loads the transposed operand's vectors once and takes each row's value as a
broadcast. Used on their own (exact_w, resid_z, lowrank_u: outer_dots_at) and for R Ω under
the quantization pass's loop over blocks of R's rows (sketch.sketch_with_resid: sums_at)."""

from __future__ import annotations

from ...plan import names
from ..compat import ExprRV, SBlockRV, Schedule
from ..te.outer_dots import OUTER_LANES, OUTER_ROWS, narrow_group
from .tiles import has_block


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


def sums_at(sch: Schedule, name: str, rows: ExprRV, wide: bool) -> None:
    """The sums of product name computed under the loop `rows` over its blocks of rows: k
    outside the block's rows, so each step loads the transposed operand's vectors once and
    takes each row's value as a broadcast. Wide: per vector of 16 columns, the halves
    unrolled inside each step; narrow: per group of columns (narrow_group), the parts one
    after another, and each step's vectors of 8 columns unrolled inside the rows."""
    sums = sums_block(sch, name, wide)
    sch.compute_at(sums, rows)
    ii, h, c, k = sch.get_loops(sums)[-4:]
    lanes = OUTER_LANES[wide]
    if wide:
        co, cv = sch.split(c, [None, lanes])
        sch.reorder(co, k, ii, h, cv)
        sch.unroll(h)
    else:
        w = int(sch.get(c).extent)
        cg, co, cv = sch.split(c, [None, narrow_group(w) // lanes, lanes])
        sch.reorder(cg, h, k, ii, co, cv)
        sch.unroll(co)
    sch.unroll(ii)
    sch.vectorize(cv)
    init = sch.decompose_reduction(sums, k)
    sch.vectorize(sch.get_loops(init)[-1])
