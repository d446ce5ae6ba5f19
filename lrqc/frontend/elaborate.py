"""elaborate(): syntax tree -> typed Scheme. Checks every word against the rule tables in
schema.py, fills defaults, and reports errors at the offending span with a suggestion."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from typing import Any

from ..errors import SchemeError, nearest_word
from . import schema as S
from . import syntax as sx
from .model import (
    FLOAT_TYPES,
    NAMED_FP_FORMATS,
    Calibration,
    Dense,
    FloatOperand,
    Granularity,
    LowRank,
    LowRankProduct,
    LplrOperand,
    Operand,
    Quant,
    QuantOperand,
    Residual,
    Rounding,
    Scheme,
    Sparse,
    fp_format,
    int_format,
)

ParamValue = sx.Atom | sx.Term  # what the readers of parameter values are given


def _err(msg: str, node: object, choices: Collection[str] | None = None,
         word: str | None = None) -> SchemeError:
    hint = nearest_word(word, choices) if (choices and word) else None
    return SchemeError(msg, getattr(node, "span", None), hint)


def _what(node: object) -> str:
    if isinstance(node, sx.Word):
        return f"'{node.name}'"
    if isinstance(node, sx.Num):
        return f"the number {node.text}"
    if isinstance(node, sx.Tup):
        return "a tuple"
    if isinstance(node, sx.Call):
        return f"'{node.name}(...)'"
    if isinstance(node, sx.Option):
        return f"the option '{node.key}='"
    if isinstance(node, sx.Term):
        return "several words"
    return "something else"


def _single(node: ParamValue) -> ParamValue:
    """A Term of one atom stands for that atom."""
    if isinstance(node, sx.Term) and len(node.atoms) == 1:
        return node.atoms[0]
    return node


# ---- readers of parameter values, keyed by Param.kind -------------------------------------------

def _read_int(node: ParamValue, name: str, arg: Any) -> int:
    node = _single(node)
    if not isinstance(node, sx.Num) or not isinstance(node.value, int):
        raise _err(f"{name} must be an integer, found {_what(node)}", node)
    lo, hi = arg or (None, None)
    if lo is not None and node.value < lo:
        raise _err(f"{name} must be >= {lo}, found {node.value}", node)
    if hi is not None and node.value > hi:
        raise _err(f"{name} must be <= {hi}, found {node.value}", node)
    return node.value


def _read_float(node: ParamValue, name: str, arg: Any) -> float:
    node = _single(node)
    if not isinstance(node, sx.Num):
        raise _err(f"{name} must be a number, found {_what(node)}", node)
    lo, hi = arg or (None, None)
    v = float(node.value)
    if lo is not None and v < lo:
        raise _err(f"{name} must be >= {lo:g}, found {node.text}", node)
    if hi is not None and v > hi:
        raise _err(f"{name} must be <= {hi:g}, found {node.text}", node)
    return v


def _read_choice(node: ParamValue, name: str, choices: Sequence[str]) -> str:
    node = _single(node)
    if not isinstance(node, sx.Word):
        raise _err(f"{name} must be one of {', '.join(choices)}; found {_what(node)}", node)
    if node.name not in choices:
        raise _err(f"unknown {name} '{node.name}'; expected one of {', '.join(choices)}",
                   node, choices, node.name)
    return node.name


def _read_bool(node: ParamValue, name: str, _arg: Any) -> bool:
    node = _single(node)
    if isinstance(node, sx.Word) and node.name in ("true", "false"):
        return node.name == "true"
    raise _err(f"{name} must be true or false, found {_what(node)}", node)


def _read_intfmt(node: ParamValue, name: str, _arg: Any) -> str:
    node = _single(node)
    if isinstance(node, sx.Word):
        _check_bits(node)
        if int_format(node.name):
            return node.name
    raise _err(f"{name} must be an integer format int1..int8 or uint1..uint8, found {_what(node)}",
               node, S.INT_WORDS, getattr(node, "name", None))


def _read_bits3(node: ParamValue, name: str, _arg: Any) -> tuple[int, ...]:
    node = _single(node)
    if not isinstance(node, sx.Tup) or len(node.items) != 3:
        raise _err(f"{name} must be a tuple of 3 bit widths such as (8, 8, 8)", node)
    for item in node.items:
        _read_int(item, f"each of {name}", (1, S.MAX_BITS))
    return tuple(int(i.value) for i in node.items)


def _read_scale(node: ParamValue, name: str, granularity: str) -> str:
    """per_vector: float32 | uintM [per_channel]; per_block: e8m0."""
    atoms = node.atoms if isinstance(node, sx.Term) else (node,)
    first = atoms[0]
    mx = granularity == Granularity.PER_BLOCK
    allowed = ("e8m0",) if mx else ("float32", "uint6 per_channel")
    if not isinstance(first, sx.Word):
        raise _err(f"scale must be {' or '.join(allowed)}, found {_what(first)}", first)
    if mx:
        if first.name != "e8m0" or len(atoms) > 1:
            raise _err(f"per_block scales must be e8m0 (OCP Microscaling), found '{first.name}'",
                       first, ("e8m0",), first.name)
        return "e8m0"
    if first.name == "float32" and len(atoms) == 1:
        return "float32"
    info = int_format(first.name)
    if info is None or info[0]:
        raise _err("per_vector scale must be float32 or an unsigned integer such as "
                   f"'uint6 per_channel' (two-level VS-Quant scales), found '{first.name}'",
                   first, ("float32", "uint4", "uint6", "uint8"), first.name)
    if not 1 <= info[1] <= S.MAX_SCALE_BITS:
        raise _err(f"scale bit width {info[1]} is out of range 1..{S.MAX_SCALE_BITS}", first)
    for extra in atoms[1:]:
        if not (isinstance(extra, sx.Word) and extra.name == "per_channel"):
            raise _err(f"two-level scales have a float factor per channel: expected 'per_channel', "
                       f"found {_what(extra)}", extra, ("per_channel",),
                       getattr(extra, "name", None))
    return first.name


READERS: dict[str, Callable[[ParamValue, str, Any], Any]] = {
    "int": _read_int, "float": _read_float, "choice": _read_choice, "bool": _read_bool,
    "intfmt": _read_intfmt, "bits3": _read_bits3, "scale": _read_scale,
}


def _read_call(call: sx.Call, table_name: str, base: Quant | None = None) -> dict[str, Any]:
    """Keyword and positional arguments of a call, checked against schema.CALLS/POSITIONAL."""
    params = S.CALLS[table_name]
    positional = S.POSITIONAL.get(call.name, ())
    out, seen, npos = {}, {}, 0
    for arg in call.args:
        if isinstance(arg, sx.Positional):
            if npos >= len(positional):
                raise _err(f"{call.name}() takes {len(positional)} positional argument"
                           f"{'s' if len(positional) != 1 else ''}; use key=value for the rest "
                           f"({', '.join(params) or 'none'})", arg)
            pname, kind, parg = positional[npos]
            npos += 1
            if kind == "quant":
                out[pname] = read_quant(arg.value, base=base)
            else:
                out[pname] = READERS[kind](arg.value, pname, parg)
            continue
        if arg.key not in params:
            raise _err(f"{call.name}() has no parameter '{arg.key}'; parameters: "
                       f"{', '.join(params) or 'none'}", arg, list(params), arg.key)
        if arg.key in seen:
            raise _err(f"duplicate parameter '{arg.key}' in {call.name}()", arg)
        seen[arg.key] = arg
        p = params[arg.key]
        out[arg.key] = READERS[p.kind](arg.value, arg.key, p.arg)
    if npos < S.REQUIRED_POSITIONAL.get(call.name, 0):
        need, eg = ("bits", "fixed(8, max=4.0)") if call.name == "fixed" else \
            ("vector V", f"{call.name}(32)")
        raise _err(f"{call.name}() needs its {need} as first argument, e.g. {eg}", call)
    for key, p in params.items():
        if key not in out:
            if p.default is None:
                raise _err(f"{call.name}() needs {key}=...", call)
            out[key] = p.default
    return out


def _check_bits(word: sx.Word) -> None:
    info = int_format(word.name)
    if info and not 1 <= info[1] <= S.MAX_BITS:
        raise _err(f"bit width {info[1]} of '{word.name}' is out of range: integer formats are "
                   f"int1..int{S.MAX_BITS} and uint1..uint{S.MAX_BITS}", word)


# ---- quantizers ---------------------------------------------------------------------------------

def _read_format(first: object) -> dict[str, Any]:
    """The fields a quantizer term's first atom gives: fmt (and fixed_max for fixed(...))."""
    if isinstance(first, sx.Call) and first.name == S.FIXED_CALL:
        args = _read_call(first, S.FIXED_CALL)
        bits, top = args["bits"], args["max"]
        fmt = f"{'' if args['signed'] else 'u'}int{bits}"
        if why := S.fixed_max_problem(fmt, top):
            raise _err(f"fixed(): max={top:g} {why}", first)
        return {"fmt": fmt, "fixed_max": top}
    if isinstance(first, sx.Word) and (first.name in S.FORMAT_WORDS or fp_format(first.name)):
        return {"fmt": first.name}
    if isinstance(first, sx.Word):
        _check_bits(first)
        if why := S.minifloat_problem(first.name):
            raise _err(why, first)
    raise _err(f"expected an element format (int1..int8, uint1..uint8, a minifloat eXmY such "
               f"as {', '.join(NAMED_FP_FORMATS)}, or fixed(bits, max=V)), found {_what(first)}",
               first, S.all_first_words(), getattr(first, "name", None))


