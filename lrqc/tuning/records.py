"""Which tuning records a build uses (recorded_traces: the lookup lrqc.door passes to the
pipeline's compile as records=), and the key a record made by this lrqc, TVM and LLVM has
(current_key)."""

from __future__ import annotations

from collections.abc import Sequence

from ..backend.compat import versions
from ..backend.schedule.protocol import ScheduleRule
from ..backend.schedule.trace import replay_error
from ..backend.target import Target
from ..pipeline.functions import bucket_rule, functions
from ..plan.model import KernelPlan
from ..plan.names import tuned_functions
from .db import PRUNE_HINT, BadRecord, Database, record_key, shown_ms


def current_key(plan: KernelPlan, fn: str, target: Target) -> dict:
    """The database key of function fn of one plan on target (a lrqc.backend.target.Target)
    with this lrqc's TVM, tvm_ffi and LLVM versions."""
    return record_key(plan, fn, target, versions())


def recorded_traces(plans: Sequence[KernelPlan], rule: ScheduleRule, target: Target,
                    db: Database | None = None) -> tuple[dict, dict]:
    """({(m, fn): trace}, {(m, fn): how it was chosen}) of the plans (one per M bucket) on
    target, from the tuning database (default: the user's). A record is used when it is good
    (lrqc.tuning.db.check), measured faster than the hand schedule and its trace replays onto
    the function; otherwise the function keeps its hand schedule and `how` names the record
    and why it was not used."""
    db, traces, sources = db or Database(), {}, {}
    for p in plans:
        for fn in tuned_functions(p):
            try:
                rec = db.get(current_key(p, fn, target))
            except BadRecord as exc:
                sources[p.m, fn] = _ignored(exc.name, exc.why)
                continue
            if rec is None:
                continue
            if rec.tuned_ms > rec.hand_ms:  # never a slower build
                sources[p.m, fn] = (f"hand schedule (tuning record {rec.hash} measured slower: "
                                    f"{shown_ms(rec.tuned_ms)} vs {shown_ms(rec.hand_ms)})")
                continue
            tensors = functions(p, bucket_rule(p, rule, target))[fn]
            why = replay_error(tensors, target, rec.trace)
            if why:
                sources[p.m, fn] = _ignored(rec.hash, f"its schedule does not apply: {why}")
                continue
            traces[p.m, fn] = rec.trace
            sources[p.m, fn] = (f"tuning record {rec.hash}: {shown_ms(rec.tuned_ms)} tuned vs "
                                f"{shown_ms(rec.hand_ms)} hand when recorded")
    return traces, sources


def _ignored(name: str, why: str) -> str:
    return f"hand schedule (ignored tuning record {name}: {why}; {PRUNE_HINT})"
