"""verify(): structural and type invariants of a Program. Raises IRError naming the op."""

from __future__ import annotations

import sympy

from ..errors import LrqcError
from . import nodes as ir


class IRError(LrqcError):
    """An IR invariant does not hold (a compiler bug, not a user error)."""


def _same(a, b) -> bool:
    return sympy.simplify(sympy.sympify(a) - sympy.sympify(b)) == 0


def verify(p: ir.Program) -> None:
    kinds = {k.kind: k for k in ir.OP_KINDS}
    defined = {name for name, _ in p.inputs}
    types = dict(p.types)
    seen_run = False
    for i, op in enumerate(p.ops):
        where = f"op {i} ({op.kind} -> {', '.join(op.results)})"
        if kinds.get(op.kind) is not type(op):
            raise IRError(f"{where}: unknown op kind")
        if len(op.args) != op.n_args or len(op.results) != op.n_results:
            raise IRError(f"{where}: expects {op.n_args} args and {op.n_results} results")
        for a in op.args:
            if a not in defined:
                raise IRError(f"{where}: uses {a} before it is defined")
        for r in op.results:
            if r in defined:
                raise IRError(f"{where}: {r} assigned twice")
            defined.add(r)
        if op.stage not in ("", "pack", "run"):
            raise IRError(f"{where}: bad stage {op.stage!r}")
        if op.stage == "run":
            seen_run = True
        elif op.stage == "pack" and seen_run:
            raise IRError(f"{where}: pack op after a run op")
        if types:
            _check_types(op, types, where)
    if p.output not in defined:
        raise IRError(f"output {p.output} is not defined")
    if any(op.stage for op in p.ops):
        _check_stages(p)


def _check_types(op, types, where) -> None:
    for v in op.args + op.results:
        if v not in types:
            raise IRError(f"{where}: {v} has no type")
    t = [types[a] for a in op.args]
    if op.kind == "matmul" and not _same(t[0].shape[1], t[1].shape[0]):
        raise IRError(f"{where}: inner dims differ: {t[0]} @ {t[1]}")
    if op.kind in ("add", "residual") and not all(
            _same(x, y) for x, y in zip(t[0].shape, t[1].shape, strict=False)):
        raise IRError(f"{where}: shapes differ: {t[0]} vs {t[1]}")
    if op.kind in ("int_matmul", "dequantize") and any(x.quant is None for x in t[:2]):
        raise IRError(f"{where}: needs quantized operands")
    if op.kind == "int_matmul" and not _same(t[0].shape[1], t[1].shape[0]):
        raise IRError(f"{where}: K differs: {t[0]} vs {t[1]}")
    if op.kind in ("quantize", "lowrank", "sparsify") and t[0].quant is not None:
        raise IRError(f"{where}: expects a float operand, got {t[0]}")


def _check_stages(p: ir.Program) -> None:
    pack_values = {r for op in p.ops if op.stage == "pack" for r in op.results}
    static_input = {"a": "A", "b": "B"}.get(p.static)
    for op in p.ops:
        if op.stage == "run":
            for a in op.args:
                if a == static_input or (a in pack_values and not a.endswith(".packed")):
                    raise IRError(f"run op {op.kind} reads pack value {a} without a Pack")
        if op.stage == "pack" and op.kind != "pack":
            for a in op.args:
                if a not in pack_values and a != static_input:
                    raise IRError(f"pack op {op.kind} reads per-call value {a}")
