"""compile(): plan per M bucket -> TE -> schedule rule -> one LLVM module holding quantize_a,
gemm and int_acc for every bucket (symbols names.symbol(fn, m))."""

from __future__ import annotations


from ..runtime import chain
from ..plan import names
from ..backend.te import (
    base as te_base,
    compensated as te_comp,
    floating as te_float,
    sparse as te_sparse,
)
from ..backend.cuda import schedules as cuda_schedules
from ..backend.schedule import tiles
from ..backend.schedule.protocol import Formulation
from ..backend.schedule.trace import replay
from ..backend.compat import Schedule, compile_module, prim_func, tvm
from ..runtime.kernel import Kernel
from ..errors import UnsupportedScheme
from ..plan.buckets import bucket_plans, m_range
from ..backend.schedule.rules import choose
from ..backend.target import resolve

FLOAT_RULE = "float32_tile"  # tiles.float_gemm: products with a float operand, float fallback


def functions(plan, rule) -> dict:
    """The TE tensors of each scheduled function of one plan (the sparse products are TIR
    written as scheduled: te_sparse)."""
    pairs = rule.formulation is Formulation.PAIRS
    s8 = rule.formulation is Formulation.S8
    if plan.float_path:
        funcs = {names.FN_QUANTIZE: te_float.quantize_a(plan),
                 names.FN_GEMM: te_float.gemm(plan, half=rule.formulation is Formulation.HALF)}
    else:
        funcs = {
            names.FN_QUANTIZE: (te_comp.quantize_a(plan) if plan.compensated
                                else te_base.quantize_a(plan)),
            names.FN_GEMM: te_base.gemm(plan, pairs=pairs, s8=s8),
            names.FN_ACC: te_base.gemm(plan, int_only=True, pairs=pairs, s8=s8),
        }
    if plan.rank_b:
        funcs[names.FN_LOWRANK_U] = te_comp.lowrank_u(plan)
    return funcs


def variants(fn: str, plan, rule) -> tuple:
    """The structural alternatives (loop orders) of fn's schedule; the first is the hand one."""
    if fn == names.FN_GEMM and not plan.float_path:
        return tuple(rule.variants(plan))
    return (None,)


def schedule_function(fn: str, sch, plan, rule, knob=None, variant=None) -> None:
    """Schedule function fn of plan: the target's rule for the integer GEMMs, the shared tile
    helpers for the rest. knob(name, candidates, hand) picks each tunable choice (None: the
    hand choices; lrqc tune passes a sampler); variant: one of variants(fn, plan, rule)."""
    if rule.family == "cuda":  # lrqc's GPU schedules (dlight's: no knobs)
        cuda_schedules.schedule_into(fn, sch, plan, rule, knob)
    elif fn == names.FN_QUANTIZE:
        if plan.compensated and not plan.float_path:
            tiles.compensated_pass(sch, knob)
        else:
            tiles.quantize_pass(sch, knob)
    elif plan.float_path and fn == names.FN_GEMM:
        tiles.float_gemm(sch, plan, knob)  # one float32 tile for every x86/LLVM target
    elif fn == names.FN_LOWRANK_U:
        tiles.row_dots_at(sch, names.LOWRANK_U, knob)
    else:
        rule.schedule(fn, sch, plan, knob=knob, variant=variant)


def plan_rule(plan, rule, target=None):
    """The rule of one bucket: CUDA rules are chosen per bucket (tensor cores need 64-row
    tiles; small M buckets take dp4a) for the target, CPU rules per kernel."""
    if rule.family == "cuda" and target is not None:
        return choose("cuda", plan, target)[0]
    return rule


def schedule_all(plans, rule, prefix: str = "", traces=None, target=None) -> tvm.IRModule:
    """traces: {(bucket m, function): recorded trace JSON} replayed instead of the rule;
    target: the Target (CUDA: the rule is chosen per bucket)."""
    out = {}
    traces = traces or {}
    for plan in plans:
        if rule.family == "cuda":
            out.update(_schedule_cuda(plan, plan_rule(plan, rule, target), prefix, traces))
            continue
        for j, f in enumerate(te_sparse.functions(plan)):  # scheduled as written
            sym = names.symbol(f"{names.FN_SPARSE}{j}", plan.m, prefix)
            out[sym] = f.with_attr("global_symbol", sym)
        for fn, tensors in functions(plan, rule).items():
            sch = Schedule(prim_func(tensors))
            if (plan.m, fn) in traces:
                replay(sch, traces[plan.m, fn])
            else:
                schedule_function(fn, sch, plan, rule)
            sym = names.symbol(fn, plan.m, prefix)
            out[sym] = sch.mod["main"].with_attr("global_symbol", sym)
    return tvm.IRModule(out)


