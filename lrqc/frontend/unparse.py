"""unparse(): typed Scheme -> canonical scheme text with every default written out, but one:
lowrank(other=...) is written only when it is `packed` (its default, exact, is what every
lowrank term meant before the option existed, so their canonical texts, and the fingerprints,
tuning keys and artifact manifests made from them, stay as they were).

parse(unparse(s)) == s for every Scheme (a property test holds this)."""

from __future__ import annotations

from .model import (
    Dense,
    FloatOperand,
    Granularity,
    LowRank,
    LplrOperand,
    Operand,
    Quant,
    QuantOperand,
    Residual,
    Rounding,
    Scheme,
    Sparse,
)


def _num(v: float) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def _fixed_max(v: float) -> str:
    """max= of fixed(...): an integer-valued V without ".0" (4, not 4.0), else repr."""
    return str(int(v)) if v.is_integer() and abs(v) < 2.0**53 else repr(v)


def quant_text(q: Quant) -> str:
    if q.is_fixed:  # one static scale: no granularity, no calibration
        parts = [f"fixed({q.bits}, max={_fixed_max(q.fixed_max)}, "
                 f"signed={'true' if q.signed else 'false'})", f"round={q.round}"]
        return " ".join(parts + ([f"seed={q.seed}"] if q.round == Rounding.STOCHASTIC else [])
                        + ([f"pack={q.pack}"] if q.pack != "auto" else []))
    parts = [q.fmt]
    if q.granularity in (Granularity.PER_VECTOR, Granularity.PER_BLOCK):
        scale = q.scale if q.scale in ("float32", "e8m0") else f"{q.scale} per_channel"
        parts.append(f"{q.granularity}({q.vector}, scale={scale})")
    else:
        parts.append(q.granularity)
    parts += [f"round={q.round}", f"calibrate={q.calibrate}"]
    if q.scale.startswith("uint"):
        parts.append(f"scale_round={q.scale_round}")
    if q.round == Rounding.STOCHASTIC:
        parts.append(f"seed={q.seed}")
    if q.granularity in (Granularity.PER_VECTOR, Granularity.PER_BLOCK):
        parts.append(f"pad={'true' if q.pad else 'false'}")
    if q.pack != "auto":
        parts.append(f"pack={q.pack}")
    return " ".join(parts)


def residual_text(r: Residual) -> str:
    if isinstance(r, LowRank):
        other = "" if r.other == "exact" else f", other={r.other}"
        return (f"lowrank(rank={r.rank}, method={r.method}, oversample={r.oversample}, "
                f"power_iters={r.power_iters}, seed={r.seed}{other})")
    if isinstance(r, Dense):
        return f"dense({quant_text(r.quant)})"
    if isinstance(r, Sparse) and r.quant is not None:  # elaborate always gives it one
        return (f"sparse({quant_text(r.quant)}, threshold={_num(r.threshold)}, "
                f"max_density={_num(r.max_density)})")
    raise TypeError(r)


def operand_text(op: Operand) -> str:
    if isinstance(op, FloatOperand):
        return op.dtype
    if isinstance(op, LplrOperand):
        return (f"lplr(rank={op.rank}, left={op.left}, right={op.right}, sketch={op.sketch}, "
                f"seed={op.seed}, method={op.method}, power_iters={op.power_iters}, "
                f"normalize_shift={'true' if op.normalize_shift else 'false'})")
    if isinstance(op, QuantOperand):
        return " + ".join([quant_text(op.quant)] + [residual_text(r) for r in op.residuals])
    raise TypeError(op)


def unparse(s: Scheme) -> str:
    lines = [f"scheme {s.name} {{"]
    if s.product is not None:
        p = s.product
        lines.append(f"    product: lowrank(rank={p.rank}, method={p.method}, "
                     f"oversample={p.oversample}, power_iters={p.power_iters}, seed={p.seed}, "
                     f"bits=({', '.join(map(str, p.bits))}))")
        for role in ("a", "b"):
            if s.operand(role) != FloatOperand():
                lines.append(f"    {role}: {operand_text(s.operand(role))}")
    else:
        lines.append(f"    a: {operand_text(s.a)}")
        lines.append(f"    b: {operand_text(s.b)}")
    lines += [f"    accumulate: {s.accumulate}", f"    output: {s.output}",
              f"    static: {s.static}", "}"]
    return "\n".join(lines) + "\n"
