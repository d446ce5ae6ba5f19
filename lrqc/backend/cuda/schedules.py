"""How each function of a CUDA kernel is scheduled: the bucket's rule for the functions it
handles (dp4a.py, wmma.py), lrqc's per-block schedule for the others (quantization pass, row
dot products), TVM's dlight rules for GEMMs without a rule and for blocks per_block does not
know. TVM 0.27: dlight's int8 tensor-core rule crashes in its software pipeline, so integer
GEMMs are scheduled by lrqc's rules; and dlight's matmul rule gave wrong float32 products on an
H200 (sm_90) at 10 of 12 shapes tried (128x128x64: relative error 0.97; only 128x128x83 and
40x96x96 were right), so GEMMs without an lrqc rule get dlight's other rules (a float32 GEMM:
GeneralReduction, right at all 12)."""

from __future__ import annotations

from typing import Any

from ...plan import names
from ...plan.model import KernelPlan
from ..compat import Schedule, tir, tvm
from ..compat import dlight as dl
from ..schedule.protocol import Knob, ScheduleRule
from ..schedule.trace import replay

HOW = "lrqc_schedule"  # function attribute: how lrqc scheduled it (for the build report)
PER_BLOCK = "lrqc per-block GPU schedule (cross-thread reductions)"
DLIGHT = "TVM dlight default GPU schedule"
TUNED = "tuning record"
PER_BLOCK_THREADS = (64, 128, 256, 512)  # lrqc tune's candidates; hand 256


class UnknownBlockShape(ValueError):
    """A block whose loops per_block cannot bind (they do not follow the block's axes)."""


class _Tolerant(dl.ScheduleRule):
    """A dlight rule whose analysis failing on a block it does not expect counts as the rule
    not applying (TVM 0.27's Reduction rule asserts on per-group integer sums, which its
    matmul rule used to take first)."""

    def __init__(self, rule: Any):
        self.rule = rule

    def apply(self, func: Any, target: Any, tunable: bool) -> Any:
        try:
            return self.rule.apply(func, target, tunable)
        except AssertionError:
            return None


def default_schedule(mod: tvm.IRModule) -> tvm.IRModule:
    """dlight's GPU rules for a whole function, under the current target: every block bound to
    threads, reductions cross-thread (a GEMM: a thread block per output element, K reduced
    across its threads, GeneralReduction). Not dlight.gpu.Matmul: its float32 GEMMs were
    wrong on an H200 (module docstring), and these rules' were right at every shape tried."""
    rules = (dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction())
    return dl.ApplyDefaultSchedule(*(_Tolerant(r) for r in rules), dl.gpu.Fallback())(mod)


def schedule_into(fn: str, sch: Schedule, plan: KernelPlan, rule: ScheduleRule,
                  knob: Knob | None = None) -> str | None:
    """Schedule function fn in sch with lrqc's own GPU schedules (the rule's GEMM, per_block
    for the other functions); knob(name, candidates, hand) picks the tunable choices (lrqc
    tune). Returns how, or None when fn is left to dlight (GEMMs without a rule, blocks
    per_block does not know; sch is then partly scheduled and must be dropped)."""
    if rule.handles(fn, plan):
        rule.schedule(fn, sch, plan, knob=knob)
        return f"hand schedule {rule.name}"
    if fn in (names.FN_GEMM, names.FN_ACC):  # GEMMs without a rule: dlight (default_schedule)
        return None
    try:
        per_block(sch, knob=knob)
    except UnknownBlockShape:  # the whole function falls back to dlight's rules (HOW says so)
        return None
    return PER_BLOCK


def schedule(fn: str, tensors_mod: tvm.IRModule, plan: KernelPlan, rule: ScheduleRule,
             trace: Any = None) -> tir.PrimFunc:
    """The scheduled PrimFunc of function fn: a tuning record's trace when given, else
    schedule_into, else dlight's defaults. Under the current target; the function's HOW
    attribute says which."""
    sch = Schedule(tensors_mod)
    if trace is not None:
        replay(sch, trace)
        how = TUNED
    else:
        how = schedule_into(fn, sch, plan, rule)
    func = sch.mod["main"] if how else default_schedule(tensors_mod)["main"]
    return func.with_attr(HOW, how or DLIGHT)


def per_block(sch: Schedule, threads: int = 256, knob: Knob | None = None) -> None:
    """Every block of a function (quantization pass, row dot products, float GEMMs) as its own
    kernel: elementwise blocks one thread per element; reductions one thread block per output
    element (the spatial loops fused onto blockIdx.x), its threads splitting the reduced
    elements (coalesced along the innermost axis) and combining them with a cross-thread
    reduction. (dlight's fallback reduces per-tensor statistics in one thread, reading and
    writing global memory per element.) threads: per thread block, at most; knob may pick
    it (lrqc tune) for the blocks with at least PER_BLOCK_THREADS[-1] threads' worth of work,
    the others keep the hand count (a sampled count is a trace variable: it can only feed
    schedule steps, not Python arithmetic). Raises UnknownBlockShape, before any loop is
    bound, for a block whose loops do not follow its axes."""
    plan = [_block_loops(sch, b) for b in sch.get_child_blocks(sch.get_sblock("root"))]
    big = PER_BLOCK_THREADS[-1]
    tuned = threads
    if knob is not None and any(e >= big for *_, e in plan):
        tuned = knob("threads", PER_BLOCK_THREADS, threads)
    for spatial, red, loops, extent in plan:
        t = tuned if extent >= big else min(threads, 1 << max(0, (extent - 1).bit_length()))
        if red:
            if spatial:
                sch.bind(sch.fuse(*spatial) if len(spatial) > 1 else spatial[0], "blockIdx.x")
            r = sch.fuse(*red) if len(red) > 1 else red[0]
            _, tx = sch.split(r, [None, t])
            sch.bind(tx, "threadIdx.x")
        else:
            f = sch.fuse(*loops) if len(loops) > 1 else loops[0]
            bo, tx = sch.split(f, [None, t])
            sch.bind(bo, "blockIdx.x")
            sch.bind(tx, "threadIdx.x")


def _block_loops(sch, b) -> tuple:
    """(spatial loops, reduction loops, all loops, extent of the work per thread block) of
    block b (a unit loop added to a block without loops)."""
    if not sch.get_loops(b):
        sch.add_unit_loop(b)
    loops = sch.get_loops(b)
    kinds = [int(iv.iter_type) for iv in sch.get(b).iter_vars]
    if len(kinds) != len(loops) or kinds != sorted(kinds):
        raise UnknownBlockShape(f"block {sch.get(b).name_hint}: loops do not follow its axes")
    ns = kinds.count(0)
    spatial, red = loops[:ns], loops[ns:]
    extent = 1
    for lp in red or loops:
        extent *= int(sch.get(lp).extent)
    return spatial, red, loops, extent
