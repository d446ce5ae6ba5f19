"""Shared fixtures: the repository root, the shipped examples, a private lrqc cache."""

from __future__ import annotations

from pathlib import Path

import pytest

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