def read_quant(term: sx.Term, base: Quant | None = None) -> Quant:
    """A quantizer term: FORMAT [granularity] [options]. `base` supplies defaults for residual
    quantizers (operand's format, per_tensor, same rounding and calibration)."""
    first = term.atoms[0]
    fields: dict[str, Any] = _read_format(first)
    if base is not None:
        fields.update(round=base.round, calibrate=base.calibrate)
    gran_node: sx.Word | sx.Call | None = None
    for atom in term.atoms[1:]:
        if isinstance(atom, sx.Word) and atom.name in S.GRANULARITY_WORDS:
            _once(gran_node, atom, "granularity")
            gran_node, fields["granularity"] = atom, atom.name
        elif isinstance(atom, sx.Call) and atom.name in S.GRANULARITY_CALLS:
            _once(gran_node, atom, "granularity")
            gran_node = atom
            args = _read_call(atom, atom.name)
            fields.update(granularity=atom.name, vector=args["vector"], scale=args["scale"])
        elif isinstance(atom, sx.Option):
            p = S.QUANT_PARAMS.get(atom.key)
            if p is None:
                raise _err(f"unknown quantizer option '{atom.key}='; options: "
                           f"{', '.join(S.QUANT_PARAMS)}", atom, S.QUANT_PARAMS, atom.key)
            if atom.key in fields.get("_seen", ()):
                raise _err(f"duplicate option '{atom.key}='", atom)
            fields.setdefault("_seen", set()).add(atom.key)
            fields[atom.key] = READERS[p.kind](atom.value, atom.key, p.arg)
            if atom.key == "pack" and base is not None:
                raise _err("pack= sets the storage of the static operand's own codes; residual "
                           "quantizers take none", atom)
        elif isinstance(atom, sx.Call) and atom.name in S.RESIDUAL_CALLS + ("lplr",):
            raise _err(f"residual terms are added with '+': write '+ {atom.name}(...)'", atom)
        elif isinstance(atom, sx.Word) and atom.name in S.GRANULARITY_CALLS:
            raise _err(f"{atom.name} needs a vector length, e.g. {atom.name}(32)", atom)
        else:
            word = getattr(atom, "name", None)
            choices = (S.GRANULARITY_WORDS + S.GRANULARITY_CALLS
                       + tuple(f"{k}=" for k in S.QUANT_PARAMS))
            raise _err(f"expected a granularity ({', '.join(S.GRANULARITY_WORDS)}, per_vector(V), "
                       f"per_block(V)) or an option ({', '.join(S.QUANT_PARAMS)}), "
                       f"found {_what(atom)}",
                       atom, choices, word)
    seen = fields.pop("_seen", set())
    if "fixed_max" in fields:
        if why := S.fixed_problem(fields.get("granularity", "per_tensor"), seen):
            raise _err(why, term)
        fields["calibrate"] = Calibration.MAXABS  # static scale; round half away from zero
        if "round" not in seen:
            fields["round"] = Rounding.NEAREST_AWAY
    elif "calibrate" not in seen and base is None and fields["fmt"].startswith("uint"):
        fields["calibrate"] = "minmax"  # unsigned formats are asymmetric unless told otherwise
    elif "calibrate" not in seen and base is not None and not S.takes_minmax(
            fields["fmt"], fields.get("granularity")):
        fields["calibrate"] = Calibration.MAXABS  # the operand's min-max does not apply here
    q = Quant(**fields, span=first.span)
    return _normalize(_check_quant(q, term))


