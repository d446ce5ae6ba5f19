"""What lrqc tune (and `lrqc cache verify`) believes of a candidate schedule: the whole kernel
with it checked against lrqc.reference (check_candidate), or, on a device reached through an RPC
tracker, against the hand schedule there (check_remote); and the finalists timed against the
hand schedule in alternating rounds (compare, time_finalists)."""

from __future__ import annotations

from typing import Any, TextIO

import numpy as np

from ..backend.building import compile_for
from ..backend.compat import (
    TVM_ERRORS,
    Schedule,
    cpu,
    error_line,
    prim_func,
    tir,
    tvm,
)
from ..backend.schedule.protocol import ScheduleRule
from ..backend.schedule.trace import replay
from ..backend.target import Target
from ..errors import LrqcError
from ..frontend.model import Scheme
from ..pipeline.compile import compile as compile_kernel
from ..pipeline.functions import fixed_rows, functions, schedule_function
from ..plan import names
from ..plan import signature as sig
from ..plan.model import KernelPlan
from ..reference import matmul
from ..reference.scheme import rel_error
from ..runtime import device
from .db import plausible
from .rpc import remote_modules


def check_candidate(scheme: Scheme, plan: KernelPlan, target: Target, trace: Any,
                    fn: str = names.FN_GEMM) -> str | None:
    """None when the whole kernel with this schedule of function fn matches lrqc.reference on
    random inputs, else why not."""
    rng = np.random.default_rng(1)
    try:
        kernel = compile_kernel(scheme, plan.m if scheme.static != "a" else plan.n, plan.n
                                if scheme.static != "a" else plan.m, plan.k, target,
                                traces={(plan.m, fn): trace})
        m, n, k = (plan.m, plan.n, plan.k) if scheme.static != "a" else (plan.n, plan.m, plan.k)
        A, B = rng.standard_normal((m, k)), rng.standard_normal((k, n))
        bias = rng.standard_normal(n)  # the schedule places the bias too (grouped outputs)
        want = matmul(scheme, A.astype(np.float32).astype(np.float64), B, bias=bias)
        err = rel_error(kernel.run(A, B, bias=bias), want)
    except (LrqcError, *TVM_ERRORS) as exc:  # fails to compile or run: the candidate is rejected
        return error_line(exc)
    return None if err < 1e-5 else f"relative error {err:.2e} against lrqc.reference"


def check_remote(plan: KernelPlan, rule: ScheduleRule, target: Target, traces: list, fn: str,
                 rpc: str, key: str | None) -> list[str | None]:
    """For a device reached through an RPC tracker only (CUDA tuning from a machine without
    the GPU): per trace, None when function fn scheduled by it computes, on that device and on
    the same random inputs, what the hand schedule computes (every buffer after the call;
    float buffers within 1e-5 relative), else why not. The hand schedules themselves are
    tested against lrqc.reference (the gpu tests)."""
    try:
        exs, arrays = _modules(plan, rule, target, (None, *traces), fn)
        mods, dev = remote_modules(exs, rpc, key, target)
    except (OSError, *TVM_ERRORS) as exc:  # pragma: no cover - needs a remote GPU
        return [error_line(exc)] * len(traces)  # no build or no session: every one rejected
    results = []
    for m in mods:
        args = [tvm.runtime.tensor(a, dev) for a in arrays]
        m["main"](*args)
        results.append([a.numpy() for a in args])
    return [_same(results[0], r) for r in results[1:]]


def _same(want: list, got: list) -> str | None:
    for n, (w, g) in enumerate(zip(want, got, strict=True)):
        if w.dtype.kind == "f":
            scale = max(float(np.abs(w).max()), 1e-30)
            if not np.all(np.isfinite(g)) or float(np.abs(g - w).max()) > 1e-5 * scale:
                return f"buffer {n} differs from the hand schedule's"
        elif not np.array_equal(w, g):
            return f"buffer {n} differs from the hand schedule's"
    return None


