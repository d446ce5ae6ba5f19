"""Kernel: a compiled base product. pack(B) once, then kernel(A, packed) per call -> float32 C.

Inputs of any order, alignment and real dtype are copied into aligned TVM tensors (unaligned
numpy buffers passed zero-copy crash TVM-exported code); shapes are checked against the build."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..reference.inputs import as_matrix
from . import layout, names
from .compat import empty, tensor
from .plan import KernelPlan


@dataclass
class Packed:
    """The static operand prepared by Kernel.pack (TVM tensors plus their numpy copies)."""

    arrays: dict
    tensors: dict
    plan_key: tuple


class Kernel:
    def __init__(self, plan: KernelPlan, module, target: dict, rule: str, fast: bool):
        self.plan, self.module, self.target, self.rule, self.fast = plan, module, target, rule, fast
        p = plan
        self._aq = empty((p.mp, p.kp), "uint8")
        self._sa = empty((p.mp, p.groups), "float32")
        self._zc = empty((p.mp, p.groups), "int32")
        self._c = empty((p.mp, p.np_), "float32")

    @property
    def key(self) -> tuple:
        p = self.plan
        return (p.scheme.name, p.m, p.n, p.k)

    def pack(self, B) -> Packed:
        arrays = layout.pack(self.plan, B)
        return Packed(arrays, {k: tensor(v) for k, v in arrays.items()}, self.key)

    def _quantize(self, A):
        p = self.plan
        A = as_matrix(A, "A")
        if A.shape != (p.m, p.k):
            raise InputError(f"A: expected shape {p.m}x{p.k} (M x K) for this kernel, got "
                             f"{A.shape[0]}x{A.shape[1]}")
        a = tensor(np.ascontiguousarray(A, dtype=np.float32))
        self.module[names.FN_QUANTIZE](a, self._aq, self._sa, self._zc)

    def _check(self, packed):
        if not isinstance(packed, Packed) or packed.plan_key != self.key:
            raise InputError("packed: pass the result of this kernel's pack(B)")

    def __call__(self, A, packed: Packed) -> np.ndarray:
        self._check(packed)
        self._quantize(A)
        t = packed.tensors
        self.module[names.FN_GEMM](self._aq, t["Bp"], self._sa, self._zc, t["sb"], t["cs"], self._c)
        p = self.plan
        return np.ascontiguousarray(self._c.numpy()[: p.m, : p.n])

    def int_accumulate(self, A, packed: Packed) -> np.ndarray:
        """Σ_k (qA - zA) qB per K-group, exactly as the kernel accumulates it: (G, M, N) int32."""
        self._check(packed)
        self._quantize(A)
        p = self.plan
        shape = (p.mp, p.np_) if p.groups == 1 else (p.mp, p.groups, p.np_)
        out = empty(shape, "int32")
        t = packed.tensors
        self.module[names.FN_ACC](self._aq, t["Bp"], self._zc, t["cs"], out)
        res = out.numpy()
        if p.groups == 1:
            res = res[None]
        else:
            res = res.transpose(1, 0, 2)
        return res[:, : p.m, : p.n]

    def quantized_a(self, A) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(u8 codes, scales, zero corrections) of A as the kernel computes them."""
        self._quantize(A)
        p = self.plan
        return self._aq.numpy()[: p.m], self._sa.numpy()[: p.m], self._zc.numpy()[: p.m]
