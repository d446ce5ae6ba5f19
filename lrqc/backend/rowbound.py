"""Calls that pay for their own rows, not their bucket's: a GEMM compiled for a bucket of Mp
rows takes the call's row count m_rows (a scalar parameter, signature.M_ROWS) and runs only
the row tiles that hold rows below it.

A schedule marks the loop over its row tiles with row_tiles(sch, loop, rows): iteration t of
that loop computes C's rows t·rows .. t·rows + rows - 1 and nothing else depends on its
extent. bound(func, takes_rows) then, on the scheduled PrimFunc, appends the parameter m_rows
and shortens every marked loop to min(extent, ceil(m_rows / rows)) iterations. A marked
loop's tiles are independent (each writes its own rows of C from A's rows and the packed
operand), so the rows below m_rows are computed exactly as before; C's rows from the first
skipped tile on are left as they were (the runtime hands out only rows below m_rows). The
loop is shortened, not guarded, so that no local buffer changes its size: in the schedules
marked, every buffer a tile uses is allocated inside the tile or indexed without the row
tile (unpacked weight panels).

TVM 0.27 has no Python statement mutator: the statements from the function's root down to
each marked loop are rebuilt (loops, sequences, blocks and their realizations: what a
scheduled PrimFunc holds above its loop nests); a mark under any other statement is left
as it is (the function then computes every row, as before)."""

from __future__ import annotations

from collections.abc import Callable

from .compat import LoopRV, SBlock, SBlockRealize, Schedule, tir

ROW_TILES = "lrqc_row_tiles"  # the loop annotation: rows per iteration (an int)
M_ROWS = "m_rows"  # lrqc.plan.signature.M_ROWS (the runtime binds it by this name)


def row_tiles(sch: Schedule, loop: LoopRV, rows: int) -> None:
    """Mark `loop` as the loop over row tiles of `rows` rows each (the outermost loop over
    C's rows under the parallel one)."""
    sch.annotate(loop, ROW_TILES, int(rows))


def bound(func: tir.PrimFunc, takes_rows: bool) -> tir.PrimFunc:
    """func with the parameter m_rows appended and its marked loops bounded by it (takes_rows),
    or with the marks removed (a function the runtime calls without m_rows)."""
    m_rows = tir.Var(M_ROWS, "int32")

    def at(loop: tir.For) -> tir.Stmt | None:
        if ROW_TILES not in loop.annotations:
            return None
        rows = int(loop.annotations[ROW_TILES])
        rest = {k: v for k, v in loop.annotations.items() if k != ROW_TILES}
        extent = loop.extent
        if takes_rows:
            extent = tir.min(extent, tir.floordiv(m_rows + (rows - 1), rows))
        return tir.For(loop.loop_var, loop.min, extent, loop.kind, loop.body,
                       loop.thread_binding, rest, loop.step)

    body = _rebuild(func.body, at)
    if not takes_rows:
        return func if body.same_as(func.body) else \
            tir.PrimFunc(list(func.params), body, func.ret_type, func.attrs)
    return tir.PrimFunc([*func.params, m_rows], body, func.ret_type, func.attrs)


def bounded_loops(func: tir.PrimFunc) -> list[tuple[str, str]]:
    """(loop variable, extent) of every loop whose extent reads m_rows (for tests and
    `lrqc explain`: which loops a call's row count shortens)."""
    out: list[tuple[str, str]] = []

    def at(loop: tir.For) -> None:
        if M_ROWS in str(loop.extent):
            out.append((loop.loop_var.name, str(loop.extent)))
        return None

    _rebuild(func.body, at)
    return out


def _rebuild(s: tir.Stmt, at: Callable[[tir.For], tir.Stmt | None]) -> tir.Stmt:
    """s with each loop for which at(loop) gives a statement replaced by it (the loops under a
    replaced one are not visited); s itself where nothing changed."""
    if isinstance(s, tir.For):
        new = at(s)
        if new is not None:
            return new
        body = _rebuild(s.body, at)
        return s if body.same_as(s.body) else tir.For(
            s.loop_var, s.min, s.extent, s.kind, body, s.thread_binding, s.annotations, s.step)
    if isinstance(s, tir.SeqStmt):
        parts = [_rebuild(x, at) for x in s.seq]
        return s if all(a.same_as(b) for a, b in zip(parts, s.seq, strict=True)) else \
            tir.SeqStmt(parts)
    if isinstance(s, SBlockRealize):
        blk = _rebuild(s.block, at)
        return s if blk.same_as(s.block) else SBlockRealize(s.iter_values, s.predicate, blk)
    if isinstance(s, SBlock):
        body = _rebuild(s.body, at)
        return s if body.same_as(s.body) else SBlock(
            s.iter_vars, s.reads, s.writes, s.name_hint, body, s.init, s.alloc_buffers,
            s.match_buffers, s.annotations)
    return s
