"""Every TVM 0.27-specific name lrqc uses, in one place (the API moved between releases)."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))
# TVM's workers sleep as soon as a kernel ends instead of spinning: spinning, they take the
# cores from whatever runs next in the process (numpy glue between the compensated kernels'
# functions, torch's operators between lrqc layers). Measured on 2 cores, a 384 -> 1536 -> 384
# block at 256 tokens with torch ops in between: 13-21 ms spinning, 9 ms not; a call of the
# kernel alone is not slower. An explicit setting in the environment wins.
os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", "0")

import numpy as np
import tvm
import tvm.tirx as tir
import tvm_ffi
from tvm import rpc, te
from tvm.driver import build as driver_build
from tvm.ir import Expr as PrimExpr  # TVM 0.27's base of TIR expressions (PrimExpr before)
from tvm.ir import save_json
from tvm.ir.utils import derived_object
from tvm.rpc import base as rpc_base
from tvm.s_tir import Schedule, TensorIntrin, dlight
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback
from tvm.s_tir.schedule import ExprRV, LoopRV, SBlockRV, ScheduleError, Trace
from tvm.s_tir.stmt import SBlock, SBlockRealize
from tvm.script import tirx as T
from tvm.target import codegen

__all__ = [
    "BUILTIN_INTRINSICS",
    "ExprRV",
    "LoopRV",
    "PyMeasureCallback",
    "NO_BLOCK",
    "IRModule",
    "PrimExpr",
    "SBlock",
    "SBlockRV",
    "SBlockRealize",
    "Schedule",
    "ScheduleError",
    "T",
    "TVM_ERRORS",
    "TensorIntrin",
    "Trace",
    "TvmTarget",
    "codegen",
    "dlight",
    "compile_module",
    "cpu",
    "derived_object",
    "driver_build",
    "error_line",
    "fma",
    "last_line",
    "ms",
    "use_nvcc",
    "ALIGNMENT",
    "allocator",
    "lend",
    "prim_func",
    "rpc",
    "rpc_base",
    "save_json",
    "te",
    "tensor",
    "tir",
    "tvm",
    "versions",
]

# What TVM raises: its FFI turns each C++ error kind into one of these Python types
# (tvm_ffi.core.ERROR_NAME_TO_TYPE; TVM's own kinds, ScheduleError, InternalError, RPCError and
# DiagnosticError, are RuntimeErrors). MemoryError is left out: never a verdict on a schedule.
TVM_ERRORS = (RuntimeError, ValueError, TypeError, AttributeError, KeyError, IndexError,
              AssertionError)
# every built-in tensor intrinsic, parsed from TVMScript on import (over 80 s on a VM);
# MetaSchedule's TuneContext and its default builder import it
BUILTIN_INTRINSICS = "tvm.s_tir.tensor_intrin"

TvmTarget = tvm.target.Target
IRModule = tvm.IRModule
cpu = tvm.cpu
# the text of the ScheduleError that Schedule.get_sblock raises for a name no block has
NO_BLOCK = "Cannot find a block with the name"


def fma(a: PrimExpr, b: PrimExpr, c: PrimExpr) -> PrimExpr:
    """a * b + c rounded once (IEEE fused multiply-add), on every target: LLVM's llvm.fma on
    CPUs (the FMA instructions, or libm's fma where the target has none) and CUDA's fma() on
    GPUs. TVM 0.27 lowers its own op for LLVM to llvm.fmuladd, which a target without FMA
    instructions computes as a product and a sum (two roundings), and its CUDA code generator
    has no rule for it: both are replaced below."""
    return tir.call_intrin(str(a.ty.dtype), "tirx.fma", a, b, c)


tir.register_intrin_lowering(
    "tirx.fma", target="llvm", level=99,
    f=lambda op: tir.call_llvm_pure_intrin(str(op.ty.dtype), "llvm.fma", *op.args))
tir.register_intrin_lowering(
    "tirx.fma", target="cuda", level=99,
    f=lambda op: tir.call_pure_extern(str(op.ty.dtype), "fma", *op.args))
# TVM 0.27's vectorizer takes floor, trunc and round in a vectorized loop, but not nearbyint
# (the reference's rounding of codes): such a loop ran one lane at a time. LLVM's nearbyint
# has vector forms on every target (x86: vrndscale with the current rounding mode).
if not tvm.ir.Op.get("tirx.nearbyint").get_attr("TVectorizable"):
    tvm.ir.register_op_attr("tirx.nearbyint", "TVectorizable", True)


# a block named <name> + START holds the values the reduction block <name> starts from: TE's
# te.sum(..., init=tensor[...]) is dropped by TVM 0.27's create_prim_func (the sum starts from
# 0), so prim_func makes those values the reduction's initialization and inlines the block
START = "_start"


def prim_func(tensors: Sequence[te.Tensor], name: str = "main") -> tvm.IRModule:
    """te tensors -> IRModule with one PrimFunc called `name`: each reduction whose te.sum has
    an init starts from the block <its name> + START (same shape, read at the same indices:
    the init expression itself is not read), which must exist."""
    func = te.create_prim_func(tensors)
    sch = Schedule(func)
    started = _initialized(tensors)
    for red in started:
        named = {sch.get(b).name_hint: b for b in sch.get_child_blocks(sch.get_sblock("root"))}
        if red + START not in named:
            raise TypeError(f"reduction {red}: its te.sum init= needs its start values as a "
                            f"block named {red + START} (TVM 0.27 drops the init itself)")
        _start_from(sch, named[red], named[red + START], named)
    if started:
        func = sch.mod["main"]
    return tvm.IRModule({name: func.with_attr("global_symbol", name)})


def _initialized(tensors: Sequence[te.Tensor]) -> list[str]:
    """The names of the reductions among tensors and their inputs whose te.sum has an init."""
    seen: set[str] = set()
    out: list[str] = []
    ops = [t.op for t in tensors]
    while ops:
        op = ops.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        body = getattr(op, "body", None)
        if body and isinstance(body[0], tir.Reduce) and len(body[0].init):
            out.append(op.name)
        ops.extend(t.op for t in op.input_tensors)
    return out


def _start_from(sch: Schedule, red: SBlockRV, start: SBlockRV, named: dict) -> None:
    """Reduction block red initialized to start's values (same shape, same indices), start
    inlined there. start may read only the function's parameters: the init block that
    decompose_reduction makes declares no reads, so a block it read would lose its place
    before it."""
    blk, first = sch.get(red), sch.get(start)
    init, buf = blk.init, first.writes[0].source
    if not isinstance(init, tir.stmt.BufferStore) or \
            [int(d) for d in buf.shape] != [int(d) for d in init.buffer.shape]:
        raise TypeError(f"block {blk.name_hint}: a reduction initialized by one store, its "
                        f"start {first.name_hint} of the same shape")
    made = [w.source for b in named.values() for w in sch.get(b).writes]
    if any(r.source.same_as(m) for r in first.reads for m in made):
        raise TypeError(f"block {first.name_hint}: a start reads the function's parameters "
                        "only")
    point = [tvm.ir.Range.from_min_extent(ix, 1) for ix in init.indices]
    new = SBlock(blk.iter_vars, [*blk.reads, tir.stmt.BufferRegion(buf, point)], blk.writes,
                 blk.name_hint, blk.body,
                 tir.stmt.BufferStore(init.buffer, tir.BufferLoad(buf, init.indices),
                                      init.indices),
                 blk.alloc_buffers, blk.match_buffers, blk.annotations)
    sch.state.replace(sch.get_sref(red), new, {blk: new})
    sch.compute_inline(start)
    # the block's reads as before (those of its sums, which a tensorized block must match
    # exactly), less the start should a later TVM list it there
    done = sch.get(red)
    reads = [r for r in blk.reads if not r.source.same_as(buf)]
    kept = SBlock(done.iter_vars, reads, done.writes, done.name_hint, done.body, done.init,
                  done.alloc_buffers, done.match_buffers, done.annotations)
    sch.state.replace(sch.get_sref(red), kept, {done: kept})


ALIGNMENT = 64  # bytes: what TVM's buffers assume, and what compiled functions check


def lend(arr: Any) -> tvm.runtime.Tensor | None:
    """A flat TVM tensor over a C-contiguous 2-D numpy array's memory, no copy: from the
    ALIGNMENT-aligned address at or before its first element (TVM's compiled functions require
    it of a tensor's data) to its last, so arr's elements start (address % ALIGNMENT) /
    itemsize elements in; None where they would start a whole row or more in, or off a
    multiple of the itemsize (te.quantize.a_placeholder reads the start as a_len modulo the
    row length: the caller copies such an array). The up to 60 bytes before arr lie in the
    same page (readable); a function taking the tensor reads only arr's own elements. The
    tensor does not keep arr alive: use it while arr is referenced. An aligned array (torch's
    tensors, for one) is lent as it is, in about 0.5 µs; the others (and read-only ones) through
    ctypes, in 2.5 µs."""
    if arr.flags.writeable:  # (DLPack exports no read-only array)
        flat = tvm_ffi.from_dlpack(arr.reshape(-1))  # a view: arr is C-contiguous
        ptr = flat.data_ptr()
        if not ptr % ALIGNMENT:
            return flat
    else:
        ptr = arr.ctypes.data
    skip = ptr % ALIGNMENT
    if skip % arr.itemsize or skip // arr.itemsize >= arr.shape[1]:
        return None
    n = skip // arr.itemsize + arr.size
    raw = (ctypes.c_char * (n * arr.itemsize)).from_address(ptr - skip)
    flat = np.frombuffer(raw, dtype=arr.dtype, count=n)
    return tvm_ffi.from_dlpack(flat, require_alignment=ALIGNMENT, require_contiguous=True)


def allocator(shape: Sequence[int], dtype: str,
              dev: tvm.runtime.Device) -> Callable[[], tvm.runtime.Tensor]:
    """A function that returns a new, uninitialized tensor of that shape and dtype on dev:
    empty() without building the shape and dtype objects at every call (3.5 of empty's 4 µs,
    which a call on a few rows notices)."""
    dims, kind = tvm_ffi.Shape([int(d) for d in shape]), tvm_ffi.dtype(dtype)
    alloc = tvm.runtime._ffi_api.TVMTensorAllocWithScope  # what tvm.runtime.empty calls
    return lambda: alloc(dims, kind, dev, None)


def use_nvcc() -> None:
    """Make TVM's own CUDA compile hook (tvm.support.nvcc) use nvcc, never NVRTC: NVRTC cannot
    link the mixed-sign `__dp4a` overloads TVM's CUDA source declares for u8 x s8 dot products
    ("Unresolved extern function"). TVM calls the hook when a module's CUDA source is compiled:
    as it is built on a machine with a GPU, or loaded there. setdefault keeps a user's own
    choice."""
    os.environ.setdefault("TVM_CUDA_COMPILE_MODE", "nvcc")


def compile_module(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.runtime.Executable:
    """tvm.compile -> runtime Executable (ex[name], ex.mod, ex.export_library)."""
    return tvm.compile(mod, target=target)


def tensor(arr: Any, dev: tvm.runtime.Device | None = None) -> tvm.runtime.Tensor:
    """An aligned TVM tensor holding a copy of the numpy array."""
    return tvm.runtime.tensor(arr, dev or tvm.cpu())


def empty(shape: Sequence[int], dtype: str,
          dev: tvm.runtime.Device | None = None) -> tvm.runtime.Tensor:
    return tvm.runtime.empty(shape, dtype, dev or tvm.cpu())


def load_module(path: str) -> tvm.runtime.Module:
    return tvm.runtime.load_module(path)


def versions() -> dict:
    return {"tvm": tvm.__version__, "tvm_ffi": getattr(tvm_ffi, "__version__", "?"),
            "llvm": int(codegen.llvm_version_major())}


def tvm_builds() -> list[tuple[str, int, int]]:
    """(name, size, modification time in ns) of each of TVM's shared libraries: two builds of
    one TVM version (a rebuilt development copy) differ here."""
    root, out = Path(tvm.__file__).resolve().parent, []
    for path in sorted([*root.glob("*.so"), *root.glob("lib/*.so")]):
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((path.name, st.st_size, st.st_mtime_ns))
    return out


def last_line(text: str) -> str:
    """The last non-empty line of an error text (TVM's messages end with the reason, after the
    C++ frames; MetaSchedule's hold whole tracebacks), at most 300 characters."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "unknown error"


def error_line(exc: BaseException) -> str:
    """One line for an exception from TVM or a build: its type and the last line of its text."""
    return f"{type(exc).__name__}: {last_line(str(exc)) if str(exc).strip() else ''}"
