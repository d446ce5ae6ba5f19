"""verify_plan(): the invariants of a KernelPlan, and its agreement with the IR Program it was
lowered from. A failure is a compiler bug (PlanError), never a user error."""

from __future__ import annotations

from ..errors import LrqcError
from ..ir import nodes as ir
from .model import KernelPlan
from .support import a_offset

ROW_TILE = 4  # make_plan pads M to whole row tiles
LANES = 16  # and N to whole 16-column blocks


class PlanError(LrqcError):
    """A kernel plan invariant does not hold (a compiler bug, not a user error)."""


def _need(ok: bool, plan: KernelPlan, what: str) -> None:
    if not ok:
        raise PlanError(f"kernel plan of '{plan.scheme.name}' at M={plan.m}: {what}")


def verify_plan(plan: KernelPlan, program: ir.Program | None = None) -> KernelPlan:
    """Check plan's structure (padding, scale groups, segments, the formulation flags) and,
    given the Program it was lowered from, that both describe the same product. Returns plan."""
    p = plan
    _need(p.m >= 1 and p.n >= 1 and p.k >= 1, p, f"sizes {p.m}x{p.n}x{p.k}")
    _need(p.m <= p.mp < p.m + ROW_TILE and p.mp % ROW_TILE == 0, p, f"M padded to {p.mp}")
    _need(p.n <= p.np_ < p.n + LANES and p.np_ % LANES == 0, p, f"N padded to {p.np_}")
    _need(p.kp >= p.k and p.groups >= 1 and p.groups * p.vector == p.kp, p,
          f"K padded to {p.kp} is not {p.groups} groups of {p.vector}")
    qa = p.qa
    _need(p.float_path or qa is None or p.a_offset == a_offset(qa), p,
          f"A's code offset {p.a_offset}")
    if p.float_path:
        _need(not (p.segments or p.sparse or p.lowrank_a is not None or p.chunked), p,
              "a float GEMM with integer residual segments, sparse products, A's low-rank "
              "term or K chunks")
    else:
        _need(p.kp % 4 == 0, p, f"integer K {p.kp} not in whole blocks of 4")
        _need(p.half is None and not p.dense_b, p, "16-bit or folded-dense flags on the "
              "integer path")
    if p.chunked:
        _need(not p.compensated and p.groups > 1, p, "K chunks with residual terms")
    if p.segments:
        _need(p.groups % p.nseg == 0 and p.kseg * p.nseg == p.kp, p,
              f"{p.nseg} segments of {p.kseg} do not make K={p.kp} in whole groups")
        _need(p.segments[0].a == "base" and p.segments[0].b == "base", p,
              "the first K segment is not the base product")
    for low in (p.lowrank_a, p.lowrank_b):
        _need(low is None or low.rank >= 1, p, "a low-rank term of rank 0")
    if program is not None:
        _agrees(p, program)
    return p


def _agrees(p: KernelPlan, program: ir.Program) -> None:
    """The plan and the (passed) Program describe the same product: output type, storage
    role, accumulator, A's quantizer, and the number of low-rank and sparse terms."""
    s = p.scheme
    transposed = program.static == "a"
    _need(program.out_dtype == s.output, p, f"output {s.output} vs the IR's {program.out_dtype}")
    want = "b" if transposed else program.static  # static: a runs as the transposed product
    _need(s.static == want, p, f"static: {s.static} vs the IR's {program.static}")
    kinds = [type(op) for op in program.ops]
    _need(kinds.count(ir.LowRank) == (p.lowrank_a is not None) + (p.lowrank_b is not None), p,
          "low-rank terms differ from the IR's LowRank ops")
    _need(kinds.count(ir.Sparsify) == len(p.sparse), p,
          "sparse products differ from the IR's Sparsify ops")
    for op in program.ops:
        if isinstance(op, ir.IntMatMul):
            _need(op.accumulate == s.accumulate, p, f"accumulate {s.accumulate} vs the IR's "
                  f"{op.accumulate}")
        if isinstance(op, ir.Quantize) and op.args == ("A",) and not transposed \
                and p.qa is not None:
            _need(op.quant == p.qa, p, "A's quantizer differs from the IR's")
