"""Tamper-proofing: packed operands are refused by any kernel but the one they were made for
(saying what differs), both operands get the same float32 range check, and load_kernel /
`lrqc run` refuse every corrupted, edited, truncated or foreign artifact with one line naming
the file, before any library is loaded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import lrqc
from lrqc.reference import matmul
from lrqc.reference.scheme import rel_error

pytest.importorskip("tvm")

from lrqc.pipeline.export import build_artifact
from lrqc.runtime.manifest import FORMAT, content_hashes

TEXT = "scheme w {{\n a: int8 per_tensor round={r}\n b: {b} per_channel\n}}\n"
DIMS = ("1..8", 16, 64)  # M range, N, K of the artifacts


def scheme(r: str = "nearest", b: str = "int4"):
    return lrqc.parse_schemes(TEXT.format(r=r, b=b))["w"]


def data(m, n, k, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, k)), rng.standard_normal((k, n))


# ---------------------------------------------------------------- packed operands


@pytest.fixture(scope="module")
def kernels():
    out = {(r, b): lrqc.compile(scheme(r, b), 4, 16, 64)
           for r, b in (("nearest", "int4"), ("floor", "int4"), ("nearest", "int8"))}
    out["K=32"] = lrqc.compile(scheme(), 4, 16, 32)
    return out


@pytest.mark.parametrize("maker,user,msg", [
    # same name, N and K: the packed weights of an edited scheme used to give numbers 0.7 % off
    (("nearest", "int4"), ("floor", "int4"),
     r"scheme differs at line 2 \(a:\): 'round=nearest' \(this kernel: 'round=floor'\)"),
    # int4 nibbles into an int8 kernel used to be TVM's "Mismatched Bp.ndim"
    (("nearest", "int4"), ("nearest", "int8"),
     r"scheme differs at line 3 \(b:\): 'int4' \(this kernel: 'int8'\)"),
    ("K=32", ("nearest", "int4"), r"sizes B: 32x16 \(K x N\) \(this kernel: B: 64x16"),
])
def test_packed_operands_carry_their_kernels_fingerprint(kernels, maker, user, msg):
    A, B = data(4, 16, 64)
    B = B[: kernels[maker].plan.k]
    packed = kernels[maker].pack(B)
    with pytest.raises(lrqc.InputError, match=r"packed: made for another kernel: " + msg) as err:
        kernels[user](A, packed)
    assert "pack B with this kernel" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(lrqc.InputError, match=msg):
        kernels[user].int_accumulate(A, packed)
    with pytest.raises(lrqc.InputError, match=msg):
        kernels[user].stage_times(A, packed)


def test_equal_fingerprints_share_packed_operands(kernels, tmp_path):
    """A kernel of the same scheme and sizes (here: loaded from an artifact) takes the packed
    operand, and gives the same C."""
    k = kernels["nearest", "int4"]
    build_artifact(scheme(), 4, 16, 64, tmp_path / "a")
    loaded = lrqc.load_kernel(tmp_path / "a")
    assert loaded.fingerprint == k.fingerprint
    A, B = data(4, 16, 64, seed=1)
    np.testing.assert_array_equal(loaded(A, k.pack(B)), k(A, k.pack(B)))
    with pytest.raises(lrqc.InputError, match=r"expected the result of this kernel's pack\(B\), "
                                              r"got ndarray"):
        k(A, B)


def test_static_a_and_chains_check_fingerprints():
    t = "scheme t {{\n a: int8 per_channel round={r}\n b: int8 per_channel\n static: a\n}}"
    k1, k2 = (lrqc.compile(lrqc.parse_schemes(t.format(r=r))["t"], 16, 8, 32)
              for r in ("nearest", "floor"))
    A, B = data(16, 8, 32, seed=2)
    with pytest.raises(lrqc.InputError, match=r"'round=nearest'.*pack A with this kernel"):
        k2(B, k1.pack(A))
    lp = "scheme l {{\n a: int8 per_channel\n b: lplr(rank={r}, left=int4, right=int8)\n}}"
    c1, c2 = (lrqc.compile(lrqc.parse_schemes(lp.format(r=r))["l"], 4, 16, 32) for r in (6, 8))
    A, B = data(4, 16, 32, seed=3)
    with pytest.raises(lrqc.InputError, match=r"'lplr\(rank=6,' \(this kernel: 'lplr\(rank=8,'"):
        c2(A, c1.pack(B))
    with pytest.raises(lrqc.InputError, match="scheme differs"):  # a part's packed weights
        c1(A, c1.kernels[0].pack(np.ones((32, 7))))


# ---------------------------------------------------------------- the float32 range of B


def test_both_operands_must_be_finite_in_float32(kernels):
    k = kernels["nearest", "int8"]
    A, B = data(4, 16, 64, seed=4)
    big = B.copy()
    big[3, 5] = 1e39  # finite in float64, infinite in float32
    msg = r"B: contains values beyond the float32 range \(first at \[3, 5\] = 1e\+39\)"
    with pytest.raises(lrqc.InputError, match=msg):
        k.pack(big)
    with pytest.raises(lrqc.InputError, match=msg.replace("B:", "A:").replace("3, 5", "0, 0")):
        k(np.full((4, 64), 1e39), k.pack(B))
    # static: a packs A, chains pack B: the same check
    t = lrqc.parse_schemes("scheme t { a: int8 per_channel\n b: int8 per_channel\n static: a }")
    ka = lrqc.compile(t["t"], 4, 16, 64)
    with pytest.raises(lrqc.InputError, match=r"A: contains values beyond the float32 range"):
        ka.pack(big.T[2:6])
    lp = lrqc.parse_schemes("scheme l { a: float32\n b: lplr(rank=4, left=int4, right=int8) }")
    with pytest.raises(lrqc.InputError, match=msg):
        lrqc.compile(lp["l"], 4, 16, 64).pack(big)
    # values up to float32's largest are taken, and give the reference's C where it fits
    huge = B / np.abs(B).max() * 3.4e38
    tiny = A * 1e-30
    C = k(tiny, k.pack(huge))
    R = matmul(k.scheme, tiny.astype(np.float32), huge)
    assert np.all(np.isfinite(C)) and rel_error(C, R) < 1e-6, rel_error(C, R)


# ---------------------------------------------------------------- artifacts


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Two builds of scheme w that differ in A's rounding only, and one at other sizes."""
    root = tmp_path_factory.mktemp("builds")
    build_artifact(scheme("nearest"), *DIMS, root / "nearest")
    build_artifact(scheme("floor"), *DIMS, root / "floor")
    build_artifact(scheme("nearest"), DIMS[0], 32, 48, root / "sizes")
    return root


