"""lower_ast(): typed Scheme -> IR Program (docs/numerics.md's formulas as straight-line ops)."""

from __future__ import annotations

from typing import Any

from ..frontend.model import (
    Dense,
    FloatOperand,
    Granularity,
    LowRank,
    LowRankProduct,
    LplrOperand,
    Quant,
    Scheme,
    Sparse,
)
from . import nodes as ir

_DTYPES = {"float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16"}


class _Builder:
    def __init__(self):
        self.ops: list[ir.Op] = []
        self.count = 0

    def emit(self, cls: type[ir.Op], args: tuple, n_results: int = 1, **attrs: Any) -> Any:
        results = tuple(f"%{self.count + i}" for i in range(n_results))
        self.count += n_results
        self.ops.append(cls(results, tuple(args), **attrs))
        return results if n_results > 1 else results[0]

    def qmatmul(self, qa: str, qb: str, acc: str) -> str:
        return self.emit(ir.Rescale, (self.emit(ir.IntMatMul, (qa, qb), accumulate=acc), qa, qb))


def _operand(bld: _Builder, op, x: str, role: str) -> dict:
    """Base treatment of one operand: q (quantized value or None), base (float value used by
    the direct product), factors for LPLR, and the residual terms' lowered pieces."""
    if isinstance(op, FloatOperand):
        return {"x": x, "q": None, "base": x, "lplr": None, "terms": []}
    if isinstance(op, LplrOperand):
        bits = (op.left_bits, op.right_bits)
        left, right = bld.emit(ir.LowRank, (x,), 2, method=op.method, rank=op.rank,
                               seed=op.seed, power_iters=op.power_iters, bits=bits,
                               normalize_shift=op.normalize_shift, oversample=0)
        return {"x": x, "q": None, "base": None, "lplr": (left, right), "terms": []}
    q = bld.emit(ir.Quantize, (x,), quant=op.quant, role=role)
    info = {"x": x, "q": q, "base": None, "lplr": None, "terms": []}
    resid = bld.emit(ir.Residual, (x, q)) if op.residuals else None
    for i, term in enumerate(op.residuals):
        last = i == len(op.residuals) - 1
        if isinstance(term, LowRank):
            left, ft = bld.emit(ir.LowRank, (resid,), 2, method=term.method, rank=term.rank,
                                oversample=term.oversample, power_iters=term.power_iters,
                                seed=term.seed)
            info["terms"].append((term, (left, ft)))
            if not last:
                resid = bld.emit(ir.Residual, (resid, bld.emit(ir.MatMul, (left, ft))))
        else:
            qr = bld.emit(ir.Quantize, (resid,), quant=term.quant, role=role)
            info["terms"].append((term, qr))
            if not last:
                resid = bld.emit(ir.Residual, (resid, qr))
    return info


def _base(bld: _Builder, info: dict) -> str:
    """Float value of the operand's base (deq(Q(x)) or x) for float matmuls."""
    if info["base"] is None:
        info["base"] = bld.emit(ir.Dequantize, (info["q"],))
    return info["base"]


def _product(bld, a, b, acc) -> str:
    if b["lplr"]:
        left, right = b["lplr"]
        return bld.emit(ir.MatMul, (bld.emit(ir.MatMul, (_base(bld, a), left)), right))
    if a["lplr"]:
        left, right = a["lplr"]
        return bld.emit(ir.MatMul, (left, bld.emit(ir.MatMul, (right, _base(bld, b)))))
    if a["q"] and b["q"]:
        return bld.qmatmul(a["q"], b["q"], acc)
    return bld.emit(ir.MatMul, (_base(bld, a), _base(bld, b)))


def _term_products(bld, mine, other, role, acc) -> list[str]:
    """Compensation products of `mine`'s residual terms (role a: R̂_A·X_B, role b: X_A·R̂_B)."""
    out = []
    other_role = "b" if role == "a" else "a"
    for term, val in mine["terms"]:
        if isinstance(term, LowRank):
            left, ft = val
            if role == "a":
                w = _held_product(bld, ft, other) if term.other == "packed" else \
                    bld.emit(ir.MatMul, (ft, other["x"]))
                out.append(bld.emit(ir.MatMul, (left, w)))
            else:
                ob = _lplr_value(bld, other) if other["lplr"] else _base(bld, other)
                out.append(bld.emit(ir.MatMul, (bld.emit(ir.MatMul, (ob, left)), ft)))
            continue
        if isinstance(term, Sparse):
            xs = bld.emit(ir.Sparsify, (other["x"],), threshold=term.threshold,
                          max_density=term.max_density)
            oq = bld.emit(ir.Quantize, (xs,), quant=term.quant, role=other_role)
        elif isinstance(term, Dense) and other["q"] is not None:
            oq = other["q"]
        else:  # dense against a float or LPLR operand: multiply by its float value
            rd = bld.emit(ir.Dequantize, (val,))
            ob = _base(bld, other) if not other["lplr"] else _lplr_value(bld, other)
            out.append(bld.emit(ir.MatMul, (rd, ob) if role == "a" else (ob, rd)))
            continue
        out.append(bld.qmatmul(val, oq, acc) if role == "a" else bld.qmatmul(oq, val, acc))
    return out


