"""load_kernel(DIR): an artifact written by `lrqc build` as a callable kernel, after every
check of its manifest (lrqc.runtime.manifest); nothing is compiled, and foreign versions,
CPUs or GPUs are refused. The compiled-kernel cache loads its entries the same way, each load
from a private copy of the library (private=True) and on the threads its caller asked for."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..backend import openmp
from ..backend.compat import TVM_ERRORS, load_module, versions
from ..backend.cuda import fatbin
from ..backend.schedule.rules import choose, rule_of
from ..backend.target import Target, resolve
from ..errors import LrqcError
from ..frontend.model import Scheme
from ..ir import lower_ast
from ..passes import run_passes
from ..plan.buckets import m_range
from ..plan.lower import lower_program
from .assemble import assemble
from .device import device_of
from .kernel import Kernel
from .manifest import REBUILD, check_manifest, file_entry, read_manifest, sha256
from .protocol import KernelLike


def _load_cuda(d: Path, man: dict, scheme: Scheme, target: Target) -> KernelLike:
    """A CUDA artifact: the precompiled fatbin serves TVM's load-time compile hook (the module
    carries the CUDA source; nvcc or NVRTC are never run), after the GPU is checked."""
    missing = target.host_lacks()
    if missing:
        raise LrqcError(f"{d}: its host code is for {man['target'].get('host')}, this machine "
                        f"is another {', '.join(missing)}; rebuild it here")
    _, why = device_of(target)
    if why:
        raise LrqcError(f"{d}: {why}")
    path = d / man["cuda"]["fatbin"]
    try:
        binary = path.read_bytes()
    except OSError as exc:
        raise LrqcError(f"{path}: the device code cannot be read ({exc.strerror}); "
                        f"{REBUILD}") from None
    if sha256(binary) != man["files"][path.name]["sha256"]:
        raise LrqcError(f"{path}: changed while loading; {REBUILD}")
    fatbin.serve_fatbin(binary, man["cuda"]["source_sha256"])  # before the module is loaded
    return _assemble(d, man, scheme, target)


def load_kernel(path: str | Path, threads: str = "auto", private: bool = False
                ) -> KernelLike:
    """Load a built artifact without compiling anything, after checking it (read_manifest,
    check_manifest): never a library whose size or hash differs from the manifest's.
    threads: as lrqc.compile's ("auto": OpenMP where the process has an OpenMP runtime and
    the kernel is one product; "openmp" where it cannot be attached raises). private: load a
    copy of the library made for this kernel alone (a library loaded twice from one path is
    one mapping, whose parallel loops would follow the last load's threads)."""
    d = Path(path)
    man = read_manifest(d)
    scheme = check_manifest(d, man, versions())
    target = resolve(man["target"])
    if man["cuda"]:
        return _load_cuda(d, man, scheme, target)
    missing = target.host_lacks()
    if missing:
        raise LrqcError(f"{d}: built for {man['target']}, but this CPU lacks "
                        f"{', '.join(missing)}; rebuild for this machine (--target host)")
    return _assemble(d, man, scheme, target, threads, private)


def _library(path: Path, man: dict) -> Any:
    """The artifact's checked library at path, loaded, with every function the manifest
    lists."""
    try:
        module = load_module(str(path))
    except TVM_ERRORS as exc:  # a library TVM cannot load
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise LrqcError(f"{path}: cannot be loaded ({lines[-1][:200]}); {REBUILD}") from None
    lacking = [f for f in man["functions"] if not module.implements_function(f, True)]
    if lacking:
        raise LrqcError(f"{path}: lacks {len(lacking)} of the manifest's functions (first "
                        f"{lacking[0]}); {REBUILD}")
    return module


def _loaded(path: Path, man: dict, target: Target, parts: Sequence[Any], threads: str
            ) -> tuple[Any, str]:
    """(module, threads) of the library at path: its parallel loops attached to OpenMP where
    threads is "openmp" (or "auto" chooses it: openmp.choose; without a launcher "auto"
    stays on TVM's pool)."""
    module = _library(path, man)
    if man["cuda"]:
        chosen = "tvm"
    else:
        chosen = openmp.choose(target, parts) if threads == "auto" else threads
    if chosen == "openmp":
        try:
            openmp.attach(str(path))
        except LrqcError:  # no launcher (no C compiler with OpenMP)
            if threads == "openmp":
                raise
            chosen = "tvm"
    return module, chosen


def _assemble(d: Path, man: dict, scheme: Scheme, target: Target, threads: str = "auto",
              private: bool = False) -> KernelLike:
    """The Kernel (or chain) of a checked artifact, its library loaded: the plans as the
    build made them (the same lowering), the rules as its manifest reports them."""
    dims = man["dims"]
    M, N, K = str(dims["M"]), dims["N"], dims["K"]
    parts = lower_program(run_passes(lower_ast(scheme)), M, N, K)
    if len(parts) == 1 and not parts[0].prefix:
        reports = [(man["schedule_rule"], man["fast_path"])]
    else:  # a chain's parts: the rule each gets on this target
        reports = [rule_of(part.plans[-1], choose(target.family, part.plans[-1], target)[0])
                   for part in parts]
    lib = d / man["lib"]
    if private:
        with tempfile.TemporaryDirectory(prefix="lrqc-lib-") as tmp:
            copy = Path(tmp) / lib.name
            try:
                shutil.copyfile(lib, copy)
            except OSError as exc:
                raise LrqcError(f"{lib}: cannot be copied ({exc.strerror}); {REBUILD}") from None
            if file_entry(copy) != man["files"][lib.name]:
                raise LrqcError(f"{lib}: changed while loading; {REBUILD}")
            module, chosen = _loaded(copy, man, target, parts, threads)
    else:
        module, chosen = _loaded(lib, man, target, parts, threads)
    kernel = assemble(scheme, parts, reports, module, target, m_range(M)[0], N, K)
    kernel.threads = chosen
    if man["schedules"] and isinstance(kernel, Kernel):  # one product: as compile() sets them
        kernel.schedules = dict(man["schedules"])
    return kernel
