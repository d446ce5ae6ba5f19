"""Bit patterns of the element formats: encode values to codes, decode codes to values, and the
table of every code of a format (what `lrqc explain --format` prints).

A format is a word: a minifloat "eXmY" (sign-magnitude fields: sign, X exponent bits, Y
mantissa bits), "intN" (N-bit two's complement integers), "uintN" (plain N-bit integers), or a
fixed-point text "fixed(bits, max=V[, signed=true|false])" (the integer codes of intN / uintN
times the static scale V / 2^(bits-1), or V / 2^bits unsigned). Codes are uint8 arrays holding
the format's bits in the low bits of each byte.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..errors import FormatError
from ..frontend.model import MAX_FORMAT_BITS, fp_format, int_format
from . import minifloat

_FIXED_RE = re.compile(r"^fixed\(\s*(\d+)\s*,\s*max\s*=\s*([^,()\s]+)\s*"
                       r"(?:,\s*signed\s*=\s*(true|false)\s*)?\)$")


@dataclass(frozen=True)
class Format:
    """A parsed format: kind "fp" (minifloat), "int" (integer codes, times `scale`)."""

    name: str
    kind: str
    bits: int
    signed: bool = True
    scale: float = 1.0  # value of one integer code step (fixed point: V / 2^(bits-1) or 2^bits)

    @property
    def fp(self) -> minifloat.FpFormat:
        return minifloat.fp_params(self.name)


def parse_format(fmt: str) -> Format:
    """The Format of a format word or fixed(...) text; FormatError (an LrqcError and a
    ValueError) for anything else."""
    text = fmt.strip() if isinstance(fmt, str) else fmt
    if not isinstance(text, str):
        raise FormatError(f"a format is a word such as e3m2, int4 or fixed(4, max=1), got {fmt!r}")
    xy = fp_format(text)
    if xy is not None:
        return Format(text, "fp", 1 + xy[0] + xy[1])
    info = int_format(text)
    if info == (True, 1):  # int1: sign binarization, codes -1 and +1
        return Format(text, "sign", 1)
    if info is not None and 1 <= info[1] <= MAX_FORMAT_BITS:
        return Format(text, "int", info[1], info[0])
    m = _FIXED_RE.match(text)
    if m:
        bits, signed = int(m.group(1)), m.group(3) != "false"
        try:
            top = float(m.group(2))
        except ValueError:
            top = math.nan
        scale = top / 2.0 ** (bits - 1 if signed else bits) if 1 <= bits <= MAX_FORMAT_BITS \
            else 0.0
        if not (math.isfinite(top) and top > 0 and scale > 0):
            raise FormatError(f"{text}: fixed(bits, max=V) needs bits 1..{MAX_FORMAT_BITS} and "
                             "a positive finite V")
        return Format(text, "int", bits, signed, scale)
    raise FormatError(f"unknown format {text!r}: expected a minifloat eXmY (X >= 1, "
                     f"1 + X + Y <= {MAX_FORMAT_BITS}), int1..int{MAX_FORMAT_BITS}, "
                     f"uint1..uint{MAX_FORMAT_BITS} or fixed(bits, max=V[, signed=false])")


def _int_range(f: Format) -> tuple[int, int]:
    return (-(2 ** (f.bits - 1)), 2 ** (f.bits - 1) - 1) if f.signed else (0, 2**f.bits - 1)


def decode(codes: np.ndarray, fmt: str) -> np.ndarray:
    """float64 values of the bit patterns `codes` (integers in [0, 2^bits)) of format `fmt`:
    NaN / ±Inf for the special encodings of e4m3 (S.1111.111) and e5m2 (exponent 11111)."""
    f = parse_format(fmt)
    c = np.asarray(codes)
    if c.size and (not np.issubdtype(c.dtype, np.integer) or c.min() < 0
                   or c.max() >= 2**f.bits):
        raise FormatError(f"codes of {f.name} are integers in [0, {2**f.bits - 1}]")
    c = c.astype(np.int64)
    if f.kind == "sign":  # bit 0: +1, bit 1: -1
        return (1 - 2 * c).astype(np.float64)
    if f.kind == "int":
        q = c - (2**f.bits) * (c >> (f.bits - 1)) if f.signed else c
        return q.astype(np.float64) * f.scale
    p = f.fp
    sign = (c >> (f.bits - 1)) & 1
    e = (c >> p.man_bits) & (2**p.exp_bits - 1)
    m = c & (2**p.man_bits - 1)
    mag = np.where(e == 0, np.ldexp(m.astype(np.float64), p.emin - p.man_bits),
                   np.ldexp((m + 2**p.man_bits).astype(np.float64), e - p.bias - p.man_bits))
    top = e == 2**p.exp_bits - 1
    if f.name == "e5m2":
        mag = np.where(top, np.where(m == 0, np.inf, np.nan), mag)
    elif f.name == "e4m3":
        mag = np.where(top & (m == 2**p.man_bits - 1), np.nan, mag)
    return np.where(sign == 1, -mag, mag)


def encode(values: np.ndarray, fmt: str) -> np.ndarray:
    """uint8 bit patterns of `values` in format `fmt`: sign-magnitude fields for eXmY (-0.0 with
    the sign bit), two's complement for intN and signed fixed point, plain for uintN. The values
    must already lie on the format's grid (round_to_format, quantize): FormatError otherwise."""
    f = parse_format(fmt)
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:  # strings, ragged lists
        raise FormatError(f"{f.name}: the values cannot be read as numbers ({exc})") from None
    if not np.all(np.isfinite(v)):
        raise FormatError(f"{f.name}: only finite values are encoded (NaN / Inf never are)")
    if f.kind == "sign":
        if np.any(np.abs(v) != 1):
            first = float(v[np.abs(v) != 1].flat[0])
            raise FormatError(f"{f.name}: {first!r} is not a code of the format (sign "
                              "binarization: -1 or +1)")
        return (v < 0).astype(np.uint8)
    if f.kind == "int":
        q = np.rint(v / f.scale)  # on the grid: the value is code * scale, as decode makes it
        lo, hi = _int_range(f)
        bad = (q * f.scale != v) | (q < lo) | (q > hi)
        if np.any(bad):
            raise FormatError(f"{f.name}: {float(v[bad].flat[0])!r} is not on the format's grid "
                             f"(codes {lo}..{hi} times {f.scale!r})")
        return (q.astype(np.int64) & (2**f.bits - 1)).astype(np.uint8)
    half = 2 ** (f.bits - 1)
    mags = decode(np.arange(half), f.name)  # increasing, NaN / Inf at the top
    mags = mags[np.isfinite(mags)]
    a = np.abs(v)
    idx = np.minimum(np.searchsorted(mags, a), len(mags) - 1)
    bad = mags[idx] != a
    if np.any(bad):
        raise FormatError(f"{f.name}: {float(v[bad].flat[0])!r} is not a value of the format "
                          "(round it first: lrqc.reference.minifloat.round_to_format)")
    return (idx + half * np.signbit(v)).astype(np.uint8)


