"""Helpers for blocks of 16-lane partial results (te's row dot products and lane maxima):
how many k chunks they reduce, and their lanes vectorized inside the reduction."""

from __future__ import annotations

from ..compat import SBlockRV, Schedule


def kq_chunks(sch: Schedule, part: SBlockRV) -> int:
    """The extent of the reduction (the k chunks ko) of a te.sketch.row_dots lanes block: a
    loop of extent 1 is elided under compute_at, so the loop nest has one loop less."""
    return next(int(v.dom.extent) for v in sch.get(part).iter_vars if int(v.iter_type) == 2)


def lanes_inside(sch: Schedule, part: SBlockRV) -> None:
    """A lane partials block whose last two loops are (lanes, reduction): the reduction
    outside, the lanes vectorized, their initialization decomposed and vectorized too."""
    lane, red = sch.get_loops(part)[-2:]
    sch.reorder(red, lane)
    sch.vectorize(lane)
    init = sch.decompose_reduction(part, red)
    sch.vectorize(sch.get_loops(init)[-1])
