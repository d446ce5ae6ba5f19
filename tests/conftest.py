"""Shared fixtures: the repository root and the shipped examples."""

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
