"""explain(): the human-readable account of a scheme: canonical text, IR, the dequantization
formula in plain math, the cost table, the pack/run split and every fallback. Returns text."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import lru_cache

import sympy

from .errors import InputError, LrqcError
from .frontend.bind import bind_dims
from .frontend.model import (
    Calibration,
    Dense,
    FloatOperand,
    Granularity,
    LowRank,
    LplrOperand,
    Quant,
    QuantOperand,
    Scheme,
    Sparse,
)
from .frontend.unparse import unparse
from .ir import Program, lower_ast, print_program
from .passes import bind, estimate_cost, run_passes
from .passes.cost import lowrank_notes, pass_notes
from .passes.shapes import K as K_SYM
from .passes.shapes import M as M_SYM
from .passes.shapes import N as N_SYM
from .plan.lower import lower_program
from .plan.printer import print_plan
from .plan.ranges import proof_text, ranges
from .plan.support import float32_codes
from .reference import formats
from .reference.inputs import FLOAT_MAX

EMITS = ("syntax", "ast", "ir", "formula", "cost", "stages", "notes", "instructions", "plan")
DEFAULT_EMITS = ("ast", "ir", "formula", "cost", "stages", "notes", "instructions")
_CELL_WIDTH = 60


def _scale(q: Quant, role: str) -> str:
    x = role.upper()
    idx = "i" if role == "a" else "j"
    if q.granularity == Granularity.PER_TENSOR:
        return f"s{x}"
    if q.granularity == Granularity.PER_CHANNEL:
        return f"s{x}[{idx}]"
    g = f"[{idx},g]" if role == "a" else "[g,j]"
    if q.granularity == Granularity.PER_BLOCK:
        return f"2^e{x}{g}"
    if q.scale.startswith("uint"):
        return f"γ{x}[{idx}]·ŝ{x}{g}"
    return f"s{x}{g}"


def _code(q: Quant, role: str) -> str:
    x = role.upper()
    c = f"q{x}[i,k]" if role == "a" else f"q{x}[k,j]"
    return f"(q{x}[{'i' if role == 'a' else 'k'},{'k' if role == 'a' else 'j'}] - z{x})" \
        if q.calibrate == Calibration.MINMAX else c


def base_formula(s: Scheme) -> list[str]:
    if s.product is not None:
        p = s.product
        return [f"A ≈ U_A' V_A'ᵀ, B ≈ U_B' V_B'ᵀ  ({p.method} rank {p.rank}, √Σ on both factors)",
                (f"C ≈ Q{p.bits[0]}(U_A') · (Q{p.bits[1]}(V_A'ᵀ) · Q{p.bits[1]}(U_B')) · "
                 f"Q{p.bits[2]}(V_B'ᵀ)   (r x r core first, then the cheaper side)")]
    a, b = s.a, s.b
    if isinstance(a, QuantOperand) and isinstance(b, QuantOperand):
        qa, qb = a.quant, b.quant
        lines = []
        if qa.grouped or qb.grouped:
            v = " and ".join(sorted({f"{q.vector}" for q in (qa, qb) if q.grouped}))
            lines.append(f"C0[i,j] = Σ_g {_scale(qa, 'a')}·{_scale(qb, 'b')} · Σ_(k in g) "
                         f"{_code(qa, 'a')}·{_code(qb, 'b')}     (groups g of {v} along K)")
        else:
            lines.append(f"C0[i,j] = {_scale(qa, 'a')}·{_scale(qb, 'b')} · Σ_k "
                         f"{_code(qa, 'a')}·{_code(qb, 'b')}")
        for q, x in ((qa, "A"), (qb, "B")):
            if q.fmt.startswith("e"):
                lines.append(f"  q{x}: {q.fmt} element values" +
                             (" (2·q is an integer in [-12, 12]: exact on int8 units)"
                              if q.fmt == "e2m1" else ""))
            if q.scale.startswith("uint"):
                scale_max = 2**q.scale_bits - 1
                lines.append(f"  ŝ{x}: {q.scale} integers, γ{x} = max_g s{x} / {scale_max}"
                             f", ŝ = clamp({q.scale_round}(s / γ), 1, {scale_max})")
        return lines
    left = {FloatOperand: "A", QuantOperand: "A'", LplrOperand: "L_A·R_A"}[type(a)]
    if isinstance(b, LplrOperand):
        return [f"C0 = ({left}·L)·R     (B ≈ L R: {b.method} rank {b.rank}, "
                f"L {b.left}, R {b.right})"]
    right = {FloatOperand: "B", QuantOperand: "B'"}[type(b)]
    return [f"C0 = {left}·{right}"]


def term_formulas(s: Scheme) -> list[str]:
    out = []
    for role, other in (("a", "b"), ("b", "a")):
        op = s.operand(role)
        if not isinstance(op, QuantOperand):
            continue
        X, Y = role.upper(), other.upper()
        for n, t in enumerate(op.residuals, 1):
            r = f"R_{X}" if len(op.residuals) == 1 else f"R_{X}^({n})"
            if isinstance(t, LowRank):
                body = f"L_{X}·(F_{X}ᵀ·{Y})" if role == "a" else f"({Y}'·L_{X})·F_{X}ᵀ"
                how = f"{r} ≈ L_{X} F_{X}ᵀ by {t.method}, rank {t.rank}"
                if t.other == "packed":  # B̂: B as the kernel holds it
                    held = f"{Y}' + {Y}'s terms" if isinstance(s.operand(other), QuantOperand) \
                        else f"{Y} as held"
                    body, how = f"L_{X}·(F_{X}ᵀ·{Y}̂)", how + f"; {Y}̂ = {held}"
            elif isinstance(t, Dense):
                body = f"deq(Q({r}))·{Y}'" if role == "a" else f"{Y}'·deq(Q({r}))"
                how = f"{r} quantized {t.quant.fmt} {t.quant.granularity}"
            else:
                body = f"deq(Q({r}))·deq(Q({Y}_s))" if role == "a" else f"deq(Q({Y}_s))·deq(Q({r}))"
                how = f"{Y}_s keeps |{Y}| >= 2·{t.threshold:g}·mean|{Y}|"
            out.append(f"  + {body}     ({how})")
        if len(op.residuals) > 1:
            out.append(f"  where R_{X}^(n+1) = R_{X}^(n) - its approximation (terms in order)")
    return out


def notes(s: Scheme, dims: tuple[int, int, int] | None) -> list[str]:
    out: list[str] = []
    if dims is not None:
        out += bind_dims(s, *dims)
    for role in ("a", "b"):
        op = s.operand(role)
        if not isinstance(op, QuantOperand):
            continue
        q = op.quant
        if q.grouped and dims is None:
            out.append(f"{role}: if K is not a multiple of {q.vector}, K is zero-padded "
                       f"({'pad=true' if q.pad else 'pad=false: an error'})")
        if q.is_fixed:
            lo, hi = (-q.fixed_max, q.fixed_max) if q.signed else (0.0, q.fixed_max)
            out.append(f"{role}: fixed point: static scale {q.fixed_scale!r} (no calibration); "
                       f"values outside [{lo:g}, {hi:g}) saturate, so the product is not "
                       "scale-equivariant")
        elif not q.signed and q.is_int and q.calibrate == Calibration.MAXABS:
            out.append(f"{role}: unsigned maxabs quantization clips negative values to 0")
        for t in op.residuals:
            if isinstance(t, Sparse):
                other = "b" if role == "a" else "a"
                when = "once at pack time" if other == s.static else "per call"
                out.append(f"{role}: sparse term thresholds {other.upper()} {when}; if its density "
                           f"exceeds {t.max_density:g} the dense {other.upper()} is used instead "
                           "(lrqc eval reports which)")
    if isinstance(s.a, QuantOperand) and isinstance(s.b, QuantOperand) \
            and s.a.quant.is_int and s.b.quant.is_int:
        out.append(f"{s.accumulate} accumulation: the integer sums are exact for every K "
                   "(compiled kernels add int32 partial sums of K chunks in int64, and refuse "
                   "residual terms whose group sums could exceed int32)")
    if s.output != "float32":  # (float32, the default: the kernels' own type)
        out.append(output_note(s.output))
    if s.static == "none":
        out.append("static: none — no pack stage, both operands are processed per call")
    out += float32_codes_note(s)
    return out


def float32_codes_note(s: Scheme) -> list[str]:
    """The note on the per-call operand's codes where CPU kernels take them from float32: its
    own, and its thresholded copies for the other operand's sparse terms (A's values or 0)."""
    role = "b" if s.static == "a" else "a"
    other_role = "a" if role == "b" else "b"
    op, other = s.operand(role), s.operand(other_role)
    if not isinstance(op, QuantOperand) or isinstance(other, FloatOperand):
        return []  # (with a float operand the product is a float32 GEMM: A's codes in float64)
    which = []
    if float32_codes(op.quant):
        which.append(f"{role.upper()}'s own codes (its residual terms' codes: the float64 "
                     "quotient)" if op.residuals else "the per-call codes")
    if isinstance(other, QuantOperand) and any(
            isinstance(t, Sparse) and t.quant is not None and float32_codes(t.quant)
            for t in other.residuals):
        which.append(f"the codes of {role.upper()}'s thresholded copies for "
                     f"{other_role.upper()}'s sparse terms")
    if not which:
        return []
    return [f"{role}: CPU kernels take {' and '.join(which)} from a float32 product in each "
            "row where that provably gives the codes of the float64 quotient x / s (every "
            "element farther from its rounding boundary than float32's error), from the "
            "float64 quotient in the other rows: the same codes either way"]


def output_note(output: str) -> str:
    """What `output:` means for the values of C: one rounding, the representable range."""
    if output == "float64":
        return ("output: float64: C in float64 (its range, about 1.8e308); computed by "
                "lrqc.reference only: the compiled kernels refuse output: float64")
    top = f"{FLOAT_MAX[output]:g}"
    return (f"output: {output}: C rounded once to {output}, finite up to {top} in magnitude "
            "(beyond: +-inf); compiled kernels compute in float32 and refuse a C that leaves "
            "float32's range")


def _num(e) -> str:
    e = sympy.sympify(e)
    if e.is_number:
        v = float(e)
        for unit, f in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
            if abs(v) >= f:
                return f"{v / f:.3g}{unit}"
        return f"{v:.3g}"
    return str(e)


@lru_cache(maxsize=4096)
def _cell(e, dims) -> str:
    """Text of one cost expression at dims (None: symbolic). Rows of a scheme repeat the same
    few expressions, so each is substituted and printed once."""
    if dims is not None:
        e = e.subs({M_SYM: dims[0], N_SYM: dims[1], K_SYM: dims[2]})
    return _num(e)


def cost_text(p: Program, dims: Sequence[int] | None) -> str:
    table = estimate_cost(p)
    dims = None if dims is None else tuple(dims)
    rows = [("#", "op", "stage", "flops", "bytes read", "bytes written")]
    for r in table.rows:
        rows.append((str(r.index), r.kind, r.stage, _cell(r.flops, dims),
                     _cell(r.bytes_read, dims), _cell(r.bytes_written, dims)))
    for stage in ("pack", "run"):
        rows.append(("", "total", stage, *(_cell(e, dims) for e in table.total(stage))))
    # columns are as wide as their longest cell up to _CELL_WIDTH; longer cells (the totals of a
    # scheme with many distinct terms) run over instead of padding every row to their width
    w = [min(max(len(r[i]) for r in rows), _CELL_WIDTH) for i in range(6)]
    return "\n".join(["  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows]
                     + lowrank_notes(p, lambda e: _cell(e, dims)) + pass_notes(p))


def stages_text(p: Program) -> str:
    pack = [op for op in p.ops if op.stage == "pack" and op.kind != "pack"]
    handed = [op.args[0] for op in p.ops if op.kind == "pack"]
    run = [op for op in p.ops if op.stage == "run"]
    who = {"a": "A", "b": "B"}.get(p.static)
    if who is None:
        return "no pack stage (static: none): every op runs per call"
    def ops(n: int) -> str:
        return f"{n} op{'' if n == 1 else 's'}"

    return (f"pack ({who} only, once): {ops(len(pack))}: {', '.join(o.kind for o in pack) or '-'}\n"
            f"packed for the run stage: {', '.join(handed) or '-'}\n"
            f"run (per call): {ops(len(run))}: {', '.join(o.kind for o in run)}")


def plan_text(program: Program, dims: tuple) -> str:
    """The kernel plans of every M bucket (of every product of a chain), as the backend
    receives them. dims = (M, N, K), M an int or a (lo, hi) range."""
    out = []
    for part in lower_program(program, *dims):
        head = f"-- product {part.prefix[:-1]}: {part.scheme.name} --\n" if part.prefix else ""
        out.append(head + "\n".join(print_plan(p) for p in part.plans))
    return "\n".join(out)


NOMINAL = (64, 4096, 4096)  # the sizes the instructions section plans without --dims


def instructions_text(program: Program, dims: tuple | None) -> str:
    """The range proof of each integer product: which x86 instructions compute it exactly.
    Without dims a nominal size is planned, and said: most code ranges do not depend on the
    sizes, but the offset of centred min-max codes and the int32 sums of groups do (K)."""
    try:
        parts = lower_program(program, *(dims or NOMINAL))
    except LrqcError as exc:  # a scheme the kernels refuse: explain still prints the rest
        return f"not compiled{'' if dims else ' at a nominal 64x4096x4096'}: {exc}"
    out = [] if dims or all(ranges(part.plans[-1]) is None for part in parts) else [
        "planned at a nominal M=64, N=4096, K=4096 (--dims plans yours: K sets the offset of "
        "centred codes and the groups' sums)"]
    for part in parts:
        head = f"-- product {part.prefix[:-1]}: {part.scheme.name} --\n" if part.prefix else ""
        if program.static == "a":  # the kernel computes Cᵀ = Bᵀ Aᵀ: its per-call operand is B
            head += ("(static: a: the GEMM computes Cᵀ = Bᵀ Aᵀ, so its A below is the "
                     "scheme's B, and its B the scheme's A)\n")
        out.append(head + proof_text(part.plans[-1]))
    return "\n".join(out)


def explain(s: Scheme, dims: tuple | None = None, emit: Collection[str] = DEFAULT_EMITS,
            syntax_text: str | None = None) -> str:
    """Text of the requested sections. dims = (M, N, K) or None for symbolic; M may be a
    (lo, hi) range: the plan section shows every bucket, the others take M = hi."""
    if "plan" in emit and dims is None:
        raise LrqcError("--emit plan: the kernel plan needs sizes: give --dims M=..,N=..,K=..")
    full = dims
    if dims is not None and isinstance(dims[0], tuple):
        dims = (dims[0][1], *dims[1:])
    program = run_passes(lower_ast(s, dims))
    if dims is not None:
        program = bind(program, *dims)
    parts = []
    if "syntax" in emit and syntax_text:
        parts.append("== syntax ==\n" + syntax_text)
    if "ast" in emit:
        parts.append("== scheme (canonical, defaults filled in) ==\n" + unparse(s).rstrip())
    if "ir" in emit:
        parts.append("== IR ==\n" + print_program(program))
    if "formula" in emit:
        parts.append("== formula ==\n" + "\n".join(base_formula(s) + term_formulas(s)))
    if "cost" in emit:
        where = "symbolic" if dims is None else "M={} N={} K={}".format(*dims)
        parts.append(f"== cost ({where}) ==\n" + cost_text(program, dims))
    if "stages" in emit:
        parts.append("== pack / run ==\n" + stages_text(program))
    if "notes" in emit:
        parts.append("== notes and fallbacks ==\n" + ("\n".join(notes(s, dims)) or "none"))
    if "instructions" in emit:
        parts.append("== instructions (exact by the code ranges) ==\n"
                     + instructions_text(program, dims))
    if "plan" in emit:
        lo, hi = (full[0] if isinstance(full[0], tuple) else (full[0], full[0]))
        where = f"M={lo}..{hi}" if lo != hi else f"M={lo}"
        parts.append(f"== kernel plan ({where}, N={full[1]}, K={full[2]}) ==\n"
                     + plan_text(program, ((lo, hi), *full[1:])))
    return "\n\n".join(parts)


def explain_format(fmt: str) -> str:
    """`lrqc explain --format FMT`: the parameters of an element format (eXmY, intN, uintN or
    fixed(bits, max=V)) and every code with its bits, value and class."""
    try:
        params = formats.parameters(fmt)
        rows = formats.value_table(fmt)
    except ValueError as exc:
        raise InputError(f"--format: {exc}") from None
    w = max(len(k) for k, _ in params)
    lines = [f"{k:<{w}}  {v}" for k, v in params]
    bits = len(rows[0][1])
    lines += ["", f"{'code':>4}  {'bits':<{max(bits, 4)}}  {'value':>24}  class"]
    lines += [f"{c:>4}  {b:<{max(bits, 4)}}  {v!r:>24}  {k}" for c, b, v, k in rows]
    return "\n".join(lines)
