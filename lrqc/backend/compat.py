"""Every TVM 0.27-specific name lrqc uses, in one place (the API moved between releases)."""

from __future__ import annotations

import os

os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))

import tvm
import tvm.tirx as tir
from tvm import te
from tvm.s_tir import Schedule, TensorIntrin
from tvm.script import tirx as T
from tvm.target import codegen

__all__ = [
    "Schedule",
    "T",
    "TvmTarget",
    "TensorIntrin",
    "codegen",
    "compile_module",
    "cpu",
    "prim_func",
    "te",
    "tensor",
    "tir",
    "tvm",
    "versions",
]

TvmTarget = tvm.target.Target
cpu = tvm.cpu


def prim_func(tensors, name: str = "main"):
    """te tensors -> IRModule with one PrimFunc called `name`."""
    return tvm.IRModule({name: te.create_prim_func(tensors).with_attr("global_symbol", name)})


def compile_module(mod, target):
    """tvm.compile -> runtime Executable (ex[name], ex.mod, ex.export_library)."""
    return tvm.compile(mod, target=target)


def tensor(arr, dev=None):
    """An aligned TVM tensor holding a copy of the numpy array."""
    return tvm.runtime.tensor(arr, dev or tvm.cpu())


def empty(shape, dtype, dev=None):
    return tvm.runtime.empty(shape, dtype, dev or tvm.cpu())


def load_module(path: str):
    return tvm.runtime.load_module(path)


def versions() -> dict:
    import tvm_ffi

    return {"tvm": tvm.__version__, "tvm_ffi": getattr(tvm_ffi, "__version__", "?"),
            "llvm": int(codegen.llvm_version_major())}
