"""Minifloat element formats eXmY (among them the OCP MX v1.0 FP8/FP6/FP4), MX INT8, and
Microscaling blocks (docs/numerics.md, section 1).

Values are float64 numbers lying on the element grid; conversion always saturates (never Inf/NaN).
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

from ..errors import FormatError
from ..frontend.model import fp_format
from .rounding import round_values

# Any minifloat eXmY (sign, X >= 1 exponent bits, Y >= 0 mantissa bits, 1 + X + Y <= 8):
# bias = 2^(X-1) - 1, emin = 1 - bias, exponent field 0 holds the subnormals 0.m x 2^emin.
# Every encoding is a finite number (the OCP MX convention of FP6 / FP4), so
# emax = 2^(X-1) and max_normal = (2 - 2^-Y) 2^emax, except the two OCP FP8 formats, which
# keep their special encodings (never produced; conversion saturates to the max normal):
#   e5m2: exponent field 11111 is Inf/NaN, so emax 15, max 1.75 * 2^15 = 57344
#   e4m3: S.1111.111 is NaN (no Inf), so emax 8, max 1.75 * 2^8 = 448
# e3m2 (max 28), e2m3 (7.5) and e2m1 (6.0, grid 0, .5, 1, 1.5, 2, 3, 4, 6) follow the rule.
NAMED_FORMATS = ("e5m2", "e4m3", "e3m2", "e2m3", "e2m1")
SPECIAL_FORMATS = ("e5m2", "e4m3")  # OCP FP8: with NaN (and Inf for e5m2) encodings


class FpFormat(NamedTuple):
    """The numbers of one eXmY format."""

    exp_bits: int
    man_bits: int
    bias: int
    emin: int
    emax: int
    max_normal: float

    @property
    def min_subnormal(self) -> float:
        return 2.0 ** (self.emin - self.man_bits)


@lru_cache(maxsize=None)
def fp_params(name: str) -> FpFormat:
    """FpFormat of minifloat `name` ('e3m2'); ValueError for anything else."""
    xy = fp_format(name)
    if xy is None:
        raise FormatError(f"{name!r} is not a minifloat eXmY with X >= 1, Y >= 0, 1 + X + Y <= 8")
    x, y = xy
    bias = 2 ** (x - 1) - 1
    if name == "e5m2":  # IEEE-style: the top exponent field is Inf/NaN
        emax, top = 2**x - 2 - bias, 2.0 - 2.0**-y
    elif name == "e4m3":  # the top exponent field with mantissa 111 is NaN
        emax, top = 2**x - 1 - bias, 2.0 - 2.0 ** (1 - y)
    else:
        emax, top = 2**x - 1 - bias, 2.0 - 2.0**-y
    return FpFormat(x, y, bias, 1 - bias, emax, top * 2.0**emax)


def all_fp_formats() -> tuple[str, ...]:
    """Every eXmY of at most 8 bits (28 formats), by total bits then exponent bits."""
    return tuple(f"e{x}m{n - 1 - x}" for n in range(2, 9) for x in range(1, n))


# MX INT8 elements: two's complement fixed point with 6 fraction bits, q / 64, q in [-127, 127].
INT8_FRACTION_BITS = 6
INT8_QMAX = 127


def is_element(name: str) -> bool:
    """Whether `name` is an element format: any eXmY of at most 8 bits, or MX "int8"."""
    return name == "int8" or fp_format(name) is not None


def elem_emax(name: str) -> int:
    """Largest exponent of element format `name` (the `emax_elem` of the shared-scale rule)."""
    _check_elem(name)
    return 0 if name == "int8" else fp_params(name).emax


def elem_max(name: str) -> float:
    """Largest magnitude of element format `name` (int8: 127 / 64)."""
    _check_elem(name)
    return INT8_QMAX / 2.0**INT8_FRACTION_BITS if name == "int8" else fp_params(name).max_normal


def code_max(name: str) -> int:
    """Largest integer code |value| x 2^frac_bits of element format `name`."""
    return int(elem_max(name) * 2 ** frac_bits(name))


def fits_int8(name: str) -> bool:
    """Whether element format `name` runs on the integer units: its integer codes
    (value x 2^frac_bits) lie in [-127, 127] (e1m0..e1m6, e2m0..e2m4, e3m0 and MX int8)."""
    return code_max(name) <= INT8_QMAX


# Range of the E8M0 shared exponent (255 is NaN in the spec and is never produced).
SCALE_EMIN = -127
SCALE_EMAX = 127


def _check_elem(name: str) -> None:
    """Raise FormatError (a ValueError) unless `name` is a known element format."""
    if not is_element(name):
        raise FormatError(f"unknown element format {name!r}; expected int8 or a minifloat eXmY "
                         "(X >= 1, Y >= 0, 1 + X + Y <= 8)")


def _as_finite(x: np.ndarray) -> np.ndarray:
    """Return `x` as a float64 array, raising FormatError (a ValueError) on Inf/NaN."""
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise FormatError("values contain Inf or NaN")
    return x


def floor_log2(x: np.ndarray) -> np.ndarray:
    """Exact floor(log2|x|) as int64 for nonzero finite x (via frexp; 0 maps to -1075, unused)."""
    _, e = np.frexp(np.asarray(x, dtype=np.float64))
    return np.where(x == 0, -1075, e.astype(np.int64) - 1)


def round_to_format(
    x: np.ndarray, name: str, mode: str = "nearest", rng: np.random.Generator | None = None
) -> np.ndarray:
    """Round float64 values onto the grid of element format `name` (is_element).

    Floating formats: ulp = 2^(max(floor(log2|x|), emin) - man_bits), q = R(x / ulp) · ulp with
    rounding `mode` (see rounding.round_values), then saturate to ±max_normal. Zero stays zero.
    "int8": q = clip(R(x · 64), -127, 127) / 64.
    """
    _check_elem(name)
    x = _as_finite(x)
    if name == "int8":
        scale = 2.0**INT8_FRACTION_BITS
        q = np.clip(round_values(x * scale, mode, rng), -INT8_QMAX, INT8_QMAX)
        return q / scale
    f = fp_params(name)
    max_normal = f.max_normal
    exponent = np.maximum(floor_log2(x), f.emin) - f.man_bits
    scaled = np.ldexp(x, -exponent)  # exact: division by a power of two
    q = np.ldexp(round_values(scaled, mode, rng), exponent)
    return np.clip(q, -max_normal, max_normal)


def _blocked(x: np.ndarray, block: int, axis: int) -> tuple[np.ndarray, int]:
    """Move `axis` last and split it into (n_blocks, block); return the view and the axis index."""
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise FormatError(f"block must be a positive integer, got {block!r}")
    if x.ndim == 0:
        raise FormatError("mx quantization needs at least a 1-D array")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise FormatError(f"axis must be an integer, got {axis!r}")  # noqa: TRY004
    if not -x.ndim <= axis < x.ndim:
        raise FormatError(f"axis {axis} is out of range for an array of {x.ndim} dimensions")
    axis = int(axis) % x.ndim
    length = x.shape[axis]
    if length % block:
        raise FormatError(
            f"axis {axis} has length {length}, not a multiple of the block size {block}"
        )
    moved = np.moveaxis(x, axis, -1)
    return moved.reshape(moved.shape[:-1] + (length // block, block)), axis


def _unblocked(blocks: np.ndarray, axis: int) -> np.ndarray:
    """Inverse of `_blocked`: merge the last two axes and move the result back to `axis`."""
    merged = blocks.reshape(blocks.shape[:-2] + (blocks.shape[-2] * blocks.shape[-1],))
    return np.moveaxis(merged, -1, axis)


def mx_quantize(
    x: np.ndarray,
    elem: str,
    block: int = 32,
    axis: int = -1,
    mode: str = "nearest",
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """OCP MX quantization of `x` in blocks of `block` consecutive elements along `axis`.

    Per block: e = floor(log2(max|v|)) - elem_emax(elem), clamped to [-127, 127] (E8M0 range); an
    all-zero block gets e = -127 (its elements are all 0 whatever the scale). Elements are
    round_to_format(v / 2^e, elem, mode), saturating to the format's max. Returns `(values, exps)`:
    the element values (shape of x, float64, NOT multiplied by 2^e) and the int64 exponents (shape
    of x with the `axis` length divided by `block`). The axis length must be a multiple of `block`.
    """
    _check_elem(elem)
    x = _as_finite(x)
    blocks, axis = _blocked(x, block, axis)
    amax = np.max(np.abs(blocks), axis=-1)
    e = np.where(amax > 0, floor_log2(amax) - elem_emax(elem), SCALE_EMIN)
    e = np.clip(e, SCALE_EMIN, SCALE_EMAX).astype(np.int64)
    scaled = np.ldexp(blocks, -e[..., None])  # exact: division by a power of two
    values = round_to_format(scaled, elem, mode, rng)
    return _unblocked(values, axis), np.moveaxis(e, -1, axis)


def mx_dequantize(
    values: np.ndarray, exps: np.ndarray, block: int = 32, axis: int = -1
) -> np.ndarray:
    """Decode MX data: every element times 2^e of its block (the inverse layout of mx_quantize)."""
    values = _as_finite(values)
    blocks, axis = _blocked(values, block, axis)
    exps = np.asarray(exps)
    if not np.issubdtype(exps.dtype, np.integer):
        raise FormatError(f"exps must be integers, got dtype {exps.dtype}")
    exps = np.moveaxis(exps, axis, -1)
    if exps.shape != blocks.shape[:-1]:
        raise FormatError(
            f"exps has shape {np.moveaxis(exps, -1, axis).shape}, expected one exponent per block "
            f"of {block} along axis {axis} of values with shape {values.shape}"
        )
    return _unblocked(np.ldexp(blocks, exps[..., None]), axis)


def frac_bits(name: str) -> int:
    """The smallest f >= 0 such that every element value of `name` times 2^f is an integer
    (int8: 6; e2m1: 1; eXmY: max(0, Y - emin))."""
    _check_elem(name)
    if name == "int8":
        return INT8_FRACTION_BITS
    f = fp_params(name)
    return max(0, f.man_bits - f.emin)


# float type -> (mantissa bits, emin, emax) of IEEE-style float16 and bfloat16
_FLOAT16_TYPES = {"float16": (10, -14, 15), "bfloat16": (7, -126, 127)}


def exact_in(name: str, float_type: str) -> bool:
    """Whether every value of element format `name` (eXmY or MX int8) is exactly a
    `float_type` ("float16" or "bfloat16") number: each value's significant bits, counted from
    its own exponent (or the type's subnormal exponent, below its emin), fit the type's
    mantissa, and the largest value lies below its overflow."""
    if float_type not in _FLOAT16_TYPES:
        raise FormatError(f"float_type must be float16 or bfloat16, got {float_type!r}")
    man, emin, emax = _FLOAT16_TYPES[float_type]
    if name == "int8":
        values = np.arange(1, INT8_QMAX + 1) / 2.0**INT8_FRACTION_BITS
    else:
        f = fp_params(name)
        m = np.arange(1, 2 ** (f.man_bits + 1))
        e = np.arange(f.emin, f.emax + 1)
        values = (m[None, :] * np.ldexp(1.0, e[:, None] - f.man_bits)).ravel()
        values = values[values <= f.max_normal]
    if values.max() >= 2.0 ** (emax + 1):
        return False
    ulp = np.ldexp(1.0, np.maximum(floor_log2(values), emin) - man)
    return bool(np.all(np.mod(values, ulp) == 0))
