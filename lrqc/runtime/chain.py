"""LPLR weights and LRAMM products (docs/numerics.md, section 4) as chains of compiled kernels that
share one module (symbols prefixed p1_, p2_):

* LPLR on the static weights: pack(B) computes L, R (and beta) exactly as lrqc.reference; the
  call runs T = A' L (A as the scheme says: rounded or quantized in-kernel) and C = T R.
  With an integer A (int2..int8, any granularity; residual terms on A are refused) T is an
  integer GEMM:
  L's min-max grid is L = step * c + off with integer codes c (centered to int8) and a float
  offset, so A' L = A' (step c) + off * rowsum(A'), and the row sums come from one extra
  column of codes equal to 1 in the same GEMM. C = T R is a float32 GEMM on R's exact values:
  docs/numerics.md does not quantize T = A' L (doing so would change the numbers), + beta *
  rowsum(A') when normalize_shift is on.
* LRAMM: pack(B) factors B (RSVD, √Σ split, seed + 1) and quantizes U_B, V_Bᵀ; the call
  factors A (seed), quantizes U_A, V_Aᵀ (numpy on one BLAS thread: thin matrices), forms
  U = U_A (V_Aᵀ U_B) (M x r) and runs the compiled GEMM U Q(V_Bᵀ) (M x r x N)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..backend.target import Target
from ..errors import InputError
from ..frontend.model import LowRankProduct, LplrOperand, Scheme
from ..plan import fingerprint
from ..plan.chain import CODES
from ..reference import lplr as lplr_mod
from ..reference.inputs import as_matrix
from ..reference.lowrank import factorize
from ..reference.lramm import factor_quant
from ..reference.quant import QArray, quantize
from ..reference.scheme import prepare
from .buckets import Packed
from .checks import kernel_output
from .glue import one_blas_thread
from .kernel import Kernel, finite
from .protocol import NotPickled
from .timing import median_times


@dataclass
class ChainPacked:
    """The weights prepared by ChainKernel.pack: each part's Packed and the numpy glue's
    values, with the fingerprint of the chain that made them (layout.fingerprint)."""

    parts: list[Packed]
    extra: dict[str, Any]  # ub (LRAMM); beta, and step, ratio of an integer left factor (LPLR)
    fingerprint: dict[str, str]
    notes: tuple[str, ...] = ()


class ChainKernel(NotPickled):
    """pack(B) once, kernel(A, packed) -> C, like Kernel; holds one Kernel per product. Safe to
    call from several threads: each part serialises its own buffers, the glue is numpy on
    per-call arrays."""

    transposed = False

    def __init__(self, scheme: Scheme, kernels: list[Kernel], module: Any, target: Target,
                 n: int, k: int):
        self.scheme, self.kernels, self.module, self.target = scheme, kernels, module, target
        self.n, self.k = n, k
        self.rule, self.fast = kernels[0].rule, kernels[0].fast
        # LPLR's first product on L's int8 codes (parts(): N = rank + 1, the ones column)
        self.integer_left = scheme.product is None and not kernels[0].plan.float_path
        self.plans = kernels[0].plans
        self.plan = kernels[0].plan
        self.m_min, self.m_max = kernels[0].m_min, kernels[0].m_max
        self.last_notes: list[str] = []
        self.threads = "tvm"  # where its parallel loops run (compile(threads=...) says)
        self.fingerprint = fingerprint.fingerprint(scheme, f"B: {k}x{n} (K x N)",
                                              str(kernels[0].dev))

    @property
    def threads(self) -> str:
        return self._threads

    @threads.setter
    def threads(self, value: str) -> None:
        """Where the chain's parallel loops run: its parts share one library, so theirs too."""
        self._threads = value
        for part in self.kernels:
            part.threads = value

    @property
    def m_text(self) -> str:
        return self.kernels[0].m_text

    @property
    def dims(self) -> tuple[str, int, int]:
        return (self.m_text, self.n, self.k)

    @property
    def schedules(self) -> dict[str, str]:
        """Where the schedule of each of its parts' tuned functions came from (Kernel's)."""
        return {sym: how for part in self.kernels for sym, how in part.schedules.items()}

    def adopt(self, arrays: object) -> ChainPacked:
        """Not for chains: their packed operand is pack()'s own (several parts and their
        factors); InputError saying so."""
        raise InputError("adopt: a chain's packed operand (LPLR, LRAMM) comes from pack(), or "
                         "from a saved state through lrqc.torch.load")

    @property
    def lplr(self) -> LplrOperand:
        """The LPLR (or DSVD) weights of an LPLR chain."""
        op = self.scheme.b
        if not isinstance(op, LplrOperand):
            raise TypeError(f"scheme '{self.scheme.name}': B is not LPLR weights")
        return op

    def split(self, A: npt.ArrayLike, B: npt.ArrayLike) -> tuple[npt.ArrayLike, npt.ArrayLike]:
        return (A, B)

    def run(self, A: npt.ArrayLike, B: npt.ArrayLike,
            bias: npt.ArrayLike | None = None) -> np.ndarray:
        return self(A, self.pack(B, bias=bias))

    def _shape_b(self, B: npt.ArrayLike) -> np.ndarray:
        B = as_matrix(B, "B", float32=True)
        if B.shape != (self.k, self.n):
            raise InputError(f"B: expected shape {self.k}x{self.n} (K x N) for this kernel, got "
                             f"{B.shape[0]}x{B.shape[1]}")
        return B

    def pack(self, B: npt.ArrayLike, bias: npt.ArrayLike | None = None) -> ChainPacked:
        """The weights for every product of the chain; bias (N values): packed with the
        last product, whose epilogue adds it."""
        B = self._shape_b(B)
        s = self.scheme
        with one_blas_thread():
            if s.product is not None:
                ub, vbt = _factors(s.product, B, s.product.seed + 1, "b")
                return ChainPacked([self.kernels[0].pack(vbt, bias=bias)], {"ub": ub},
                                   self.fingerprint)
            op = self.lplr
            if op.method == "lplr":
                L, R, beta = lplr_mod.lplr(B, op.rank, op.left_bits, op.right_bits,
                                           power_iters=op.power_iters, seed=op.seed,
                                           normalize_shift=op.normalize_shift)
            else:
                L, R, beta = lplr_mod.dsvd(B, op.rank, op.left_bits, op.right_bits)
        k1, k2 = self.kernels
        if not self.integer_left:
            return ChainPacked([k1.pack(L), k2.pack(R, bias=bias)], {"beta": float(beta)},
                               self.fingerprint)
        X, q, step, ratio = left_codes(L, op.left_bits)
        return ChainPacked([k1.pack(X, q=q), k2.pack(R, bias=bias)],
                           {"beta": float(beta), "step": step, "ratio": ratio},
                           self.fingerprint)


    def __call__(self, A: npt.ArrayLike, packed: ChainPacked) -> np.ndarray:
        fingerprint.check_fingerprint(packed, self.fingerprint, "B")
        s = self.scheme
        A = as_matrix(A, "A", np.float32)
        first = self.kernels[0]
        if A.shape[1] != self.k or not first.m_min <= A.shape[0] <= first.m_max:
            raise InputError(f"A: expected shape {self.m_text}x{self.k} (M x K) for this kernel, "
                             f"got {A.shape[0]}x{A.shape[1]}")
        if s.product is not None:
            with one_blas_thread():
                ua, vat = _factors(s.product, A.astype(np.float64), s.product.seed, "a")
                with np.errstate(over="ignore"):  # past float32: refused just below
                    U = (ua @ (vat @ packed.extra["ub"])).astype(np.float32)
            if not np.isfinite(U).all():
                raise InputError("A: its LRAMM factors times B's, U_A (V_Aᵀ U_B), leave "
                                 "float32's range (an intermediate of the chain); scale A or "
                                 "B down")
            return kernel_output(finite(self.kernels[0](U, packed.parts[0])), s.output)
        T = self.kernels[0](A, packed.parts[0])
        beta = packed.extra["beta"]
        if self.integer_left:  # T = A' (step c) + (off / step) * A' (step 1)
            m, ext = self.lplr.rank, packed.extra
            with np.errstate(over="ignore"):  # past float32: refused just below
                T, rows = T[:, :m] + np.float32(ext["ratio"]) * T[:, m:], T[:, m] / ext["step"]
            if not np.isfinite(T).all():
                raise InputError("A: its product with LPLR's left factor L leaves float32's "
                                 "range (an intermediate of the chain); scale A down")
        C = self.kernels[1](T, packed.parts[1])
        with np.errstate(over="ignore"):  # past float32: finite() refuses it
            if beta and self.integer_left:
                C += (beta * rows.astype(np.float64))[:, None].astype(np.float32)
            elif beta:
                C += (beta * prepare(s.a, A.astype(np.float64), "a").base.sum(axis=1))[:, None] \
                    .astype(np.float32)
        return kernel_output(finite(C), s.output)

    def int_accumulate(self, A: npt.ArrayLike, packed: ChainPacked) -> np.ndarray:
        raise InputError("LPLR and LRAMM kernels multiply in float32: no integer accumulation")

    def stage_times(self, A: npt.ArrayLike, packed: ChainPacked,
                    repeat: int = 5) -> dict[str, float]:
        """Median seconds of whole calls ("chain"), over `repeat` calls."""
        return median_times({"chain": lambda: self(A, packed)}, repeat)