def _once(prev: sx.Word | sx.Call | None, node: object, what: str) -> None:
    if prev is not None:
        where = f" (first at column {prev.span.column})" if prev.span is not None else ""
        raise _err(f"{what} given twice{where}", node)


def _check_quant(q: Quant, node: object) -> Quant:
    if why := S.quant_problem(q):
        raise _err(why, node)
    return q


def _normalize(q: Quant) -> Quant:
    """Canonical form: fields that have no effect are reset, so equal meaning compares equal."""
    if q.granularity not in (Granularity.PER_VECTOR, Granularity.PER_BLOCK):
        q = replace(q, vector=0, scale="float32", pad=True)
    if not int_format(q.scale):
        q = replace(q, scale_round="ceil")
    if q.round != Rounding.STOCHASTIC:
        q = replace(q, seed=0)
    if q.bits == 8:
        q = replace(q, pack="auto")  # one code per byte either way
    return q


# ---- operands and schemes -----------------------------------------------------------------------

def read_operand(entry: sx.Entry) -> Operand:
    terms = entry.spec.terms
    head = terms[0]
    first = head.atoms[0]
    if isinstance(first, sx.Word) and first.name in FLOAT_TYPES:
        if len(head.atoms) > 1:
            raise _err(f"a {first.name} operand takes no granularity or options", head.atoms[1])
        if len(terms) > 1:
            raise _err(f"residual terms need a quantized operand; '{entry.key}' is {first.name}",
                       terms[1])
        return FloatOperand(first.name, first.span)
    if isinstance(first, sx.Call) and first.name == "lplr":
        if len(head.atoms) > 1 or len(terms) > 1:
            raise _err("lplr(...) stands alone: it replaces the operand by its factors",
                       terms[1] if len(terms) > 1 else head.atoms[1])
        return LplrOperand(**_read_call(first, "lplr"), span=first.span)
    quant = read_quant(head)
    residuals = tuple(_read_residual(t, quant, entry.key) for t in terms[1:])
    return QuantOperand(quant, residuals, head.span)


