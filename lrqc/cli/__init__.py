"""The `lrqc` command line: one module per verb group (check.py: check, explain, eval;
build.py: build, run, bench; tune.py: tune, cache), what they share in common.py, and the
entry point in main.py."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
