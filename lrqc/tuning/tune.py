"""lrqc tune: every tunable function of a scheme's buckets searched (lrqc.tuning.search), the
best candidates checked against lrqc.reference (lrqc.tuning.check; a wrong one is rejected and
counted), the checked ones timed against the hand schedule, and the fastest recorded in the
tuning database (lrqc.tuning.db), which builds then use (lrqc.tuning.records).

lrqc.door.tuning() gives the command line this module: tune_scheme for `lrqc tune`;
check_candidate, current_key and tuned_functions for `lrqc cache verify` and `prune`."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import numpy as np

from ..backend.schedule.rules import choose
from ..backend.schedule.trace import trace_to_json
from ..backend.target import Target, resolve
from ..errors import LrqcError
from ..frontend.model import Scheme
from ..pipeline.functions import bucket_rule, variants
from ..plan import names
from ..plan.buckets import bucket_plans
from ..plan.names import tuned_functions
from ..runtime import device
from .check import check_candidate, check_remote, time_finalists
from .db import Database, Record, shown_ms
from .progress import Progress
from .records import current_key
from .rpc import check_tracker
from .search import cost_model_name, function_module, hand_trace, search, space_knobs, tunable

FINALISTS = 3  # checked candidates re-timed against the hand schedule before one is recorded


def tune_scheme(scheme: Scheme, M: int | tuple[int, int] | range | str, N: int, K: int,
                target: str | dict | Target | None = None, trials: int = 64,
                budget_s: float | None = None, workers: int | None = None, rpc: str | None = None,
                key: str | None = None, cost_model: str | None = None, db: Database | None = None,
                out: TextIO | None = None, functions: tuple | None = None) -> list[dict]:
    """Tune every tunable kernel function (of `functions`, default names.TUNED_FUNCTIONS) of
    the scheme's buckets; returns one report row per function: {"symbol", "status", "record",
    "tuned_ms", "hand_ms", "trials", "valid", "rejected", "wall_s"}."""
    out = out or sys.stderr
    _check_arguments(trials, workers, budget_s, cost_model)
    target = resolve(target)
    _check_target(target, rpc)
    if rpc:
        check_tracker(rpc, key)
    db = db or Database()
    plans = bucket_plans(scheme, M, N, K)
    rule, _ = choose(target.family, plans[-1], target)
    wanted = functions or names.TUNED_FUNCTIONS
    jobs = [(plan, fn) for plan in plans for fn in wanted
            if fn in tuned_functions(plan)]  # lowrank_u only with B's low-rank term
    if not jobs:
        raise LrqcError(f"nothing to tune: {', '.join(wanted)} "
                        "(lowrank_u exists only when B has a lowrank term)")
    budget_each = budget_s / len(jobs) if budget_s else None
    rows = []
    for plan, fn in jobs:
        sym = names.symbol(fn, plan.m)
        brule = bucket_rule(plan, rule, target)  # CUDA: the bucket's own rule
        why = tunable(plan, brule, fn)
        if why:
            print(f"{sym}: not tuned: {why}", file=out)
            rows.append({"symbol": sym, "status": f"not tuned: {why}"})
            continue
        rows.append(_tune_function(scheme, plan, brule, fn, target, db, trials, budget_each,
                                   workers, rpc, key, cost_model, out))
    return rows


def _check_arguments(trials, workers, budget_s, cost_model) -> None:
    for name, value, least in (("trials", trials, 1), ("workers", workers, 1)):
        if value is not None and value < least:
            raise LrqcError(f"{name} must be at least {least}, got {value}")
    if budget_s is not None and not budget_s > 0:
        raise LrqcError(f"the time budget must be positive, got {budget_s} s")
    if cost_model not in (None, "xgb", "random"):
        raise LrqcError(f"cost model {cost_model!r}: expected xgb or random")
    if cost_model == "xgb" and cost_model_name() != "xgb":
        raise LrqcError("the xgb cost model needs xgboost (pip install -e '.[tune]'); or use "
                        "the random one")


def _check_target(target, rpc: str | None) -> None:
    """LrqcError unless candidates for target can be measured and checked: CUDA on this
    machine's GPU (the target's arch, or a newer one) or the device of an RPC tracker (rpc);
    CPUs on this host, which must run the target's code."""
    if target.is_cuda:
        if rpc:
            return
        if not device.gpu_present():
            raise LrqcError("lrqc tune --target cuda measures and checks candidates on a GPU, "
                            "and this machine has none that TVM can use: run it on the GPU "
                            "machine, or give --rpc HOST:PORT --key KEY of an RPC tracker whose "
                            "server has the GPU")
        why = device.arch_mismatch(target)
        if why:
            raise LrqcError(f"lrqc tune: {why}")
    elif target.is_cross:
        raise LrqcError(f"lrqc tune checks every kept candidate against lrqc.reference on this "
                        f"host, which cannot run {target.triple} code; tune on a machine "
                        "of that architecture (locally or as the RPC client)")
    elif not target.features <= resolve(None).features:
        raise LrqcError("lrqc tune checks every kept candidate against lrqc.reference on this "
                        "host, which lacks the target's "
                        f"{', '.join(sorted(target.features - resolve(None).features))}; tune "
                        "on a machine that can run the target (locally or as the RPC client)")


