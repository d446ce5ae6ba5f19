"""Row dot products (row_dots: the compensated functions' products of a matrix's rows with a
few vectors) and the rank-1 sketch's products with A's residual R on CPUs (lowrank(method=
sketch) on A; signature.sketch_rt). The sketch needs t = R s and u = Rᵀ t, then per power
iteration a = R u' and b = Rᵀ a. Each pair's second product needs the whole of the first, but
a row of R gives its own t_i (or a_i) and, right after, its share t_i R_i of Rᵀ t: so each
pair is one pass over R, the rows in chunks, each chunk's share summed on its own (chunk_sums)
and the chunks added by the runtime in order. The compensated quantize_a computes the first
pair as it writes R, sketch_ab the second from the R it left."""

from __future__ import annotations

from collections.abc import Callable

from ...plan import names
from ...plan.model import KernelPlan
from ...plan.signature import sketch_chunks
from ..compat import PrimExpr, te, tir

Rows = int | tuple[int, ...]  # a matrix's rows: their count, or (chunks, rows per chunk)


def _shape(rows: Rows) -> tuple[int, ...]:
    return (rows,) if isinstance(rows, int) else rows


def row_dots(x: Callable[..., PrimExpr], Yt: te.Tensor, rows: Rows, w: int, kq: int, name: str
             ) -> te.Tensor:
    """out[*i, c] = Σ_k x(*i, k) Yt[c, k] (float32) for each row i (an index, or (chunk, row)),
    as 16 lane partial sums over k chunks (block name + "_lanes") added at the end, so the k
    loop vectorizes without rfactor."""
    shape = _shape(rows)
    n = len(shape)
    ko = te.reduce_axis((0, kq // 16), "ko")
    part = te.compute((*shape, w, 16), lambda *ix: te.sum(
        x(*ix[:n], ko * 16 + ix[n + 1]) * Yt[ix[n], ko * 16 + ix[n + 1]], axis=ko),
        name=name + names.LANES)
    kk = te.reduce_axis((0, 16), "kk")
    return te.compute((*shape, w), lambda *ix: te.sum(part[(*ix, kk)], axis=kk), name=name)


def chunk_sums(p: KernelPlan, R: te.Tensor, t: Callable[[PrimExpr, PrimExpr], PrimExpr],
               rows: te.Tensor, name: str) -> te.Tensor:
    """out[c, k] = Σ_r t(c, r) R[c, r, k] for R's rows in chunks (chunk c, row r: row c P + r of
    the matrix), over the rows that are the call's (c P + r < rows[0]; the bucket's rows past
    them repeat A's last row)."""
    chunks, per = R.shape[0], R.shape[1]
    r = te.reduce_axis((0, per), "r")
    zero = tir.const(0.0, "float32")

    def share(c: PrimExpr, k: PrimExpr) -> PrimExpr:
        return te.sum(tir.Select(c * per + r < rows[0], t(c, r) * R[c, r, k], zero), axis=r)

    return te.compute((chunks, p.kq), share, name=name)


def chunked(p: KernelPlan) -> tuple[int, int]:
    """(chunks, rows per chunk) of the bucket's rows in the sketch's passes."""
    chunks = sketch_chunks(p)
    return chunks, p.mp // chunks


def sketch_ab(p: KernelPlan) -> list[te.Tensor]:
    """Tensors of sketch_ab: inputs [a_resid (in chunks of rows), sketch_u, rows], outputs
    a = R u (chunks x rows per chunk x 1) and Rᵀ a per chunk of rows (chunks x Kq)."""
    R = te.placeholder((*chunked(p), p.kq), "float32", name=names.RESID)
    u = te.placeholder((1, p.kq), "float32", name="sketch_u")
    rows = te.placeholder((1,), "int32", name="rows")
    a = row_dots(lambda c, r, k: R[c, r, k], u, chunked(p), 1, p.kq, names.SKETCH_A)
    b = chunk_sums(p, R, lambda c, r: a[c, r, 0], rows, names.SKETCH_B)
    return [R, u, rows, a, b]
