"""Shared fixtures: the repository root, the shipped examples, a private lrqc cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# every test compiles afresh (tests patch schedules and plans before compiling); the kernel
# cache's own tests turn it on, in a private cache folder
os.environ["LRQC_KERNEL_CACHE"] = "0"

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.lrq"))


@pytest.fixture(scope="session")
def all_examples():
    import lrqc

    out = {}
    for path in EXAMPLES:
        out.update(lrqc.load_schemes(path))
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private lrqc cache directory (tuning records, work dirs) for one test."""
    monkeypatch.setenv("LRQC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


# the files that take longest (minutes each), run first: with the tests spread over processes
# file by file (the README's `-n auto --dist loadfile`), a long file started last would run
# alone at the end
LONGEST_FIRST = ("test_minilm_example.py", "test_tuning.py", "test_compensation_cpu.py",
                 "test_torch.py", "test_bench_cpu.py", "test_call_results.py", "test_cuda.py",
                 "test_threads.py", "test_sparse_cpu.py")


def pytest_collection_modifyitems(config, items):
    """The longest files first (LONGEST_FIRST; the rest in their order). Long fuzz runs
    (marker `long`) are left out of the default run (its fuzz tests run a few hundred
    examples): `python -m pytest -m long` (or -m slow, or LRQC_LONG=1) runs them."""
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep
    #   their order
    expr = config.getoption("markexpr") or ""
    wanted = ("long" in expr or ("slow" in expr and "not slow" not in expr)
              or os.environ.get("LRQC_LONG"))
    if wanted:
        return
    long_runs = [item for item in items if item.get_closest_marker("long")]
    if long_runs:
        config.hook.pytest_deselected(items=long_runs)
        items[:] = [item for item in items if not item.get_closest_marker("long")]
