"""infer_shapes: Program -> Program with a TensorType for every value (symbolic M, N, K).

Pre: verify() holds. Post: every input and result has a type; rule table SHAPE_RULES by op kind.
"""

from __future__ import annotations

from dataclasses import replace

import sympy

from ..ir import nodes as ir

M, N, K = sympy.symbols("M N K", positive=True, integer=True)
DIMS = {"M": M, "N": N, "K": K}


def _quantize(op, t):
    return (ir.TensorType(t.shape, op.quant.fmt, op.quant, op.role),)


def _int_matmul(op, qa, qb):
    k = qa.shape[1]
    groups = [q.quant.vector for q in (qa, qb) if q.quant is not None and q.quant.grouped]
    if not groups:
        g = 1
    else:  # sympy.igcd needs two arguments
        g = sympy.ceiling(k / (groups[0] if len(groups) == 1 else sympy.igcd(*groups)))
    dtype = "i32" if op.accumulate == "int32" else "i64"
    return (ir.TensorType((g, qa.shape[0], qb.shape[1]), dtype),)


def _lowrank(op, t):
    r = op.rank + (1 if op.normalize_shift else 0)
    return (ir.TensorType((t.shape[0], r), "f32"), ir.TensorType((r, t.shape[1]), "f32"))


SHAPE_RULES = {
    "quantize": _quantize,
    "dequantize": lambda op, q: (ir.TensorType(q.shape, "f32"),),
    "int_matmul": _int_matmul,
    "rescale": lambda op, acc, qa, qb: (ir.TensorType(acc.shape[1:], "f32"),),
    "residual": lambda op, x, y: (ir.TensorType(x.shape, "f32"),),
    "lowrank": _lowrank,
    "sparsify": lambda op, x: (ir.TensorType(x.shape, "f32"),),
    "matmul": lambda op, x, y: (ir.TensorType((x.shape[0], y.shape[1]), "f32"),),
    "add": lambda op, x, y: (ir.TensorType(x.shape, "f32"),),
    "pack": lambda op, x: (x,),
}

INPUT_SHAPES = {"A": (M, K), "B": (K, N)}


def infer_shapes(p: ir.Program) -> ir.Program:
    types = {name: ir.TensorType(INPUT_SHAPES[name], dt) for name, dt in p.inputs}
    for op in p.ops:
        res = SHAPE_RULES[op.kind](op, *(types[a] for a in op.args))
        types.update(zip(op.results, res, strict=True))
    return replace(p, types=tuple(types.items()))


def bind(p: ir.Program, m: int, n: int, k: int) -> ir.Program:
    """Substitute concrete dims into every type (shapes become ints)."""
    sub = {M: m, N: n, K: k}

    def conc(d: sympy.Expr | int) -> sympy.Expr | int:
        v = sympy.sympify(d).subs(sub)
        return int(v) if v.is_number else v

    types = tuple((name, replace(t, shape=tuple(conc(d) for d in t.shape))) for name, t in p.types)
    return replace(p, types=types)
