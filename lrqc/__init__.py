"""lrqc: accurate low-bit matrix multiplication, from a scheme language to fused kernels.

The language, IR and numpy reference import without TVM; code generation lives in lrqc.backend.
"""

from . import reference
from .api import load_schemes, parse_schemes
from .errors import InputError, LrqcError, SchemeError
from .frontend.model import Scheme

__version__ = "0.1.0"
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


def compile(scheme, M: int, N: int, K: int, target=None, tuned: bool = True):
    """Compile `scheme` for A (M x K) @ B (K x N): kernel.pack(B) once, kernel(A, packed) per call.

    target: None / "host" (this CPU), a short name ("x86-avx512-vnni", "x86-avx2", "aarch64")
    or a TVM target dict. Imports TVM on first use."""
    if not isinstance(scheme, Scheme):
        raise LrqcError(f"compile: expected a Scheme (e.g. lrqc.parse_schemes(text)[name]), got "
                        f"{type(scheme).__name__}")
    from .pipeline.build import compile as _compile

    return _compile(scheme, M, N, K, target, tuned=tuned)


def load_kernel(path):
    """Load an artifact written by `lrqc build` (no compilation; refuses other versions/CPUs)."""
    import os

    if not isinstance(path, (str, os.PathLike)):
        raise LrqcError(f"load_kernel: expected the artifact's directory, got "
                        f"{type(path).__name__}")
    from .runtime.artifact import load_kernel as _load

    return _load(path)
