"""lrqc tune's MetaSchedule search over the schedules' own knobs (for the integer GEMM with its
fused epilogues: rows and 16-column blocks per tile, k chunk; the float32 GEMM's rows and k
chunk; the vector widths of the quantization pass and of the compensated pass that also writes
A's residual), so every candidate keeps the rule's packed layout and its intrinsic
(MetaSchedule's default x86 space wastes most trials and can auto-tensorize unpacked weights
into wrong numbers, measured). Each knob is a MetaSchedule decision the search mutates; each
loop order of the rule is a design space of its own.

Trials run in chunks of `chunk` candidates into a MetaSchedule work directory kept in the cache
(work/<key hash>/), so an interrupted run resumes where it stopped and a time budget is checked
between chunks. Checking and recording what the search found: lrqc.tuning.tune."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import time
import types
from collections.abc import Sequence
from pathlib import Path

from ..backend.compat import BUILTIN_INTRINSICS, ExprRV, Schedule, ms, prim_func, tvm
from ..backend.schedule.protocol import Knob, ScheduleRule
from ..backend.schedule.trace import register_intrinsics, trace_to_json
from ..backend.target import Target
from ..pipeline.functions import fixed_rows, functions, schedule_function, variants
from ..plan import names
from ..plan.model import KernelPlan
from .builder import build_candidate
from .progress import Progress, mean_secs, measure_callback
from .rpc import runner as make_runner

try:
    import xgboost  # noqa: F401 - only whether it is there: MetaSchedule's xgb model imports it
except ImportError:
    xgboost = None

CUDA_LIMITS = {"max_shared_memory_per_block": 49152, "max_threads_per_block": 1024}  # static


def space_knobs(plan: KernelPlan, rule: ScheduleRule, fn: str) -> dict:
    """{knob name: candidates} of function fn's tuning space (those with a choice)."""
    seen = {}
    safe = unit_safe(fn, plan, rule)

    def probe(name: str, cands: tuple, hand_choice: int) -> int:
        seen[name] = tuple(sorted(_allowed(name, cands, hand_choice, safe) | {hand_choice}))
        return hand_choice

    schedule_function(fn, Schedule(function_module(plan, rule, fn)), plan, rule, probe)
    return {n: c for n, c in seen.items() if len(c) > 1}


def tunable(plan: KernelPlan, rule: ScheduleRule, fn: str = names.FN_GEMM) -> str | None:
    """Why function fn of the plan cannot be tuned with this rule, or None."""
    if fn == names.FN_GEMM and not plan.float_path and not rule.knobs(plan):
        return f"schedule rule {rule.name} defines no tuning knobs"
    if not space_knobs(plan, rule, fn):
        return "its schedule has no choice to tune at this shape"
    return None


def function_module(plan: KernelPlan, rule: ScheduleRule, fn: str) -> tvm.IRModule:
    """Function fn of the plan, unscheduled, as an IRModule (what MetaSchedule tunes)."""
    return fixed_rows(prim_func(functions(plan, rule)[fn]), plan)


def hand_trace(plan: KernelPlan, rule: ScheduleRule, fn: str) -> list:
    """The trace (JSON) of function fn's hand schedule: the hand point of its tuning space."""
    sch = Schedule(function_module(plan, rule, fn))
    schedule_function(fn, sch, plan, rule)
    return trace_to_json(sch.trace)


def sampling_knob(sch: Schedule, unit_safe: tuple = ()) -> Knob:
    """knob(name, candidates, hand) drawing uniformly from the candidates (a MetaSchedule
    decision the search mutates). Only values that are 1 exactly when the hand choice is 1,
    except for the knobs in unit_safe (pure split factors): compute_at drops unit loops, and
    the search replays traces with mutated decisions, which must keep the number of loops each
    step sees."""
    def knob(name: str, cands: Sequence[int], hand: int) -> int | ExprRV:
        cands = sorted(_allowed(name, cands, hand, unit_safe) | {hand})
        if len(cands) == 1:
            return cands[0]
        return sch.sample_categorical(candidates=cands, probs=[1.0 / len(cands)] * len(cands))
    return knob


def _allowed(name, cands, hand, unit_safe) -> set:
    return {c for c in cands if name in unit_safe or (c == 1) == (hand == 1)}


def unit_safe(fn: str, plan: KernelPlan, rule: ScheduleRule) -> tuple:
    """The knobs of function fn that may be 1 where the hand choice is not (sampling_knob)."""
    cpu_float = plan.float_path and rule.family != "cuda"  # floats.float_gemm
    if fn != names.FN_GEMM or cpu_float:
        return ()
    return tuple(rule.unit_safe(plan))


def cost_model_name() -> str:
    """xgb when xgboost is installed, else the random model (documented in the README)."""
    return "random" if xgboost is None else "xgb"