@pytest.fixture
def art(builds, tmp_path):
    """A fresh copy of the round=nearest artifact."""
    d = tmp_path / "art"
    shutil.copytree(builds / "nearest", d)
    return d


def manifest(d):
    return json.loads((d / "manifest.json").read_text())


def write(d, man, rehash: bool = False):
    """Write an edited manifest; rehash: with content hashes recomputed (a consistent edit)."""
    if rehash:
        man["content_sha256"] = content_hashes(man)
    (d / "manifest.json").write_text(json.dumps(man, indent=2))


def refused(d, match: str) -> str:
    """load_kernel(d) raises an LrqcError matching `match`, on one line naming a file of d."""
    with pytest.raises(lrqc.LrqcError, match=match) as err:
        lrqc.load_kernel(d)
    msg = str(err.value)
    assert "\n" not in msg and str(d) in msg, msg
    return msg


def test_intact_artifact_records_hashes_and_runs(art):
    man = manifest(art)
    assert man["format"] == FORMAT and set(man["files"]) == {"lib.so"}
    assert man["files"]["lib.so"]["size"] == (art / "lib.so").stat().st_size
    assert len(man["scheme_sha256"]) == 64 and man["content_sha256"] == content_hashes(man)
    k = lrqc.load_kernel(art)
    A, B = data(5, 16, 64, seed=5)
    R = matmul(scheme(), A.astype(np.float32), B)
    assert rel_error(k.run(A, B), R) < 2e-6


