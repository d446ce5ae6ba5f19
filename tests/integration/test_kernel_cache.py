"""The compiled-kernel cache (lrqc.pipeline.cache): a kernel compiled once on this machine is
loaded by later compiles of the same key, in this process or another, with the same numbers;
every change of what its machine code depends on is another key; a damaged entry is compiled
again, never used; the caller's threads are honoured per kernel; compiles that ask for stage
texts, and a cache turned off, compile afresh."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

import lrqc
from lrqc.backend import openmp
from lrqc.backend.target import resolve
from lrqc.files import kernels_dir
from lrqc.pipeline import cache as kcache

from ..conftest import ROOT

W8A8 = "scheme w8a8 {\n a: int8 per_channel\n b: int8 per_channel\n}"
W4A8 = "scheme w4a8 {\n a: int8 per_channel\n b: int4 per_channel\n}"


@pytest.fixture
def on(cache, monkeypatch):
    """The cache turned on in a private folder; compiles counted (the pipeline's runs)."""
    monkeypatch.setenv(kcache.ENV, "1")
    monkeypatch.setattr(kcache, "_BROKEN", threading.Event())  # (set by some tests below)
    runs = []
    real = kcache.compile

    def counted(*args, **kwargs):
        runs.append(kwargs.get("threads"))
        return real(*args, **kwargs)

    monkeypatch.setattr(kcache, "compile", counted)
    return runs


def entries() -> list[str]:
    root = kernels_dir()
    return sorted(d.name for d in root.iterdir() if not d.name.startswith(".")) \
        if root.is_dir() else []


def data(m=16, n=48, k=96, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)


def check(kernel, scheme, A, B):
    got = kernel(A, kernel.pack(B))
    want = lrqc.reference.matmul(scheme, A, B)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    return got


def test_a_kernel_is_compiled_once_then_loaded(on):
    s = lrqc.parse_schemes(W4A8)["w4a8"]
    A, B = data()
    first = lrqc.compile(s, "1..16", 48, 96)
    assert on == ["tvm"] and len(entries()) == 1  # compiled once, written, loaded from there
    c1 = check(first, s, A, B)
    again = lrqc.compile(s, "1..16", 48, 96)
    assert on == ["tvm"] and len(entries()) == 1  # loaded: nothing compiled
    assert again.rule == first.rule and again.schedules == first.schedules
    np.testing.assert_array_equal(check(again, s, A, B), c1)
    # another process loads it too: its pipeline is never run there
    code = ("import sys, numpy as np, lrqc\nfrom lrqc.pipeline import cache\n"
            "def no(*a, **k): raise SystemExit('compiled')\ncache.compile = no\n"
            f"s = lrqc.parse_schemes({W4A8!r})['w4a8']\n"
            "k = lrqc.compile(s, '1..16', 48, 96)\n"
            "A, B = np.load(sys.argv[1]), np.load(sys.argv[2])\n"
            "np.save(sys.argv[3], k(A, k.pack(B)))\n")
    paths = [str(kernels_dir().parent / f"{n}.npy") for n in ("A", "B", "C")]
    np.save(paths[0], A)
    np.save(paths[1], B)
    res = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, kcache.ENV: "1"}, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    np.testing.assert_array_equal(np.load(paths[2]), c1)


def test_the_key_follows_what_the_machine_code_depends_on(monkeypatch):
    s = lrqc.parse_schemes(W8A8)["w8a8"]
    other = lrqc.parse_schemes(W8A8.replace("b: int8", "b: int7"))["w8a8"]
    host, avx2 = resolve(None), resolve("x86-avx2")
    base = kcache.key(s, "1..16", 48, 96, host, None)
    assert kcache.key(s, "1..16", 48, 96, host, None) == base
    changed = [kcache.key(other, "1..16", 48, 96, host, None),
               kcache.key(s, "1..32", 48, 96, host, None),
               kcache.key(s, "1..16", 64, 96, host, None),
               kcache.key(s, "1..16", 48, 128, host, None),
               kcache.key(s, "1..16", 48, 96, avx2, None),
               kcache.key(s, "1..16", 48, 96, host, "tuning-state")]
    monkeypatch.setattr(kcache, "source_digest", lambda: "another lrqc")
    changed.append(kcache.key(s, "1..16", 48, 96, host, None))
    assert len(set(changed)) == len(changed) and base not in changed


