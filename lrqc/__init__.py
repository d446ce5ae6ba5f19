"""lrqc: accurate low-bit matrix multiplication, from a scheme language to fused kernels.

The language, IR and numpy reference import without TVM; code generation lives in lrqc.backend.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from . import door, reference
from ._version import __version__
from .api import load_schemes, parse_schemes
from .errors import InputError, LrqcError, SchemeError
from .frontend.model import Scheme

if TYPE_CHECKING:  # for annotations only: these modules import TVM, the package root does not
    from .backend.target import Target
    from .runtime.protocol import KernelLike

__all__ = [
    "InputError",
    "LrqcError",
    "Scheme",
    "SchemeError",
    "__version__",
    "compile",
    "load_kernel",
    "load_schemes",
    "parse_schemes",
    "reference",
]


def compile(scheme: Scheme, M: int | tuple[int, int] | range | str, N: int, K: int,
            target: str | dict | Target | None = None, tuned: bool = True,
            dump_dir: str | os.PathLike[str] | None = None,
            threads: str = "auto") -> KernelLike:
    """Compile `scheme` for A (M x K) @ B (K x N): kernel.pack(B) once, kernel(A, packed) per call.

    M: a row count, or a range lo..hi ("lo..hi", (lo, hi) or range(lo, hi + 1)) compiled as
    M buckets. target: None / "host" (this CPU), a short name ("x86-avx512-vnni",
    "x86-avxvnni", "x86-avx2", "aarch64", "cuda-sm90", ...) or a TVM target dict. tuned: use
    matching records of the tuning database (lrqc tune). dump_dir: a folder that receives the
    text of every compilation stage (IR, kernel plans, TE, scheduled TIR, LLVM IR and
    assembly). threads: where the kernel's parallel loops run on a CPU: "tvm" (TVM's thread
    pool, TVM_NUM_THREADS threads), "openmp" (the process's OpenMP threads, e.g. torch's,
    omp_get_max_threads() of them; needs a C compiler with -fopenmp) or "auto" (OpenMP where
    the process already has an OpenMP runtime loaded and the kernel is a direct product,
    else TVM's pool; kernel.threads says which). Imports TVM on first use."""
    if not isinstance(scheme, Scheme):
        raise LrqcError(f"compile: expected a Scheme (e.g. lrqc.parse_schemes(text)[name]), got "
                        f"{type(scheme).__name__}")
    if isinstance(tuned, str) or tuned not in (True, False):
        raise LrqcError(f"compile: tuned must be True or False, got {tuned!r}")
    return door.compile(scheme, M, N, K, target, tuned=tuned, dump_dir=dump_dir,
                        threads=threads)


def load_kernel(path: str | os.PathLike[str]) -> KernelLike:
    """Load an artifact written by `lrqc build` (no compilation; refuses other versions/CPUs)."""
    if not isinstance(path, (str, os.PathLike)):
        raise LrqcError(f"load_kernel: expected the artifact's directory, got "
                        f"{type(path).__name__}")
    return door.load_kernel(path)