def test_library_of_another_build_is_refused(builds, art):
    """Same name and sizes, another rounding: that library used to run, 17 % off."""
    assert manifest(builds / "floor")["files"] != manifest(art)["files"]
    shutil.copy(builds / "floor" / "lib.so", art / "lib.so")
    refused(art, r"lib\.so: its sha256 differs from the manifest's \(another build's file")
    shutil.copy(builds / "sizes" / "lib.so", art / "lib.so")  # a library of other sizes
    refused(art, r"lib\.so: \d+ bytes, the manifest records \d+|lib\.so: its sha256 differs")


EDITS = {  # entry -> edit of the manifest: every one changes what the artifact computes or is
    "scheme": lambda m: m.update(scheme=m["scheme"].replace("round=nearest", "round=floor")),
    "scheme format": lambda m: m.update(scheme=m["scheme"].replace("int4", "int8")),
    "dims": lambda m: m["dims"].update(N=32),
    "target": lambda m: m["target"].update(mcpu="skylake"),
    "m_buckets": lambda m: m.update(m_buckets=[8]),
    "padded": lambda m: m["padded"].update(Kp=128),
    "static": lambda m: m.update(static="a"),
    "files": lambda m: m["files"]["lib.so"].update(size=1),
    "lib": lambda m: m.update(lib="lib.tar"),
    "notes": lambda m: m.update(notes=["hello"]),
    "added": lambda m: m.update(extra=1),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_any_manifest_edit_is_refused(art, edit):
    man = manifest(art)
    EDITS[edit](man)
    write(art, man)
    key = {"scheme format": "scheme", "added": "extra"}.get(edit, edit)
    refused(art, rf"manifest\.json: .*'{key}'.* edited after the build")


FORGED = {  # edits with the content hashes recomputed: still refused by the checks behind them
    "scheme text": (lambda m: m.update(scheme=m["scheme"].replace("int4", "int8")),
                    "does not match its scheme_sha256"),
    "dims": (lambda m: m["dims"].update(N=32), r"are not those of the scheme at M=1\.\.8, N=32"),
    "lib path": (lambda m: m.update(lib="../lib.so"), "'../lib.so' is not a file name"),
    "file entry": (lambda m: m["files"].clear(), "no size and hash recorded for lib.so"),
    "functions": (lambda m: m["functions"].append("nope"), r"lacks 1 of the manifest's functions"),
    "format 5": (lambda m: m.update(format=5), r"manifest format 5, from an older lrqc.*rebuild"),
    "format 10": (lambda m: m.update(format=10),
                  r"manifest format 10, from an older lrqc.*rebuild"),
    "newer format": (lambda m: m.update(format=FORMAT + 1),
                     rf"format {FORMAT + 1}, newer than this lrqc reads \({FORMAT}\)"),
}


@pytest.mark.parametrize("edit", list(FORGED))
def test_consistently_edited_manifests_are_refused(art, edit):
    fn, msg = FORGED[edit]
    man = manifest(art)
    fn(man)
    write(art, man, rehash=True)
    refused(art, msg)


def test_truncated_library_is_refused_before_loading(art):
    """A truncated lib.so killed `lrqc run` with a bus error (exit 135, no message)."""
    data_ = (art / "lib.so").read_bytes()
    (art / "lib.so").write_bytes(data_[: len(data_) // 2])
    refused(art, rf"lib\.so: {len(data_) // 2} bytes, the manifest records {len(data_)} "
                 r"\(truncated")
    A, B = data(4, 16, 64)
    np.save(art.parent / "a.npy", A)
    np.save(art.parent / "b.npy", B)
    res = subprocess.run([sys.executable, "-m", "lrqc.cli", "run", str(art), "--a",
                          str(art.parent / "a.npy"), "--b", str(art.parent / "b.npy"), "-o",
                          str(art.parent / "c.npy")], capture_output=True, text=True, timeout=300,
                         check=False,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert res.returncode == 1, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "truncated" in lines[0] and "Traceback" not in res.stderr
    assert not (art.parent / "c.npy").exists()


def _lib(d, content):
    p = d / "lib.so"
    p.unlink()
    if content == "dir":
        p.mkdir()
    elif content is not None:
        p.write_bytes(content)


CORRUPT = {  # name -> (corruption of the artifact directory, message)
    "manifest: missing key": (lambda d: _drop(d, "scheme"), r"missing key 'scheme'"),
    "manifest: missing nested key": (lambda d: _drop(d, "dims", "N"), r"missing key 'dims\.N'"),
    "manifest: missing format": (lambda d: _drop(d, "format"), r"missing key 'format'"),
    "manifest: null": (lambda d: _set(d, "dims", None),
                       r"'dims' must be an object, found null"),
    "manifest: list": (lambda d: _set(d, "target", []),
                       r"'target' must be an object, found a list"),
    "manifest: nested null": (lambda d: _set(d, "versions", None), r"'versions' must be"),
    "manifest: string for int": (lambda d: _set(d, "format", "3"),
                                 r"'format' must be an integer, found a string \"3\""),
    "manifest: bool for int": (lambda d: _set(d, "m_buckets", [True]),
                               r"'m_buckets\[0\]' must be an integer, found true"),
    "manifest: file entry": (lambda d: _set(d, "files", {"lib.so": {"size": "1"}}),
                             r"missing key 'files\.lib\.so\.sha256'|'files\.lib\.so\.size' must"),
    "manifest: top-level list": (lambda d: (d / "manifest.json").write_text("[1, 2]"),
                                 r"expected a JSON object, found a list"),
    "manifest: bad JSON": (lambda d: (d / "manifest.json").write_text('{"format": 6,'),
                           r"manifest\.json: not valid JSON"),
    "manifest: empty": (lambda d: (d / "manifest.json").write_text(""), r"not valid JSON"),
    "manifest: binary": (lambda d: (d / "manifest.json").write_bytes(bytes(range(256)) * 4),
                         r"manifest\.json: not UTF-8 text \(binary content\?\)"),
    "manifest: deep JSON": (lambda d: (d / "manifest.json").write_text("[" * 100000),
                            r"manifest\.json: not (valid JSON|a manifest)"),
    "manifest: a directory": (lambda d: ((d / "manifest.json").unlink(),
                                         (d / "manifest.json").mkdir()),
                              r"manifest\.json: cannot be read"),
    "lib.so: missing": (lambda d: _lib(d, None), r"lib\.so: missing"),
    "lib.so: a directory": (lambda d: _lib(d, "dir"), r"lib\.so: not a file"),
    "lib.so: not a library": (lambda d: _lib(d, b"#!/bin/sh\necho hi\n"),
                              r"lib\.so: 18 bytes, the manifest records"),
    "lib.so: empty": (lambda d: _lib(d, b""), r"lib\.so: 0 bytes"),
}


def _drop(d, *path):
    man = manifest(d)
    node = man
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    write(d, man)


def _set(d, key, value):
    man = manifest(d)
    man[key] = value
    write(d, man)


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_artifacts_are_one_line_errors(art, case):
    corrupt, msg = CORRUPT[case]
    corrupt(art)
    refused(art, msg)


def test_not_an_artifact_directory(tmp_path):
    f = tmp_path / "s.lrq"
    f.write_text(TEXT.format(r="nearest", b="int4"))
    with pytest.raises(lrqc.LrqcError, match=r"s\.lrq: not a directory"):
        lrqc.load_kernel(f)
    with pytest.raises(lrqc.LrqcError, match="no such artifact directory"):
        lrqc.load_kernel(tmp_path / "nothing")