def compare(plan: KernelPlan, rule: ScheduleRule, target: Target, traces: list,
            fn: str = names.FN_GEMM, rpc: str | None = None, key: str | None = None,
            rounds: int = 7) -> tuple[float, list[tuple[float, float]]]:
    """(hand ms, [(tuned ms, median of the per-round ratios hand / tuned) per trace]) of the
    plan's function fn: the hand schedule and each trace compiled once and timed in
    alternating rounds (robust to the slow phases of a shared machine), on this host or, with
    rpc/key, on a device of that RPC tracker (every module exported as a shared library and
    uploaded in one session)."""
    exs, arrays = _modules(plan, rule, target, (None, *traces), fn)
    if rpc:
        mods, dev = remote_modules(exs, rpc, key, target)
    else:
        mods, dev = [ex.mod for ex in exs], device.device() if target.is_cuda else cpu()
    args = [tvm.runtime.tensor(a, dev) for a in arrays]
    timers = [_timer(m.time_evaluator("main", dev, number=3, repeat=3, min_repeat_ms=30), args)
              for m in mods]
    ms = np.array([[t() for t in timers] for _ in range(rounds)])  # rounds x (hand, traces...)
    return float(np.median(ms[:, 0])), [
        (float(np.median(ms[:, n])), float(np.median(ms[:, 0] / ms[:, n])))
        for n in range(1, ms.shape[1])]


def time_finalists(plan: KernelPlan, rule: ScheduleRule, target: Target, finalists: list,
                   fn: str, rpc: str | None, key: str | None, out: TextIO,
                   attempts: int = 2) -> tuple | str:
    """(hand ms, tuned ms, ratio, trace) of the best finalist, re-timed against the hand
    schedule in alternating rounds (one noisy measurement during the search can put a slow
    candidate first); measured again when the times are implausible (lrqc.tuning.db.plausible),
    and why not (a string) when they stay implausible: such times are never recorded."""
    for attempt in range(attempts):
        hand_ms, timed = compare(plan, rule, target, finalists, fn, rpc, key)
        (tuned_ms, ratio), trace = max(zip(timed, finalists, strict=True), key=lambda t: t[0][1])
        why = plausible(tuned_ms, hand_ms)
        if why is None:
            return hand_ms, tuned_ms, ratio, trace
        print(f"  {why}" + (": measuring again" if attempt + 1 < attempts else ""), file=out)
    return f"{why}, {attempts} times"


def _timer(f, args):
    return lambda: float(np.median(f(*args).results)) * 1e3


def _modules(plan, rule, target, traces, fn: str) -> tuple[list, list]:
    """(compiled modules of function fn: the hand schedule for a None trace, else the trace
    replayed; random input arrays for them)."""
    tensors = functions(plan, rule)[fn]
    target.grant_tiles(f"tuning for {target.as_dict()}")  # before a candidate's first tile
    exs = []
    for tr in traces:
        sch = Schedule(fixed_rows(prim_func(tensors), plan))
        if tr is None:
            schedule_function(fn, sch, plan, rule)
        else:
            replay(sch, tr)
        exs.append(compile_for(sch.mod, target))
    return exs, _random_arrays(tensors, np.random.default_rng(0), plan.m, plan.k)


def _random_arrays(tensors, rng, rows: int = 1, k: int = 1) -> list:
    """numpy arrays for the placeholders and output of a TE function, random integer data (the
    compensated pass's true row count: `rows`; A with free rows: the bucket's, `rows`, flat:
    rows x k elements)."""
    out = []
    for t in tensors:
        free = rows * k if len(t.shape) == 1 and t.op.name == sig.A else rows
        shape = [int(x) if isinstance(x, tir.IntImm) else free for x in t.shape]
        if t.op.name == "rows":
            out.append(np.full(shape, rows, str(t.dtype)))
        elif "int" in str(t.dtype):
            out.append(rng.integers(-8, 8, shape).astype(str(t.dtype)))
        else:
            out.append(rng.random(shape).astype(str(t.dtype)))
    return out
