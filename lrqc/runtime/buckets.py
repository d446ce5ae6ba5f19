"""The buffers and argument lists of a compiled Kernel: Packed (the static operand pack()
prepared) and Bucket (one compiled row count: its functions, looked up once, its scratch
buffers and the argument lists each compiled function is called with)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import partial

from ..backend.compat import empty, tensor
from ..plan import names
from ..plan.model import KernelPlan
from .glue import CompBuffers

NUMPY_ONLY = ("B32",)  # packed arrays used by numpy glue only (glue.py), not by TVM code


@dataclass
class Packed:
    """The static operand prepared by Kernel.pack (TVM tensors plus their numpy copies)."""

    arrays: dict
    tensors: dict
    fingerprint: dict  # layout.fingerprint of the kernel that made it
    notes: tuple = ()  # e.g. whether a sparse term's copy of B is sparse or dense


_LOOKUP = threading.Lock()  # module function lookups (a CUDA module links on the first one)


class Bucket:
    """Functions and scratch buffers of one compiled row count; `lock` guards the buffers (held
    from the copy of A to the read of C)."""

    def __init__(self, plan: KernelPlan, module, prefix: str = "", dev=None):
        p = self.plan = plan
        self.module = module
        self.prefix = prefix
        self.lock = threading.Lock()
        self._fns: dict = {}
        e = partial(empty, dev=dev)
        self.af = e((p.mp, p.kp), "float32") if p.float_path else None
        self.saf = e((p.mp,), "float32") if p.half else None  # A's row scales (16-bit values)
        self.aq = e((p.mp, p.kp), "uint8")
        self.sa = e((p.mp, p.groups), "float32")
        self.zc = e((p.mp, p.groups), "int32")
        self.c = e((p.mp, p.np_), "float32")
        self.a = e((p.m, p.k), "float32")
        self.ra = e((p.mp, p.groups), "int32") if p.b_zero else None
        self.u = tensor(p.noise(), dev) if p.stochastic_a else None
        self.comp = CompBuffers(p, dev) if p.compensated else None

    def quantize_args(self) -> list:
        inputs = [self.a] + ([self.u] if self.u is not None else [])
        if self.comp is not None and not self.plan.float_path:
            return self.comp.quantize_args(self.a, self.aq, self.sa, self.zc, self.ra)
        if self.plan.float_path:
            return inputs + [self.af] + self.half_scale()
        return inputs + [self.aq, self.sa, self.zc] + ([self.ra] if self.plan.b_zero else [])

    def gemm_args(self, t: dict) -> list:
        lr = self.comp.epilogue_args(t) if self.comp is not None else []
        if self.plan.float_path:
            scales = [self.saf, t["sbf"]] if self.plan.half else []
            return [self.af, t["Bf"], *scales, *lr, self.c]
        return [self.aq, t["Bp"], self.sa, self.zc, t["sb"], t["cs"], *self.zero_args(t), *lr,
                self.c]

    def lowrank_u_args(self, t: dict) -> list:
        a = [self.af, *self.half_scale()] if self.plan.float_path else [self.aq, self.sa,
                                                                          self.zc]
        return [*a, t["LBt"], self.comp.Ub]

    def half_scale(self) -> list:
        """[saf] when the float path multiplies A's 16-bit values (KernelPlan.half)."""
        return [self.saf] if self.plan.half else []

    def compensate(self, m: int, packed) -> None:
        """The per-call work between quantize_a and the GEMM: U and W of the epilogue."""
        if self.plan.rank_a:
            self.comp.a_epilogue(m, packed.arrays)
        if self.plan.rank_b:
            self.fn(names.FN_LOWRANK_U)(*self.lowrank_u_args(packed.tensors))

    def sparse(self, t: dict) -> None:
        """C += the sparse products (after the GEMM)."""
        for j in range(len(self.plan.sparse)):
            self.fn(f"{names.FN_SPARSE}{j}")(*self.comp.sparse_args(j, t, self.c))

    def zero_args(self, t: dict) -> list:
        """Epilogue arguments of weights with zero points: ra and zb."""
        return [self.ra, t["zb"]] if self.plan.b_zero else []

    def fn(self, name: str):
        """The compiled function, looked up on first use (a cross-compiled module cannot run
        here) and kept: calls do not repeat the module lookup."""
        f = self._fns.get(name)
        if f is None:
            with _LOOKUP:
                f = self._fns[name] = self.module[names.symbol(name, self.plan.m, self.prefix)]
        return f
