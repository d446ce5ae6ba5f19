"""lrqc tune: MetaSchedule search over the schedules' own knobs (a rule's `knobs(plan, tiles)`
for the integer GEMM with its fused epilogues: rows and 16-column blocks per tile, k chunk; the
float32 GEMM's rows and k chunk; the vector widths of the quantization pass and of the
compensated pass that also writes A's residual), so every candidate keeps the rule's packed
layout and its intrinsic (MetaSchedule's default x86 space wastes most trials and can auto-tensorize
unpacked weights into wrong numbers, measured). Every kept candidate is compiled into
the whole kernel and checked against lrqc.reference before it is recorded; a wrong one is
rejected and counted. Records go to lrqc.tuning.db; build.compile replays them.

Trials run in chunks of `chunk` candidates into a MetaSchedule work directory kept in the cache
(work/<key hash>/), so an interrupted run resumes where it stopped and a time budget is checked
between chunks."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
import time
import types
from dataclasses import dataclass

import numpy as np

from .. import __version__
from ..errors import LrqcError
from ..frontend.unparse import unparse
from .db import PRUNE_HINT, BadRecord, Database, Record, make_key, plausible
from ..plan import names
from ..backend.schedule import tiles
from ..backend.compat import Schedule, prim_func, tvm, versions


TUNED_FUNCTIONS = (names.FN_QUANTIZE, names.FN_GEMM, names.FN_LOWRANK_U)  # what lrqc tune searches
CUDA_LIMITS = {"max_shared_memory_per_block": 49152, "max_threads_per_block": 1024}  # static
FINALISTS = 3  # checked candidates re-timed against the hand schedule before one is recorded


def record_key(plan, fn: str, tdict: dict) -> dict:
    """The database key of function fn of one plan (bucket) on target tdict."""
    return make_key(unparse(plan.scheme), fn, plan.m, plan.n, plan.k, tdict.as_dict(),
                    tdict.features,
                    {"lrqc": __version__, **versions()})


def space_knobs(plan, rule, fn: str) -> dict:
    """{knob name: candidates} of function fn's tuning space (those with a choice)."""
    from ..pipeline.build import functions, schedule_function

    seen = {}
    safe = unit_safe(fn, plan, rule)

    def probe(name, cands, hand_choice):
        seen[name] = tuple(sorted(_allowed(name, cands, hand_choice, safe) | {hand_choice}))
        return hand_choice

    schedule_function(fn, Schedule(prim_func(functions(plan, rule)[fn])), plan, rule, probe)
    return {n: c for n, c in seen.items() if len(c) > 1}


def tunable(plan, rule, fn: str = names.FN_GEMM) -> str | None:
    """Why function fn of the plan cannot be tuned with this rule, or None."""
    if fn == names.FN_GEMM and not plan.float_path and not hasattr(rule, "knobs"):
        return f"schedule rule {rule.NAME} defines no tuning knobs"
    if not space_knobs(plan, rule, fn):
        return "its schedule has no choice to tune at this shape"
    return None


def function_module(plan, rule, fn: str):
    from ..pipeline.build import functions

    return prim_func(functions(plan, rule)[fn])


def sampling_knob(sch, unit_safe=()):
    """knob(name, candidates, hand) drawing uniformly from the candidates (a MetaSchedule
    decision the search mutates). Only values that are 1 exactly when the hand choice is 1,
    except for the knobs in unit_safe (pure split factors): compute_at drops unit loops, and
    the search replays traces with mutated decisions, which must keep the number of loops each
    step sees."""
    def knob(name, cands, hand):
        cands = sorted(_allowed(name, cands, hand, unit_safe) | {hand})
        if len(cands) == 1:
            return cands[0]
        return sch.sample_categorical(candidates=cands, probs=[1.0 / len(cands)] * len(cands))
    return knob


def _allowed(name, cands, hand, unit_safe) -> set:
    return {c for c in cands if name in unit_safe or (c == 1) == (hand == 1)}


def unit_safe(fn: str, plan, rule) -> tuple:
    cpu_float = plan.float_path and getattr(rule, "FAMILY", "x86") != "cuda"  # tiles.float_gemm
    if fn != names.FN_GEMM or cpu_float or not hasattr(rule, "unit_safe"):
        return ()
    return tuple(rule.unit_safe(plan))