def _factors(p: LowRankProduct, X: np.ndarray, seed: int,
             role: str) -> tuple[np.ndarray, np.ndarray]:
    """LRAMM's quantized factors of one operand (lrqc.reference.lramm.factors, one side)."""
    try:
        left, right = factorize(X, p.method, p.rank, oversample=p.oversample,
                                power_iters=p.power_iters, seed=seed, split="sqrt")
    except ValueError as exc:
        raise InputError(f"{role.upper()}: {exc}") from None
    b_left, b_inner, b_right = p.bits
    bl, br = (b_left, b_inner) if role == "a" else (b_inner, b_right)
    return (quantize(left, factor_quant(bl), "a").dequantize(),
            quantize(right, factor_quant(br), "b").dequantize())


def left_codes(L: np.ndarray, bits: int) -> tuple[np.ndarray, QArray, float, float]:
    """LPLR's min-max factor L (K x m) as (X, q, step, ratio): q holds the centered int8 codes
    cc of L = step * cc + off and a column of ones (K x (m + 1), per-tensor scale step), X =
    step * [cc, 1] its value, ratio = off / step. A constant L has codes c = 0 (cc = -2^(b-1))
    and step 1. step is recovered from L's extremes, so it may differ from the reference's by an
    ulp: L is reproduced to float64 rounding, far below the float32 GEMM's."""
    lo, hi = float(L.min()), float(L.max())
    step = (hi - lo) / (2**bits - 1) if hi > lo else 1.0
    c = np.rint((L - lo) / step)
    if np.max(np.abs(lo + c * step - L)) > 1e-9 * max(abs(lo), abs(hi), step):
        raise InputError("LPLR: the left factor is not on its min-max grid (internal error)")
    half = 2 ** (bits - 1)
    codes = np.concatenate([c - half, np.ones((L.shape[0], 1))], axis=1)
    k = L.shape[0]
    q = QArray(CODES.quant, "b", k, k, np.ascontiguousarray(codes.T), np.zeros((1, 1)),
               np.full((1, 1), step))
    return codes * step, q, step, (lo + step * half) / step
