"""lower_program(): the kernel plans of a verified IR Program, one per compiled M bucket. The
Program (after run_passes) is the input; its operand declarations (Program.decl, the typed
scheme it was lowered from) give the formats, and verify_plan checks that every plan and the
Program describe the same product."""

from __future__ import annotations

from ..errors import LrqcError
from ..ir import nodes as ir
from ..ir.verify import verify
from .buckets import bucket_plans
from .model import KernelPlan
from .verify import verify_plan


def lower_program(program: ir.Program, M, N: int, K: int) -> tuple[KernelPlan, ...]:
    """Plans for A (M x K) @ B (K x N), M an int or a range (plan/buckets.py). The program must
    have passed split_stages (every op staged pack or run)."""
    verify(program)
    if program.decl is None:
        raise LrqcError(f"program {program.name}: no scheme declarations (lower it with "
                        "lrqc.ir.lower_ast)")
    if any(not op.stage for op in program.ops):
        raise LrqcError(f"program {program.name}: run the passes (lrqc.passes.run_passes) "
                        "before planning")
    return tuple(verify_plan(p, program) for p in bucket_plans(program.decl, M, N, K))
