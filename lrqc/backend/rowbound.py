"""Calls that pay for their own rows, not their bucket's: a GEMM compiled for a bucket of Mp
rows takes the call's row count m_rows (a scalar parameter, signature.M_ROWS) and runs only
the row tiles that hold rows below it.

A schedule marks the loop over its row tiles with row_tiles(sch, loop, rows): iteration t of
that loop computes C's rows t·rows .. t·rows + rows - 1 and nothing else depends on its
extent. bound(func, takes_rows) then, on the scheduled PrimFunc, appends the parameter m_rows
and shortens every marked loop to min(extent, ceil(m_rows / rows)) iterations; a marked loop
inside a marked one (blocks of rows, then tiles in each block) to the tiles below m_rows in
its block. A marked loop's tiles are independent (each writes its own rows of C from A's rows
and the packed operand), so the rows below m_rows are computed exactly as before; C's rows
from the first skipped tile on are left as they were (the runtime hands out only rows below
m_rows). Loops outside the marked ones (an epilogue over a whole column panel after its k
chunks) still run over every row: they read the skipped tiles' sums and write rows no call
returns. The loop is shortened, not guarded: TVM sizes a buffer from the loops around its
accesses, so in the hand schedules (a tile's buffers inside the tile) every size stays fixed,
while in the k-chunks-outer variants tuning may pick, the panel's sums (written and read by
shortened loops only) become a workspace sized by m_rows per call, never smaller than what
the loops read.

A loop whose tiles write C with non-temporal stores that no tile fences (intrin.stream with
period 0: the last tile a call runs depends on m_rows) is marked with fence_after(sch, loop);
bound() places an `sfence` right after it, so each of its iterations' threads orders its
streamed stores before the call returns (in the x86 rules, one fence per column panel).

TVM 0.27 has no Python statement mutator: the statements from the function's root down to
each marked loop are rebuilt (loops, sequences, blocks and their realizations: what a
scheduled PrimFunc holds above its loop nests); a mark under any other statement is left
as it is (the function then computes every row, as before). A fence mark left under such a
statement is an error at build time, never a missing fence."""

from __future__ import annotations

from collections.abc import Callable

from ..plan.signature import M_ROWS  # the runtime binds the parameter by this name
from .compat import ExprRV, LoopRV, PrimExpr, SBlock, SBlockRealize, Schedule, save_json, tir

ROW_TILES = "lrqc_row_tiles"  # the loop annotation: rows per iteration (an int)
FENCE_AFTER = "lrqc_fence_after"  # the loop annotation: an sfence follows the loop
SFENCE = "llvm.x86.sse.sfence"


def row_tiles(sch: Schedule, loop: LoopRV, rows: int | ExprRV) -> None:
    """Mark `loop` as the loop over row tiles of `rows` rows each (an int, or a tuning
    sample): iteration t computes the rows from t·rows on of the rows its enclosing marked
    loop's iteration covers (all of C's, where none encloses it)."""
    sch.annotate(loop, ROW_TILES, rows)


def fence_after(sch: Schedule, loop: LoopRV) -> None:
    """Mark `loop` (whose body streams stores to C, unfenced) to be followed by an sfence."""
    sch.annotate(loop, FENCE_AFTER, 1)


def bound(func: tir.PrimFunc, takes_rows: bool) -> tir.PrimFunc:
    """func with the parameter m_rows appended and its marked loops bounded by it (takes_rows),
    or with the marks removed (a function the runtime calls without m_rows). A marked loop
    inside another (blocks of rows, then row tiles in each) counts its rows from the start of
    the outer loop's iteration: it runs the tiles below m_rows there."""
    m_rows = tir.Var(M_ROWS, "int32")

    def at(loop: tir.For, first: PrimExpr) -> tuple[tir.For, PrimExpr] | None:
        if ROW_TILES not in loop.annotations:
            return None
        rows = int(loop.annotations[ROW_TILES])
        rest = {k: v for k, v in loop.annotations.items() if k != ROW_TILES}
        extent = loop.extent
        if takes_rows:  # first: the row this loop's first iteration starts at (0 outermost)
            left = m_rows if isinstance(first, int) else m_rows - first
            extent = tir.min(extent, tir.floordiv(left + (rows - 1), rows))
        new = tir.For(loop.loop_var, loop.min, extent, loop.kind, loop.body,
                      loop.thread_binding, rest, loop.step)
        return new, loop.loop_var * rows if isinstance(first, int) else \
            first + loop.loop_var * rows

    body = _rebuild(func.body, at, 0)
    if FENCE_AFTER in save_json(body):  # a mark _rebuild does not reach: refuse, never unfenced
        raise RuntimeError(f"{FENCE_AFTER}: a marked loop under a statement rowbound does not "
                           "rebuild")
    if not takes_rows:
        return func if body.same_as(func.body) else \
            tir.PrimFunc(list(func.params), body, func.ret_type, func.attrs)
    return tir.PrimFunc([*func.params, m_rows], body, func.ret_type, func.attrs)


Visit = Callable[[tir.For, PrimExpr], tuple[tir.For, PrimExpr] | None]


def _rebuild(s: tir.Stmt, at: Visit, first: PrimExpr) -> tir.Stmt:
    """s with each loop for which at(loop, first) gives (new loop, first row of its body)
    replaced by the new loop over its body rebuilt from that first row; first: the row the
    innermost replaced loop around s starts at (0: none). s itself where nothing changed."""
    if isinstance(s, tir.For):
        hit = at(s, first)
        loop, inner = hit if hit is not None else (s, first)
        body = _rebuild(loop.body, at, inner)
        fence = FENCE_AFTER in loop.annotations
        if hit is None and not fence and body.same_as(s.body):
            return s
        notes = {k: v for k, v in loop.annotations.items() if k != FENCE_AFTER}
        new = tir.For(loop.loop_var, loop.min, loop.extent, loop.kind, body,
                      loop.thread_binding, notes, loop.step)
        return tir.SeqStmt([new, tir.Evaluate(tir.call_llvm_intrin("void", SFENCE))]) \
            if fence else new
    if isinstance(s, tir.SeqStmt):
        parts = [_rebuild(x, at, first) for x in s.seq]
        return s if all(a.same_as(b) for a, b in zip(parts, s.seq, strict=True)) else \
            tir.SeqStmt(parts)
    if isinstance(s, SBlockRealize):
        blk = _rebuild(s.block, at, first)
        return s if blk.same_as(s.block) else SBlockRealize(s.iter_values, s.predicate, blk)
    if isinstance(s, SBlock):
        body = _rebuild(s.body, at, first)
        return s if body.same_as(s.body) else SBlock(
            s.iter_vars, s.reads, s.writes, s.name_hint, body, s.init, s.alloc_buffers,
            s.match_buffers, s.annotations)
    return s
