"""`lrqc run --bias` on a built artifact: C = A @ B + bias as the reference computes it (within
float32 rounding); a bias of the wrong length or with non-finite values is one error line and
writes nothing."""

from __future__ import annotations

import numpy as np
import pytest

import lrqc
from lrqc.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SCHEME = "scheme pc {\n a: int8 per_channel\n b: int8 per_channel\n}\n"
M, N, K = 4, 16, 64


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from lrqc.pipeline.export import build_artifact

    out = tmp_path_factory.mktemp("art") / "pc"
    build_artifact(lrqc.parse_schemes(SCHEME)["pc"], M, N, K, out)
    return out


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("LRQC_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    np.save(tmp_path / "A.npy", rng.standard_normal((M, K)))
    np.save(tmp_path / "B.npy", rng.standard_normal((K, N)))
    np.save(tmp_path / "bias.npy", rng.standard_normal(N) * 4)
    np.save(tmp_path / "short.npy", np.ones(N - 1))
    np.save(tmp_path / "inf.npy", np.r_[np.ones(N - 1), np.inf])
    return tmp_path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_run_adds_the_bias(files, artifact, capsys):
    s = lrqc.parse_schemes(SCHEME)["pc"]
    A, B, bias = (np.load(files / n) for n in ("A.npy", "B.npy", "bias.npy"))
    code, out, _ = run(capsys, "run", artifact, "--a", files / "A.npy", "--b", files / "B.npy",
                       "--bias", files / "bias.npy", "-o", files / "C.npy")
    assert code == 0 and out.startswith(f"wrote {files / 'C.npy'}: {M}x{N} float32")
    C = np.load(files / "C.npy")
    ref = lrqc.reference.matmul(s, A, B, exact=True, bias=bias)
    np.testing.assert_allclose(C, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    code, _, _ = run(capsys, "run", artifact, "--a", files / "A.npy", "--b", files / "B.npy",
                     "-o", files / "C0.npy")
    assert code == 0
    shift = np.load(files / "C.npy") - np.load(files / "C0.npy")
    np.testing.assert_allclose(shift, np.broadcast_to(bias, (M, N)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,msg", [
    ("short.npy", f"has {N - 1} values but C has N={N} columns"),
    ("inf.npy", f"contains non-finite values (first at [{N - 1}] = inf)"),
])
def test_run_with_a_bad_bias(files, artifact, capsys, name, msg):
    p = files / name
    code, out, err = run(capsys, "run", artifact, "--a", files / "A.npy", "--b",
                         files / "B.npy", "--bias", p, "-o", files / "C.npy")
    assert code == 1 and not out
    assert err.splitlines() == [f"lrqc: error: --bias {p}: {msg}"]
    assert not (files / "C.npy").exists()
