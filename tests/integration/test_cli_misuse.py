"""The lrqc command under misuse: every bad argument, path or file is one line on stderr and a
non-zero exit, never a traceback; outputs are checked before anything is compiled; `lrqc
--debug` prints the traceback of any error, and an unexpected error without it is one
"internal error" line (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import lrqc
from lrqc.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SCHEME = "scheme pc {\n a: int8 per_channel\n b: int8 per_channel\n}\n"
DIMS = "M=4,N=16,K=64"


def fails(capsys, argv, line, code=1):
    """Run `lrqc argv`: exit `code`, nothing but `line` on stderr (a str: exactly that line; a
    tuple: a line starting with its first item), no traceback anywhere."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert rc == code, (rc, err)
    assert len(lines) == 1, err
    if isinstance(line, tuple):
        assert lines[0].startswith(line[0]), lines[0]
    else:
        assert lines[0] == line
    return out


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A scheme file, A and B as .npy, a binary file and a folder; the cache made private."""
    monkeypatch.setenv("LRQC_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "pc.lrq").write_text(SCHEME)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "A.npy", rng.standard_normal((4, 64)))
    np.save(tmp_path / "B.npy", rng.standard_normal((64, 16)))
    (tmp_path / "bin.dat").write_bytes(b"\x93\xff\x00\x01binary")
    (tmp_path / "folder").mkdir()
    return tmp_path


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from lrqc.pipeline.export import build_artifact

    out = tmp_path_factory.mktemp("art") / "pc"
    build_artifact(lrqc.parse_schemes(SCHEME)["pc"], 4, 16, 64, out)
    return out


@pytest.fixture
def no_compile(monkeypatch):
    """Fail the test if anything is compiled. The tuner, which binds compile() by name as it
    is imported, is imported first, so that it keeps the real one after the test."""
    import lrqc.tuning.tune  # noqa: F401
    from lrqc.pipeline import compile as pipeline_compile
    from lrqc.pipeline import export

    def compiled(*a, **k):
        raise AssertionError("compiled before checking its arguments")

    for module, name in ((export, "build_artifact"), (export, "compile"),
                         (pipeline_compile, "compile")):
        monkeypatch.setattr(module, name, compiled)


# ---- build -o: checked before compiling ----

def test_build_into_an_impossible_path(files, capsys, no_compile):
    f = files / "pc.lrq"
    fails(capsys, ["build", f, "--dims", DIMS, "-o", f],
          f"lrqc: error: -o {f}: exists and is not a directory")
    fails(capsys, ["build", f, "--dims", DIMS, "-o", f / "out"],
          f"lrqc: error: -o {f / 'out'}: cannot write there (Not a directory)")
    assert not (files / "out").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_build_into_an_unwritable_folder(files, capsys, no_compile):
    ro = files / "ro"
    ro.mkdir(mode=0o555)
    fails(capsys, ["build", files / "pc.lrq", "--dims", DIMS, "-o", ro / "out"],
          f"lrqc: error: -o {ro / 'out'}: cannot write there (Permission denied)")
    fails(capsys, ["build", files / "pc.lrq", "--dims", DIMS, "-o", ro],
          f"lrqc: error: -o {ro}: cannot write there (Permission denied)")


def test_a_failed_build_leaves_no_folder_behind(files, capsys, monkeypatch):
    from lrqc.pipeline import export

    out = files / "new" / "out"
    fails(capsys, ["build", files / "pc.lrq", "--dims", DIMS, "--target", "sparc", "-o", out],
          ("lrqc: error: unknown target 'sparc'",))
    assert not (files / "new").exists()

    def fail(scheme, m, n, k, out_dir, target, **options):
        assert Path(out_dir).is_dir()  # checked and created before compiling
        raise lrqc.LrqcError("the build failed")

    monkeypatch.setattr(export, "build_artifact", fail)
    fails(capsys, ["build", files / "pc.lrq", "--dims", DIMS, "-o", out],
          "lrqc: error: the build failed")
    assert not (files / "new").exists()  # the folders it created are gone again
    (files / "kept").mkdir()
    fails(capsys, ["build", files / "pc.lrq", "--dims", DIMS, "-o", files / "kept"],
          "lrqc: error: the build failed")
    assert (files / "kept").is_dir()  # a folder that was there stays


# ---- run ----

def test_run_misuse(files, artifact, capsys):
    a, b = files / "A.npy", files / "B.npy"
    fails(capsys, ["run", artifact, "--a", a, "--b", b, "-o", files / "missing" / "C.npy"],
          f"lrqc: error: -o {files / 'missing' / 'C.npy'}: no directory {files / 'missing'}")
    (files / "afile").write_text("")
    fails(capsys, ["run", artifact, "--a", a, "--b", b, "-o", files / "afile" / "C.npy"],
          f"lrqc: error: -o {files / 'afile' / 'C.npy'}: {files / 'afile'} is not a directory")
    fails(capsys, ["run", artifact, "--a", a, "--b", b, "-o", files / "folder"],
          f"lrqc: error: -o {files / 'folder'}: is a directory; give a file name, e.g. "
          f"{files / 'folder' / 'C.npy'}")
    fails(capsys, ["run", files / "pc.lrq", "--a", a, "--b", b, "-o", files / "C.npy"],
          (f"lrqc: error: {files / 'pc.lrq'}: not a directory",))
    fails(capsys, ["run", artifact, "--a", a, "--b", files / "pc.lrq", "-o", files / "C.npy"],
          f"lrqc: error: --b: cannot load {files / 'pc.lrq'}: not a .npy file")
    fails(capsys, ["run", artifact, "--a", files / "folder", "--b", b, "-o", files / "C.npy"],
          f"lrqc: error: --a: cannot load {files / 'folder'}: it is a directory")
    assert not (files / "C.npy").exists()


def test_run_output_names_the_file_written(files, artifact, capsys):
    assert main(["run", str(artifact), "--a", str(files / "A.npy"), "--b", str(files / "B.npy"),
                 "-o", str(files / "C")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {files / 'C.npy'}: 4x16 ")  # np.save appends .npy
    assert (files / "C.npy").exists() and not (files / "C").exists()


# ---- cache export / import ----

def test_cache_export_and_import_of_bad_files(files, capsys):
    for f, why in [(files / "missing.jsonl", "cannot read {f}: No such file or directory"),
                   (files / "folder", "{f}: is a directory, not a JSON-lines file"),
                   (files / "bin.dat",
                    "{f}: binary content, not a JSON-lines file (not UTF-8 text)")]:
        fails(capsys, ["cache", "import", f], "lrqc: error: " + why.format(f=f))
    fails(capsys, ["cache", "export", files / "folder"],
          f"lrqc: error: cannot write {files / 'folder'}: it is a directory")
    fails(capsys, ["cache", "export", files / "missing" / "x.jsonl"],
          f"lrqc: error: cannot write {files / 'missing' / 'x.jsonl'}: No such file or directory")
    fails(capsys, ["cache", "export"], "lrqc: error: usage: lrqc cache export FILE [RECORD...]")
    fails(capsys, ["cache", "import"], "lrqc: error: usage: lrqc cache import FILE")
    fails(capsys, ["cache", "ls", "x"], "lrqc: error: lrqc cache ls takes no arguments, got x")
    fails(capsys, ["cache", "ls", "--all"],
          "lrqc: error: --all applies to `lrqc cache prune` only")
    fails(capsys, ["cache", "show", "abc"],
          "lrqc: error: no tuning record 'abc' (lrqc cache ls lists them)")


# ---- counts, seeds, sizes ----

@pytest.mark.parametrize("argv,line", [
    (["eval", "{f}", "--dims", DIMS, "--seed", "-1"], "--seed must be at least 0, got -1"),
    (["bench", "{f}", "--dims", DIMS, "--repeat", "0"], "--repeat must be at least 1, got 0"),
    (["bench", "{f}", "--dims", DIMS, "--repeat", "-3"], "--repeat must be at least 1, got -3"),
    (["bench", "{f}", "--dims", DIMS, "--seed", "-1"], "--seed must be at least 0, got -1"),
    (["tune", "{f}", "--dims", DIMS, "--workers", "0"], "--workers must be at least 1, got 0"),
    (["tune", "{f}", "--dims", DIMS, "--workers", "-1"], "--workers must be at least 1, got -1"),
    (["tune", "{f}", "--dims", DIMS, "--trials", "0"], "--trials must be at least 1, got 0"),
    (["tune", "{f}", "--dims", DIMS, "--time-budget", "0"], "--time-budget '0': must be > 0"),
    (["tune", "{f}", "--dims", DIMS, "--key", "k"],
     "--key names a device at an RPC tracker: give --rpc HOST:PORT too"),
    (["tune", "{f}", "--dims", DIMS, "--only", ""],
     "--only '': expected some of quantize_a, gemm, lowrank_u"),
    (["explain", "{f}", "--emit", ""],
     "--emit: give some of syntax, ast, ir, formula, cost, stages, notes, instructions, plan"),
    (["eval", "{f}", "--dims", "M=4,N=4,K=99999999999"],
     "--dims: K must be a positive integer up to 2147483647, got 99999999999"),
    (["build", "{f}", "--dims", "M=1..99999999999,N=4,K=4", "-o", "x"],
     "--dims: M=1..99999999999: need 1 <= lo <= hi <= 2147483647"),
])
def test_bad_numbers_are_refused_before_any_work(files, capsys, no_compile, argv, line):
    fails(capsys, [a.format(f=files / "pc.lrq") for a in argv], "lrqc: error: " + line)


def test_tune_with_the_xgb_model_but_no_xgboost(files, capsys):
    from lrqc.tuning.search import cost_model_name

    if cost_model_name() == "xgb":
        pytest.skip("xgboost is installed")
    fails(capsys, ["tune", files / "pc.lrq", "--dims", DIMS, "--cost-model", "xgb"],
          "lrqc: error: the xgb cost model needs xgboost (pip install -e '.[tune]'); or use the "
          "random one")


def test_eval_of_arrays_that_are_not_one_matrix(files, capsys):
    np.savez(files / "Z.npz", a=np.ones(3))
    np.save(files / "v.npy", np.ones(3))
    base = ["eval", files / "pc.lrq", "--a", files / "A.npy", "--b"]
    fails(capsys, [*base, files / "Z.npz"],
          f"lrqc: error: --b: {files / 'Z.npz'} is an .npz archive; give one array as a .npy file")
    fails(capsys, [*base, files / "v.npy"],
          f"lrqc: error: --b: {files / 'v.npy'}: expected a 2-D matrix, got shape (3,)")


# ---- targets this machine cannot run; RPC trackers that are not there ----

def test_bench_and_tune_refuse_a_foreign_architecture(files, capsys, no_compile):
    fails(capsys, ["bench", files / "pc.lrq", "--dims", DIMS, "--target", "aarch64"],
          "lrqc: error: lrqc bench runs the kernel on this machine, which lacks "
          "aarch64-linux-gnu's instruction set; build for that machine with `lrqc build` "
          "instead")
    fails(capsys, ["tune", files / "pc.lrq", "--dims", DIMS, "--target", "aarch64"],
          "lrqc: error: lrqc tune checks every kept candidate against lrqc.reference on this "
          "host, which cannot run aarch64-linux-gnu code; tune on a machine of that "
          "architecture (locally or as the RPC client)")


@pytest.mark.parametrize("rpc", ["nohost.invalid:1", "127.0.0.1:1"])
def test_tune_with_an_unreachable_tracker(files, capsys, rpc):
    fails(capsys, ["tune", files / "pc.lrq", "--dims", DIMS, "--rpc", rpc, "--key", "k",
                   "--trials", "1"],
          (f"lrqc: error: --rpc {rpc}: no TVM RPC tracker answers there (",))
    assert not (files / "cache").exists()  # no search started


def test_tune_exits_1_when_nothing_could_be_measured(files, capsys, monkeypatch):
    from lrqc.tuning import tune

    row = {"symbol": "gemm_m4", "trials": 2, "valid": 0, "rejected": 0, "wall_s": 1.0,
           "failed": True, "status": "no valid candidate (every measurement failed; the first: "
                                     "no server): the hand schedule stays"}
    monkeypatch.setattr(tune, "tune_scheme", lambda *a, **k: [row])
    out = fails(capsys, ["tune", files / "pc.lrq", "--dims", DIMS],
                "lrqc: error: tuning failed for gemm_m4 (see above): nothing recorded for it")
    assert "gemm_m4         no valid candidate (every measurement failed" in out


def test_tune_with_a_tracker_lacking_the_key(files, capsys, monkeypatch):
    pytest.importorskip("tornado")
    from tvm.rpc.tracker import Tracker

    from lrqc.tuning import rpc

    monkeypatch.setattr(rpc, "TRACKER_WAIT_S", 1.0)

    tracker = Tracker(host="127.0.0.1", port=9190, port_end=9290, silent=True)
    try:
        fails(capsys, ["tune", files / "pc.lrq", "--dims", DIMS, "--rpc",
                       f"127.0.0.1:{tracker.port}", "--key", "nokey", "--trials", "1"],
              f"lrqc: error: --rpc 127.0.0.1:{tracker.port}: the tracker has no server with "
              "--key nokey (its servers: none)")
    finally:
        tracker.terminate()


# ---- --debug, internal errors, errors in threads ----

def test_debug_prints_the_traceback_of_a_user_error(files, capsys):
    argv = ["run", str(files / "nothing"), "--a", "A.npy", "--b", "B.npy", "-o",
            str(files / "C.npy")]
    line = f"lrqc: error: {files / 'nothing'}: no such artifact directory"
    fails(capsys, argv, line)
    assert main(["--debug", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "LrqcError" in err
    assert err.splitlines()[-1] == line


def test_internal_errors_are_one_line_without_debug(files, capsys, monkeypatch):
    from lrqc.cli import check as cli

    def broken(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(cli, "cmd_check", broken)
    argv = ["check", str(files / "pc.lrq")]
    fails(capsys, argv, "lrqc: internal error (RuntimeError: boom second line); rerun with "
          "`lrqc --debug ...` and report its traceback", code=2)
    assert main(["--debug", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last):" in err and "RuntimeError: boom" in err
    assert err.splitlines()[-1].startswith("lrqc: internal error (RuntimeError: boom")


def test_errors_in_threads_are_one_line_without_debug(files, capsys, monkeypatch):
    from lrqc.cli import check as cli

    def threaded(args):
        t = threading.Thread(target=lambda: 1 / 0)
        t.start()
        t.join()
        return 0

    monkeypatch.setattr(cli, "cmd_check", threaded)
    before = threading.excepthook
    assert main(["check", str(files / "pc.lrq")]) == 0
    err = capsys.readouterr().err
    assert err == "lrqc: error in a background thread: ZeroDivisionError: division by zero\n"
    assert main(["--debug", "check", str(files / "pc.lrq")]) == 0
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("ZeroDivisionError: division by zero\n")
    assert threading.excepthook is before  # restored after main


def test_the_console_script_prints_no_traceback(files):
    exe = Path(sys.executable).with_name("lrqc")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "lrqc.cli"]
    res = subprocess.run(cmd + ["cache", "import", str(files / "bin.dat")], capture_output=True,
                         text=True, timeout=120, check=False,
                         env={**os.environ, "PYTHONWARNINGS": "ignore",
                              "LRQC_CACHE_DIR": str(files / "cache")})
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr == (f"lrqc: error: {files / 'bin.dat'}: binary content, not a JSON-lines "
                          "file (not UTF-8 text)\n")


@pytest.mark.parametrize("argv_of", [
    lambda f, dev: ["check", dev],
    lambda f, dev: ["explain", dev],
    lambda f, dev: ["cache", "import", dev],
    lambda f, dev: ["eval", f / "pc.lrq", "--a", dev, "--b", f / "B.npy"],
])
@pytest.mark.parametrize("device", ["zero", "fifo"])
def test_devices_and_fifos_are_refused_not_read(capsys, files, argv_of, device):
    """/dev/zero was read until the memory ran out, a FIFO blocked forever."""
    dev = Path("/dev/zero")
    if device == "fifo":
        dev = files / "pipe"
        os.mkfifo(dev)
    rc = main([str(a) for a in argv_of(files, dev)])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err and len(err.splitlines()) == 1
    assert f"{dev}" in err and "not a regular file (a device, FIFO or socket)" in err


def test_empty_output_names_are_refused(capsys, files, artifact):
    fails(capsys, ["build", files / "pc.lrq", "--dims", DIMS, "-o", ""],
          ("lrqc: error: -o: give the artifact's directory",))
    fails(capsys, ["run", artifact, "--a", files / "A.npy", "--b", files / "B.npy", "-o", ""],
          ("lrqc: error: -o: give the file",))


def test_other_target_kinds_are_refused(capsys, files):
    fails(capsys, ["build", files / "pc.lrq", "--dims", DIMS, "--target", '{"kind": "c"}', "-o",
                   files / "out"], ("lrqc: error: target kind 'c'",))


def test_bfloat16_output_is_written_as_numbers(capsys, files, tmp_path):
    (files / "bf.lrq").write_text("scheme bf {\n a: int8\n b: int8\n output: bfloat16\n}\n")
    assert main(["build", str(files / "bf.lrq"), "--dims", DIMS, "-o", str(tmp_path / "bf")]) == 0
    assert main(["run", str(tmp_path / "bf"), "--a", str(files / "A.npy"), "--b",
                 str(files / "B.npy"), "-o", str(tmp_path / "C.npy")]) == 0
    assert "bfloat16 values, stored as float32" in capsys.readouterr().out
    C = np.load(tmp_path / "C.npy")
    s = lrqc.parse_schemes((files / "bf.lrq").read_text())["bf"]
    R = lrqc.reference.matmul(s, np.load(files / "A.npy").astype(np.float32),
                              np.load(files / "B.npy"))
    assert C.dtype == np.float32
    assert np.abs(C - R.astype(np.float32)).max() <= 2.0**-7 * np.abs(R).max()


def test_api_type_errors_are_lrqc_errors():
    with pytest.raises(lrqc.LrqcError, match="expected a Scheme"):
        lrqc.compile("scheme s { a: int8\n b: int8 }", 4, 16, 64)
    with pytest.raises(lrqc.LrqcError, match="artifact's directory"):
        lrqc.load_kernel(5)


def test_manifest_with_an_unconvertible_number_is_refused(artifact, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(artifact, bad)
    text = (bad / "manifest.json").read_text()
    man = json.loads(text)
    (bad / "manifest.json").write_text(text.replace(f'"format": {man["format"]}',
                                                    '"format": ' + "9" * 5000))
    with pytest.raises(lrqc.LrqcError, match="manifest.json: not a manifest"):
        lrqc.load_kernel(bad)


def test_a_cpu_llvm_does_not_know_is_refused_before_compiling(capsys, files, no_compile):
    """TVM only logs an error for an unknown -mcpu and compiles for a generic CPU: refused."""
    fails(capsys, ["build", files / "pc.lrq", "--dims", DIMS, "--target",
                   '{"kind": "llvm", "mcpu": "bogus"}', "-o", files / "out"],
          "lrqc: error: target: LLVM knows no CPU 'bogus'; name one LLVM knows (e.g. 'znver4', "
          "'haswell', 'neoverse-n1'), or use a short name such as 'x86-avx2'")
    fails(capsys, ["build", files / "pc.lrq", "--dims", DIMS, "--target",
                   '{"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "znver4"}', "-o",
                   files / "out"], ("lrqc: error: target: LLVM knows no CPU 'znver4' for "
                                    "aarch64-linux-gnu (an unknown triple, or a CPU of another "
                                    "architecture);",))
    assert not (files / "out").exists()
    fails(capsys, ["build", files / "pc.lrq", "--dims", DIMS, "--target",
                   '{"kind": "llvm", "mcpu": "native"}', "-o", files / "out"],
          ("lrqc: error: target: mcpu 'native' is not resolved by LLVM here; use the target "
           "'host'",))
    fails(capsys, ["build", files / "pc.lrq", "--dims", DIMS, "--target",
                   '{"kind": "llvm", "mtriple": 5, "mcpu": "znver4"}', "-o", files / "out"],
          ("lrqc: error: target: mtriple must be a string",))


def test_cpu_features_llvm_would_misread_are_refused(capsys, files, no_compile):
    """LLVM only warns about an mattr feature it does not know, and reads one without its sign
    as turned off: both would build a kernel without what was asked for, so both are refused
    before compiling; features LLVM knows pass, on or off."""
    def build(mattr, triple=None):
        d = {"kind": "llvm", "mattr": mattr, **({"mtriple": triple} if triple else {})}
        return ["build", files / "pc.lrq", "--dims", DIMS, "--target", json.dumps(d), "-o",
                files / "out"]

    fails(capsys, build(["+avx2", "+avx512vnn"]), "lrqc: error: target: LLVM knows no CPU "
          "feature '+avx512vnn' (it would build without it); did you mean '+avx512vnni'?")
    fails(capsys, build(["+dotprd"], "aarch64-linux-gnu"), "lrqc: error: target: LLVM knows no "
          "CPU feature '+dotprd' for aarch64-linux-gnu (it would build without it); did you "
          "mean '+dotprod'?")
    fails(capsys, build(["+neon"], "x86_64-linux-gnu"), ("lrqc: error: target: LLVM knows no "
                                                        "CPU feature '+neon' for x86_64",))
    fails(capsys, build(["avx2"]), "lrqc: error: target: mattr entries start with '+' (on) or "
          "'-' (off): 'avx2'")
    fails(capsys, build("+avx2"), ("lrqc: error: target: mattr must be a list of strings",))
    fails(capsys, build(["+avx2"], 5), "lrqc: error: target: mtriple must be a string such as "
          "'x86_64-linux-gnu', got 5")  # before any LLVM call (TVM's probe crashed on it)
    fails(capsys, build(["+avx2"], "bogus-triple"), "lrqc: error: target: LLVM knows no triple "
          "'bogus-triple'; use one such as 'x86_64-linux-gnu' or 'aarch64-linux-gnu'")
    assert not (files / "out").exists()
    from lrqc.backend.target import resolve

    assert "avx2" in resolve({"kind": "llvm", "mcpu": "x86-64", "mattr": ["+avx2"]}).features
    assert "avx2" not in resolve({"kind": "llvm", "mcpu": "haswell", "mattr": ["-avx2"]}).features
    for name in ("x86-avx2", "x86-avx512-vnni", "aarch64", "host"):  # what lrqc writes passes
        resolve(resolve(name).as_dict())


def test_a_refused_target_is_one_line_on_the_terminal_too(capfd, files, no_compile):
    """LLVM and TVM write their own warnings about unknown names to the process's stderr (not
    Python's): lrqc keeps those back, so its one line is all a refused target prints."""
    for bad in ({"kind": "llvm", "mattr": ["+avx512vnn"]},
                {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+avx2"]},
                {"kind": "llvm", "mtriple": "bogus-triple"}, {"kind": "llvm", "mcpu": "bogus"}):
        rc = main(["build", str(files / "pc.lrq"), "--dims", DIMS, "--target", json.dumps(bad),
                   "-o", str(files / "out")])
        out, err = capfd.readouterr()
        assert rc == 1 and out == "" and len(err.splitlines()) == 1, (bad, err)
        assert err.startswith("lrqc: error: target: "), err


def test_targets_resolve_in_a_process_without_stderr():
    """Keeping LLVM's lines back needs stderr: a process that closed it (a service) resolves
    targets, and refuses an unknown feature, all the same."""
    code = ("import os; os.close(2)\nimport lrqc\nfrom lrqc.backend.target import resolve\n"
            "print(sorted(resolve('host').features) == sorted(resolve(resolve('host')"
            ".as_dict()).features))\n"
            "try:\n    resolve({'kind': 'llvm', 'mattr': ['+avx512vnn']})\n"
            "except lrqc.LrqcError:\n    print('refused')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300).stdout
    assert out == "True\nrefused\n", out


def test_debug_prints_the_traceback_of_a_scheme_error_in_check(files, capsys):
    (files / "typo.lrq").write_text("scheme t {\n a: int9 per_channel\n b: int8\n}\n")
    assert main(["check", str(files / "typo.lrq")]) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert main(["--debug", "check", str(files / "typo.lrq")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "SchemeError" in err


def test_an_m_range_where_one_row_count_is_asked_says_so(files, capsys, no_compile):
    fails(capsys, ["eval", files / "pc.lrq", "--dims", "M=1..8,N=16,K=64"],
          "lrqc: error: --dims: M must be a positive integer, got '1..8'; M=lo..hi is for "
          "build, tune and explain")


def test_dump_dir_that_cannot_be_a_folder_is_an_lrqc_error(files):
    s = lrqc.parse_schemes(SCHEME)["pc"]
    with pytest.raises(lrqc.LrqcError, match="dump_dir: .*pc.lrq exists and is not a folder"):
        lrqc.compile(s, 4, 16, 64, dump_dir=files / "pc.lrq")
    with pytest.raises(lrqc.LrqcError, match="dump_dir: cannot make the folder"):
        lrqc.compile(s, 4, 16, 64, dump_dir=files / "pc.lrq" / "sub")
    with pytest.raises(lrqc.LrqcError, match="tuned must be True or False"):
        lrqc.compile(s, 4, 16, 64, tuned="no")
    with pytest.raises(lrqc.LrqcError, match="too large"):  # a failed compile: no folder left
        lrqc.compile(s, 65536, 65536, 8, dump_dir=files / "made" / "stages")
    assert not (files / "made").exists()


def test_kernels_refuse_pickling_with_what_to_do(files):
    import copy
    import pickle

    s = lrqc.parse_schemes(SCHEME)["pc"]
    kernel = lrqc.compile(s, 4, 16, 64)
    for attempt in (pickle.dumps, copy.deepcopy):
        with pytest.raises(lrqc.LrqcError, match="cannot be pickled or copied; save it with "
                           "`lrqc build`"):
            attempt(kernel)
    same = copy.copy(kernel)  # a shallow copy: the same compiled functions and buffers
    A = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    B = np.random.default_rng(1).standard_normal((64, 16)).astype(np.float32)
    assert np.array_equal(same(A, kernel.pack(B)), kernel(A, kernel.pack(B)))
