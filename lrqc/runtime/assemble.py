"""A callable kernel from a compiled module: a Kernel for a base product, a ChainKernel (one
Kernel per product) for LPLR and LRAMM. Used by compilation and by artifact loading alike."""

from __future__ import annotations

from typing import Any

from ..backend.target import Target
from ..frontend.model import Scheme
from ..plan.lower import Part
from .chain import ChainKernel
from .kernel import Kernel
from .protocol import KernelLike


def assemble(scheme: Scheme, parts: tuple[Part, ...], reports: list[tuple[str, bool]],
             module: Any, target: Target, m_lo: int, N: int, K: int) -> KernelLike:
    """reports: (schedule rule name, fast path) of each part; m_lo: the smallest M a call may
    have (the buckets pad every M up to theirs). Kernels for AMX targets that can run here get
    the OS's tile permission first (refused: LrqcError)."""
    target.grant_tiles("this kernel")
    if len(parts) == 1 and not parts[0].prefix:
        (name, fast), transposed = reports[0], scheme.static == "a"
        return Kernel(parts[0].plans, module, target, name, fast,
                      m_min=None if transposed else m_lo, transposed=transposed)
    kernels = [Kernel(part.plans, module, target, name, fast, m_min=m_lo, prefix=part.prefix)
               for part, (name, fast) in zip(parts, reports, strict=True)]
    return ChainKernel(scheme, kernels, module, target, N, K)
