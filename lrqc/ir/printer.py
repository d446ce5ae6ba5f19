"""print_program(): the text form of a Program at any stage (before or after the passes)."""

from __future__ import annotations

from dataclasses import fields

from ..frontend.unparse import quant_text
from . import nodes as ir

_STAGE_TITLES = {"pack": "stage pack (once, weights only):", "run": "stage run (per call):"}


def _attr_text(op: ir.Op) -> str:
    parts = []
    for f in fields(op):
        if f.name in ("results", "args", "stage"):
            continue
        v = getattr(op, f.name)
        if f.name not in ("method", "rank", "role") and v == f.default:
            continue
        if f.name == "quant":
            v = quant_text(v)
        parts.append(f"{f.name}={v}")
    return " {" + ", ".join(parts) + "}" if parts else ""


def print_op(op: ir.Op, types: dict) -> str:
    lhs = ", ".join(op.results)
    ty = ", ".join(str(types[r]) for r in op.results if r in types)
    return f"{lhs} = {op.kind}({', '.join(op.args)}){_attr_text(op)}" + (f" : {ty}" if ty else "")


def print_program(p: ir.Program) -> str:
    types = dict(p.types)
    sig = ", ".join(f"{n}: {types[n]}" if n in types else f"{n}: {dt}" for n, dt in p.inputs)
    lines = [f"program {p.name}({sig}) static={p.static}"]
    stage = None
    for op in p.ops:
        if op.stage and op.stage != stage:
            stage = op.stage
            lines.append("  " + _STAGE_TITLES[stage])
        lines.append(("    " if stage else "  ") + print_op(op, types))
    out_t = f" : {types[p.output]}" if p.output in types else ""
    cast = f" as {p.out_dtype}" if p.out_dtype != "float32" else ""  # (float32: the default)
    lines.append(f"  return {p.output}{out_t}{cast}")
    return "\n".join(lines)
