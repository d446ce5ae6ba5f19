"""matmul / compress / evaluate: a Scheme applied to A (M x K) and B (K x N), exactly as
docs/numerics.md defines it, in float64. This is the oracle every kernel is compared with."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt

from ..errors import InputError
from ..frontend.bind import bind_dims
from ..frontend.model import (
    Calibration,
    Dense,
    Granularity,
    LowRank,
    LplrOperand,
    Quant,
    QuantOperand,
    Scheme,
    Sparse,
)
from . import lramm
from .inputs import as_bias, as_matrix, to_output
from .lowrank import factorize
from .metrics import error_metrics, operand_stats, top_columns
from .metrics import rel_error as rel_error  # the name lrqc.tuning and the tests import here
from .operand import Prepared, held, sparse_copy
from .operand import prepare as prepare  # the operand-level step lrqc.runtime uses
from .prepared import PreparedOperand, Side, check_scheme, lramm_side, part, raw, sides
from .quant import quantize
from .report import Report


def _product(pa: Prepared, pb: Prepared) -> np.ndarray:
    """The direct product base_A @ base_B, through LPLR's factors when there are some."""
    if pb.lplr is not None:
        L, R, beta = pb.lplr
        return (pa.base @ L) @ R + beta * pa.base.sum(axis=1, keepdims=True)
    if pa.lplr is not None:
        L, R, beta = pa.lplr
        return L @ (R @ pb.base) + beta * pb.base.sum(axis=0, keepdims=True)
    return pa.base @ pb.base


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
            bs, note = sparse_copy(pb, t.term)
            notes.append(note)
            total = total + t.approx @ bs
    for t in pb.terms:  # terms of B: R_B ≈ approx, multiplied by a version of A
        if isinstance(t.term, LowRank):
            L, Ft = t.factors
            total = total + (pa.base @ L) @ Ft
        elif isinstance(t.term, Dense):
            total = total + pa.base @ t.approx
        elif isinstance(t.term, Sparse):
            as_, note = sparse_copy(pa, t.term)
            notes.append(note)
            total = total + as_ @ t.approx
    return total


def _run(s: Scheme, a: Side, b: Side, notes: list[str]) -> np.ndarray:
    """The scheme's C in float64 (no bias) of checked operands (prepared.sides)."""
    notes += bind_dims(s, a.shape[0], b.shape[1], a.shape[1])
    if s.product is not None:
        return lramm.chain(*lramm_side(s, a, "a"), *lramm_side(s, b, "b"))
    pa, pb = part(s.a, a, "a"), part(s.b, b, "b")
    return _product(pa, pb) + _compensation(pa, pb, notes)


def _with_bias(c: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    return c if bias is None else c + bias


def matmul(s: Scheme, A: npt.ArrayLike | PreparedOperand, B: npt.ArrayLike | PreparedOperand,
           exact: bool = False, bias: npt.ArrayLike | None = None) -> np.ndarray:
    """Scheme `s` applied to A (M x K) @ B (K x N), plus `bias` (N values, added to every row)
    when given: computed in float64, then rounded once to the scheme's `output` type and
    returned with that dtype (exact=True: the float64 value before that rounding). A or B may
    be a PreparedOperand of `s` (prepare(s, X)): the same numbers as with X."""
    a, b = sides(s, A, B)
    vec = None if bias is None else as_bias(bias, b.shape[1])
    c = _with_bias(_run(s, a, b, []), vec)
    return c if exact else to_output(c, s.output)


def compress(s: Scheme, X: npt.ArrayLike, role: str | None = None) -> np.ndarray:
    """What the scheme reconstructs of one operand (default: the static one, else b): deq(Q(X))
    plus every residual approximation, LPLR's L R + beta, or LRAMM's quantized factor product."""
    check_scheme(s, "compress")
    role = role or (s.static if s.static in ("a", "b") else "b")
    if role not in ("a", "b"):
        raise InputError(f"compress: role must be 'a' or 'b', got {role!r}")
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


def evaluate(s: Scheme, A: npt.ArrayLike | PreparedOperand, B: npt.ArrayLike | PreparedOperand,
             bias: npt.ArrayLike | None = None) -> Report:
    """Errors of direct quantization, of the scheme, and of float32, against float64 (each
    plus `bias` when given), with the operands' outlier statistics. A or B may be a
    PreparedOperand of `s`: it keeps its treatment under the direct scheme as well."""
    a, b = sides(s, A, B)
    A64, B64 = raw(a), raw(b)
    m, k, n = A64.shape[0], A64.shape[1], B64.shape[1]
    vec = None if bias is None else as_bias(bias, n)
    ref = _with_bias(A64 @ B64, vec)
    notes: list[str] = []
    C = to_output(_with_bias(_run(s, a, b, notes), vec), s.output).astype(np.float64)
    d = direct_scheme(s, m, n, k)
    C0 = to_output(_with_bias(_run(d, a, b, []), vec), s.output).astype(np.float64)
    C32 = A64.astype(np.float32) @ B64.astype(np.float32)
    if vec is not None:
        C32 = C32 + vec.astype(np.float32)
    metrics = {key: error_metrics(c, ref) for key, c in
               (("direct", C0), ("compensated", C), ("float32", C32.astype(np.float64)))}
    return Report(s.name, (m, n, k), metrics["direct"].rel_frobenius,
                  metrics["compensated"].rel_frobenius, metrics["float32"].rel_frobenius, notes,
                  metrics, {"A": operand_stats(A64, 1), "B": operand_stats(B64, 0)},
                  operand_stats(ref, 1), top_columns(ref), vec is not None)
