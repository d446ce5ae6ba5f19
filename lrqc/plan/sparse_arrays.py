"""The static operands of the sparse products as pack() lays them out (plan/layout.py), with
their parameter names (plan/signature.py): B's residual codes for A's side, B's thresholded
copy as CSR columns or as the dense formulation's VNNI blocks. numpy only."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from . import signature as sig


@dataclass(frozen=True, eq=False)
class SparseCodes:
    """The static operand of a sparse product on side a (B's sparse term): B's residual codes
    d[Kq, Np] int8 and their scales s[G, Np] (te/sparse.py: parameters D, sd), and for the
    dense formulation the same codes as VNNI blocks dv with column sums dcs (Dv, dcs)."""

    d: np.ndarray
    s: np.ndarray
    dv: np.ndarray | None = None
    dcs: np.ndarray | None = None

    def params(self) -> Iterator[tuple[str, np.ndarray]]:
        yield from zip(sig.SPARSE_A_STATIC, (self.d, self.s), strict=True)
        if self.dv is not None and self.dcs is not None:
            yield from zip(sig.DENSE_A_STATIC[:2], (self.dv, self.dcs), strict=True)


@dataclass(frozen=True, eq=False)
class SparseDense:
    """B's thresholded copy for the dense formulation of A's sparse term (chosen at pack above
    segments.crossover): VNNI blocks v, column sums cs [1, Np], scales s (Sv, scs, ss)."""

    v: np.ndarray
    cs: np.ndarray
    s: np.ndarray

    def params(self) -> Iterator[tuple[str, np.ndarray]]:
        return zip(sig.DENSE_B_STATIC, (self.v, self.cs, self.s), strict=True)


@dataclass(frozen=True, eq=False)
class SparseCsr:
    """The static operand of a sparse product on side b (A's sparse term): B's thresholded copy
    (or B, above max_density) as CSR of its columns, one row pointer per column and scale group:
    ptr[Np * G + 1] int32, idx[nnz] (k) int32, val[nnz] int16 codes, and scales s[G, Np]
    (te/sparse.py: parameters ptr, idx, val, ss)."""

    ptr: np.ndarray
    idx: np.ndarray
    val: np.ndarray
    s: np.ndarray

    def params(self) -> Iterator[tuple[str, np.ndarray]]:
        return zip(sig.SPARSE_B_STATIC, (self.ptr, self.idx, self.val, self.s), strict=True)