def value_class(value: float, f: Format) -> str:
    """zero, subnormal, normal, nan or inf (integer formats: zero or normal)."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf"
    if value == 0:
        return "zero"
    if f.kind == "fp" and abs(value) < 2.0**f.fp.emin:
        return "subnormal"
    return "normal"


def value_table(fmt: str) -> list[tuple[int, str, float, str]]:
    """Every code of format `fmt`: rows (code, bit string, value, class), code ascending."""
    f = parse_format(fmt)
    codes = np.arange(2**f.bits)
    values = decode(codes, f.name)
    return [(int(c), format(int(c), f"0{f.bits}b"), float(x), value_class(float(x), f))
            for c, x in zip(codes, values, strict=True)]


def integer_units(fmt: str) -> bool:
    """Whether the kernels' integer GEMM takes the format: every intN / uintN / fixed point,
    and the eXmY whose codes value x 2^frac_bits fit [-127, 127] (minifloat.fits_int8)."""
    f = parse_format(fmt)
    return f.kind in ("int", "sign") or minifloat.fits_int8(f.name)


def parameters(fmt: str) -> list[tuple[str, str]]:
    """(name, value) lines of the format's parameters, as `lrqc explain --format` prints them."""
    f = parse_format(fmt)
    units = "yes" if integer_units(f.name) else "no (float32 GEMM fallback)"
    if f.kind == "sign":
        return [("format", f.name), ("bits", "1"),
                ("encoding", "sign binarization: bit 0 is +1 (x >= 0), bit 1 is -1"),
                ("codes", "-1, +1 (times the group's mean |x|; stored as 2-bit codes when "
                          "packed)"), ("integer units", units)]
    if f.kind == "int":
        lo, hi = _int_range(f)
        rows = [("format", f.name), ("bits", str(f.bits)),
                ("encoding", "two's complement" if f.signed else "unsigned"),
                ("codes", f"{lo}..{hi}" + (
                    f" (calibrate=maxabs uses {lo + 1}..{hi}; calibrate=minmax and fixed "
                    "point use all)" if f.signed and f.scale == 1.0 and f.bits > 1 else "")),
                ("step", repr(f.scale)),
                ("min value", repr(lo * f.scale)), ("max value", repr(hi * f.scale))]
        return rows + [("integer units", units)]
    p = f.fp
    special = {"e5m2": "exponent 11111 is Inf (mantissa 0) / NaN, never produced",
               "e4m3": "S.1111.111 is NaN (no Inf), never produced"}
    return [("format", f.name), ("bits", f"{f.bits} (sign, {p.exp_bits} exponent, "
                                          f"{p.man_bits} mantissa)"),
            ("bias", str(p.bias)), ("emin", str(p.emin)), ("emax", str(p.emax)),
            ("max normal", repr(p.max_normal)), ("min normal", repr(2.0**p.emin)),
            ("min subnormal", repr(p.min_subnormal) if p.man_bits else "none (no mantissa bits)"),
            ("specials", special.get(f.name, "none: every encoding is finite")),
            ("conversion", "saturates to ± max normal"),
            ("frac bits", str(minifloat.frac_bits(f.name))),
            ("integer units", units)]
