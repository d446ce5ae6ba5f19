"""Rule tables of the language: entry keys, words, calls, their parameters and DEFAULTS.

This is the one place defaults are defined; `lrqc explain --defaults` prints DEFAULTS_DOC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .model import (
    FLOAT_TYPES,
    NAMED_FP_FORMATS,
    PACK_CHOICES,
    Calibration,
    Granularity,
    Quant,
    Rounding,
    fp_format,
)

ENTRY_KEYS = ("a", "b", "product", "accumulate", "output", "static")
GRANULARITY_WORDS = ("per_tensor", "per_channel")
GRANULARITY_CALLS = ("per_vector", "per_block")
RESIDUAL_CALLS = ("lowrank", "dense", "sparse")
INT_WORDS = tuple(f"int{b}" for b in range(1, 9)) + tuple(f"uint{b}" for b in range(1, 9))
FORMAT_WORDS = INT_WORDS + NAMED_FP_FORMATS  # and any eXmY of at most 8 bits (model.fp_format)
FIXED_CALL = "fixed"  # fixed(bits, max=V, signed=true): fixed point with a static scale
QUANT_OPTIONS = ("round", "calibrate", "scale_round", "seed", "pad", "pack")
ACCUMULATE_TYPES = ("int32", "int64")
STATIC_CHOICES = ("a", "b", "none")
LOWRANK_OTHER = ("exact", "packed")  # lowrank(other=...): what a's term multiplies
MAX_BITS = 8
MAX_SCALE_BITS = 16
# Bounds of the integer and float parameters (docs/language-limits.md). Sizes are bounded again
# against M, N, K by bind_dims (ranks <= the operand's smaller side, at most MAX_ELEMENTS values).
MAX_RANK = 1 << 20  # rank and oversample
MAX_POWER_ITERS = 64
MAX_SEED = (1 << 32) - 1
MAX_VECTOR = 1 << 16  # V of per_vector(V) / per_block(V)
FIXED_MIN_STEP = 2.0**-126  # fixed(bits, max=V): its step must be a normal float32
FIXED_MAX = float((2 - 2.0**-23) * 2.0**127)  # ... and V at most float32's largest
MAX_THRESHOLD = 1e6  # sparse(threshold=...): above about K / 2 nothing is kept anyway


@dataclass(frozen=True)
class Param:
    """A keyword parameter: `kind` names a reader in elaborate.READERS; `arg` parametrizes it."""

    kind: str
    default: Any
    arg: Any = None
    doc: str = ""


# Parameters of each call, with defaults. Required parameters have default None.
CALLS: dict[str, dict[str, Param]] = {
    "lowrank": {
        "rank": Param("int", 1, (1, MAX_RANK), "rank r of the residual factors"),
        "method": Param("choice", "rsvd", ("sketch", "rsvd", "svd"), "factorization method"),
        "oversample": Param("int", 8, (0, MAX_RANK), "extra sketch columns p (rsvd)"),
        "power_iters": Param("int", 1, (0, MAX_POWER_ITERS), "power iterations q (sketch, rsvd)"),
        "seed": Param("int", 0, (0, MAX_SEED), "seed of the Gaussian test matrix"),
        "other": Param("choice", "exact", LOWRANK_OTHER,
                       "a's term only: multiply the exact B, or B as packed (its codes + terms)"),
    },
    "product": {  # `product: lowrank(...)` (LRAMM)
        "rank": Param("int", None, (1, MAX_RANK), "rank r of both operands' RSVD"),
        "method": Param("choice", "rsvd", ("rsvd", "svd"), "factorization method"),
        "oversample": Param("int", 8, (0, MAX_RANK), "extra sketch columns p"),
        "power_iters": Param("int", 1, (0, MAX_POWER_ITERS), "power iterations q"),
        "seed": Param("int", 0, (0, MAX_SEED), "seed of the Gaussian test matrices"),
        "bits": Param("bits3", (8, 8, 8), None, "bits of (U_A, V_A and U_B, V_B) factors"),
    },
    "dense": {},
    "sparse": {
        "threshold": Param("float", 0.5, (0.0, MAX_THRESHOLD), "keep |x| >= 2*threshold*mean|x|"),
        "max_density": Param("float", 0.35, (0.0, 1.0), "above this density use the dense operand"),
    },
    "lplr": {
        "rank": Param("int", None, (1, MAX_RANK), "rank m of the factors"),
        "left": Param("intfmt", "int4", None, "format (bits) of L, min-max quantized"),
        "right": Param("intfmt", "int8", None, "format (bits) of R, min-max quantized"),
        "sketch": Param("choice", "gaussian", ("gaussian",), "sketch matrix"),
        "seed": Param("int", 0, (0, MAX_SEED), "seed of the sketch"),
        "method": Param("choice", "lplr", ("lplr", "dsvd"), "LPLR, or the direct-SVD baseline"),
        "power_iters": Param("int", 0, (0, MAX_POWER_ITERS), "power iterations on the sketch"),
        "normalize_shift": Param("bool", False, None, "fit alpha*L*R + beta"),
    },
    "per_vector": {
        "scale": Param("scale", "float32", "per_vector", "float32, or uintM per_channel"),
    },
    "per_block": {
        "scale": Param("scale", "e8m0", "per_block", "shared exponent e8m0"),
    },
    "fixed": {  # `a: fixed(8, max=4.0)`: the format of a quantizer term (round= nearest_away)
        "max": Param("float", None, None, "V: codes cover [-V, V) (signed) or [0, V)"),
        "signed": Param("bool", True, None, "two's complement codes, or unsigned"),
    },
}

# Positional parameters of calls: (name, reader kind, arg).
POSITIONAL: dict[str, tuple[tuple[str, str, Any], ...]] = {
    "per_vector": (("vector", "int", (1, MAX_VECTOR)),),
    "per_block": (("vector", "int", (1, MAX_VECTOR)),),
    "fixed": (("bits", "int", (1, MAX_BITS)),),
    "dense": (("quant", "quant", None),),
    "sparse": (("quant", "quant", None),),
}
REQUIRED_POSITIONAL = {"per_vector": 1, "per_block": 1, "fixed": 1, "dense": 0, "sparse": 0}

# Options of a quantizer term (`int8 per_channel round=floor ...`).
QUANT_PARAMS: dict[str, Param] = {
    "round": Param("choice", "nearest", tuple(r.value for r in Rounding), "rounding of x / s"),
    "calibrate": Param("choice", "maxabs", ("maxabs", "minmax"),
                       "maxabs (symmetric); unsigned formats default to minmax"),
    "scale_round": Param("choice", "ceil", ("ceil", "nearest"), "rounding of two-level scales"),
    "seed": Param("int", 0, (0, MAX_SEED), "seed of stochastic rounding"),
    "pad": Param("bool", True, None, "zero-pad K to a multiple of V"),
    "pack": Param("choice", "auto", PACK_CHOICES,
                  "static operand's integer codes: dense (N bits each) or byte"),
}

TOP_DEFAULTS = {"accumulate": "int32", "output": "float32", "static": "b",
                "granularity": "per_tensor"}


# ---- rules on a whole quantizer: the problem as a message, or None (elaborate reports it) ----

def fixed_max_problem(fmt: str, top: float) -> str | None:
    """Why fixed(bits, max=top) of integer format fmt is not a format (max not positive, or a
    step or max beyond float32's normal range), or None."""
    if not top > 0:  # also NaN
        return "must be positive (the largest value the codes reach)"
    step = Quant(fmt, fixed_max=top).fixed_scale
    if FIXED_MIN_STEP <= step and top <= FIXED_MAX:
        return None
    return (f"gives a step of {step:.3g}; the step must be at least 2^-126 (a normal float32: the "
            f"kernels scale in float32) and max at most {FIXED_MAX:.4g} (float32's largest)")


def minifloat_problem(word: str) -> str | None:
    """Why an eXmY-shaped word is not a format (out of range), or None."""
    xy = word[1:].split("m") if word.startswith("e") else ()
    if len(xy) == 2 and all(c.isdigit() for c in xy) and word != "e8m0":
        return (f"minifloat '{word}' is out of range: eXmY needs X >= 1 exponent bits and "
                f"1 + X + Y <= {MAX_BITS} bits")
    return None


def fixed_problem(granularity: str, options: set[str]) -> str | None:
    """fixed(...) has one static scale: per_tensor only, no calibrate=."""
    if "calibrate" in options:
        return ("fixed(...) has a static scale (max / 2^(bits-1), unsigned max / 2^bits): "
                "calibrate= does not apply")
    if granularity != "per_tensor":
        return (f"fixed(...) has one static scale for the whole operand: {granularity} does "
                "not apply (use per_tensor or nothing)")
    return None


def takes_minmax(fmt: str, granularity: object) -> bool:
    """Whether a quantizer of this format and granularity can be min-max calibrated (integer
    formats, not per_block: quant_problem)."""
    return fp_format(fmt) is None and granularity != Granularity.PER_BLOCK


def quant_problem(q: Quant) -> str | None:
    """What is wrong with a quantizer's combination of format, granularity and options."""
    fp = fp_format(q.fmt) is not None
    if q.granularity == Granularity.PER_BLOCK and not (fp or q.fmt == "int8"):
        return (f"per_block (Microscaling) elements must be int8 or a minifloat eXmY such as "
                f"{', '.join(NAMED_FP_FORMATS)}, found '{q.fmt}'")
    if q.granularity == Granularity.PER_VECTOR and fp:
        return (f"per_vector needs an integer element format, found '{q.fmt}' "
                "(use per_block(32, scale=e8m0) for Microscaling)")
    if q.calibrate == Calibration.MINMAX and fp:
        return f"calibrate=minmax needs an integer format, found '{q.fmt}'"
    if q.calibrate == Calibration.MINMAX and q.granularity == Granularity.PER_BLOCK:
        return "calibrate=minmax is not defined for per_block (Microscaling)"
    if q.pack != "auto" and (fp or q.granularity == Granularity.PER_BLOCK):
        what = f"'{q.fmt}' values" if fp else "per_block elements"
        return (f"pack= stores integer codes: {what} take none (integer formats intN, uintN "
                "and fixed(...) do)")
    return None


def pack_problem(q: Quant, role: str, static: str) -> str | None:
    """pack= belongs to the static operand's own quantizer."""
    if q.pack == "auto" or role == static:
        return None
    why = ("no operand is static (static: none)" if static == "none"
           else f"'{role}' is quantized per call (static: {static})")
    return f"pack= sets how the static operand's codes are stored; {why}"


def defaults_doc() -> str:
    """Every default of the language, as printed by `lrqc explain --defaults`."""
    rows = [("scheme", k, str(v), "") for k, v in TOP_DEFAULTS.items()]
    rows += [("quantizer", k, _fmt(p.default), p.doc) for k, p in QUANT_PARAMS.items()]
    for call, params in CALLS.items():
        name = "product: lowrank" if call == "product" else call
        rows += [(name, k, _fmt(p.default), p.doc) for k, p in params.items()]
    rows.append(("dense/sparse", "quant", "operand's format, per_tensor, same round", ""))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}".rstrip()
                     for r in rows)


def _fmt(v: object) -> str:
    if v is None:
        return "(required)"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "(" + ", ".join(map(str, v)) + ")"
    return str(v)


def all_first_words() -> tuple[str, ...]:
    """Words that may start an operand spec (for suggestions)."""
    return FORMAT_WORDS + FLOAT_TYPES + ("lplr", FIXED_CALL)