def _read_residual(term: sx.Term, base: Quant, role: str) -> Residual:
    call = term.atoms[0]
    if not isinstance(call, sx.Call) or call.name not in S.RESIDUAL_CALLS or len(term.atoms) > 1:
        node = call if len(term.atoms) == 1 or not isinstance(call, sx.Call) else term.atoms[1]
        raise _err("expected a residual term lowrank(...), dense(...) or sparse(...), "
                   f"found {_what(node)}", node, S.RESIDUAL_CALLS, getattr(node, "name", None))
    mx = base.granularity == Granularity.PER_BLOCK
    default_q = _normalize(Quant(base.fmt, Granularity.PER_TENSOR, round=base.round,
                                 calibrate=Calibration.MAXABS if mx else base.calibrate))
    args = _read_call(call, call.name, base=default_q)
    if call.name == "lowrank":
        given = next((arg for arg in call.args if isinstance(arg, sx.Keyword)
                      and arg.key == "other"), None)
        if given is not None and role != "a":
            raise _err(f"other= applies to a's lowrank term (what L_A F_Aᵀ multiplies: the "
                       f"exact B or B as packed); '{role}:' lowrank terms multiply A' as the "
                       "kernel computes it", given)
        if args["method"] == "sketch" and args["rank"] != 1:
            raise _err(f"method=sketch computes a rank-1 residual; use method=rsvd for rank "
                       f"{args['rank']}", call)
        return LowRank(**args, span=call.span)
    quant = args.pop("quant", default_q)
    if call.name == "dense":
        return Dense(quant, span=call.span)
    return Sparse(args["threshold"], args["max_density"], quant, span=call.span)


