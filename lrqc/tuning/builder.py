"""MetaSchedule's builder function for lrqc tune, alone in a small module: the builder's worker
processes import the module of the function they are given (it travels by name), so this one
imports nothing but TVM."""

from __future__ import annotations

from ..backend.compat import driver_build, tvm, use_nvcc


def build_candidate(mod: tvm.IRModule, target: tvm.target.Target, _params: dict | None = None
                    ) -> tvm.runtime.Module:
    """MetaSchedule's default builder function without its first step, an import of every
    built-in tensor intrinsic (compat.BUILTIN_INTRINSICS) that takes over a minute per worker
    process; lrqc's candidates use only lrqc's own intrinsics. A CUDA candidate built on a
    machine with a GPU is compiled by TVM's hook as it is built: with nvcc."""
    use_nvcc()
    return driver_build(mod, target=target)