def test_the_tuning_records_are_part_of_a_tuned_key(on):
    from lrqc.tuning.db import records_state, tuning_dir

    records = tuning_dir() / "records"
    states = [records_state()]
    records.mkdir(parents=True)
    (records / "abc.json").write_text('{"a": 1}')
    states.append(records_state())
    before = (records / "abc.json").stat()
    (records / "abc.json").write_text('{"a": 2}')  # rewritten in place, its times kept
    os.utime(records / "abc.json", ns=(before.st_atime_ns, before.st_mtime_ns))
    states.append(records_state())
    assert len(set(states)) == 3
    s = lrqc.parse_schemes(W8A8)["w8a8"]
    lrqc.compile(s, 16, 48, 96, tuned=False)
    lrqc.compile(s, 16, 48, 96, tuned=False)
    assert len(on) == 1
    lrqc.compile(s, 16, 48, 96)  # tuned: the records' state is in the key
    assert len(on) == 2 and len(entries()) == 2


@pytest.mark.parametrize("damage", ["library", "manifest", "no manifest", "a null number",
                                    "a file", "a fifo", "a fifo key", "another key's entry",
                                    "another key's manifest and library"])
def test_a_damaged_entry_is_compiled_again(on, damage):
    s = lrqc.parse_schemes(W8A8)["w8a8"]
    A, B = data()
    lrqc.compile(s, 16, 48, 96)
    (entry,) = [kernels_dir() / e for e in entries()]
    if damage == "library":
        lib = entry / "lib.so"
        raw = bytearray(lib.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        lib.write_bytes(bytes(raw))
    elif damage == "manifest":
        man = json.loads((entry / "manifest.json").read_text())
        man["dims"]["N"] = 64
        (entry / "manifest.json").write_text(json.dumps(man))
    elif damage == "no manifest":
        (entry / "manifest.json").unlink()
    elif damage == "a null number":  # (load_kernel says so with an LrqcError)
        man = json.loads((entry / "manifest.json").read_text())
        man["weights"]["bytes_per_weight"] = None
        (entry / "manifest.json").write_text(json.dumps(man))
        with pytest.raises(lrqc.LrqcError, match="bytes_per_weight' must be an integer or a "
                                                  "number, found null"):
            lrqc.load_kernel(entry)
    elif damage == "a file":
        shutil.rmtree(entry)
        entry.write_text("not an entry")
    elif damage == "a fifo":
        shutil.rmtree(entry)
        os.mkfifo(entry)
    elif damage == "a fifo key":  # (reading it would wait for a writer forever)
        (entry / kcache.KEY_FILE).unlink()
        os.mkfifo(entry / kcache.KEY_FILE)
    else:  # another scheme's valid entry (or its manifest and library) in this key's place
        w4 = lrqc.parse_schemes(W4A8)["w4a8"]
        lrqc.compile(w4, 16, 48, 96)
        (other,) = [kernels_dir() / e for e in entries() if kernels_dir() / e != entry]
        if damage == "another key's entry":
            shutil.rmtree(entry)
            shutil.copytree(other, entry)
        else:  # this entry's key.json kept
            for name in ("manifest.json", "lib.so"):
                shutil.copyfile(other / name, entry / name)
        on.pop()
    done = []
    worker = threading.Thread(target=lambda: done.append(lrqc.compile(s, 16, 48, 96)),
                              daemon=True)
    worker.start()
    worker.join(timeout=300)
    assert done, "lrqc.compile did not return"
    kernel = done[0]
    assert kernel.plan.scheme.name == "w8a8"
    assert len(on) == 2  # compiled again, not loaded
    check(kernel, s, A, B)
    again = lrqc.compile(s, 16, 48, 96)  # the entry written whole again
    assert len(on) == 2
    check(again, s, A, B)


def test_each_kernel_keeps_the_threads_it_was_asked_for(on):
    try:
        openmp.launcher()
    except lrqc.LrqcError as exc:
        pytest.skip(f"no OpenMP launcher here: {exc}")
    s = lrqc.parse_schemes(W8A8)["w8a8"]
    A, B = data(m=64, n=256, k=512)
    pool = lrqc.compile(s, "1..64", 256, 512, threads="tvm")
    omp = lrqc.compile(s, "1..64", 256, 512, threads="openmp")
    assert (pool.threads, omp.threads) == ("tvm", "openmp") and len(on) == 1
    start = openmp.launches()
    c_pool = check(pool, s, A, B)
    assert openmp.launches() == start  # its own copy of the library: loops on TVM's pool
    np.testing.assert_array_equal(check(omp, s, A, B), c_pool)
    assert openmp.launches() > start


def test_stage_texts_and_a_cache_turned_off_compile_afresh(on, monkeypatch, tmp_path):
    s = lrqc.parse_schemes(W8A8)["w8a8"]
    lrqc.compile(s, 16, 48, 96, dump_dir=tmp_path / "dump")
    assert (tmp_path / "dump" / "tir.txt").is_file() and entries() == []
    monkeypatch.setenv(kcache.ENV, "off")
    lrqc.compile(s, 16, 48, 96)
    assert entries() == [] and len(on) == 2


@pytest.mark.parametrize("where", ["through a file", "kernels is a file"])
def test_a_cache_that_cannot_be_written_compiles_once(on, cache, monkeypatch, where):
    s = lrqc.parse_schemes(W8A8)["w8a8"]
    A, B = data()
    if where == "through a file":
        (cache / "afile").write_text("")
        monkeypatch.setenv("LRQC_CACHE_DIR", str(cache / "afile" / "cache"))
    else:
        kernels_dir().parent.mkdir(parents=True)
        kernels_dir().write_text("")
    for n in (1, 2):
        check(lrqc.compile(s, 16, 48, 96), s, A, B)
        assert on == ["auto"] * n  # once each, as without the cache


def test_a_library_that_cannot_be_written_turns_the_cache_off(on, monkeypatch):
    s = lrqc.parse_schemes(W8A8)["w8a8"]
    A, B = data()
    monkeypatch.setenv("CXX", "false")  # a C++ compiler that is there, and fails
    check(lrqc.compile(s, 16, 48, 96, threads="tvm"), s, A, B)
    assert on == ["tvm"] and entries() == []  # the kernel built for the cache serves
    check(lrqc.compile(s, 16, 48, 96), s, A, B)
    check(lrqc.compile(s, 16, 64, 96), s, *data(n=64))
    assert on == ["tvm", "auto", "auto"] and entries() == []  # from then on: uncached


def test_an_entry_removed_before_its_load_keeps_the_cache_on(on, monkeypatch):
    s = lrqc.parse_schemes(W8A8)["w8a8"]
    A, B = data()
    store = kcache._store

    def then_cleared(*args):
        out = store(*args)
        for d in kernels_dir().iterdir():  # `lrqc cache kernels clear` in another shell
            shutil.rmtree(d)
        return out

    monkeypatch.setattr(kcache, "_store", then_cleared)
    check(lrqc.compile(s, 16, 48, 96), s, A, B)
    monkeypatch.setattr(kcache, "_store", store)
    lrqc.compile(s, 16, 64, 96)
    lrqc.compile(s, 16, 64, 96)
    assert not kcache._BROKEN.is_set() and len(entries()) == 1 and on[-2:] == ["auto", "tvm"]


def test_the_cache_can_be_turned_off(on, monkeypatch):
    s = lrqc.parse_schemes(W8A8)["w8a8"]
    for value in ("0", "Off", "no", "false", "none", "disabled"):
        monkeypatch.setenv(kcache.ENV, value)
        lrqc.compile(s, 16, 48, 96)
    assert entries() == [] and on == ["auto"] * 6


def test_concurrent_compiles_of_one_key_share_one_entry(on):
    s = lrqc.parse_schemes(W8A8)["w8a8"]
    A, B = data()
    out, errors = [], []

    def work():
        try:
            out.append(check(lrqc.compile(s, 16, 48, 96), s, A, B))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(out) == 3 and len(entries()) == 1
    for c in out[1:]:
        np.testing.assert_array_equal(c, out[0])


def test_the_least_recently_used_entries_go(on, monkeypatch):
    monkeypatch.setattr(kcache, "MAX_ENTRIES", 2)
    s = lrqc.parse_schemes(W8A8)["w8a8"]
    for n in (16, 32, 48):
        lrqc.compile(s, 16, n, 96)
    assert len(entries()) == 2
    lrqc.compile(s, 16, 16, 96)  # the oldest (N=16) was removed: compiled again
    assert len(on) == 4


def test_the_cli_lists_and_clears_compiled_kernels(on):
    s = lrqc.parse_schemes(W8A8)["w8a8"]
    lrqc.compile(s, 16, 48, 96)
    env = {**os.environ}
    run = [sys.executable, "-m", "lrqc.cli", "cache", "kernels"]
    res = subprocess.run(run, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "1 compiled kernel(s)" in res.stdout and "w8a8  M=16 N=48 K=96" in res.stdout
    (kernels_dir() / ".new-left-behind").mkdir()
    res = subprocess.run([*run, "clear"], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "removed 1 compiled kernel(s)" in res.stdout and "and 1 other item(s)" in res.stdout
    assert list(kernels_dir().iterdir()) == []
    (kernels_dir().parent / "kernels").rmdir()
    (kernels_dir().parent / "kernels").write_text("")
    res = subprocess.run(run, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert res.returncode == 1 and "is not a directory" in res.stderr
    res = subprocess.run([*run, "all"], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=120)
    assert res.returncode == 1 and "usage: lrqc cache kernels [clear]" in res.stderr
    assert "Traceback" not in res.stderr
