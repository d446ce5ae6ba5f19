"""Nominal bits per weight of a scheme: what the static operand B (K x N, the weights) needs,
counted from the scheme, independent of how a kernel lays it out.

Counted: the codes; the scales (float32, or VS-Quant's integer scales plus a float per channel,
or MX's 8-bit shared exponents; zero points as many as the scales, as floats); B's residual
terms (low-rank factors in float32, the codes of a dense or sparse residual); what A's terms
multiply at pack time (a float32 copy of B for `lowrank(other=exact)`, the requantized copy of
B for `sparse`, counted as a dense matrix of codes); LPLR's and LRAMM's factors. A float
operand counts its type's bits. Per-tensor scales and LPLR's factor scales are left out (a few
numbers per matrix).
"""

from __future__ import annotations

from lrqc.frontend.model import (
    Dense,
    FloatOperand,
    LowRank,
    LplrOperand,
    Quant,
    QuantOperand,
    Scheme,
    Sparse,
)

FLOAT_BITS = {"float64": 64, "float32": 32, "float16": 16, "bfloat16": 16}


def quant_bits(q: Quant, k: int, n: int) -> float:
    """Codes and scales of one quantizer of a K x N operand, per element."""
    g = str(q.granularity)
    if g == "per_channel":
        scales = 32 / k
    elif g == "per_vector":
        scales = q.scale_bits / q.vector + 32 / k if q.scale_bits else 32 / q.vector
    elif g == "per_block":
        scales = 8 / q.vector
    else:
        scales = 0.0
    zero_points = scales if str(q.calibrate) == "minmax" else 0.0
    return q.bits + scales + zero_points


def _residual_quant(term: Dense | Sparse, base: Quant) -> Quant:
    """A dense or sparse term's quantizer (default: the operand's format, per tensor)."""
    return term.quant if term.quant is not None else Quant(base.fmt)


def weight_bits(s: Scheme, k: int, n: int) -> float:
    """Nominal bits per weight of `s`'s weights B (K x N)."""
    if s.product is not None:  # LRAMM: B through its quantized rank-r factors U_B, V_Bᵀ
        _, inner, right = s.product.bits
        return s.product.rank * (k * inner + n * right) / (k * n)
    b = s.b
    if isinstance(b, FloatOperand):
        total = float(FLOAT_BITS[b.dtype])
    elif isinstance(b, LplrOperand):
        total = b.rank * (k * b.left_bits + n * b.right_bits) / (k * n)
    else:
        assert isinstance(b, QuantOperand)
        total = quant_bits(b.quant, k, n)
        for term in b.residuals:
            if isinstance(term, LowRank):
                total += 32 * term.rank * (k + n) / (k * n)
            else:
                total += quant_bits(_residual_quant(term, b.quant), k, n)
    if isinstance(s.a, QuantOperand):
        for term in s.a.residuals:
            if isinstance(term, LowRank) and term.other == "exact":
                total += 32  # the float32 copy of B that L_A (F_Aᵀ B) multiplies
            elif isinstance(term, Sparse):
                total += quant_bits(_residual_quant(term, s.a.quant), k, n)
    return total


def model_bits(s: Scheme, shapes: list[tuple[int, int]]) -> float:
    """Bits per weight over layers of (in_features, out_features), weighted by their sizes."""
    return (sum(weight_bits(s, k, n) * k * n for k, n in shapes)
            / sum(k * n for k, n in shapes))
