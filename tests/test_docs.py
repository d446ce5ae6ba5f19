"""The README stays true: its schemes are the shipped examples, its test command is CI's."""

from __future__ import annotations

import re
from pathlib import Path

import lrqc

ROOT = Path(__file__).resolve().parent.parent


def _blocks(text: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", text, re.DOTALL)


def test_readme_schemes_are_the_examples(all_examples):
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in _blocks(readme) if b.lstrip().startswith("# LRQMM"))
    assert lrqc.parse_schemes(block, "README.md") == all_examples
    for path in ROOT.glob("examples/*.lrq"):  # each example's schemes appear verbatim
        body = "".join(ln for ln in path.read_text().splitlines(True) if not ln.startswith("#"))
        assert body in block, path


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = [b.strip() for b in _blocks(readme)[:2]]
    assert "lrqc bench examples/" in commands[0] and "pip install ." in commands[0]
    assert "pytest" in commands[1] and "[test]" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines()
