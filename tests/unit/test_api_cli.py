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


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_check(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "check", *sorted(map(str, ROOT.glob("examples/*.lrq"))))
    assert code == 0 and out.count(": ok (") == 7
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
