"""estimate_cost: Program -> CostTable of FLOPs (integer ops for int_matmul) and bytes read and
written, per op and per stage, as sympy expressions of M, N, K. Rule table COST_RULES by kind.
lowrank_notes: what A's lowrank terms read of B per call in each form (other=exact | packed).

Pre: infer_shapes ran. Bytes assume float32 activations and packed sub-byte codes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import sympy
from sympy.core.rules import Transform

from ..frontend.model import Granularity, LowRank, QuantOperand
from ..ir import nodes as ir
from ..reference import minifloat
from .shapes import K, N

F32 = 4


def _numel(t: ir.TensorType):
    out = sympy.Integer(1)
    for d in t.shape:
        out *= d
    return out


def _qbytes(t: ir.TensorType):
    """Bytes of a quantized value: packed codes plus scales (and zero points)."""
    q = t.quant
    rows, cols = t.shape
    codes = _numel(t) * q.bits / 8
    if q.granularity == Granularity.PER_TENSOR:
        scales = 1
    elif q.granularity == Granularity.PER_CHANNEL:
        scales = rows if t.role == "a" else cols
    else:
        scales = _numel(t) / q.vector
    per_scale = 1 if q.granularity == Granularity.PER_BLOCK or q.scale.startswith("uint") else F32
    return codes + scales * per_scale


def _bytes(t: ir.TensorType):
    """Bytes of a value: quantized (_qbytes) or float32."""
    return _qbytes(t) if t.quant is not None else F32 * _numel(t)


def _lowrank_flops(op, t):
    m, n = t.shape
    if op.method == "sketch":
        return 2 * m * n * (2 + 2 * op.power_iters)
    if op.method == "svd":
        return 4 * m * n * sympy.Min(m, n) + 8 * sympy.Min(m, n) ** 3
    width = op.rank + op.oversample
    if op.method in ("lplr", "dsvd"):
        return 2 * m * n * op.rank * (2 + 2 * op.power_iters) + 4 * m * op.rank**2
    return 2 * m * n * width * (2 + 2 * op.power_iters) + 4 * (m + n) * width**2


def _rule(op, args, res):
    """(flops, bytes read, bytes written) of one op from its argument and result types."""
    k = op.kind
    if k == "quantize":
        x = args[0]
        return 4 * _numel(x), F32 * _numel(x), _qbytes(res[0])
    if k == "dequantize":
        return 2 * _numel(res[0]), _qbytes(args[0]), F32 * _numel(res[0])
    if k == "int_matmul":
        _, m, n = res[0].shape
        kk = args[0].shape[1]
        return 2 * m * n * kk, _qbytes(args[0]) + _qbytes(args[1]), 4 * _numel(res[0])
    if k == "rescale":
        return 3 * _numel(args[0]), 4 * _numel(args[0]), F32 * _numel(res[0])
    if k == "residual":
        return 2 * _numel(res[0]), F32 * 2 * _numel(res[0]), F32 * _numel(res[0])
    if k == "lowrank":
        return (_lowrank_flops(op, args[0]), F32 * _numel(args[0]) * (1 + op.power_iters),
                F32 * (_numel(res[0]) + _numel(res[1])))
    if k == "sparsify":
        return 3 * _numel(args[0]), F32 * 2 * _numel(args[0]), F32 * _numel(res[0])
    if k == "matmul":  # a quantized argument is read as its codes (and scales)
        (m, kk), (_, n) = args[0].shape, args[1].shape
        return 2 * m * n * kk, _bytes(args[0]) + _bytes(args[1]), F32 * _numel(res[0])
    if k == "add":
        return _numel(res[0]), F32 * 2 * _numel(res[0]), F32 * _numel(res[0])
    if k == "pack":
        size = _qbytes(args[0]) if args[0].quant else F32 * _numel(args[0])
        return sympy.Integer(0), size, size
    raise KeyError(k)


COST_RULES = {kind.kind: _rule for kind in ir.OP_KINDS}


@dataclass(frozen=True)
class CostRow:
    index: int
    kind: str
    stage: str
    flops: sympy.Expr
    bytes_read: sympy.Expr
    bytes_written: sympy.Expr


@dataclass(frozen=True)
class CostTable:
    rows: tuple[CostRow, ...]

    def total(self, stage: str | None = None) -> tuple[sympy.Expr, sympy.Expr, sympy.Expr]:
        sel = [r for r in self.rows if stage is None or r.stage == stage]
        # one Add of every row (linear), not a running sum that re-flattens at every row
        return (sympy.expand(sympy.Add(*(r.flops for r in sel))),
                sympy.expand(sympy.Add(*(r.bytes_read for r in sel))),
                sympy.expand(sympy.Add(*(r.bytes_written for r in sel))))


# 2-arg products number * sum are written out: 4*(K + N) prints as 4*K + 4*N (as sympy.simplify)
_HOLLOW_MUL = Transform(lambda x: sympy.Mul(*x.args),
                        lambda x: x.is_Mul and len(x.args) == 2 and x.args[0].is_Number
                        and x.args[1].is_Add)


@lru_cache(maxsize=4096)
def tidy(e: sympy.Expr) -> sympy.Expr:
    """The shorter of the expanded polynomial and its common factors pulled out (ties: factored),
    e.g. 4*K*(N + 1), N*(K + 8)/2, 288*K*N + 2304*K + 2304*N. For these polynomials in M, N, K
    (with ceiling and Min atoms) it gives what sympy.simplify gives, about ten times faster, and
    each distinct expression is tidied once (a scheme repeats the same term shapes)."""
    e = sympy.expand(e)
    num, den = e.as_numer_denom()
    factored = (sympy.factor_terms(num) / den).xreplace(_HOLLOW_MUL)
    return min((factored, e), key=sympy.count_ops)


def estimate_cost(p: ir.Program) -> CostTable:
    types = dict(p.types)
    rows = []
    for i, op in enumerate(p.ops):
        f, br, bw = COST_RULES[op.kind](op, [types[a] for a in op.args],
                                        [types[r] for r in op.results])
        rows.append(CostRow(i, op.kind, op.stage or "run", tidy(sympy.sympify(f)),
                            tidy(sympy.sympify(br)), tidy(sympy.sympify(bw))))
    return CostTable(tuple(rows))


def stored_width(q) -> int:
    """Bits of each stored weight code of quantizer q (two's complement; unsigned codes are
    stored minus 2^(b-1)): b for b-bit integers, 2 for int1's sign codes (+-1); for minifloat
    elements and MX blocks the width of their integer codes value x 2^f (e2m1: 5 bits for
    -12..12), 8 where those do not fit a byte (the float path) (plan/packing.py)."""
    if q is None:
        return 8
    if not q.is_int or q.granularity == Granularity.PER_BLOCK:
        top = minifloat.code_max(q.fmt)
        return top.bit_length() + 1 if top <= minifloat.INT8_QMAX else 8
    if q.bits == 1 and q.signed and not q.is_fixed:
        return 2
    return q.bits


def stored_bytes(q) -> sympy.Expr:
    """Bytes per weight of the kernels' storage of codes of quantizer q: w/8 for integer
    codes packed densely in w bits (the default below 8 bits), one with pack=byte."""
    if q.pack == "byte":
        return sympy.Integer(1)
    return sympy.Rational(stored_width(q), 8)


def lowrank_notes(p: ir.Program, show: Callable[[sympy.Expr], str]) -> list[str]:
    """Lines under the cost table on A's lowrank terms: what F_Aᵀ · (B or B̂) reads of B per call
    in the term's form (other=exact: the float32 B, 4 bytes per weight; other=packed: B's codes)
    and what pack keeps for it (packed: no float copy of B). show: an expression as text.
    Pre: infer_shapes ran."""
    s = p.decl
    if s is None or s.product is not None or not isinstance(s.a, QuantOperand):
        return []
    terms = [t for t in s.a.residuals if isinstance(t, LowRank)]
    if not terms or not isinstance(s.b, QuantOperand) or s.static != "b":
        return []
    kn = K * N
    codes = stored_bytes(s.b.quant)
    per = "half a byte" if codes < 1 else "1 byte"
    out = []
    for t in terms:
        if t.other == "packed":
            out.append(f"a: lowrank(other=packed): F_Aᵀ B̂ reads B's codes as the kernel stores "
                       f"them ({per} per weight: {show(codes * kn)} per call, not "
                       f"{show(F32 * kn)} of float32 B) and B's residual terms; pack keeps no "
                       f"float copy of B (the packed weights: those codes, scales and terms)")
        else:
            out.append(f"a: lowrank(other=exact): F_Aᵀ B reads the float32 B (4 bytes per "
                       f"weight: {show(F32 * kn)} per call), a copy pack keeps beside the "
                       f"codes ({show(codes * kn)}); other=packed reads the codes instead")
    return out


def pass_notes(p: ir.Program) -> list[str]:
    """Lines under the cost table: what each residual term costs the compiled kernels per call
    in passes over A (and its residual R) and over B, beyond the direct product's one pass
    over each (the quantization pass over A and the GEMM over A's and B's codes)."""
    s = p.decl
    if s is None or s.product is not None:
        return []
    out = []
    for role, op in (("a", s.a), ("b", s.b)):
        if not isinstance(op, QuantOperand):
            continue
        for t in op.residuals:
            out.append(f"{role}: {type(t).__name__.lower()}: {_passes(role, t)}")
    return out


def _passes(role: str, t: object) -> str:
    if isinstance(t, LowRank) and role == "b":
        return ("factors at pack; per call one pass over A's codes (U = A' L_B), and the "
                "rank-r epilogue U W inside the GEMM's output tile (no pass)")
    if isinstance(t, LowRank):
        if t.method == "svd":
            return "an exact SVD of R per call (O(M K min(M, K)): not a pass count)"
        if t.method == "sketch":
            return ("the quantization pass also writes R, t = R s and Rᵀ t, each row's share "
                    f"as the row is written; then {t.power_iters} pass(es) over R (R u and "
                    "Rᵀ R u together, per power iteration; the table's reads of R count the "
                    "first with the quantization pass), one over B for F_Aᵀ B, and the rank-1 "
                    "epilogue inside the GEMM's output tile (no pass)")
        width = t.rank + t.oversample
        return (f"the quantization pass also writes R and its sketch product (R times {width} "
                f"Gaussian column(s)); then {2 * t.power_iters + 1} pass(es) over R "
                f"({t.power_iters} power iteration(s) and the projection), one over B for "
                "F_Aᵀ B, and the rank-r epilogue inside the GEMM's output tile (no pass)")
    if type(t).__name__ == "Dense":
        return "an extra K segment of the one integer GEMM (its K grows by K: a pass over "\
               "the residual's codes and the other operand's codes again)"
    if role == "a":
        return ("B's thresholded copy is made at pack; per call the quantization pass also "
                "writes A's residual codes, and a product after the GEMM runs over the copy's "
                "nonzeros (or, dense enough, every element)")
    return ("the quantization pass also thresholds A's copy per call; a product after the GEMM "
            "runs over its nonzeros (or, dense enough, every element) and B's residual codes")
