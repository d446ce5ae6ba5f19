"""The backend's door: the one place where lrqc's TVM-free layers (the package root and the
command line) reach the TVM-bound ones: code generation (lrqc.pipeline), the runtime
(lrqc.runtime) and the tuner (lrqc.tuning). Each function imports what it needs on first use,
so `import lrqc`, the language, the reference, `lrqc check`, `lrqc explain` and `lrqc eval`
never load TVM (about 1.7 s). These are the only imports inside functions in lrqc; the
import-graph test enforces it."""

from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .frontend.model import Scheme
from .plan.buckets import plain

if TYPE_CHECKING:  # for annotations only: the door imports TVM's side inside its functions
    from .backend.target import Target
    from .runtime.protocol import KernelLike


def compile(scheme: Scheme, M: int | tuple[int, int] | range | str, N: int, K: int,
            target: str | dict | Target | None = None, *, tuned: bool = True,
            **options: Any) -> KernelLike:
    """lrqc.pipeline.compile.compile, with the tuning database's records when tuned, through
    the compiled-kernel cache (lrqc.pipeline.cache: a kernel compiled before on this machine
    is loaded, not compiled again)."""
    from .pipeline.cache import compile_cached as run
    from .tuning.db import records_state
    from .tuning.records import recorded_traces

    M, N, K = plain(M), plain(N), plain(K)
    return run(scheme, M, N, K, target, records=recorded_traces if tuned else None,
               tuning=records_state if tuned else None, **options)


def build_artifact(scheme: Scheme, M: int | tuple[int, int] | range | str, N: int, K: int,
                   out_dir: str | os.PathLike[str], target: str | dict | Target | None = None,
                   *, tuned: bool = True, **options: Any) -> dict:
    """lrqc.pipeline.export.build_artifact, with the tuning database's records when tuned."""
    from .pipeline.export import build_artifact as run
    from .tuning.records import recorded_traces

    M, N, K = plain(M), plain(N), plain(K)
    return run(scheme, M, N, K, out_dir, target,
               records=recorded_traces if tuned else None, **options)


def load_kernel(path: str | os.PathLike[str]) -> KernelLike:
    """lrqc.runtime.artifact.load_kernel."""
    from .runtime.artifact import load_kernel as run

    return run(path)


def target() -> ModuleType:
    """lrqc.backend.target: resolve(), host_target(), Target."""
    from .backend import target as module

    return module


def device() -> ModuleType:
    """lrqc.runtime.device: device_of(target) and GPU probing."""
    from .runtime import device as module

    return module


def tuning() -> ModuleType:
    """lrqc.tuning.tune: tune_scheme() and the checks of tuning records."""
    from .tuning import tune as module

    return module


def emit_names(target: Target | None = None) -> tuple[str, ...]:
    """The stage texts `--emit` can print for a resolved target (None: for any target)."""
    from .pipeline.stages import EMITS, emits_for

    return emits_for(target) if target is not None else tuple(EMITS)
