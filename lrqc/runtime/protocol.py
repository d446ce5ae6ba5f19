"""KernelLike: what every compiled kernel offers its callers (the package root, the CLI,
artifacts, the tuner): a Kernel for a base product and a ChainKernel for LPLR and LRAMM
alike. Code that only calls kernels types them with this protocol."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ..backend.target import Target
from ..errors import LrqcError
from ..frontend.model import Scheme
from ..plan.model import KernelPlan


class KernelLike(Protocol):
    """pack(static operand) once, kernel(per-call operand, packed) -> C per call."""

    target: Target
    module: Any  # the compiled (or loaded) TVM module holding every function
    rule: str  # the schedule rule of its (first) GEMM, as builds report it
    fast: bool  # whether that rule is the target's fast path
    plans: tuple[KernelPlan, ...]  # one per M bucket (a chain: its first product's)
    plan: KernelPlan  # the largest bucket's
    m_min: int
    m_max: int
    last_notes: list[str]  # of the last call (e.g. which copy a sparse term used)
    transposed: bool  # static: a runs as Cᵀ = Bᵀ Aᵀ
    threads: str  # where its parallel loops run: "tvm" (TVM's pool) or "openmp"

    @property
    def scheme(self) -> Scheme: ...

    @property
    def dims(self) -> tuple[str, int, int]: ...

    def pack(self, X: npt.ArrayLike, bias: npt.ArrayLike | None = None) -> Any: ...

    def split(self, A: npt.ArrayLike, B: npt.ArrayLike) -> tuple[npt.ArrayLike, npt.ArrayLike]:
        ...

    def run(self, A: npt.ArrayLike, B: npt.ArrayLike,
            bias: npt.ArrayLike | None = None) -> np.ndarray: ...

    def __call__(self, A: npt.ArrayLike, packed: Any) -> np.ndarray: ...


class NotPickled:
    """A compiled kernel holds a loaded library, which cannot be pickled or deep-copied: say
    what to do instead rather than let the module's own error through. A shallow copy
    (copy.copy) is the same kernel under another name, as before."""

    def __reduce__(self) -> Any:
        raise LrqcError(f"{type(self).__name__}: a compiled kernel cannot be pickled or copied; "
                        "save it with `lrqc build` and load it with lrqc.load_kernel, or compile "
                        "it again (packed operands: kernel.pack in each process)")

    def __copy__(self) -> Any:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self, memo: dict) -> Any:
        return self.__reduce__()
