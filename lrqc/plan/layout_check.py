"""Whether arrays handed to Kernel.adopt are laid out as the kernel's own pack() would lay
them out: the layout of pack()'s arrays for a plan (made once per plan from data in general
position) and the first difference from it."""

from __future__ import annotations

import functools

import numpy as np

from .layout import PARAMS, PackedOperand, pack
from .model import KernelPlan


@functools.lru_cache(maxsize=32)
def shapes(p: KernelPlan, dense: bool, kinds: tuple) -> tuple:
    """(shape, dtype) or None per PARAMS field, and the number of sparse operands, of the arrays
    pack(p, B, dense=dense, kinds=dict(kinds)) makes: of a zero B (the layout does not depend
    on B's values, Bᵀ's type aside, and zeros make the low-rank factorizations cheap)."""
    made = pack(p, np.zeros((p.k, p.n)), dense=dense, kinds=dict(kinds))
    return tuple(None if (a := getattr(made, f)) is None else (a.shape, a.dtype)
                 for f, _ in PARAMS), len(made.sparse)


def layout_problem(arrays: object, want: tuple) -> str | None:
    """Why `arrays` cannot be the arrays of a kernel whose pack() makes arrays of shapes()
    `want` (not PackedOperand, or an array missing, extra, or of another shape or dtype)."""
    if not isinstance(arrays, PackedOperand):
        return ("expected the arrays of a packed operand (packed.arrays), got "
                f"{type(arrays).__name__}")
    for (field, name), w in zip(PARAMS, want[0], strict=True):
        have = getattr(arrays, field)
        if (have is None) != (w is None):
            return f"{name} is {'missing' if have is None else 'not used by this kernel'}"
        if field == "b32t" and isinstance(have, np.ndarray) and have.shape == w[0]:
            continue  # Bᵀ's type follows B's values (16 bits where exact): the runtime checks it
        if w is not None and (not isinstance(have, np.ndarray) or (have.shape, have.dtype) != w):
            got = (f"{have.shape} {have.dtype}" if isinstance(have, np.ndarray)
                   else type(have).__name__)
            return f"{name} is {got}, this kernel's is {w[0]} {w[1]}"
    if len(arrays.sparse) != want[1]:
        return f"{len(arrays.sparse)} sparse operands, this kernel has {want[1]}"
    return None


def adopt_problem(arrays: object, p: KernelPlan, target: object, kinds: dict[int, str]
                  ) -> str | None:
    """layout_problem of arrays against what pack() makes for plan p on target (a
    lrqc.backend.target.Target: the sparse products' dense formulations on CPUs) with the
    kernel's dense formulations' instructions `kinds`."""
    dense = not getattr(target, "is_cuda", False)
    return layout_problem(arrays, shapes(p, dense, tuple(sorted(kinds.items()))))
