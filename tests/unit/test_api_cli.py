"""Bad arrays give clear InputErrors; the CLI's check/explain/eval work and never print a trace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lrqc
from lrqc.cli import main

ROOT = Path(__file__).resolve().parents[2]
LRQMM = str(ROOT / "examples" / "lrqmm.lrq")
S = lrqc.parse_schemes("scheme s { a: int8\n b: int8 }")["s"]


@pytest.mark.parametrize("A,B,msg", [
    (np.ones((4, 5)), np.ones((6, 3)), r"K differs \(5 vs 6\)"),
    (np.ones(5), np.ones((5, 3)), r"A: expected a 2-D matrix, got shape \(5,\)"),
    (np.ones((4, 5)), np.ones((5, 3, 1)), r"B: expected a 2-D matrix"),
    (np.full((4, 5), np.nan), np.ones((5, 3)),
     r"A: contains non-finite values \(first at \[0, 0\]"),
    (np.ones((4, 5)), np.array([[1.0, np.inf, 0]] * 5), r"B: contains non-finite.*\[0, 1\]"),
    (np.ones((4, 5), complex), np.ones((5, 3)), r"A: dtype complex128 is not a real number type"),
    (np.array([["a"] * 5] * 4), np.ones((5, 3)), r"A: dtype <U1 is not a real"),
    (np.ones((0, 5)), np.ones((5, 3)), r"A: empty matrix"),
    ([[1, 2], [3]], np.ones((2, 3)), r"A: cannot be read as an array"),
])
def test_bad_arrays_are_clear_errors(A, B, msg):
    for fn in (lrqc.reference.matmul, lrqc.reference.evaluate):
        with pytest.raises(lrqc.InputError, match=msg):
            fn(S, A, B)


def test_any_real_dtype_and_layout_is_accepted():
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((6, 8)), rng.standard_normal((8, 5))
    C = lrqc.reference.matmul(S, A, B)
    np.testing.assert_array_equal(lrqc.reference.matmul(S, np.asfortranarray(A), B), C)
    np.testing.assert_array_equal(lrqc.reference.matmul(S, A.tolist(), B.tolist()), C)
    Ci = lrqc.reference.matmul(S, (A * 10).astype(np.int16), B)
    assert Ci.dtype == np.float32 and Ci.shape == (6, 5)  # output: float32, the default


def test_ml_dtypes_narrow_types_arrive_as_float32():
    """bfloat16 (a scheme's own output type), float8 and int4 arrays of ml_dtypes: accepted,
    as the float32 values they hold exactly."""
    import ml_dtypes
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((6, 8)), rng.standard_normal((8, 5))
    for t in (ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.int4):
        An = (A * 3).astype(t)
        want = lrqc.reference.matmul(S, An.astype(np.float32), B)
        np.testing.assert_array_equal(lrqc.reference.matmul(S, An, B), want)
    s16 = lrqc.parse_schemes("scheme s { a: int8\n b: int8\n output: bfloat16 }")["s"]
    C = lrqc.reference.matmul(s16, A, B)
    assert C.dtype == ml_dtypes.bfloat16
    assert lrqc.reference.matmul(s16, C, C.T).shape == (6, 6)  # its own output as input


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_check(capsys, tmp_path):
    files = sorted(map(str, ROOT.glob("examples/*.lrq")))
    code, out, _ = run_cli(capsys, "check", *files)
    assert code == 0 and out.count(": ok (") == len(files) >= 8
    bad = tmp_path / "bad.lrq"
    bad.write_text("scheme s {\n    a: int8 per_tensr\n    b: int8\n}\n")
    code, out, err = run_cli(capsys, "check", str(bad), LRQMM)
    assert code == 1
    assert f"{bad}:2:13: error:" in err and "did you mean 'per_tensor'?" in err
    assert "        ^~~~~~~~~" in err
    assert "lrqmm.lrq: ok" in out


def test_explain_sections_and_dims(capsys):
    code, out, _ = run_cli(capsys, "explain", LRQMM, "--scheme", "lrqmm_int8", "--dims",
                           "M=16,N=4096,K=4096")
    assert code == 0
    for head in ("== scheme", "== IR ==", "== formula ==", "== cost (M=16 N=4096 K=4096)",
                 "== pack / run ==", "== notes and fallbacks =="):
        assert head in out
    assert "L_A·(F_Aᵀ·B)" in out and "(A'·L_B)·F_Bᵀ" in out
    code, out, _ = run_cli(capsys, "explain", LRQMM, "--scheme", "lrqmm_int8",
                           "--emit", "syntax,ast")
    assert "== syntax ==" in out and "== IR ==" not in out and "call lowrank" in out
    code, out, _ = run_cli(capsys, "explain", "--defaults")
    assert code == 0 and "max_density" in out and "0.35" in out


def test_explain_reports_padding_and_rank_errors(capsys, tmp_path):
    f = tmp_path / "v.lrq"
    f.write_text("scheme v {\n  a: int8 per_vector(64)\n  b: int4 per_vector(64)\n}\n")
    code, out, _ = run_cli(capsys, "explain", str(f), "--dims", "M=8,N=8,K=1000", "--emit", "notes")
    assert code == 0 and "K=1000 is zero-padded to 1024 for per_vector(64)" in out
    code, _, err = run_cli(capsys, "explain", LRQMM, "--scheme", "lrqmm_w4a8_r16", "--dims",
                           "M=8,N=64,K=64")
    assert code == 1 and "rank 16 of 'a' exceeds min(M, K) = 8" in err and "^" in err


@pytest.mark.parametrize("argv,msg", [
    (("explain", LRQMM, "--dims", "M=1,N=2"), "missing K"),
    (("explain", LRQMM, "--dims", "M=1,N=x,K=3"), "N must be a positive integer"),
    (("explain", LRQMM, "--dims", "M=0,N=1,K=3"), "M must be a positive integer"),
    (("explain", LRQMM, "--emit", "tir"), "unknown stage 'tir'"),
    (("explain", LRQMM, "--scheme", "lrqmm_int"), "did you mean 'lrqmm_int8'?"),
    (("eval", LRQMM, "--scheme", "lrqmm_int8"), "give --dims"),
    (("eval", LRQMM, "--dims", "M=4,N=4,K=4"), "choose one with --scheme"),
    (("check", "/nonexistent.lrq"), "cannot read scheme file"),
])
def test_cli_user_errors(capsys, argv, msg):
    code, _, err = run_cli(capsys, *argv)
    assert code == 1 and msg in err


def test_eval_generated_and_npy(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "eval", LRQMM, "--scheme", "lrqmm_int8", "--dims",
                           "M=64,N=48,K=256", "--dist", "uniform")
    assert code == 0 and "direct quant" in out and "scheme lrqmm_int8" in out
    assert "numpy float32" in out and "gain" in out
    rng = np.random.default_rng(0)
    np.save(tmp_path / "A.npy", rng.random((20, 30)))
    np.save(tmp_path / "B.npy", rng.random((30, 10)))
    np.save(tmp_path / "Bbad.npy", np.full((30, 10), np.nan))
    code, out, _ = run_cli(capsys, "eval", LRQMM, "--scheme", "lrqmm_int8",
                           "--a", str(tmp_path / "A.npy"), "--b", str(tmp_path / "B.npy"))
    assert code == 0 and "M=20 N=10 K=30" in out
    code, _, err = run_cli(capsys, "eval", LRQMM, "--scheme", "lrqmm_int8",
                           "--a", str(tmp_path / "A.npy"), "--b", str(tmp_path / "Bbad.npy"))
    assert code == 1 and "B: contains non-finite values" in err
    code, _, err = run_cli(capsys, "eval", LRQMM, "--scheme", "lrqmm_int8",
                           "--a", str(tmp_path / "A.npy"), "--b", str(tmp_path / "missing.npy"))
    assert code == 1 and "--b: cannot load" in err


def test_console_script_runs():
    exe = Path(sys.executable).with_name("lrqc")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "lrqc.cli"]
    res = subprocess.run(cmd + ["check", LRQMM], capture_output=True, text=True, timeout=120,
                         check=False, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode == 0, res.stderr
    assert "ok (2 schemes: lrqmm_int8, lrqmm_w4a8_r16)" in res.stdout


def test_reference_imports_without_tvm():
    code = (f"import sys, numpy as np, lrqc; s = lrqc.load_schemes({LRQMM!r})['lrqmm_int8'];"
            "lrqc.reference.evaluate(s, np.ones((4, 4)), np.ones((4, 4)));"
            "from lrqc.explain import explain; explain(s);"
            "assert not any(m == 'tvm' or m.startswith('tvm.') for m in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr


@pytest.fixture
def bias_files(tmp_path):
    rng = np.random.default_rng(4)
    np.save(tmp_path / "A.npy", rng.random((20, 30)))
    np.save(tmp_path / "B.npy", rng.random((30, 10)))
    np.save(tmp_path / "bias.npy", np.linspace(-2.0, 2.0, 10))
    np.save(tmp_path / "row.npy", np.linspace(-2.0, 2.0, 10)[None, :])
    np.save(tmp_path / "short.npy", np.ones(7))
    np.save(tmp_path / "nan.npy", np.r_[np.ones(9), np.nan])
    np.save(tmp_path / "huge.npy", np.r_[np.ones(4), 1e300, np.ones(5)])
    np.savez(tmp_path / "two.npz", a=np.ones(10), b=np.ones(10))
    (tmp_path / "text.npy").write_text("not an array\n")
    whole = (tmp_path / "bias.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(whole[: len(whole) - 16])  # its last two values lost
    return tmp_path


def test_eval_with_bias(capsys, bias_files):
    f = bias_files
    argv = ("eval", LRQMM, "--scheme", "lrqmm_int8", "--a", f / "A.npy", "--b", f / "B.npy")
    code, out, _ = run_cli(capsys, *map(str, argv), "--bias", str(f / "bias.npy"))
    assert code == 0 and "errors against A @ B + bias in float64" in out
    s = lrqc.load_schemes(LRQMM)["lrqmm_int8"]
    A, B, bias = (np.load(f / n) for n in ("A.npy", "B.npy", "bias.npy"))
    assert lrqc.reference.evaluate(s, A, B, bias=bias).table() in out
    code, row_out, _ = run_cli(capsys, *map(str, argv), "--bias", str(f / "row.npy"))
    assert code == 0 and row_out.split("\n", 1)[1] == out.split("\n", 1)[1]  # shape (1, N)
    code, gen, _ = run_cli(capsys, "eval", LRQMM, "--scheme", "lrqmm_int8", "--dims",
                           "M=8,N=10,K=16", "--bias", str(f / "bias.npy"))
    assert code == 0 and f"bias={f / 'bias.npy'}" in gen


@pytest.mark.parametrize("name,msg", [
    ("short.npy", "lrqc: error: --bias {p}: has 7 values but C has N=10 columns"),
    ("nan.npy", "lrqc: error: --bias {p}: contains non-finite values (first at [9] = nan)"),
    ("huge.npy", "lrqc: error: --bias {p}: bias[4] = 1e+300 is beyond float32's range (about "
                 "3.4e38)"),
    ("A.npy", "lrqc: error: --bias {p}: expected a vector of N=10 values (shape (10,) or "
              "(1, 10)), got shape (20, 30)"),
    ("two.npz", "lrqc: error: --bias: {p} is an .npz archive; give one array as a .npy file"),
    ("text.npy", "lrqc: error: --bias: cannot load {p}: not a .npy file"),
    ("cut.npy", "lrqc: error: --bias: cannot load {p}: the file holds fewer bytes than its "
                "header's shape needs (truncated?)"),
    ("missing.npy", "lrqc: error: --bias: cannot load {p}: No such file or directory"),
    (".", "lrqc: error: --bias: cannot load {p}: it is a directory"),
])
def test_eval_and_run_with_a_bad_bias(capsys, bias_files, monkeypatch, name, msg):
    f = bias_files
    p = f / name
    code, out, err = run_cli(capsys, "eval", LRQMM, "--scheme", "lrqmm_int8", "--a",
                             str(f / "A.npy"), "--b", str(f / "B.npy"), "--bias", str(p))
    assert code == 1 and err.splitlines() == [msg.format(p=p)] and not out
    monkeypatch.setattr(lrqc.door, "load_kernel", lambda d: FakeKernel())
    code, out, err = run_cli(capsys, "run", str(f), "--a", str(f / "A.npy"), "--b",
                             str(f / "B.npy"), "--bias", str(p), "-o", str(f / "C.npy"))
    assert code == 1 and err.splitlines() == [msg.format(p=p)] and not out
    assert not (f / "C.npy").exists()


class FakeKernel:
    """What `lrqc run` needs of a kernel: C = A @ B + bias in float32."""

    rule = "fake"
    last_notes = ["fake kernel"]

    def run(self, A, B, bias=None):
        C = np.asarray(A, np.float32) @ np.asarray(B, np.float32)
        return C if bias is None else C + np.asarray(bias, np.float32)


def test_run_passes_the_bias_to_the_kernel(capsys, bias_files, monkeypatch):
    f = bias_files
    monkeypatch.setattr(lrqc.door, "load_kernel", lambda d: FakeKernel())
    A, B, bias = (np.load(f / n) for n in ("A.npy", "B.npy", "bias.npy"))
    for name in ("bias.npy", "row.npy"):
        code, out, _ = run_cli(capsys, "run", str(f), "--a", str(f / "A.npy"), "--b",
                               str(f / "B.npy"), "--bias", str(f / name), "-o", str(f / "C.npy"))
        assert code == 0 and out.startswith(f"wrote {f / 'C.npy'}: 20x10 float32")
        want = A.astype(np.float32) @ B.astype(np.float32) + bias.astype(np.float32)
        np.testing.assert_array_equal(np.load(f / "C.npy"), want)
    code, _, _ = run_cli(capsys, "run", str(f), "--a", str(f / "A.npy"), "--b", str(f / "B.npy"),
                         "-o", str(f / "C.npy"))
    assert code == 0
    np.testing.assert_array_equal(np.load(f / "C.npy"),
                                  A.astype(np.float32) @ B.astype(np.float32))


def test_files_without_schemes_are_refused_by_every_command(capsys, tmp_path):
    """An empty scheme file (or one of comments only) is an error for check and explain as for
    the commands that need a scheme, not "ok (0 schemes)"."""
    empty = tmp_path / "empty.lrq"
    empty.write_text("# nothing here yet\n")
    for argv in (("check", str(empty)), ("explain", str(empty)),
                 ("eval", str(empty), "--dims", "M=4,N=8,K=8")):
        code, out, err = run_cli(capsys, *argv)
        assert code == 1 and not out and err.startswith(f"lrqc: error: {empty}: no scheme in file")
    code, out, err = run_cli(capsys, "check", str(empty), LRQMM)  # the others still checked
    assert code == 1 and "lrqmm.lrq: ok" in out and "no scheme in file" in err


def test_explain_help_lists_every_section(capsys):
    from lrqc.explain import EMITS

    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "sections: " + ",".join(EMITS) in text


def test_a_cache_folder_that_is_a_file_is_refused_before_any_work(capsys, tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("")
    monkeypatch.setenv("LRQC_CACHE_DIR", str(afile))
    msg = (f"lrqc: error: the tuning cache {afile / 'tuning'} cannot be used: {afile} is not a "
           "directory (LRQC_CACHE_DIR names the cache's folder)")
    for argv in (("cache", "ls"), ("tune", LRQMM, "--scheme", "lrqmm_int8", "--dims",
                                   "M=4,N=16,K=16", "--trials", "1")):
        code, out, err = run_cli(capsys, *argv)
        assert code == 1 and err.splitlines() == [msg] and not out


def test_reference_entry_points_refuse_what_they_cannot_take():
    """Misuse of the reference's functions is an LrqcError naming the argument."""
    s = lrqc.load_schemes(LRQMM)["lrqmm_int8"]
    A, B = np.ones((4, 8)), np.ones((8, 4))
    for call in (lambda: lrqc.reference.matmul("lrqmm_int8", A, B),
                 lambda: lrqc.reference.evaluate(None, A, B),
                 lambda: lrqc.reference.prepare({}, B),
                 lambda: lrqc.reference.compress(3, B)):
        with pytest.raises(lrqc.LrqcError, match=r"expected a Scheme \(e.g. lrqc.parse_schemes"):
            call()
    with pytest.raises(lrqc.LrqcError, match="quantize: role must be 'a' or 'b', got 'x'"):
        lrqc.reference.quantize(A, s.a.quant, "x")
    with pytest.raises(lrqc.LrqcError, match="compress: role must be 'a' or 'b', got 'c'"):
        lrqc.reference.compress(s, B, role="c")


def test_build_report_names_the_portable_rule_off_x86(monkeypatch):
    """The build report's note after the schedule rule: on another architecture (a cross
    target's triple, or a host target, which carries none, on such a machine) the portable
    rule is no AVX-512 VNNI warning."""
    from lrqc.cli.build import rule_note

    man = {"schedule_rule": "generic", "fast_path": False, "target": {"kind": "llvm"}}
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    assert "the portable rule" in rule_note(man)
    assert "the portable rule" in rule_note({**man, "target": {"mtriple": "aarch64-linux-gnu"}})
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    assert "WARNING: not the fast path" in rule_note({**man, "schedule_rule": "x86_avx2"})
    assert rule_note({**man, "fast_path": True}) == ""


def test_notes_say_where_codes_come_from_float32():
    """The float32-codes note: the per-call codes; with residual terms, A's own codes only;
    none where the other operand is float (the product is a float32 GEMM)."""
    def notes(body: str) -> str:
        s = lrqc.parse_schemes(f"scheme s {{\n{body}\n}}")["s"]
        from lrqc.explain import explain
        return explain(s, emit=("notes",))

    assert "take the per-call codes from a float32" in notes("a: int8 per_channel\n"
                                                              " b: int8 per_channel")
    assert "take A's own codes (its residual terms' codes" in notes(
        "a: int8 per_channel + lowrank(rank=1, method=sketch)\n b: int8 per_channel")
    assert "from a float32 product" not in notes("a: int8 per_channel\n b: float16")
    assert "from a float32 product" not in notes("a: int8 per_channel round=stochastic\n"
                                                  " b: int8 per_channel")


ENTRY = "import sys, _lrqc_main; sys.exit(_lrqc_main.main())"  # what the console script runs


def _entry(args: list[str], prelude: str = ""):
    """Run the `lrqc` console script's entry point on args in a fresh Python (prelude: code
    run first): (status, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-c", prelude + ENTRY, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


# a real SIGINT while lrqc's modules load: sent by the process to itself when Python looks
# for `module` (numpy's C code imports datetime: there an interruption used to become an
# ImportError whose traceback named a broken numpy install)
def _sigint_on_import(module: str) -> str:
    return ("import os, signal, sys\n"
            "class Stop:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            f"        if name == {module!r}: os.kill(os.getpid(), signal.SIGINT)\n"
            "sys.meta_path.insert(0, Stop())\n")


@pytest.mark.parametrize("module", ["lrqc.cli", "numpy", "datetime", "lark"])
def test_ctrl_c_while_lrqc_loads_is_one_line(module):
    """Ctrl-C before lrqc.cli.main runs (while lrqc's modules load: about a second) ends the
    command as Ctrl-C later does: "lrqc: interrupted", status 130, no traceback."""
    rc, out, err = _entry(["check", LRQMM], prelude=_sigint_on_import(module))
    assert (rc, out, err) == (130, "", "lrqc: interrupted\n"), (rc, out, err)


def test_the_entry_point_runs_the_command():
    rc, out, err = _entry(["check", LRQMM])
    assert rc == 0 and "lrqmm" in out and err == "", (rc, out, err)
    rc, out, err = _entry(["check"])  # a usage error: argparse's, unchanged
    assert rc == 2 and "usage: lrqc" in err and "Traceback" not in err, (rc, err)


def test_bench_times_after_a_quarter_second_of_untimed_calls():
    """lrqc bench's medians start after WARM_S seconds of untimed calls (at least one): on a
    2-core VM the calls of the first 50-100 ms ran at one core's speed."""
    import time

    from lrqc.cli.build import WARM_S, _median_time

    starts: list[float] = []

    def call() -> None:
        starts.append(time.perf_counter())
        time.sleep(0.01)

    _median_time(call, 3)
    assert len(starts) >= 4 and starts[-3] - starts[0] >= WARM_S
    slow: list[float] = []
    _median_time(lambda: slow.append(time.sleep(0.3)), 2)  # one call past WARM_S: no more
    assert len(slow) == 3
