"""estimate_cost: Program -> CostTable of FLOPs (integer ops for int_matmul) and bytes read and
written, per op and per stage, as sympy expressions of M, N, K. Rule table COST_RULES by kind.

Pre: infer_shapes ran. Bytes assume float32 activations and packed sub-byte codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from ..ir import nodes as ir

F32 = 4


def _numel(t: ir.TensorType):
    out = sympy.Integer(1)
    for d in t.shape:
        out *= d
    return out


def _qbytes(t: ir.TensorType):
    """Bytes of a quantized value: packed codes plus scales (and zero points)."""
    q = t.quant
    rows, cols = t.shape
    codes = _numel(t) * q.bits / 8
    if q.granularity == "per_tensor":
        scales = 1
    elif q.granularity == "per_channel":
        scales = rows if t.role == "a" else cols
    else:
        scales = _numel(t) / q.vector
    per_scale = 1 if q.granularity == "per_block" or q.scale.startswith("uint") else F32
    return codes + scales * per_scale


def _lowrank_flops(op, t):
    m, n = t.shape
    if op.method == "sketch":
        return 2 * m * n * (2 + 2 * op.power_iters)
    if op.method == "svd":
        return 4 * m * n * sympy.Min(m, n) + 8 * sympy.Min(m, n) ** 3
    width = op.rank + op.oversample
    if op.method in ("lplr", "dsvd"):
        return 2 * m * n * op.rank * (2 + 2 * op.power_iters) + 4 * m * op.rank**2
    return 2 * m * n * width * (2 + 2 * op.power_iters) + 4 * (m + n) * width**2


def _rule(op, args, res):
    """(flops, bytes read, bytes written) of one op from its argument and result types."""
    k = op.kind
    if k == "quantize":
        x = args[0]
        return 4 * _numel(x), F32 * _numel(x), _qbytes(res[0])
    if k == "dequantize":
        return 2 * _numel(res[0]), _qbytes(args[0]), F32 * _numel(res[0])
    if k == "int_matmul":
        g, m, n = res[0].shape
        kk = args[0].shape[1]
        return 2 * m * n * kk, _qbytes(args[0]) + _qbytes(args[1]), 4 * _numel(res[0])
    if k == "rescale":
        return 3 * _numel(args[0]), 4 * _numel(args[0]), F32 * _numel(res[0])
    if k == "residual":
        return 2 * _numel(res[0]), F32 * 2 * _numel(res[0]), F32 * _numel(res[0])
    if k == "lowrank":
        return (_lowrank_flops(op, args[0]), F32 * _numel(args[0]) * (1 + op.power_iters),
                F32 * (_numel(res[0]) + _numel(res[1])))
    if k == "sparsify":
        return 3 * _numel(args[0]), F32 * 2 * _numel(args[0]), F32 * _numel(res[0])
    if k == "matmul":
        (m, kk), (_, n) = args[0].shape, args[1].shape
        return 2 * m * n * kk, F32 * (_numel(args[0]) + _numel(args[1])), F32 * _numel(res[0])
    if k == "add":
        return _numel(res[0]), F32 * 2 * _numel(res[0]), F32 * _numel(res[0])
    if k == "pack":
        size = _qbytes(args[0]) if args[0].quant else F32 * _numel(args[0])
        return sympy.Integer(0), size, size
    raise KeyError(k)


COST_RULES = {kind.kind: _rule for kind in ir.OP_KINDS}


@dataclass(frozen=True)
class CostRow:
    index: int
    kind: str
    stage: str
    flops: sympy.Expr
    bytes_read: sympy.Expr
    bytes_written: sympy.Expr


@dataclass(frozen=True)
class CostTable:
    rows: tuple[CostRow, ...]

    def total(self, stage: str | None = None) -> tuple[sympy.Expr, sympy.Expr, sympy.Expr]:
        sel = [r for r in self.rows if stage is None or r.stage == stage]
        return (sympy.expand(sum((r.flops for r in sel), sympy.Integer(0))),
                sympy.expand(sum((r.bytes_read for r in sel), sympy.Integer(0))),
                sympy.expand(sum((r.bytes_written for r in sel), sympy.Integer(0))))


def estimate_cost(p: ir.Program) -> CostTable:
    types = dict(p.types)
    rows = []
    for i, op in enumerate(p.ops):
        f, br, bw = COST_RULES[op.kind](op, [types[a] for a in op.args],
                                        [types[r] for r in op.results])
        rows.append(CostRow(i, op.kind, op.stage or "run", sympy.simplify(f),
                            sympy.simplify(br), sympy.simplify(bw)))
    return CostTable(tuple(rows))