def search(mod: tvm.IRModule, plan: KernelPlan, rule: ScheduleRule, fn: str, target: Target,
           work_dir: Path, trials: int, budget_s: float | None, workers: int | None,
           rpc: str | None, key: str | None, cost_model: str | None, progress: Progress,
           chunk: int = 16, runner: ms.Runner | None = None) -> ms.Database:
    """Run (or resume) MetaSchedule in work_dir until `trials` candidates are measured or the
    budget is spent; returns the MetaSchedule database. runner: a MetaSchedule runner instead
    of the local or RPC one (tests)."""
    register_intrinsics()
    _quiet_log()
    ms_target = _ms_target(target)
    space = _design_space(plan, rule, fn, target)
    work_dir.mkdir(parents=True, exist_ok=True)
    db = ms.database.JSONDatabase(work_dir=str(work_dir))
    progress.done = progress.valid = 0
    progress.update([mean_secs(rec.run_secs)
                     for rec in db.get_all_tuning_records()])  # resumed: earlier runs' trials
    progress.resumed, progress.t0 = progress.done, time.time()
    if progress.done:
        print(f"\n  resuming: {progress.done} trials measured by an earlier run", file=progress.out)
    start = time.time()
    while progress.done < trials:
        if budget_s is not None and time.time() - start >= budget_s:
            print(f"\n  time budget spent after {progress.done} trials", file=progress.out)
            break
        n = min(chunk, trials - progress.done)
        before = progress.done
        # MetaSchedule's console handler writes its INFO lines to sys.stdout as it is when
        # tune_tir configures logging: they go to work_dir/logs only
        with _no_builtin_intrinsics(), contextlib.redirect_stdout(io.StringIO()):
            db = ms.tune_tir(
                mod, target=ms_target, work_dir=str(work_dir), max_trials_global=n,
                num_trials_per_iter=n, builder=ms.builder.LocalBuilder(
                    max_workers=workers, f_build=build_candidate),
                runner=runner or make_runner(rpc, key, 60.0), database=db,
                cost_model=cost_model or cost_model_name(),
                measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"),
                                   measure_callback(progress)],
                strategy=ms.search_strategy.EvolutionarySearch(
                    population_size=64, init_min_unmeasured=16, genetic_num_iters=2),
                space=space, task_scheduler="round-robin",
                num_tuning_cores=workers or "physical")
        if progress.done == before:  # the space is exhausted: nothing new to measure
            break
    print(file=progress.out)
    return db


def _quiet_log() -> None:
    """MetaSchedule's INFO lines go to work_dir/logs, not the terminal."""
    ms_log = logging.getLogger("tvm.s_tir.meta_schedule")
    ms_log.setLevel(logging.WARNING)
    # MetaSchedule re-configures this logger by handler names; unnamed ones (added by a host
    # application, e.g. a test runner's log capture) would break its dictConfig
    ms_log.handlers = [h for h in ms_log.handlers if h.get_name()]


def _ms_target(target):
    """The TVM target MetaSchedule tunes for; CUDA: with the limits its GPU check reads (every
    arch lrqc builds)."""
    if not target.is_cuda:
        return target.tvm()
    return tvm.target.Target({**target.tvm().export(), **CUDA_LIMITS})


def _design_space(plan, rule, fn: str, target):
    """MetaSchedule's design space of function fn: one schedule per loop order, each knob a
    sampled decision. CUDA: lrqc's schedule as written (no MetaSchedule rules), GPU limits
    checked."""
    def space(sch: Schedule) -> list[Schedule]:
        out = []
        for v in variants(fn, plan, rule):
            s = sch.copy()
            schedule_function(fn, s, plan, rule, sampling_knob(s, unit_safe(fn, plan, rule)), v)
            out.append(s)
        return out

    if not target.is_cuda:
        return space
    return ms.space_generator.ScheduleFn(
        space, sch_rules=[], mutator_probs={},
        postprocs=[ms.postproc.DisallowDynamicLoop(), ms.postproc.VerifyGPUCode()])


@contextlib.contextmanager
def _no_builtin_intrinsics():
    """MetaSchedule's TuneContext imports BUILTIN_INTRINSICS, every built-in tensor intrinsic
    of TVM parsed from TVMScript (over 80 s on this machine), although lrqc's spaces use only
    lrqc's own (register_intrinsics). TVM offers no switch for that, so during the search an
    empty module stands in for it in sys.modules, where the import finds it done. The stand-in
    is removed afterwards: the real module stays importable (dlight's CUDA matmul rule imports
    it). The builder's workers skip the import another way (build_candidate)."""
    if BUILTIN_INTRINSICS in sys.modules:  # the real one, imported already: nothing to skip
        yield
        return
    stand_in = types.ModuleType(BUILTIN_INTRINSICS, "lrqc tune's empty stand-in (search.py)")
    sys.modules[BUILTIN_INTRINSICS] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(BUILTIN_INTRINSICS) is stand_in:
            del sys.modules[BUILTIN_INTRINSICS]

