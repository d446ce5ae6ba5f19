"""Compiling a scheduled module for an lrqc Target: under the target (TVM's current one), and
for CUDA targets with lrqc's compile hook in charge of any CUDA source TVM compiles as it
builds (on a machine with a GPU): nvcc, into the fatbin for every arch the target asks for."""

from __future__ import annotations

from typing import Any

from .compat import compile_module
from .cuda.fatbin import HOOK
from .target import Target


def compile_for(mod: Any, target: Target) -> Any:
    """tvm.compile of mod for the target -> runtime Executable."""
    with target.tvm():
        if not target.is_cuda:
            return compile_module(mod, target.tvm())
        with HOOK.build_for(target.archs):
            return compile_module(mod, target.tvm())
