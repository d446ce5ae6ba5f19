"""load_kernel(DIR): an artifact written by `lrqc build` as a callable kernel, after every
check of its manifest (lrqc.runtime.manifest); nothing is compiled, and foreign versions,
CPUs or GPUs are refused."""

from __future__ import annotations

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
from .manifest import REBUILD, check_manifest, read_manifest, sha256
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


def load_kernel(path: str | Path) -> KernelLike:
    """Load a built artifact without compiling anything, after checking it (read_manifest,
    check_manifest): never a library whose size or hash differs from the manifest's."""
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
    return _assemble(d, man, scheme, target)


def _library(d: Path, man: dict) -> Any:
    """The artifact's checked library, loaded, with every function the manifest lists."""
    path = d / man["lib"]
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


def _assemble(d: Path, man: dict, scheme: Scheme, target: Target) -> KernelLike:
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
    module = _library(d, man)
    threads = openmp.choose(target, parts) if not man["cuda"] else "tvm"
    if threads == "openmp":
        try:
            openmp.attach(str(d / man["lib"]))
        except LrqcError:  # no launcher (no C compiler with OpenMP): TVM's pool
            threads = "tvm"
    kernel = assemble(scheme, parts, reports, module, target, m_range(M)[0], N, K)
    kernel.threads = threads
    return kernel