def replay(sch, trace_json) -> None:
    """Apply a recorded trace to a fresh schedule of the same function."""
    from tvm.s_tir.schedule import Trace

    register_intrinsics()
    Trace.apply_json_to_schedule(trace_json, sch)


def replay_error(plan, rule, fn: str, tdict: dict, trace) -> str | None:
    """None when the trace replays onto function fn of the plan, else why not (TVM's own
    checks of every schedule step: a record whose schedule was edited or belongs elsewhere)."""
    from ..pipeline.build import functions

    try:
        with tdict.tvm():
            replay(Schedule(prim_func(functions(plan, rule)[fn])), trace)
    except Exception as exc:  # noqa: BLE001 - whatever TVM raises for a trace it cannot apply
        return _why(exc)
    return None


def recorded_traces(plans, rule, tdict: dict, db: Database | None = None) -> tuple[dict, dict]:
    """({(m, fn): trace}, {(m, fn): how it was chosen}) from the tuning database (build.compile).
    A record is used when it is good (lrqc.tuning.db.check), measured faster than the hand
    schedule and its trace replays onto the function; otherwise the function keeps its hand
    schedule and `how` names the record and why it was not used."""
    from ..pipeline.build import plan_rule, tuned_functions

    db, traces, sources = db or Database(), {}, {}
    for p in plans:
        for fn in tuned_functions(p):
            try:
                rec = db.get(record_key(p, fn, tdict))
            except BadRecord as exc:
                sources[p.m, fn] = _ignored(exc.name, exc.why)
                continue
            if rec is None:
                continue
            if rec.tuned_ms > rec.hand_ms:  # never a slower build
                sources[p.m, fn] = (f"hand schedule (tuning record {rec.hash} measured slower: "
                                    f"{rec.tuned_ms:.3f} vs {rec.hand_ms:.3f} ms)")
                continue
            why = replay_error(p, plan_rule(p, rule, tdict.features), fn, tdict, rec.trace)
            if why:
                sources[p.m, fn] = _ignored(rec.hash, f"its schedule does not apply: {why}")
                continue
            traces[p.m, fn] = rec.trace
            sources[p.m, fn] = (f"tuning record {rec.hash}: {rec.tuned_ms:.3f} ms tuned vs "
                                f"{rec.hand_ms:.3f} ms hand when recorded")
    return traces, sources


def _ignored(name: str, why: str) -> str:
    return f"hand schedule (ignored tuning record {name}: {why}; {PRUNE_HINT})"


def _why(exc: BaseException) -> str:
    """One line for an exception from TVM or a build: its type and the last line of its text
    (TVM's messages end with the reason, after the C++ frames)."""
    return f"{type(exc).__name__}: {_last_line(str(exc)) if str(exc).strip() else ''}"


def register_intrinsics() -> None:
    """Every tensor intrinsic lrqc's schedules use (traces name them)."""
    from ..backend.intrin import x86 as intrin, cuda as intrin_wmma

    tiles.register_avx2()
    tiles.register_vnni()
    intrin.register(intrin.DP4A)
    for dt in intrin_wmma.ACC:
        intrin_wmma.register_all(dt)


def trace_to_json(trace):
    """A recorded trace as plain JSON (lists, strings, numbers): Trace.as_json() unwrapped."""
    return json.loads(json.dumps(_plain(trace.as_json())))


def _plain(x):
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if hasattr(x, "items"):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, tvm.tirx.IntImm):
        return int(x.value)
    if isinstance(x, tvm.tirx.FloatImm):
        return float(x.value)
    try:
        return [_plain(e) for e in x]
    except TypeError:
        return str(x)


@dataclass
class Progress:
    """Live progress: trials done, valid, best GOPS so far, estimated time left."""

    total: int
    flops: float
    done: int = 0
    valid: int = 0
    best_s: float = float("inf")
    t0: float = 0.0
    out: object = sys.stderr
    resumed: int = 0  # trials measured by an earlier, interrupted run
    first_error: str | None = None  # why the first failed candidate failed (build or run)

    def update(self, run_secs: list) -> None:
        if not run_secs:
            return
        for secs in run_secs:
            self.done += 1
            if secs is not None and np.isfinite(secs) and secs < 1e9:
                self.valid += 1
                self.best_s = min(self.best_s, secs)
        self.show()

    def show(self) -> None:
        spent, new = time.time() - self.t0, self.done - self.resumed
        left = spent / new * max(self.total - self.done, 0) if new > 0 else float("nan")
        best = "-"
        if self.best_s < float("inf"):
            best = f"{self.best_s * 1e3:.3f} ms" + (
                f" ({self.flops / self.best_s / 1e9:.1f} GOPS)" if self.flops else "")
        eta = f"about {left:.0f} s left" if not np.isnan(left) else "resuming"
        print(f"\r  trials {self.done}/{self.total}, valid {self.valid}, best {best}, {eta}   ",
              end="", file=self.out, flush=True)


