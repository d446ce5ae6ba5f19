"""The wheel: it builds, ships the grammar and the examples under lrqc/_data, declares the `lrqc`
console script, and once installed (outside the checkout) finds its data files by itself.

Slow (builds a wheel with pip): run with `pytest -m slow tests/integration/test_packaging.py`.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NETWORK_WORDS = ("Could not find a version that satisfies", "No matching distribution",
                 "Failed to establish a new connection", "Temporary failure in name resolution",
                 "Network is unreachable", "ProxyError", "ConnectTimeout")


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("packaging")


@pytest.fixture(scope="module")
def wheel(tmp) -> Path:
    """Build the wheel: without build isolation when hatchling is importable here, otherwise
    in an isolated build environment that pip fills from the package index."""
    out = tmp / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
           "-w", str(out)]
    isolated = importlib.util.find_spec("hatchling") is None
    if not isolated:
        cmd.append("--no-build-isolation")
    res = _run(cmd + [str(ROOT)], cwd=tmp)
    if res.returncode != 0:
        log = res.stdout + res.stderr
        if isolated and any(w in log for w in NETWORK_WORDS):
            pytest.skip("hatchling is not installed and the package index is unreachable:\n"
                        + log[-2000:])
        pytest.fail(f"pip wheel failed ({res.returncode}):\n{log[-4000:]}")
    wheels = sorted(out.glob("lrqc-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def site(tmp, wheel) -> Path:
    target = tmp / "site"
    res = _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                "--disable-pip-version-check", "--target", str(target), str(wheel)], cwd=tmp)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (target / "lrqc" / "__init__.py").is_file()
    return target


def _dependency_paths() -> list[str]:
    """This environment's site-packages (numpy, lark, sympy), without the checkout."""
    paths = []
    for key in ("purelib", "platlib"):
        p = sysconfig.get_paths()[key]
        if p not in paths:
            paths.append(p)
    return [p for p in paths if Path(p).resolve() != ROOT]


def _installed_python(tmp: Path, site: Path, code: str) -> subprocess.CompletedProcess:
    """Run `code` with the installed wheel FIRST on sys.path: -S keeps site (and so the editable
    install's .pth, which points at the checkout) out; cwd is outside the checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join([str(site)] + _dependency_paths())
    return _run([sys.executable, "-S", "-c", code], cwd=tmp, env=env)


# ---- contents of the wheel -----------------------------------------------------------------------

def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def test_wheel_ships_grammar_and_examples(wheel):
    names = _names(wheel)
    assert "lrqc/_data/grammar/lrqc.lark" in names
    shipped = {n.rsplit("/", 1)[1] for n in names
               if n.startswith("lrqc/_data/examples/") and n.endswith(".lrq")}
    assert shipped, sorted(names)
    in_repo = {p.name for p in (ROOT / "examples").glob("*.lrq")}
    assert in_repo <= shipped, in_repo - shipped
    assert "lrqmm.lrq" in shipped
    with zipfile.ZipFile(wheel) as zf:
        grammar = (ROOT / "grammar" / "lrqc.lark").read_bytes()
        assert zf.read("lrqc/_data/grammar/lrqc.lark") == grammar
    # the package itself, and nothing from the test suite or the virtual environment
    assert "lrqc/__init__.py" in names and "lrqc/cli/main.py" in names
    assert "_lrqc_main.py" in names  # the console script's entry point (before lrqc loads)
    assert not any(n.startswith(("tests/", ".venv/")) for n in names)


def test_wheel_declares_the_console_script(wheel):
    names = _names(wheel)
    eps = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert len(eps) == 1, sorted(names)
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(eps[0]).decode()
    cfg = configparser.ConfigParser()
    cfg.read_string(text)
    assert cfg.has_section("console_scripts"), text
    assert cfg["console_scripts"].get("lrqc", "").strip() == "_lrqc_main:main", text


# ---- the installed wheel -------------------------------------------------------------------------

def test_installed_wheel_finds_its_own_data(tmp, site):
    code = (
        "import json, lrqc, lrqc.resources as r\n"
        "ex = r.example_path('lrqmm.lrq')\n"
        "schemes = lrqc.load_schemes(ex)\n"
        "text = lrqc.parse_schemes(ex.read_text())\n"
        "print(json.dumps({'file': lrqc.__file__, 'grammar': str(r.grammar_path()),\n"
        "                  'example': str(ex), 'schemes': list(schemes), 'text': list(text),\n"
        "                  'grammar_exists': r.grammar_path().is_file()}))\n"
    )
    res = _installed_python(tmp, site, code)
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    site = site.resolve()
    for key in ("file", "grammar", "example"):
        path = Path(out[key]).resolve()
        assert path.is_relative_to(site), (key, path, site)
        assert not path.is_relative_to(ROOT) or site.is_relative_to(ROOT), (key, path)
    assert out["grammar_exists"]
    assert out["schemes"] == out["text"]
    assert {"lrqmm_int8", "lrqmm_w4a8_r16"} <= set(out["schemes"])


def test_installed_wheel_reference_runs(tmp, site):
    """The shipped example runs end to end (parse, IR passes, interpreter == reference)."""
    code = (
        "import numpy as np, lrqc\n"
        "from lrqc.resources import example_path\n"
        "from lrqc.ir import lower_ast\n"
        "from lrqc.passes import run_passes\n"
        "from lrqc.reference.interp import interpret\n"
        "s = lrqc.load_schemes(example_path('lrqmm.lrq'))['lrqmm_int8']\n"
        "rng = np.random.default_rng(0)\n"
        "A, B = rng.uniform(0, 1, (16, 24)), rng.uniform(0, 1, (24, 8))\n"
        "C = lrqc.reference.matmul(s, A, B)\n"
        "assert np.allclose(C, interpret(run_passes(lower_ast(s)), A, B), rtol=1e-10, atol=0)\n"
        "assert np.linalg.norm(C - A @ B) < 0.05 * np.linalg.norm(A @ B)\n"
        "print('ok', lrqc.__file__)\n"
    )
    res = _installed_python(tmp, site, code)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (res.stdout.startswith("ok " + str(site.resolve()))
            or res.stdout.startswith("ok " + str(site)))


def test_installed_console_script(tmp, site):
    """`pip install --target` writes the console script to site/bin; it runs the installed lrqc."""
    script = site / "bin" / "lrqc"
    if not script.exists():
        pytest.skip(f"pip put no console script at {script}")
    code = ("import sys, runpy; sys.argv = [%r, 'check', %r]; "
            "import lrqc; print(lrqc.__file__, file=sys.stderr); "
            "runpy.run_path(%r, run_name='__main__')") % (
        str(script), str(site / "lrqc" / "_data" / "examples" / "lrqmm.lrq"), str(script))
    res = _installed_python(tmp, site, code)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ok (2 schemes: lrqmm_int8, lrqmm_w4a8_r16)" in res.stdout
    assert Path(res.stderr.strip().splitlines()[-1]).resolve().is_relative_to(site.resolve())
