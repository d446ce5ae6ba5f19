"""matmul / compress / evaluate: a Scheme applied to A (M x K) and B (K x N), exactly as
docs/numerics.md defines it, in float64. This is the oracle every kernel is compared with."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from ..frontend.bind import bind_dims
from ..frontend.model import (
    Calibration,
    Dense,
    FloatOperand,
    Granularity,
    LowRank,
    LplrOperand,
    Operand,
    Quant,
    QuantOperand,
    Scheme,
    Sparse,
)
from . import lplr as lplr_mod
from . import lramm
from .inputs import as_matrix, check_pair, round_float, to_output
from .lowrank import factorize
from .quant import QArray, quantize
from .residual import TermResult, apply_terms, sparse_operand


@dataclass
class Prepared:
    """One operand after its base treatment: `base` is what the direct product uses (deq(Q(X)),
    the float-rounded X, or LPLR's L R + beta); `terms` approximate the residual X - base."""

    role: str
    x: np.ndarray
    base: np.ndarray
    q: QArray | None = None
    terms: list[TermResult] = field(default_factory=list)
    lplr: tuple | None = None


def prepare(op: Operand, x: np.ndarray, role: str) -> Prepared:
    if isinstance(op, FloatOperand):
        # a float operand *is* its rounding to the declared type, in the base product and in
        # every residual term that multiplies it (a kernel never sees the unrounded values)
        xr = round_float(x, op.dtype, role.upper())
        return Prepared(role, xr, xr)
    if isinstance(op, LplrOperand):
        fn = lplr_mod.lplr if op.method == "lplr" else lplr_mod.dsvd
        if op.method == "lplr":
            L, R, beta = fn(x, op.rank, op.left_bits, op.right_bits, power_iters=op.power_iters,
                            seed=op.seed, normalize_shift=op.normalize_shift)
        else:
            L, R, beta = fn(x, op.rank, op.left_bits, op.right_bits)
        return Prepared(role, x, L @ R + beta, lplr=(L, R, beta))
    q = quantize(x, op.quant, role)
    base = q.dequantize()
    return Prepared(role, x, base, q, apply_terms(op.residuals, x - base, role))


def _product(pa: Prepared, pb: Prepared) -> np.ndarray:
    """The direct product base_A @ base_B, through LPLR's factors when there are some."""
    if pb.lplr is not None:
        L, R, beta = pb.lplr
        return (pa.base @ L) @ R + beta * pa.base.sum(axis=1, keepdims=True)
    if pa.lplr is not None:
        L, R, beta = pa.lplr
        return L @ (R @ pb.base) + beta * pb.base.sum(axis=0, keepdims=True)
    return pa.base @ pb.base


def held(pb: Prepared) -> np.ndarray:
    """X̂ (of operand b: B̂): the operand as a kernel holds it, the base (deq(Q(B)), the rounded
    float B, or LPLR's L R + beta) plus the reconstruction of each of its residual terms
    (L_B F_Bᵀ, deq(Q(R_B))); what A's lowrank term multiplies with other=packed."""
    return pb.base + sum((t.approx for t in pb.terms), np.zeros_like(pb.base))


def _compensation(pa: Prepared, pb: Prepared, notes: list[str]) -> np.ndarray:
    """Sum of every residual term: R̂_A · (B, B̂, B' or B_s) and (A', A' or A_s) · R̂_B."""
    total = 0.0
    for t in pa.terms:  # terms of A: R_A ≈ approx, multiplied by a version of B
        if isinstance(t.term, LowRank):
            L, Ft = t.factors
            total = total + L @ (Ft @ (held(pb) if t.term.other == "packed" else pb.x))
        elif isinstance(t.term, Dense):
            total = total + t.approx @ pb.base
        elif isinstance(t.term, Sparse):
            bs, note = sparse_operand(pb.x, t.term, "b", "B")
            notes.append(note)
            total = total + t.approx @ bs
    for t in pb.terms:  # terms of B: R_B ≈ approx, multiplied by a version of A
        if isinstance(t.term, LowRank):
            L, Ft = t.factors
            total = total + (pa.base @ L) @ Ft
        elif isinstance(t.term, Dense):
            total = total + pa.base @ t.approx
        elif isinstance(t.term, Sparse):
            as_, note = sparse_operand(pa.x, t.term, "a", "A")
            notes.append(note)
            total = total + as_ @ t.approx
    return total


def _run(s: Scheme, A, B, notes: list[str]) -> np.ndarray:
    A, B = check_pair(A, B)
    notes += bind_dims(s, A.shape[0], B.shape[1], A.shape[1])
    if s.product is not None:
        return lramm.matmul(s.product, A, B)
    pa, pb = prepare(s.a, A, "a"), prepare(s.b, B, "b")
    return _product(pa, pb) + _compensation(pa, pb, notes)


def matmul(s: Scheme, A: npt.ArrayLike, B: npt.ArrayLike, exact: bool = False) -> np.ndarray:
    """Scheme `s` applied to A (M x K) @ B (K x N): computed in float64, then rounded once to
    the scheme's `output` type and returned with that dtype (exact=True: the float64 value
    before that rounding)."""
    c = _run(s, A, B, [])
    return c if exact else to_output(c, s.output)


def compress(s: Scheme, X: npt.ArrayLike, role: str | None = None) -> np.ndarray:
    """What the scheme reconstructs of one operand (default: the static one, else b): deq(Q(X))
    plus every residual approximation, LPLR's L R + beta, or LRAMM's quantized factor product."""
    role = role or (s.static if s.static in ("a", "b") else "b")
    x = as_matrix(X, role.upper())
    if s.product is not None:
        p = s.product
        left, right = factorize(x, p.method, p.rank, oversample=p.oversample,
                                      power_iters=p.power_iters,
                                      seed=p.seed + (role == "b"), split="sqrt")
        bl, bi, br = p.bits
        b1, b2 = (bl, bi) if role == "a" else (bi, br)
        left = quantize(left, lramm.factor_quant(b1), "a").dequantize()
        right = quantize(right, lramm.factor_quant(b2), "b").dequantize()
        return left @ right
    return held(prepare(s.operand(role), x, role))


def direct_scheme(s: Scheme, m: int, n: int, k: int) -> Scheme:
    """The baseline "direct quant" of `s`: residual terms dropped; an LPLR operand becomes plain
    min-max quantization at the equal bit budget (NQ); LRAMM becomes per-tensor int at max(bits)."""
    if s.product is not None:
        q = QuantOperand(Quant(f"int{max(s.product.bits)}", Granularity.PER_TENSOR))
        return replace(s, a=q, b=q, product=None)
    ops = {}
    for role in ("a", "b"):
        op = s.operand(role)
        if isinstance(op, QuantOperand):
            op = QuantOperand(op.quant)
        elif isinstance(op, LplrOperand):
            rows, cols = (m, k) if role == "a" else (k, n)
            budget = op.rank * (rows * op.left_bits + cols * op.right_bits) / (rows * cols)
            bits = int(min(8, max(1, np.floor(budget + 1e-9))))
            op = QuantOperand(Quant(f"uint{bits}", Granularity.PER_TENSOR,
                                    calibrate=Calibration.MINMAX))
        ops[role] = op
    return replace(s, a=ops["a"], b=ops["b"])


@dataclass
class Report:
    """Relative Frobenius errors against the float64 product."""

    scheme: str
    dims: tuple[int, int, int]
    direct: float
    compensated: float
    float32: float
    notes: list[str] = field(default_factory=list)

    @property
    def gain(self) -> float:
        return self.direct / self.compensated if self.compensated > 0 else float("inf")

    def table(self) -> str:
        m, n, k = self.dims
        rows = [("direct quant", self.direct), (f"scheme {self.scheme}", self.compensated),
                ("numpy float32", self.float32)]
        out = [f"M={m} N={n} K={k}: relative Frobenius error vs float64",
               f"{'method':<28}{'rel. error':>12}"]
        out += [f"{name:<28}{err:>12.4e}" for name, err in rows]
        out.append(f"{'gain (direct / scheme)':<28}{self.gain:>11.1f}x")
        out += [f"note: {n}" for n in dict.fromkeys(self.notes)]
        return "\n".join(out)


def rel_error(C: np.ndarray, ref: np.ndarray) -> float:
    den = np.linalg.norm(ref)
    return float(np.linalg.norm(C - ref) / den) if den > 0 else float(np.linalg.norm(C))


def evaluate(s: Scheme, A: npt.ArrayLike, B: npt.ArrayLike) -> Report:
    """Errors of direct quantization, of the scheme, and of float32, against float64."""
    A, B = check_pair(A, B)
    m, k, n = A.shape[0], A.shape[1], B.shape[1]
    ref = A @ B
    notes: list[str] = []
    C = to_output(_run(s, A, B, notes), s.output).astype(np.float64)
    C0 = to_output(_run(direct_scheme(s, m, n, k), A, B, []), s.output).astype(np.float64)
    C32 = (A.astype(np.float32) @ B.astype(np.float32)).astype(np.float64)
    return Report(s.name, (m, n, k), rel_error(C0, ref), rel_error(C, ref), rel_error(C32, ref),
                  notes)