def _callback(progress: Progress):
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class _Show(PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results,
                  runner_results):
            secs = []
            for b, r in zip(builder_results, runner_results):
                ok = b.error_msg is None and r.error_msg is None and r.run_secs
                secs.append(float(np.mean([float(x) for x in r.run_secs])) if ok else None)
                if not ok and progress.first_error is None:
                    progress.first_error = _last_line(b.error_msg or r.error_msg or "no time")
            progress.update(secs)

    return _Show()


def _last_line(text: str) -> str:
    """The last non-empty line of an error text (MetaSchedule's hold whole tracebacks)."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "unknown error"


def build_candidate(mod, target, _params=None):
    """MetaSchedule's builder function: the default one without its first step, an import of
    tvm.s_tir.tensor_intrin that takes over a minute per worker process here."""
    from tvm.driver import build as tvm_build

    return tvm_build(mod, target=target)


@contextlib.contextmanager
def _no_builtin_intrinsics():
    """MetaSchedule's TuneContext imports tvm.s_tir.tensor_intrin (every built-in tensor
    intrinsic, parsed from TVMScript: over 80 s on this machine) although lrqc's spaces use
    only lrqc's own intrinsics; a stand-in module during the search skips that. The real module
    stays importable afterwards."""
    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        yield
        return
    sys.modules[name] = types.ModuleType(name)
    try:
        yield
    finally:
        if isinstance(sys.modules.get(name), types.ModuleType) \
                and not hasattr(sys.modules[name], "__file__"):
            del sys.modules[name]


def cost_model_name() -> str:
    """xgb when xgboost is installed, else the random model (documented in the README)."""
    try:
        import xgboost  # noqa: F401

        return "xgb"
    except ImportError:
        return "random"


def _tracker(rpc: str, key: str | None) -> tuple[str, int]:
    host, _, port = rpc.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or not key:
        raise LrqcError(f"--rpc {rpc!r}: expected HOST:PORT of an RPC tracker, with --key KEY")
    return host, int(port)


TRACKER_WAIT_S = 10.0  # how long lrqc tune waits for a server with the key to register


def check_tracker(rpc: str, key: str | None) -> None:
    """LrqcError unless an RPC tracker answers at rpc (HOST:PORT) and a server with this key
    is registered there (waited for up to TRACKER_WAIT_S): MetaSchedule's runner would
    otherwise fail every measurement, in threads that print tracebacks."""
    import socket
    import struct

    from tvm.rpc import base

    host, port = _tracker(rpc, key)
    try:
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.settimeout(5)
            sock.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
            reply = base.recvall(sock, 4)
            if struct.unpack("<i", reply)[0] != base.RPC_TRACKER_MAGIC:
                raise LrqcError(f"--rpc {rpc}: what answers there is not a TVM RPC tracker")
            deadline = time.time() + TRACKER_WAIT_S
            while True:
                base.sendjson(sock, [base.TrackerCode.SUMMARY])
                summary = base.recvjson(sock)[1]
                keys = sorted({str(s.get("key", "")).split(":", 1)[-1]
                               for s in summary.get("server_info", [])})
                if key in keys or time.time() > deadline:
                    break
                time.sleep(0.5)
    except LrqcError:
        raise
    except (OSError, ValueError, RuntimeError, IndexError, AttributeError, struct.error) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else _why(exc)
        raise LrqcError(f"--rpc {rpc}: no TVM RPC tracker answers there ({why})") from None
    if key not in keys:
        raise LrqcError(f"--rpc {rpc}: the tracker has no server with --key {key} (its servers: "
                        f"{', '.join(keys) or 'none'})")


def _runner(rpc: str | None, key: str | None, timeout: float):
    from tvm.s_tir import meta_schedule as ms

    cfg = ms.runner.EvaluatorConfig(number=3, repeat=3, min_repeat_ms=50, enable_cpu_cache_flush=False)
    if not rpc:
        return ms.runner.LocalRunner(timeout_sec=timeout, evaluator_config=cfg)
    host, port = _tracker(rpc, key)
    return ms.runner.RPCRunner(
        ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=key,
                            session_timeout_sec=int(timeout)), evaluator_config=cfg)


def search(mod, plan, rule, fn: str, tdict: dict, work_dir, trials: int,
           budget_s: float | None, workers: int | None, rpc: str | None, key: str | None,
           cost_model: str | None, progress: Progress, chunk: int = 16, runner=None):
    """Run (or resume) MetaSchedule in work_dir until `trials` candidates are measured or the
    budget is spent; returns the MetaSchedule database. runner: a MetaSchedule runner instead
    of the local or RPC one (tests)."""
    from tvm.s_tir import meta_schedule as ms

    register_intrinsics()
    ms_log = logging.getLogger("tvm.s_tir.meta_schedule")
    ms_log.setLevel(logging.WARNING)  # its INFO lines go to work_dir/logs, not the terminal
    # MetaSchedule re-configures this logger by handler names; unnamed ones (added by a host
    # application, e.g. a test runner's log capture) would break its dictConfig
    ms_log.handlers = [h for h in ms_log.handlers if h.get_name()]
    target = tdict.tvm()
    if tdict.is_cuda:  # the limits MetaSchedule's GPU check reads (every arch lrqc builds)
        target = tvm.target.Target({**target.export(), **CUDA_LIMITS})

    def space(sch):  # one design space per loop order
        from ..pipeline.build import schedule_function, variants

        out = []
        for v in variants(fn, plan, rule):
            s = sch.copy()
            schedule_function(fn, s, plan, rule, sampling_knob(s, unit_safe(fn, plan, rule)), v)
            out.append(s)
        return out

    if tdict.is_cuda:  # lrqc's schedule as written: no rules, GPU limits checked
        space = ms.space_generator.ScheduleFn(
            space, sch_rules=[], mutator_probs={},
            postprocs=[ms.postproc.DisallowDynamicLoop(), ms.postproc.VerifyGPUCode()])
    work_dir.mkdir(parents=True, exist_ok=True)
    db = ms.database.JSONDatabase(work_dir=str(work_dir))
    progress.done = progress.valid = 0
    progress.update([float(np.mean([float(x) for x in rec.run_secs])) if rec.run_secs else None
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
                mod, target=target, work_dir=str(work_dir), max_trials_global=n,
                num_trials_per_iter=n, builder=ms.builder.LocalBuilder(
                    max_workers=workers, f_build=build_candidate),
                runner=runner or _runner(rpc, key, 60.0), database=db,
                cost_model=cost_model or cost_model_name(),
                measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"),
                                   _callback(progress)],
                strategy=ms.search_strategy.EvolutionarySearch(
                    population_size=64, init_min_unmeasured=16, genetic_num_iters=2),
                space=space, task_scheduler="round-robin",
                num_tuning_cores=workers or "physical")
        if progress.done == before:  # the space is exhausted: nothing new to measure
            break
    print(file=progress.out)
    return db


def _random_arrays(tensors, rng, rows: int = 1) -> list:
    """numpy arrays for the placeholders and output of a TE function, random integer data (the
    compensated pass's true row count: `rows`)."""
    out = []
    for t in tensors:
        shape = [int(x) for x in t.shape]
        if t.op.name == "rows":
            out.append(np.full(shape, rows, str(t.dtype)))
        elif "int" in str(t.dtype):
            out.append(rng.integers(-8, 8, shape).astype(str(t.dtype)))
        else:
            out.append(rng.random(shape).astype(str(t.dtype)))
    return out


def _device(tdict: dict):
    """The local device that runs the target's code."""
    from ..backend.compat import cpu

    if tdict.is_cuda:
        from ..backend.cuda import gpu

        return gpu.device()
    return cpu()


def compare(plan, rule, tdict: dict, traces, fn: str = names.FN_GEMM, rpc: str | None = None,
            key: str | None = None, rounds: int = 7) -> tuple[float, list]:
    """(hand ms, [(tuned ms, median of the per-round ratios hand / tuned) per trace]) of the
    plan's function fn: the hand schedule and each trace compiled once and timed in
    alternating rounds (robust to the slow phases of a shared machine), on this host or, with
    rpc/key, on a device of that RPC tracker (every module exported as a shared library and
    uploaded in one session)."""
    exs, arrays = _modules(plan, rule, tdict, (None, *traces), fn)
    if rpc:
        mods, dev = _remote_modules(exs, rpc, key, tdict)
    else:
        mods, dev = [ex.mod for ex in exs], _device(tdict)
    args = [tvm.runtime.tensor(a, dev) for a in arrays]
    timers = [_timer(m.time_evaluator("main", dev, number=3, repeat=3, min_repeat_ms=30), args)
              for m in mods]
    ms = np.array([[t() for t in timers] for _ in range(rounds)])  # rounds x (hand, traces...)
    return float(np.median(ms[:, 0])), [
        (float(np.median(ms[:, n])), float(np.median(ms[:, 0] / ms[:, n])))
        for n in range(1, ms.shape[1])]


def _timer(f, args):
    return lambda: float(np.median(f(*args).results)) * 1e3


def _modules(plan, rule, tdict: dict, traces, fn: str) -> tuple[list, list]:
    """(compiled modules of function fn: the hand schedule for a None trace, else the trace
    replayed; random input arrays for them)."""
    from ..pipeline.build import functions, schedule_function
    from ..backend.compat import compile_module

    tensors = functions(plan, rule)[fn]
    exs = []
    for tr in traces:
        sch = Schedule(prim_func(tensors))
        if tr is None:
            schedule_function(fn, sch, plan, rule)
        else:
            replay(sch, tr)
        with tdict.tvm():
            exs.append(compile_module(sch.mod, tdict.tvm()))
    return exs, _random_arrays(tensors, np.random.default_rng(0), plan.m)


def _remote_modules(exs, rpc: str, key: str | None, tdict: dict) -> tuple[list, object]:
    """The modules exported, uploaded and loaded in one session of the tracker's device; and
    that session's device (its CPU, or its GPU for CUDA targets)."""
    import tempfile
    from pathlib import Path

    from tvm import rpc as tvm_rpc

    host, port = _tracker(rpc, key)
    sess = tvm_rpc.connect_tracker(host, port).request(key, session_timeout=300)
    mods = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, ex in enumerate(exs):
            lib = Path(tmp) / f"lrqc_candidate{n}.so"
            ex.export_library(str(lib))
            sess.upload(str(lib))
            mods.append(sess.load_module(lib.name))
    return mods, (sess.cuda(0) if tdict.is_cuda else sess.cpu())


def check_remote(plan, rule, tdict: dict, traces, fn: str, rpc: str, key: str | None) -> list:
    """For a device reached through an RPC tracker only (CUDA tuning from a machine without
    the GPU): per trace, None when function fn scheduled by it computes, on that device and on
    the same random inputs, what the hand schedule computes (every buffer after the call;
    float buffers within 1e-5 relative), else why not. The hand schedules themselves are
    tested against lrqc.reference (the gpu tests)."""
    try:
        exs, arrays = _modules(plan, rule, tdict, (None, *traces), fn)
        mods, dev = _remote_modules(exs, rpc, key, tdict)
    except Exception as exc:  # noqa: BLE001  # pragma: no cover - needs a remote GPU
        return [_why(exc)] * len(traces)
    results = []
    for m in mods:
        args = [tvm.runtime.tensor(a, dev) for a in arrays]
        m["main"](*args)
        results.append([a.numpy() for a in args])
    return [_same(results[0], r) for r in results[1:]]


def _same(want: list, got: list) -> str | None:
    for n, (w, g) in enumerate(zip(want, got)):
        if w.dtype.kind == "f":
            scale = max(float(np.abs(w).max()), 1e-30)
            if not np.all(np.isfinite(g)) or float(np.abs(g - w).max()) > 1e-5 * scale:
                return f"buffer {n} differs from the hand schedule's"
        elif not np.array_equal(w, g):
            return f"buffer {n} differs from the hand schedule's"
    return None


def hand_trace(plan, rule, fn: str):
    """The trace (JSON) of function fn's hand schedule: the hand point of its tuning space."""
    from ..pipeline.build import functions, schedule_function

    sch = Schedule(prim_func(functions(plan, rule)[fn]))
    schedule_function(fn, sch, plan, rule)
    return trace_to_json(sch.trace)


def check_candidate(scheme, plan, tdict: dict, trace, fn: str = names.FN_GEMM) -> str | None:
    """None when the whole kernel with this schedule of function fn matches lrqc.reference on
    random inputs, else why not."""
    from ..reference import matmul
    from ..reference.scheme import rel_error
    from ..pipeline.build import compile as compile_kernel

    rng = np.random.default_rng(1)
    try:
        kernel = compile_kernel(scheme, plan.m if scheme.static != "a" else plan.n, plan.n
                                if scheme.static != "a" else plan.m, plan.k, tdict,
                                traces={(plan.m, fn): trace})
        m, n, k = (plan.m, plan.n, plan.k) if scheme.static != "a" else (plan.n, plan.m, plan.k)
        A, B = rng.standard_normal((m, k)), rng.standard_normal((k, n))
        err = rel_error(kernel.run(A, B), matmul(scheme, A.astype(np.float32).astype(np.float64), B))
    except Exception as exc:  # noqa: BLE001 - a candidate that fails to compile or run is rejected
        return _why(exc)
    return None if err < 1e-5 else f"relative error {err:.2e} against lrqc.reference"


def tune_scheme(scheme, M, N: int, K: int, target=None, trials: int = 64,
                budget_s: float | None = None, workers: int | None = None, rpc: str | None = None,
                key: str | None = None, cost_model: str | None = None, db: Database | None = None,
                out=None, functions: tuple | None = None) -> list[dict]:
    """Tune every tunable kernel function (of `functions`, default TUNED_FUNCTIONS) of the
    scheme's buckets; returns one report row per function: {"symbol", "status", "record", "tuned_ms", "hand_ms", "trials", "valid",
    "rejected", "wall_s"}."""
    from ..plan.buckets import bucket_plans
    from ..backend.schedule.rules import choose
    from ..backend.target import resolve

    out = out or sys.stderr
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
    tdict = resolve(target)
    if tdict.is_cuda:
        _gpu_ready(tdict, rpc)
    elif tdict.is_cross:
        raise LrqcError(f"lrqc tune checks every kept candidate against lrqc.reference on this "
                        f"host, which cannot run {tdict.get('mtriple')} code; tune on a machine "
                        "of that architecture (locally or as the RPC client)")
    elif not tdict.features <= resolve(None).features:
        raise LrqcError("lrqc tune checks every kept candidate against lrqc.reference on this "
                        "host, which lacks the target's "
                        f"{', '.join(sorted(tdict.features - resolve(None).features))}; tune "
                        "on a machine that can run the target (locally or as the RPC client)")
    if rpc:
        check_tracker(rpc, key)
    db = db or Database()
    plans = bucket_plans(scheme, M, N, K)
    rule, _ = choose(tdict.family, plans[-1], tdict.features)
    from ..pipeline.build import plan_rule, tuned_functions

    jobs = [(plan, fn) for plan in plans for fn in functions or TUNED_FUNCTIONS
            if fn in tuned_functions(plan)]  # lowrank_u only with B's low-rank term
    if not jobs:
        raise LrqcError(f"nothing to tune: {', '.join(functions or TUNED_FUNCTIONS)} "
                        "(lowrank_u exists only when B has a lowrank term)")
    budget_each = budget_s / len(jobs) if budget_s else None
    rows = []
    for plan, fn in jobs:
        sym = names.symbol(fn, plan.m)
        brule = plan_rule(plan, rule, tdict.features)  # CUDA: the bucket's own rule
        why = tunable(plan, brule, fn)
        if why:
            print(f"{sym}: not tuned: {why}", file=out)
            rows.append({"symbol": sym, "status": f"not tuned: {why}"})
            continue
        rows.append(_tune_function(scheme, plan, brule, fn, tdict, db, trials, budget_each,
                                   workers, rpc, key, cost_model, out))
    return rows


def _gpu_ready(tdict: dict, rpc: str | None) -> None:
    """CUDA tuning measures and checks every candidate on a GPU: this machine's (the target's
    arch, or a newer one), or the device of an RPC tracker (rpc)."""
    if rpc:
        return
    from ..backend.cuda import gpu

    if not gpu.gpu_present():
        raise LrqcError("lrqc tune --target cuda measures and checks candidates on a GPU, and "
                        "this machine has none that TVM can use: run it on the GPU machine, or "
                        "give --rpc HOST:PORT --key KEY of an RPC tracker whose server has the "
                        "GPU")
    why = gpu.arch_mismatch(tdict)
    if why:
        raise LrqcError(f"lrqc tune: {why}")


def time_finalists(plan, rule, tdict: dict, finalists, fn: str, rpc, key, out,
                   attempts: int = 2) -> tuple | str:
    """(hand ms, tuned ms, ratio, trace) of the best finalist, re-timed against the hand
    schedule in alternating rounds (one noisy measurement during the search can put a slow
    candidate first); measured again when the times are implausible (lrqc.tuning.db.plausible),
    and why not (a string) when they stay implausible: such times are never recorded."""
    for attempt in range(attempts):
        hand_ms, timed = compare(plan, rule, tdict, finalists, fn, rpc, key)
        (tuned_ms, ratio), trace = max(zip(timed, finalists), key=lambda t: t[0][1])
        why = plausible(tuned_ms, hand_ms)
        if why is None:
            return hand_ms, tuned_ms, ratio, trace
        print(f"  {why}" + (": measuring again" if attempt + 1 < attempts else ""), file=out)
    return f"{why}, {attempts} times"


def _tune_function(scheme, plan, rule, fn, tdict, db, trials, budget_s, workers, rpc, key,
                   cost_model, out) -> dict:
    """Search, check, time and record one function of one bucket (tune_scheme's report row)."""
    from ..pipeline.build import variants

    sym = names.symbol(fn, plan.m)
    rkey = record_key(plan, fn, tdict)
    knobs = space_knobs(plan, rule, fn)
    orders = [v for v in variants(fn, plan, rule) if v is not None]
    size = int(np.prod([len(c) for c in knobs.values()])) * max(len(orders), 1)
    trials = min(trials, size)  # MetaSchedule would measure the same candidates again
    space = ", ".join([f"{n} {list(c)}" for n, c in knobs.items()]
                      + ([f"loop order {orders}"] if len(orders) > 1 else []))
    print(f"{sym}: tuning {space}: {size} candidates (M={plan.m} N={plan.n} K={plan.k}, "
          f"{trials} trials at most, "
          f"cost model {cost_model or cost_model_name()}, work dir {db.work_dir(rkey)})", file=out)
    t0 = time.time()
    flops = 2.0 * plan.m * plan.n * plan.k if fn == names.FN_GEMM else 0.0
    progress = Progress(trials, flops, t0=t0, out=out)
    mod = function_module(plan, rule, fn)
    msdb = search(mod, plan, rule, fn, tdict, db.work_dir(rkey), trials, budget_s, workers,
                  rpc, key, cost_model, progress)
    top = msdb.get_top_k(msdb.commit_workload(mod), 8)
    checked, rejected = [], 0
    traces = [trace_to_json(cand.trace) for cand in top]
    remote = None
    if rpc and tdict.is_cuda:  # no GPU here: each candidate against the hand schedule there
        remote = check_remote(plan, rule, tdict, traces, fn, rpc, key)
    for n, trace in enumerate(traces):  # the best ones MetaSchedule measured that compute
        why = remote[n] if remote is not None else check_candidate(scheme, plan, tdict, trace,
                                                                   fn)
        if why is None:
            checked.append(trace)
            if len(checked) == FINALISTS:
                break
            continue
        rejected += 1
        print(f"  rejected a candidate: {why[:300]}", file=out)
    row = {"symbol": sym, "trials": progress.done, "valid": progress.valid,
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
    timing = time_finalists(plan, rule, tdict, finalists, fn, rpc, key, out)
    if isinstance(timing, str):
        row.update(status=f"not recorded ({timing}): the hand schedule stays",
                   wall_s=time.time() - t0, failed=True)
        print(f"  {row['status']}", file=out)
        return row
    hand_ms, tuned_ms, ratio, trace = timing
    row["hand_point"] = trace == own
    wall = row["wall_s"] = time.time() - t0
    rec = Record(rkey, trace, tuned_ms, hand_ms, progress.done, progress.valid, rejected,
                 wall_s=wall)
    db.put(rec)
    row.update(status="recorded", record=rec.hash, tuned_ms=tuned_ms, hand_ms=hand_ms,
               speedup=ratio)
    slower = " (slower than the hand schedule: builds keep the hand schedule)" \
        if tuned_ms > hand_ms else ""
    where = f" on the RPC device {key}" if rpc else ""
    if row["hand_point"]:
        print("  the hand schedule's own point measured best among the finalists", file=out)
    print(f"  recorded {rec.hash}: {tuned_ms:.3f} ms tuned vs {hand_ms:.3f} ms hand{where} "
          f"({hand_ms / tuned_ms:.2f}x), {progress.valid}/{progress.done} valid, "
          f"{rejected} rejected, {wall:.0f} s{slower}", file=out)
    return row