def _read_top_word(entry: sx.Entry, choices: Sequence[str]) -> str:
    spec = entry.spec
    if len(spec.terms) != 1 or len(spec.terms[0].atoms) != 1:
        raise _err(f"'{entry.key}:' takes one word: {', '.join(choices)}", spec.terms[0])
    return _read_choice(spec.terms[0].atoms[0], entry.key, choices)


def elaborate(decl: sx.SchemeDecl) -> Scheme:
    """Typed Scheme of one `scheme NAME { ... }` declaration."""
    entries: dict[str, sx.Entry] = {}
    for e in decl.entries:
        if e.key not in S.ENTRY_KEYS:
            raise _err(f"unknown entry '{e.key}:'; entries: {', '.join(S.ENTRY_KEYS)}",
                       e, S.ENTRY_KEYS, e.key)
        if e.key in entries:
            first = entries[e.key].span
            where = f" (first given at line {first.line})" if first is not None else ""
            raise _err(f"duplicate entry '{e.key}:'{where}", e)
        entries[e.key] = e
    top: dict[str, str] = {}
    if "accumulate" in entries:
        top["accumulate"] = _read_top_word(entries["accumulate"], S.ACCUMULATE_TYPES)
    if "output" in entries:
        top["output"] = _read_top_word(entries["output"], FLOAT_TYPES)
    if "static" in entries:
        top["static"] = _read_top_word(entries["static"], S.STATIC_CHOICES)
    product: LowRankProduct | None = None
    if "product" in entries:
        e = entries["product"]
        head = e.spec.terms[0].atoms[0]
        if (len(e.spec.terms) != 1 or len(e.spec.terms[0].atoms) != 1
                or not isinstance(head, sx.Call) or head.name != "lowrank"):
            raise _err("product: takes one lowrank(rank=..., ...) (LRAMM)", head, ("lowrank",),
                       getattr(head, "name", None))
        product = LowRankProduct(**_read_call(head, "product"), span=head.span)
    ops: dict[str, Operand] = {}
    for role in ("a", "b"):
        if role in entries:
            ops[role] = read_operand(entries[role])
        elif product is None:
            raise _err(f"scheme '{decl.name}' has no '{role}:' entry (or give 'product:')", decl)
        else:
            ops[role] = FloatOperand()
    if product is not None:
        for role in ("a", "b"):
            if role in entries and not isinstance(ops[role], FloatOperand):
                raise _err(f"'product:' replaces the operands: '{role}:' must be a float "
                           "operand or absent", entries[role])
    static = top.get("static", "b")
    for role, op in ops.items():  # pack= belongs to the static operand's own quantizer
        if isinstance(op, QuantOperand) and (why := S.pack_problem(op.quant, role, static)):
            raise _err(why, op.quant)
    for role in ("a", "b"):
        if isinstance(ops[role], LplrOperand) and role != static:
            raise _err(f"lplr(...) factorizes a static operand once; '{role}' is not static "
                       f"(static: {static})", ops[role])
    return Scheme(decl.name, ops["a"], ops["b"], product, span=decl.span, **top)
