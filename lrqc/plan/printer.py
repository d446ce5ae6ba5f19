"""print_plan(): the text form of a KernelPlan (`lrqc explain --emit plan`, `lrqc build --emit
plan`): sizes and padding, each operand's format and storage, the GEMM's formulation, the
residual terms as the kernels compute them, and the plan's notes."""

from __future__ import annotations

from ..frontend.model import FloatOperand
from ..frontend.unparse import quant_text
from . import ranges
from .model import KernelPlan


def _operand(plan: KernelPlan, role: str) -> str:
    op = plan.scheme.operand(role)
    if isinstance(op, FloatOperand):
        return f"{op.dtype} (float operand)"
    q = plan.qa if role == "a" else plan.qb
    if q is None:  # an LPLR operand: make_plan plans none
        raise TypeError(f"plan of '{plan.scheme.name}': operand {role} is not quantized")
    text = quant_text(q)
    if role == "a" and not plan.float_path:
        text += f"; codes stored + {plan.a_offset} as u8" if plan.a_offset else "; codes as u8"
    if role == "b" and not plan.float_path:
        text += (f"; {plan.pack_bits}-bit codes packed densely" if plan.packed
                 else "; int8 codes")
        if plan.b_zero:
            text += f", zero points (stored code - {plan.b_offset})"
    return text


def _gemm(plan: KernelPlan) -> str:
    if plan.float_path:
        how = f"{plan.half} products, float32 sums" if plan.half else "float32"
        why = "float fallback" if plan.float_gemm and plan.qa is not None and \
            plan.qb is not None else "float operand"
        return f"float GEMM ({how}; {why})"
    acc = (f"int32 partials over {plan.groups} K chunks of {plan.vector}, summed in int64"
           if plan.chunked else f"int32 sums per group of {plan.vector}")
    sp = ranges.scale_pairs(plan)
    if sp is not None and sp.usable:  # (rules with pairs: x86_vnni, x86_avx2_bytes)
        acc += (f"; two-level scales: groups summed in int32 as int16 pairs where the rule has "
                f"them, {sp.chunk} groups per total" + (", each less its zero correction in int16"
                                                       if sp.zeros else ""))
    return f"integer GEMM u8 x s8 -> {acc}, accumulate: {plan.scheme.accumulate}"


def print_plan(plan: KernelPlan) -> str:
    """Deterministic text, one fact per line."""
    p = plan
    lines = [
        f"plan {p.scheme.name} @ M={p.m}: {p.m}x{p.k} @ {p.k}x{p.n}",
        f"  padded      Mp={p.mp} Np={p.np_} Kp={p.kp}; {p.groups} group(s) of {p.vector}"
        + (f" in {p.nseg} K segments of {p.kq}" if p.segments else ""),
        f"  a           {_operand(p, 'a')}",
        f"  b           {_operand(p, 'b')} (static, packed once)",
        f"  gemm        {_gemm(p)}",
    ]
    for i, sg in enumerate(p.segments[1:], 1):
        lines.append(f"  segment {i}   {sg.a} x {sg.b}: {quant_text(sg.qa)} x {quant_text(sg.qb)}")
    for sp in p.sparse:
        who = "B's" if sp.side == "a" else "A's"
        lines.append(f"  sparse      {who} term {sp.n}: {quant_text(sp.q)}, product after the "
                     "GEMM")
    if p.lowrank_a is not None:
        w = ("F_Aᵀ B̂); other=packed: B̂ from B's codes and terms, no float copy of B"
             if p.lowrank_a.other == "packed" else "F_Aᵀ B)")
        lines.append(f"  lowrank a   rank {p.rank_a} ({p.lowrank_a.method}): epilogue L_A ({w}")
    if p.lowrank_b is not None:
        lines.append(f"  lowrank b   rank {p.rank_b} ({p.lowrank_b.method}): epilogue (A' L_B) "
                     "F_Bᵀ")
    if p.dense_b:
        lines.append(f"  dense b     {len(p.dense_b)} term(s) folded into the float weights")
    lines.append(f"  output      {p.scheme.output}")
    lines += [f"  note        {n}" for n in p.notes]
    return "\n".join(lines)
