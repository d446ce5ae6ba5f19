"""split_stages: Program -> Program whose ops carry stage = pack | run, pack ops first, and a Pack
op for every weight-only value that the run stage uses.

Pre: verify() holds. Post: verify() holds; no run op reads a pack value except through Pack.
"""

from __future__ import annotations

from dataclasses import replace

from ..ir import nodes as ir


def split_stages(p: ir.Program) -> ir.Program:
    static_input = {"a": "A", "b": "B"}.get(p.static)
    packed = {static_input} if static_input else set()
    pack_ops, run_ops = [], []
    for op in p.ops:
        if all(a in packed for a in op.args):
            packed.update(op.results)
            pack_ops.append(replace(op, stage="pack"))
        else:
            run_ops.append(op)
    handoff: dict[str, str] = {}
    for op in run_ops:
        for a in op.args:
            if a in packed and a not in handoff:
                handoff[a] = f"{a}.packed"
    renamed = [replace(op, args=tuple(handoff.get(a, a) for a in op.args), stage="run")
               for op in run_ops]
    output = p.output
    if output in packed and output != static_input:  # a product that needs no run stage
        handoff.setdefault(output, f"{output}.packed")
    output = handoff.get(output, output)
    packs = [ir.Pack((new,), (old,), stage="pack") for old, new in handoff.items()]
    types = dict(p.types)
    for old, new in handoff.items():
        if old in types:
            types[new] = types[old]
    return replace(p, ops=tuple(pack_ops + packs + renamed), output=output,
                   types=tuple(types.items()))