def _held_product(bld, ft: str, b: dict) -> str:
    """F_Aᵀ B̂ of A's lowrank term with other=packed, B̂ = B as the kernel holds it: F_Aᵀ times
    B's codes (a matmul of a quantized value reads its codes and dequantizes them), or the
    float B, or LPLR's factors, plus F_Aᵀ times each of B's residual terms' reconstructions
    ((F_Aᵀ L_B) F_Bᵀ, F_Aᵀ deq(Q(R_B)))."""
    if b["lplr"]:
        left, right = b["lplr"]
        parts = [bld.emit(ir.MatMul, (bld.emit(ir.MatMul, (ft, left)), right))]
    else:
        parts = [bld.emit(ir.MatMul, (ft, b["q"] or b["x"]))]
    for term, val in b["terms"]:
        if isinstance(term, LowRank):
            lb, fbt = val
            parts.append(bld.emit(ir.MatMul, (bld.emit(ir.MatMul, (ft, lb)), fbt)))
        else:
            parts.append(bld.emit(ir.MatMul, (ft, val)))
    out = parts[0]
    for p in parts[1:]:
        out = bld.emit(ir.Add, (out, p))
    return out


def _lplr_value(bld, info) -> str:
    left, right = info["lplr"]
    return bld.emit(ir.MatMul, (left, right))


def _lramm(bld: _Builder, p: LowRankProduct, acc: str, dims) -> str:
    def fq(bits: int) -> Quant:
        return Quant(f"int{bits}", Granularity.PER_TENSOR)

    kw = {"method": p.method, "rank": p.rank, "oversample": p.oversample,
          "power_iters": p.power_iters, "split": "sqrt"}
    ua, vat = bld.emit(ir.LowRank, ("A",), 2, seed=p.seed, **kw)
    ub, vbt = bld.emit(ir.LowRank, ("B",), 2, seed=p.seed + 1, **kw)
    bl, bi, br = p.bits
    qua = bld.emit(ir.Quantize, (ua,), quant=fq(bl), role="a")
    qvat = bld.emit(ir.Quantize, (vat,), quant=fq(bi), role="a")
    qub = bld.emit(ir.Quantize, (ub,), quant=fq(bi), role="b")
    qvbt = bld.emit(ir.Quantize, (vbt,), quant=fq(br), role="b")
    core = bld.qmatmul(qvat, qub, acc)
    uad, vbd = bld.emit(ir.Dequantize, (qua,)), bld.emit(ir.Dequantize, (qvbt,))
    if dims is not None and dims[0] > dims[1]:  # M > N: core @ VBt first
        return bld.emit(ir.MatMul, (uad, bld.emit(ir.MatMul, (core, vbd))))
    return bld.emit(ir.MatMul, (bld.emit(ir.MatMul, (uad, core)), vbd))


def lower_ast(s: Scheme, dims: tuple[int, int, int] | None = None) -> ir.Program:
    """The IR of scheme `s`. `dims` = (M, N, K) only orders LRAMM's chain (smallest first)."""
    bld = _Builder()
    inputs = tuple((name, _DTYPES[op.dtype] if isinstance(op, FloatOperand) else "f64")
                   for name, op in (("A", s.a), ("B", s.b)))
    if s.product is not None:
        inputs = (("A", "f64"), ("B", "f64"))  # LRAMM factorizes the operands as given
        out = _lramm(bld, s.product, s.accumulate, dims)
        return ir.Program(s.name, inputs, tuple(bld.ops), out, static=s.static,
                      out_dtype=s.output, decl=s)
    a = _operand(bld, s.a, "A", "a")
    b = _operand(bld, s.b, "B", "b")
    parts = [_product(bld, a, b, s.accumulate)]
    parts += _term_products(bld, a, b, "a", s.accumulate)
    parts += _term_products(bld, b, a, "b", s.accumulate)
    out = parts[0]
    for p in parts[1:]:
        out = bld.emit(ir.Add, (out, p))
    return ir.Program(s.name, inputs, tuple(bld.ops), out, static=s.static,
                      out_dtype=s.output, decl=s)
