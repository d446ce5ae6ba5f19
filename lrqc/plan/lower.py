"""lower_program(): the kernel plans of a verified IR Program: one Part per compiled product
(one for a base product; LPLR and LRAMM chains have one per product), each with the plan of
every M bucket. The Program (after run_passes) is the input; its operand declarations
(Program.decl, the typed scheme it was lowered from) give the formats, and verify_plan checks
every plan, and that a base product's plans and the Program describe the same product."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import LrqcError
from ..frontend.bind import bind_dims
from ..frontend.model import Scheme
from ..ir import nodes as ir
from ..ir.verify import verify
from .buckets import bucket_plans, chain_rows, m_range
from .chain import is_chain, parts
from .model import KernelPlan
from .verify import verify_plan


@dataclass(frozen=True)
class Part:
    """One compiled product: its symbol prefix ("" for a base product, "p1_", "p2_" in a
    chain), its scheme, and the plan of each M bucket (smallest first)."""

    prefix: str
    scheme: Scheme
    plans: tuple[KernelPlan, ...]


def lower_program(program: ir.Program, M: object, N: int, K: int) -> tuple[Part, ...]:
    """The Parts for A (M x K) @ B (K x N), M an int or a range (plan/buckets.py). The
    program must have passed split_stages (every op staged pack or run)."""
    verify(program)
    s = program.decl
    if s is None:
        raise LrqcError(f"program {program.name}: no scheme declarations (lower it with "
                        "lrqc.ir.lower_ast)")
    if any(not op.stage for op in program.ops):
        raise LrqcError(f"program {program.name}: run the passes (lrqc.passes.run_passes) "
                        "before planning")
    if is_chain(s):
        rows = chain_rows(s, M)  # a range's buckets start at the rank A's rows factor at
        for m in set(m_range(rows)):  # the scheme's own checks at these sizes (ranks vs M, N, K)
            bind_dims(s, m, N, K)
        return tuple(Part(prefix, sc, tuple(map(verify_plan, bucket_plans(sc, rows, n, k))))
                     for prefix, sc, n, k in parts(s, N, K))
    plans = tuple(verify_plan(p, program) for p in bucket_plans(s, M, N, K))
    return (Part("", s, plans),)