def _tune_function(scheme, plan, rule, fn, target, db, trials, budget_s, workers, rpc, key,
                   cost_model, out) -> dict:
    """Search, check, time and record one function of one bucket (tune_scheme's report row)."""
    rkey = current_key(plan, fn, target)
    trials = _announce(plan, rule, fn, trials, cost_model, db.work_dir(rkey), out)
    t0 = time.time()
    flops = 2.0 * plan.m * plan.n * plan.k if fn == names.FN_GEMM else 0.0
    progress = Progress(trials, flops, t0=t0, out=out)
    mod = function_module(plan, rule, fn)
    msdb = search(mod, plan, rule, fn, target, db.work_dir(rkey), trials, budget_s, workers,
                  rpc, key, cost_model, progress)
    top = msdb.get_top_k(msdb.commit_workload(mod), 8)
    traces = [trace_to_json(cand.trace) for cand in top]
    checked, rejected = _checked(scheme, plan, rule, fn, target, traces, rpc, key, out)
    row = {"symbol": names.symbol(fn, plan.m), "trials": progress.done, "valid": progress.valid,
           "rejected": rejected}
    if not checked:
        why = f" (every measurement failed; the first: {progress.first_error})" \
            if not progress.valid and progress.first_error else ""
        row.update(status=f"no valid candidate{why}: the hand schedule stays",
                   wall_s=time.time() - t0, failed=bool(why))
        print(f"  {row['status']}", file=out)
        return row
    # the hand schedule's own point of the space is a finalist too (MetaSchedule's noisy
    # measurements may rank it below slower candidates): tuning never records a candidate
    # the hand point beat in the same rounds
    own = hand_trace(plan, rule, fn)
    finalists = checked + ([own] if own not in checked else [])
    timing = time_finalists(plan, rule, target, finalists, fn, rpc, key, out)
    if isinstance(timing, str):
        row.update(status=f"not recorded ({timing}): the hand schedule stays",
                   wall_s=time.time() - t0, failed=True)
        print(f"  {row['status']}", file=out)
        return row
    row["hand_point"] = timing[3] == own
    row["wall_s"] = time.time() - t0
    _record(db, rkey, timing, progress, rejected, row, key if rpc else None, out)
    return row


def _announce(plan, rule, fn, trials, cost_model, work_dir, out) -> int:
    """Print the function's tuning space; the trials to run (at most the space's size:
    MetaSchedule would measure the same candidates again)."""
    knobs = space_knobs(plan, rule, fn)
    orders = [v for v in variants(fn, plan, rule) if v is not None]
    size = int(np.prod([len(c) for c in knobs.values()])) * max(len(orders), 1)
    trials = min(trials, size)
    space = ", ".join([f"{n} {list(c)}" for n, c in knobs.items()]
                      + ([f"loop order {orders}"] if len(orders) > 1 else []))
    print(f"{names.symbol(fn, plan.m)}: tuning {space}: {size} candidates (M={plan.m} "
          f"N={plan.n} K={plan.k}, {trials} trials at most, "
          f"cost model {cost_model or cost_model_name()}, work dir {work_dir})", file=out)
    return trials


def _checked(scheme, plan, rule, fn, target, traces, rpc, key, out) -> tuple[list, int]:
    """(the first FINALISTS traces, best first, whose kernels compute the right numbers; how
    many were rejected before them). No GPU here but one at an RPC tracker: each candidate
    against the hand schedule there."""
    remote = None
    if rpc and target.is_cuda:
        remote = check_remote(plan, rule, target, traces, fn, rpc, key)
    checked, rejected = [], 0
    for n, trace in enumerate(traces):  # the best ones MetaSchedule measured that compute
        why = remote[n] if remote is not None else check_candidate(scheme, plan, target, trace,
                                                                   fn)
        if why is None:
            checked.append(trace)
            if len(checked) == FINALISTS:
                break
            continue
        rejected += 1
        print(f"  rejected a candidate: {why[:300]}", file=out)
    return checked, rejected


def _record(db, rkey, timing, progress, rejected, row, device, out) -> None:
    """Write the record of the timed winner and complete its report row; device: the RPC key
    it was timed on, or None (this host)."""
    hand_ms, tuned_ms, ratio, trace = timing
    wall = row["wall_s"]
    rec = Record(rkey, trace, tuned_ms, hand_ms, progress.done, progress.valid, rejected,
                 wall_s=wall)
    db.put(rec)
    row.update(status="recorded", record=rec.hash, tuned_ms=tuned_ms, hand_ms=hand_ms,
               speedup=ratio)
    slower = " (slower than the hand schedule: builds keep the hand schedule)" \
        if tuned_ms > hand_ms else ""
    where = f" on the RPC device {device}" if device else ""
    if row["hand_point"]:
        print("  the hand schedule's own point measured best among the finalists", file=out)
    print(f"  recorded {rec.hash}: {shown_ms(tuned_ms)} tuned vs {shown_ms(hand_ms)} hand{where} "
          f"({hand_ms / tuned_ms:.2f}x), {progress.valid}/{progress.done} valid, "
          f"{rejected} rejected, {wall:.0f} s{slower}", file=out)
