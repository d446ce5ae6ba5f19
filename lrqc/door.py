"""The backend's door: the one place where lrqc's TVM-free layers (the package root and the
command line) reach the TVM-bound ones: code generation (lrqc.pipeline), the runtime
(lrqc.runtime) and the tuner (lrqc.tuning). Each function imports its module on first use, so
`import lrqc`, the language, the reference, `lrqc check`, `lrqc explain` and `lrqc eval` never
load TVM (about 1.7 s). These are the only imports inside functions in lrqc; the import-graph
test enforces it."""

from __future__ import annotations

from types import ModuleType


def pipeline() -> ModuleType:
    """lrqc.pipeline.compile: compile(), the stage table, build_artifact()."""
    from .pipeline import compile as module

    return module


def artifact() -> ModuleType:
    """lrqc.runtime.artifact: load_kernel() and the manifest checks."""
    from .runtime import artifact as module

    return module


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
