"""to_te for the GEMMs' epilogue: dequantization of the integer sums, the rank-r low-rank terms
Σ_r U[i, r] W[r, j] added to the output (U per call, W with the packed weights) and the bias
(one value per output column, packed with the weights; zeros when the user gives none).

epilogue_terms is what a GEMM asks for: the placeholders U, W of the plan's low-rank terms and
the bias, the output block (value + bias + Σ U W as one reduction over the concatenated ranks)
and, for outputs that are themselves reductions over K groups, one low-rank block per side
added at the first group and the bias as the value the sum starts from."""

from __future__ import annotations

from collections.abc import Callable

from ...plan import names, signature
from ...plan.model import KernelPlan
from ..compat import START, PrimExpr, te, tir

# (U, W, rank) of each side's low-rank epilogue
Parts = list[tuple[te.Tensor, te.Tensor, int]]


def dequantize(acc: PrimExpr, sa: PrimExpr, sb: PrimExpr) -> PrimExpr:
    """(acc sa) sb: the integer sum times A's scale, then B's. The scales' own product can
    leave float32's normal range while C does not (max |A| max |B| below 2^-112 underflows
    it), whereas acc sa is at least sa wherever acc is not 0."""
    return acc * sa * sb


def epilogue_terms(p: KernelPlan) -> tuple[list[te.Tensor], Callable[..., te.Tensor],
                                            Callable[..., te.Tensor]]:
    """(placeholders, output, grouped): output(shape, value, name) makes the output block
    value + bias + Σ U W (output below); grouped(shape, value, G, name, start) the output
    Σ_g value(i, j, g) over K groups g, + bias + Σ U W: the low-rank epilogue added at g == 0
    (tiles.lowrank_at places its blocks), the bias as the value the sum starts from (start:
    block name + compat.START, where the rule's schedule allows it), else also at g == 0 (an
    addition inside the sum, measured ~30 % slower on per_vector(16) than a pass over C)."""
    ph, parts = epilogue(p)
    bias = te.placeholder((1, p.np_), "float32", name=signature.BIAS)
    ph.append(bias)

    def out(shape: tuple, value: Callable[..., PrimExpr], name: str) -> te.Tensor:
        return output(parts, shape, lambda i, j: value(i, j) + bias[0, j], name)

    lr: list = []  # the blocks, made on first use (only outputs that reduce over groups need them)

    def grouped(shape: tuple, value: Callable[..., PrimExpr], G: int, name: str,
                start: bool) -> te.Tensor:
        g = te.reduce_axis((0, G), "g")
        if parts and not lr:
            lr.append(lowrank_blocks(parts))

        def once(i: PrimExpr, j: PrimExpr) -> PrimExpr:  # added at g == 0
            head = lr[0](i, j) if parts else tir.const(0.0, "float32")
            return head if start else head + bias[0, j]

        def term(i: PrimExpr, j: PrimExpr) -> PrimExpr:
            v = value(i, j, g)
            if parts or not start:
                v = v + tir.if_then_else(g == 0, once(i, j), tir.const(0.0, "float32"))
            return v

        if not start:
            return te.compute(shape, lambda i, j: te.sum(term(i, j), axis=g), name=name)
        first = te.compute(shape, lambda i, j: bias[0, j], name=name + START)
        return te.compute(shape, lambda i, j: te.sum(term(i, j), axis=g, init=first[i, j]),
                          name=name)

    return ph, out, grouped


def epilogue(p: KernelPlan) -> tuple[list[te.Tensor], Parts]:
    """(placeholders, parts) of the rank-r epilogue Σ_r U[i, r] W[r, j]: (U, W, r) per side
    with a lowrank term (A's, then B's)."""
    ph, parts = [], []
    for side, r in (("a", p.rank_a), ("b", p.rank_b)):
        if r:
            U = te.placeholder((p.mp, r), "float32", name=f"U{side}")
            W = te.placeholder((r, p.np_), "float32", name=f"W{side}")
            ph += [U, W]
            parts.append((U, W, r))
    return ph, parts


def _term(parts, i, j, c):
    """U[i, c] W[c, j] over the concatenated ranks of parts (c a loop variable)."""
    (U, W, r), rest = parts[0], parts[1:]
    here = U[i, c] * W[c, j]
    if not rest:
        return here
    return tir.if_then_else(c < r, here, _term(rest, i, j, c - r))


def output(parts: Parts, shape: tuple, value: Callable[..., PrimExpr], name: str) -> te.Tensor:
    """The output block C[i, j] = value(i, j) + Σ_c U[i, c] W[c, j]. With low-rank terms it is
    a reduction over the concatenated ranks whose first step also adds value: the schedules
    (tiles.fuse_epilogue) run c outside a register block of rows x 16, 32 or 64 columns of a
    local tile, unrolled, so the selects fold and a vector of W and a broadcast of U feed the FMAs
    (no spills: the elementwise sum of r products it replaces kept a whole W panel live)."""
    if not parts:
        return te.compute(shape, value, name=name)
    c = te.reduce_axis((0, sum(r for _, _, r in parts)), "c")
    zero = tir.const(-0.0, "float32")  # x + -0.0 == x for every x: the unrolled adds fold
    return te.compute(shape, lambda i, j: te.sum(
        tir.if_then_else(c == 0, value(i, j), zero) + _term(parts, i, j, c), axis=c), name=name)


def _lowrank_block(U, W, r: int):
    c = te.reduce_axis((0, r), "c")
    return te.compute((U.shape[0], W.shape[1]), lambda i, j: te.sum(U[i, c] * W[c, j], axis=c),
                      name=names.LOWRANK_EPI + U.name[-1])


def lowrank_blocks(parts: Parts) -> Callable[..., PrimExpr]:
    """lr(i, j) reading one reduction block per side (names.LOWRANK_EPI + a / b), for outputs
    that are themselves reductions (over K groups): tiles.lowrank_at places the blocks."""
    blocks = [_lowrank_block(U, W, r) for U, W, r in parts]

    def lr(i: PrimExpr, j: PrimExpr) -> PrimExpr:
        out = blocks[0][i, j]
        for b in blocks[1:]:
            out = out + b[i, j]
        return out

    return lr
