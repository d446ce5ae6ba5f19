"""interpret(): run an IR Program on numpy arrays, one rule per op kind (EVAL_RULES).

It must agree with reference.matmul (tests hold this), so the IR is an executable statement of
the scheme that backends lower op by op."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from ..ir.nodes import Program
from . import lplr as lplr_mod
from .inputs import check_pair, round_float, to_output
from .lowrank import factorize
from .quant import QArray, grouped_sums, quantize
from .residual import sparsify

_FLOAT = {"f32": "float32", "f64": "float64", "f16": "float16", "bf16": "bfloat16"}


class Accumulators:
    """Value of int_matmul: per-group exact sums of centered codes, computed on demand (a
    G x M x N array would not fit for per_vector at realistic sizes)."""

    def __init__(self, qa: QArray, qb: QArray):
        self.qa, self.qb = qa, qb

    def groups(self) -> Iterator[tuple[slice, np.ndarray]]:
        """(K slice, sums of centered values) per common group: exact for integer codes,
        dyadic float64 sums for e*m* elements."""
        yield from grouped_sums(self.qa, self.qb)


def _col_scale(q: QArray, start: int) -> np.ndarray:
    """Scale of q's group holding column `start`; past the end of a shorter operand (zeros
    there) its last group's, which only multiplies zeros."""
    s = q.scale
    return s[:, 0] if s.shape[-1] == 1 else s[:, min(start // q.group, s.shape[-1] - 1)]


def _rescale(op, acc: Accumulators, qa: QArray, qb: QArray, ctx):
    out = 0.0
    for sl, part in acc.groups():
        out = out + _col_scale(qa, sl.start)[:, None] * _col_scale(qb, sl.start)[None, :] * part
    return np.broadcast_to(out, (qa.codes.shape[0], qb.codes.shape[0])).copy()


def _residual(op, x, y, ctx):
    return x - (y.dequantize() if isinstance(y, QArray) else y)


def _lowrank(op, x, ctx):
    if op.method in ("lplr", "dsvd"):
        b1, b2 = op.bits
        if op.method == "lplr":
            L, R, beta = lplr_mod.lplr(x, op.rank, b1, b2, power_iters=op.power_iters,
                                       seed=op.seed, normalize_shift=op.normalize_shift)
        else:
            L, R, beta = lplr_mod.dsvd(x, op.rank, b1, b2)
        if op.normalize_shift:  # L R + beta 1 1ᵀ = [L, 1] [R; beta 1ᵀ]
            L = np.hstack([L, np.ones((L.shape[0], 1))])
            R = np.vstack([R, np.full((1, R.shape[1]), beta)])
        return L, R
    return factorize(x, op.method, op.rank, oversample=op.oversample,
                     power_iters=op.power_iters, seed=op.seed, split=op.split)


def _float(x):
    """A matmul's operand: a quantized value multiplies as its dequantized value."""
    return x.dequantize() if isinstance(x, QArray) else x


def _sparsify(op, x, ctx):
    xs, density = sparsify(x, op.threshold)
    if density > op.max_density:
        ctx.append(f"sparsify: density {density:.3f} > {op.max_density:g}, dense operand used")
        return x
    return xs


EVAL_RULES = {
    "quantize": lambda op, x, ctx: quantize(x, op.quant, op.role),
    "dequantize": lambda op, q, ctx: q.dequantize(),
    "int_matmul": lambda op, qa, qb, ctx: Accumulators(qa, qb),
    "rescale": _rescale,
    "residual": _residual,
    "lowrank": _lowrank,
    "sparsify": _sparsify,
    "matmul": lambda op, x, y, ctx: _float(x) @ _float(y),
    "add": lambda op, x, y, ctx: x + y,
    "pack": lambda op, x, ctx: x,
}


def interpret(p: Program, A: npt.ArrayLike, B: npt.ArrayLike, notes: list[str] | None = None
              ) -> np.ndarray:
    """Evaluate Program `p` on A (M x K) and B (K x N) in float64; the result rounded once to
    the program's output type, as lrqc.reference.matmul returns it."""
    A, B = check_pair(A, B)
    notes = [] if notes is None else notes
    env = {}
    for name, dt in p.inputs:
        env[name] = round_float(A if name == "A" else B, _FLOAT[dt], name)
    for op in p.ops:
        res = EVAL_RULES[op.kind](op, *(env[a] for a in op.args), notes)
        if op.n_results == 1:
            res = (res,)
        env.update(zip(op.results, res, strict=True))
    return to_output(np.asarray(env[p.output], dtype=np.float64), p.out_dtype)
