"""lrqc tune and the tuning database: records keyed so they never leak across targets or
versions, every kept candidate checked against lrqc.reference (wrong ones rejected and
counted), builds replaying records, lrqc cache commands, tuning through an RPC tracker and
server on loopback; bad, edited, implausible and tampered records listed, ignored by builds
with the reason, refused on import and write, and removed by prune."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lrqc
from lrqc.cli import main
from lrqc.errors import LrqcError
from lrqc.reference import matmul
from lrqc.reference.scheme import rel_error
from lrqc.tuning.db import Database, Record, cache_dir, key_hash, make_key

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SCHEME = "scheme pc {\n a: int8 per_channel\n b: int8 per_channel\n}\n"
DIMS = (16, 64, 128)


@pytest.fixture(autouse=True)
def _vector_rules_host(monkeypatch):
    """These tests drive the tuner through the host's vector rules (VNNI or AVX2: knobs at
    every test shape, two loop orders). On a CPU with AMX the tile rule would take the test
    shapes, so the host is taken as one whose OS refuses the tile state, as older Linux does
    (the AMX rule's own tuning: test_amx_tuning_records_replay)."""
    monkeypatch.setattr("lrqc.backend.target.enable_amx", lambda: "refused for these tests")


def _key(**kw):
    base = {"scheme_text": "s", "function": "gemm", "m": 16, "n": 64, "k": 128,
            "target": {"kind": "llvm", "mcpu": "znver3"}, "features": {"avx2"},
            "versions": {"lrqc": "0.1.0", "tvm": "0.27.0.post1", "llvm": 22}}
    base.update(kw)
    return make_key(**base)


STUB_TRACE = [[["EnterPostproc", [], [], []]], []]  # one instruction; never replayed here


def test_keys_separate_targets_versions_and_shapes(cache):
    assert cache_dir() == cache / "cache"
    keys = [_key(), _key(target={"kind": "llvm", "mcpu": "znver4"}),
            _key(features={"avx2", "avx512vnni"}),
            _key(versions={"lrqc": "0.1.0", "tvm": "0.28.0", "llvm": 22}), _key(m=32),
            _key(function="quantize_a")]
    assert len({key_hash(k) for k in keys}) == len(keys)
    db = Database()
    db.put(Record(keys[0], STUB_TRACE, 1.0, 2.0))
    assert db.get(keys[0]).tuned_ms == 1.0
    assert all(db.get(k) is None for k in keys[1:])  # no record leaks to another key
    path = cache / "rec.jsonl"
    assert db.export(path) == 1
    other = Database(cache / "other")
    assert other.import_(path) == 1 and other.get(keys[0]).hand_ms == 2.0
    (cache / "bad.jsonl").write_text('{"key": 1}\n')
    with pytest.raises(LrqcError, match=r"bad.jsonl:1: not a tuning record"):
        other.import_(cache / "bad.jsonl")
    (db.records_dir / f"{key_hash(keys[0])}.json").write_text("{")
    with pytest.raises(LrqcError, match="bad tuning record .*not valid JSON"):
        db.get(keys[0])
    db.put(Record(keys[1], STUB_TRACE, 1.0, 2.0))  # stale: made by no lrqc that runs here
    assert main(["cache", "prune"]) == 0 and db.paths() == []  # corrupt and stale, only


def test_tune_records_check_and_build_replays(cache, capsys):
    (cache / "pc.lrq").write_text(SCHEME)
    m, n, k = DIMS
    assert main(["tune", str(cache / "pc.lrq"), "--dims", f"M={m},N={n},K={k}", "--trials", "4",
                 "--cost-model", "random"]) == 0
    out = capsys.readouterr()
    assert "trials 4/4" in out.err and "gemm_m16" in out.out and "quantize_a_m16" in out.out
    db = Database()
    recs = {r.key["function"]: r for r in db.all()}
    assert set(recs) == {"gemm", "quantize_a"}  # the quantization pass's vector width, too
    rec = recs["gemm"]
    assert rec.trials == 4 and rec.rejected == 0 and rec.key["m"] == m
    assert 1 <= recs["quantize_a"].trials <= 4  # its space: 8, 16, 32 or 64 lanes
    s = lrqc.parse_schemes(SCHEME)["pc"]
    kernel = lrqc.compile(s, M=m, N=n, K=k)
    how = kernel.schedules["gemm_m16"]
    q = recs["quantize_a"]
    assert kernel.schedules["quantize_a_m16"].startswith(
        f"tuning record {q.hash}" if q.tuned_ms <= q.hand_ms else "hand schedule (tuning record")
    if rec.tuned_ms <= rec.hand_ms:
        assert how.startswith(f"tuning record {rec.hash}"), how
    else:  # a record slower than the hand schedule is never used
        assert how.startswith(f"hand schedule (tuning record {rec.hash} measured slower"), how
    from lrqc.pipeline.compile import compile as compile_kernel

    replayed = compile_kernel(s, m, n, k, traces={(m, "gemm"): rec.trace})
    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    ref = matmul(s, A.astype(np.float32).astype(np.float64), B)
    assert rel_error(kernel.run(A, B), ref) < 1e-5 and rel_error(replayed.run(A, B), ref) < 1e-5
    untuned = lrqc.compile(s, M=m, N=n, K=k, tuned=False)
    assert untuned.schedules["gemm_m16"].startswith("hand schedule")
    assert main(["cache", "ls"]) == 0 and rec.hash in capsys.readouterr().out
    assert main(["cache", "show", rec.hash[:6]]) == 0
    assert "versions" in capsys.readouterr().out
    verified = main(["cache", "verify"]) == 0 and capsys.readouterr().out
    assert verified and f"{rec.hash}: ok" in verified and f"{q.hash}: ok" in verified
    assert main(["cache", "export", str(cache / "all.jsonl"), rec.hash]) == 0
    assert json.loads((cache / "all.jsonl").read_text())["key"] == rec.key
    assert main(["cache", "prune"]) == 0 and "removed 0" in capsys.readouterr().out
    assert main(["cache", "prune", "--all"]) == 0 and db.all() == []
    assert main(["cache", "import", str(cache / "all.jsonl")]) == 0 and len(db.all()) == 1
    # a resumed run measures nothing new and records again
    assert main(["tune", str(cache / "pc.lrq"), "--dims", f"M={m},N={n},K={k}", "--trials", "4",
                 "--cost-model", "random", "--only", "gemm"]) == 0
    assert "resuming" in capsys.readouterr().err


def test_wrong_candidates_are_rejected_and_counted(cache, monkeypatch):
    from lrqc.tuning import tune

    s = lrqc.parse_schemes(SCHEME)["pc"]
    plan = tune_plan(s)
    why = tune.check_candidate(s, plan, _host(),
                               [[["GetSBlock", [], ["nope", "main"], ["b0"]]], []])
    assert why is not None
    calls = []
    real = tune.check_candidate

    def first_wrong(*args):
        calls.append(1)
        return "relative error 1.0e+00 against lrqc.reference" if len(calls) == 1 else real(*args)

    monkeypatch.setattr(tune, "check_candidate", first_wrong)
    rows = tune.tune_scheme(s, *DIMS, trials=4, cost_model="random", functions=("gemm",))
    assert rows[0]["rejected"] == 1 and rows[0]["trials"] == 4


@pytest.mark.parametrize("a,b,fn", [
    ("int8 per_vector(32)", "int4 per_vector(32)", "gemm"),  # a per-group GEMM
    ("float16", "int4 per_channel", "gemm"),  # the float32 GEMM's rows and k chunk
    ("int8 per_tensor + lowrank(rank=2)", "int8 per_channel", "quantize_a"),  # compensated pass
    ("int8 per_channel", "int4 per_channel + lowrank(rank=4)", "lowrank_u"),  # A' L_B, rank blocks
])
def test_tuning_spaces_beyond_single_group_gemms(cache, a, b, fn):
    from lrqc.tuning.records import current_key
    from lrqc.tuning.search import space_knobs
    from lrqc.tuning.tune import tune_scheme

    s = lrqc.parse_schemes(f"scheme t {{\n a: {a}\n b: {b}\n}}")["t"]
    plan = tune_plan(s)
    assert space_knobs(plan, _rule(plan), fn)  # something to choose
    [row] = tune_scheme(s, *DIMS, trials=2, cost_model="random", functions=(fn,))
    assert row["status"] == "recorded" and row["rejected"] == 0  # checked against the reference
    rec = Database().get(current_key(plan, fn, _host()))
    kernel = lrqc.compile(s, *DIMS)
    assert kernel.schedules[f"{fn}_m16"].startswith(
        f"tuning record {rec.hash}" if rec.tuned_ms <= rec.hand_ms else "hand schedule (tuning")
    rng = np.random.default_rng(4)
    A, B = rng.standard_normal((DIMS[0], DIMS[2])), rng.standard_normal((DIMS[2], DIMS[1]))
    ref = matmul(s, A.astype(np.float32).astype(np.float64), B)
    assert rel_error(kernel.run(A, B), ref) < 1e-5


@pytest.mark.parametrize("a,b", [("int8 per_channel", "int8 per_channel"),
                                 ("int8 per_tensor + lowrank(rank=2)",
                                  "int4 per_channel + lowrank(rank=3)")])
def test_every_loop_order_of_the_space_matches_the_reference(a, b):
    """The tuner's design spaces (loop orders x knobs) compute the scheme: each order, with
    its hand knobs, replayed as a trace into the whole kernel."""
    from lrqc.backend.compat import Schedule, prim_func
    from lrqc.backend.schedule.trace import trace_to_json
    from lrqc.pipeline.compile import compile as compile_kernel
    from lrqc.pipeline.functions import functions, schedule_function, variants

    s = lrqc.parse_schemes(f"scheme t {{\n a: {a}\n b: {b}\n}}")["t"]
    plan = tune_plan(s)
    rule = _rule(plan)
    orders = variants("gemm", plan, rule)
    packed = "int4" in b  # packed weights: also unpacked in the k loop
    assert sorted(orders) == [*(["k_inner"] if packed else []), "k_outer", "rows_outer"]
    rng = np.random.default_rng(6)
    A, B = rng.standard_normal((DIMS[0], DIMS[2])), rng.standard_normal((DIMS[2], DIMS[1]))
    ref = matmul(s, A.astype(np.float32).astype(np.float64), B)
    for v in orders:
        sch = Schedule(prim_func(functions(plan, rule)["gemm"]))
        schedule_function("gemm", sch, plan, rule, None, v)
        kernel = compile_kernel(s, *DIMS, traces={(plan.m, "gemm"): trace_to_json(sch.trace)})
        assert rel_error(kernel.run(A, B), ref) < 1e-5, v


def _rule(plan):
    from lrqc.backend.schedule.rules import choose


    return choose("x86", plan, _host())[0]


def _host():
    from lrqc.backend.target import resolve

    return resolve(None)


def tune_plan(s):
    from lrqc.plan.buckets import bucket_plans

    return bucket_plans(s, *DIMS)[0]


def test_tune_through_an_rpc_tracker_on_loopback(cache, monkeypatch):
    pytest.importorskip("tornado")
    from tvm.rpc.server import Server
    from tvm.rpc.tracker import Tracker

    from lrqc.tuning import check
    from lrqc.tuning.tune import tune_scheme

    remote = []  # the final tuned-vs-hand timing goes through the tracker too

    def spy(*args):
        remote.append(args[1:3])
        return real(*args)

    real = check.remote_modules
    monkeypatch.setattr(check, "remote_modules", spy)

    tracker = Tracker(host="127.0.0.1", port=9190, port_end=9290, silent=True)
    server = Server(host="127.0.0.1", port=9300, port_end=9400, key="lrqc-test",
                    tracker_addr=("127.0.0.1", tracker.port), silent=True)
    try:
        rows = tune_scheme(lrqc.parse_schemes(SCHEME)["pc"], *DIMS, trials=4,
                           rpc=f"127.0.0.1:{tracker.port}", key="lrqc-test", cost_model="random",
                           functions=("gemm",))
    finally:
        server.terminate()
        tracker.terminate()
    assert rows[0]["trials"] == 4 and rows[0]["valid"] == 4
    assert rows[0]["tuned_ms"] > 0 and rows[0]["hand_ms"] > 0
    # the hand schedule and every finalist timed in one session
    assert remote == [(f"127.0.0.1:{tracker.port}", "lrqc-test")]


def test_tune_refuses_bad_arguments(cache, capsys):
    (cache / "pc.lrq").write_text(SCHEME)
    assert main(["tune", str(cache / "pc.lrq"), "--dims", "M=16,N=64,K=128", "--rpc", "nohost",
                 "--trials", "1"]) == 1
    assert "expected HOST:PORT" in capsys.readouterr().err
    assert main(["tune", str(cache / "pc.lrq"), "--dims", "M=16,N=64,K=128",
                 "--time-budget", "soon"]) == 1
    assert "--time-budget" in capsys.readouterr().err
    assert main(["tune", str(cache / "pc.lrq"), "--dims", "M=16,N=64,K=128", "--only",
                 "sparse"]) == 1
    assert "expected some of quantize_a, gemm" in capsys.readouterr().err


@pytest.mark.parametrize("a,b,dims", [("int8 per_channel", "int8 per_channel", (16, 64, 256)),
                                      ("int8 per_channel", "int4 per_channel + lowrank(rank=3)",
                                       (16, 64, 128)),
                                      ("int8 per_vector(64)", "int8 per_vector(64)", (8, 64, 256)),
                                      ("uint4 per_vector(16, scale=uint6 per_channel)",
                                       "int4 per_vector(16, scale=uint6 per_channel)",
                                       (16, 128, 256)),
                                      ("uint4 per_vector(16, scale=uint6 per_channel)",
                                       "int4 per_vector(16, scale=uint6 per_channel)",
                                       (64, 64, 2048))])
def test_vnni_space_corners_compile_to_vpdpbusd(a, b, dims):
    """The VNNI rule's tuning space (which lrqc tune samples on a VNNI machine only: candidates
    are checked there) compiles at every corner: each knob at its smallest and largest value,
    the others at the hand choice, scheduled as MetaSchedule would draw them."""
    from lrqc.backend.compat import Schedule, compile_module, prim_func
    from lrqc.backend.schedule.rules import choose
    from lrqc.backend.target import resolve
    from lrqc.pipeline.functions import functions, schedule_function
    from lrqc.plan.support import make_plan
    from lrqc.tuning.search import space_knobs

    t = resolve("x86-avx512-vnni")
    s = lrqc.parse_schemes(f"scheme t {{\n a: {a}\n b: {b}\n}}")["t"]
    plan = make_plan(s, *dims)
    rule, _ = choose("x86", plan, t)
    assert rule.name == "x86_vnni"
    space = space_knobs(plan, rule, "gemm")
    assert "mr" in space and ("kc" in space or plan.groups > 1)
    for name, cands in space.items():
        for value in (cands[0], cands[-1]):
            sch = Schedule(prim_func(functions(plan, rule)["gemm"]))
            schedule_function("gemm", sch, plan, rule,
                              lambda n, c, h, v=value, name=name: v if n == name else h)
            asm = compile_module(sch.mod, t.tvm()).mod.inspect_source("asm")
            assert asm.count("vpdpbusd") >= 4, (name, value)


# ---- bad records: one check on read, import and write; builds ignore them and say which ----

def _crafted(fn="gemm", **fields):
    """A good record of the hand schedule's own trace for SCHEME at DIMS on this host (no
    search), with `fields` overriding its JSON."""
    from dataclasses import asdict

    from lrqc.tuning.records import current_key
    from lrqc.tuning.search import hand_trace

    s = lrqc.parse_schemes(SCHEME)["pc"]
    plan = tune_plan(s)
    rec = Record(current_key(plan, fn, _host()), hand_trace(plan, _rule(plan), fn), 1.0, 1.1)
    return s, rec, {**asdict(rec), **fields}


def _write(rec_hash, content):
    db = Database()
    db.records_dir.mkdir(parents=True, exist_ok=True)
    path = db.records_dir / f"{rec_hash}.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, dict):
        path.write_text(json.dumps(content))
    else:
        path.mkdir()
        (path / "x").write_text("x")
    return path


def _tampered(d):
    split = next(i for i in d["trace"][0] if i[0] == "Split" and i[1][-1] == 16)
    split[1][-1] = 17  # 17 columns per block: the 16-lane intrinsic cannot take them
    return d


def _json_with(**fields):
    return _crafted(**fields)[2]


BAD = {  # name: (file content, why the check refuses it)
    "tuned_ms 0": (lambda: _json_with(tuned_ms=0), "tuned_ms must be a positive number, got 0"),
    "tuned_ms string": (lambda: _json_with(tuned_ms="fast"),
                        'tuned_ms must be a positive number, got "fast"'),
    "tuned_ms null": (lambda: _json_with(tuned_ms=None),
                      "tuned_ms must be a positive number, got null"),
    "key not an object": (lambda: _json_with(key={"1": 2}), "its key must be an object"),
    "key field types": (lambda: {**_json_with(), "key": {**_json_with()["key"], "m": "16"}},
                        'key.m must be a positive integer, got "16"'),
    "binary": (lambda: b"\x93NUMPY\x00\xff", "binary content, not a tuning record"),
    "directory": (lambda: None, "is a directory, not a tuning record"),
    "implausible": (lambda: _json_with(tuned_ms=0.004, hand_ms=2.857),
                    "implausible speedup: 0.004 ms tuned vs 2.857 ms hand (714x"),
    "below the floor": (lambda: _json_with(tuned_ms=1e-7, hand_ms=1e-6),
                        "implausible time: tuned 1.00e-07 ms"),
    "empty trace": (lambda: _json_with(trace=[[], []]), "trace has no instructions"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_records_are_listed_ignored_by_builds_and_pruned(cache, capsys, case):
    content, why = BAD[case]
    s, rec, _ = _crafted()
    path = _write(rec.hash, content())
    with pytest.raises(LrqcError, match=r"bad tuning record .*`lrqc cache prune` removes it"):
        Database().get(rec.key)
    assert main(["cache", "ls"]) == 0  # lists it, does not break
    out = capsys.readouterr().out
    assert f"{rec.hash}  BAD: {why}" in out, out
    assert main(["cache", "show", rec.hash[:8]]) == 1 and why in capsys.readouterr().out
    assert main(["cache", "verify"]) == 1 and f"{rec.hash}: BAD: {why}" in capsys.readouterr().out
    kernel = lrqc.compile(s, *DIMS)  # the hand schedule, saying which record it ignored and why
    how = kernel.schedules["gemm_m16"]
    assert how.startswith(f"hand schedule (ignored tuning record {rec.hash}: {why}"), how
    assert main(["cache", "prune"]) == 0  # the advised command removes it
    assert f"removed {rec.hash} (bad: {why}" in capsys.readouterr().out
    assert not path.exists() and not path.is_symlink() and Database().paths() == []


def test_a_record_with_an_edited_key_is_bad_and_pruned(cache, capsys):
    _, rec, d = _crafted()
    d["key"]["m"] = 32  # no longer hashes to its file name
    path = _write(rec.hash, d)
    assert main(["cache", "verify"]) == 1
    assert "not to its file name" in capsys.readouterr().out
    assert main(["cache", "prune"]) == 0 and "removed 1 record(s)" in capsys.readouterr().out
    assert not path.exists()


def test_a_tampered_schedule_is_ignored_by_builds_condemned_and_pruned(cache, capsys):
    s, rec, d = _crafted()
    _write(rec.hash, d)
    kernel = lrqc.compile(s, *DIMS)  # the untampered record is used
    assert kernel.schedules["gemm_m16"].startswith(f"tuning record {rec.hash}")
    path = _write(rec.hash, _tampered(d))
    (cache / "pc.lrq").write_text(SCHEME)
    m, n, k = DIMS
    assert main(["build", str(cache / "pc.lrq"), "--dims", f"M={m},N={n},K={k}", "-o",
                 str(cache / "out")]) == 0
    out, err = capsys.readouterr()
    assert f"gemm_m16: hand schedule (ignored tuning record {rec.hash}: its schedule does not " \
           "apply: ScheduleError" in out and err == ""
    kernel = lrqc.load_kernel(cache / "out")
    rng = np.random.default_rng(5)
    A, B = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    ref = matmul(s, A.astype(np.float32).astype(np.float64), B)
    assert rel_error(kernel.run(A, B), ref) < 1e-5
    assert main(["cache", "verify"]) == 1
    assert f"{rec.hash}: WRONG: ScheduleError" in capsys.readouterr().out
    assert main(["cache", "prune"]) == 0  # prune removes what verify condemns
    assert f"removed {rec.hash} (wrong: ScheduleError" in capsys.readouterr().out
    assert not path.exists()


def test_import_and_put_refuse_what_load_refuses(cache, capsys):
    _, rec, d = _crafted()
    good = json.dumps(d)
    for name, fields, why in [("zero", {"tuned_ms": 0}, "tuned_ms must be a positive number"),
                              ("770x", {"tuned_ms": 0.004, "hand_ms": 2.857},
                               "implausible speedup"),
                              ("extra", {"note": 1}, "unknown fields note")]:
        f = cache / f"{name}.jsonl"
        f.write_text(good + "\n" + json.dumps({**d, **fields}) + "\n")
        assert main(["cache", "import", str(f)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"lrqc: error: {f}:2: not a tuning record ({why}") and \
            err.count("\n") == 1, err
        assert Database().paths() == []  # all or nothing: not even the good first line
    with pytest.raises(LrqcError, match="not recorded: implausible speedup"):
        Database().put(Record(rec.key, rec.trace, 0.004, 2.857))
    with pytest.raises(LrqcError, match="not recorded: tuned_ms must be a positive number"):
        Database().put(Record(rec.key, rec.trace, 0.0, 1.0))
    assert Database().paths() == []
    assert main(["cache", "ls"]) == 0 and "0 tuning record(s)" in capsys.readouterr().out


def test_implausible_times_are_measured_again_then_refused(monkeypatch):
    import io

    from lrqc.tuning import check

    times = iter([(2.857, [(0.004, 714.0)]), (1.0, [(0.9, 1.1)]),
                  (2.857, [(0.004, 714.0)]), (2.857, [(0.004, 714.0)])])
    monkeypatch.setattr(check, "compare", lambda *a, **k: next(times))
    out = io.StringIO()
    assert check.time_finalists(None, None, {}, ["t"], "gemm", None, None, out) == \
        (1.0, 0.9, 1.1, "t")
    assert "implausible speedup" in out.getvalue() and "measuring again" in out.getvalue()
    why = check.time_finalists(None, None, {}, ["t"], "gemm", None, None, out)
    assert isinstance(why, str) and why.startswith("implausible speedup") and "2 times" in why


@pytest.mark.parametrize("kw,msg", [({"workers": 0}, "workers must be at least 1, got 0"),
                                    ({"trials": 0}, "trials must be at least 1, got 0"),
                                    ({"budget_s": 0}, "time budget must be positive"),
                                    ({"target": "aarch64"}, "cannot run aarch64-linux-gnu code"),
                                    ({"rpc": "127.0.0.1:1", "key": "k"},
                                     r"--rpc 127.0.0.1:1: no TVM RPC tracker answers there")])
def test_tune_scheme_refuses_before_searching(cache, kw, msg):
    from lrqc.tuning.tune import tune_scheme

    with pytest.raises(LrqcError, match=msg):
        tune_scheme(lrqc.parse_schemes(SCHEME)["pc"], *DIMS, **kw)
    assert not (cache / "cache").exists()  # nothing searched, nothing written


@pytest.mark.skipif("amx_int8" not in __import__("lrqc.resources").resources.host_cpu_flags(),
                    reason="this CPU has no AMX tiles to tune")
def test_amx_tuning_records_replay(cache, capsys, monkeypatch):
    """The AMX rule's knob (tile blocks per block of rows) tuned on the host: its candidates run
    in workers that ask for the tile state, the record replays into a kernel that matches the
    reference."""
    from lrqc.resources import enable_amx

    monkeypatch.setattr("lrqc.backend.target.enable_amx", enable_amx)
    if enable_amx() is not None:
        pytest.skip(enable_amx())
    (cache / "pc.lrq").write_text(SCHEME)
    m, n, k = 128, 64, 128  # 4 blocks of 32 rows: 2 or 4 per block of rows
    assert main(["tune", str(cache / "pc.lrq"), "--dims", f"M={m},N={n},K={k}", "--trials", "2",
                 "--only", "gemm", "--cost-model", "random"]) == 0
    assert "tuning mt" in capsys.readouterr().err
    recs = [r for r in Database().all() if r.key["function"] == "gemm"]
    assert len(recs) == 1
    s = lrqc.parse_schemes(SCHEME)["pc"]
    kernel = lrqc.compile(s, M=m, N=n, K=k)
    assert kernel.rule == "x86_amx"
    rng = np.random.default_rng(2)
    A, B = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    ref = matmul(s, A.astype(np.float32).astype(np.float64), B)
    assert rel_error(kernel.run(A, B), ref) < 1e-5


def test_small_times_print_their_digits():
    """A function of a few microseconds reads as such in records and reports, not 0.000 ms
    against 0.000 ms."""
    from lrqc.tuning.db import shown_ms

    assert shown_ms(1.23456) == "1.235 ms" and shown_ms(0.0123) == "0.012 ms"
    assert shown_ms(0.000412) == "0.000412 ms" and shown_ms(0.00123456) == "0.00123 ms"
    key = make_key("scheme s {\n a: int8\n b: int8\n}\n", "gemm", 8, 64, 64,
                   {"kind": "llvm"}, [], {})
    rec = Record(key=key, trace="{}", tuned_ms=0.00041, hand_ms=0.00052, trials=3, rejected=0)
    assert "tuned 0.00041 ms vs hand 0.00052 ms (1.27x)" in rec.summary()