def rule_of(plan, rule) -> tuple[str, bool]:
    """(name, fast) reported for the plan's GEMM: on CPUs products with a float operand use
    the float32 tile, whatever the integer rule."""
    if plan.float_path and rule.family == "x86":
        return FLOAT_RULE, False
    return rule.name, rule.fast


def _schedule_cuda(plan, rule, prefix: str, traces: dict) -> dict:
    """{symbol: PrimFunc} of one plan for a CUDA target (under `with target`); traces as in
    schedule_all."""
    out = {}
    for j, f in enumerate(te_sparse.functions(plan, cuda=True)):  # scheduled as written
        sym = names.symbol(f"{names.FN_SPARSE}{j}", plan.m, prefix)
        out[sym] = f.with_attr("global_symbol", sym)
    for fn, tensors in functions(plan, rule).items():
        sym = names.symbol(fn, plan.m, prefix)
        out[sym] = cuda_schedules.schedule(fn, prim_func(tensors), plan, rule,
                                           traces.get((plan.m, fn))).with_attr("global_symbol", sym)
    return out


def compile(scheme, M, N: int, K: int, target=None, tuned: bool = True,
            traces: dict | None = None) -> Kernel:
    """A Kernel for scheme at M x K @ K x N on `target` (None = this CPU). M is a row count, or
    a range lo..hi given as (lo, hi), range(lo, hi + 1) or "lo..hi": one code path is compiled
    per bucket (powers of two from 4, and hi) and each call runs the smallest that fits.
    tuned: use matching records of the tuning database (lrqc tune) instead of hand schedules;
    traces: {(bucket m, function): trace JSON} to use instead (lrqc tune's checks)."""
    target = resolve(target)
    if scheme.output == "float64":  # the kernels' epilogues and glue compute in float32
        raise UnsupportedScheme(f"scheme '{scheme.name}': output: float64 is computed by the "
                                "reference only (lrqc.reference.matmul); the compiled kernels "
                                "produce float32, float16 or bfloat16")
    if chain.is_chain(scheme):
        return chain.assemble(scheme, M, N, K, target)
    lo, _ = m_range(M)
    plans = bucket_plans(scheme, M, N, K)
    rule, _ = choose(target.family, plans[-1], target)
    sources = {}
    if traces is None:
        traces = {}
        if tuned:
            from ..tuning.search import recorded_traces

            traces, sources = recorded_traces(plans, rule, target)
    with target.tvm():  # CUDA rules (dlight) read the current target
        mod = schedule_all(plans, rule, traces=traces, target=target)
        ex = compile_module(mod, target.tvm())
    if target.is_cuda:  # how each function was scheduled, as the GPU helpers recorded it
        sources = {**{(p.m, fn): str(mod[names.symbol(fn, p.m)].attrs["lrqc_schedule"])
                      for p in plans for fn in tuned_functions(p)}, **sources}
    name, fast = rule_of(plans[-1], rule)
    kernel = Kernel(plans, ex, target, name, fast, m_min=None if scheme.static == "a" else lo,
                    transposed=scheme.static == "a")
    kernel.schedules = {names.symbol(fn, p.m): sources.get((p.m, fn), _hand(fn, p, rule))
                        for p in plans for fn in tuned_functions(p)}
    return kernel


def _hand(fn: str, plan, rule) -> str:
    """How function fn of the plan is scheduled on a CPU without a tuning record."""
    name = rule_of(plan, rule)[0]
    return f"hand schedule {name}" if fn == names.FN_GEMM else "hand schedule"


def tuned_functions(plan) -> tuple:
    """The functions of the plan lrqc tune searches (and builds report the schedule of)."""
    from ..tuning.search import TUNED_FUNCTIONS

    return tuple(fn for fn in TUNED_FUNCTIONS if fn != names.FN_LOWRANK_U or plan.rank_b)

