"""OCP MX v1.0 element formats (FP8/FP6/FP4, INT8) and Microscaling blocks (docs/numerics.md,
section 1).

Values are float64 numbers lying on the element grid; conversion always saturates (never Inf/NaN).
"""

from __future__ import annotations

import numpy as np

from .rounding import round_values

# name -> (exp_bits, man_bits, emax, max_normal), OCP Microscaling Formats (MX) v1.0, section 5.3.
# bias = 2^(exp_bits - 1) - 1, emin = 1 - bias; subnormals have exponent emin (step 2^(emin - man)).
#   e5m2: bias 15, emin -14, min subnormal 2^-16  (Inf/NaN encodings exist but are never produced)
#   e4m3: bias 7,  emin -6,  min subnormal 2^-9   (no Inf; S.1111.111 is NaN, so max is 1.75 * 2^8)
#   e3m2: bias 3,  emin -2,  min subnormal 2^-4   (no Inf/NaN)
#   e2m3: bias 1,  emin 0,   min subnormal 2^-3   (no Inf/NaN)
#   e2m1: bias 1,  emin 0,   min subnormal 0.5    (no Inf/NaN; grid 0, .5, 1, 1.5, 2, 3, 4, 6)
FP_FORMATS: dict[str, tuple[int, int, int, float]] = {
    "e5m2": (5, 2, 15, 57344.0),
    "e4m3": (4, 3, 8, 448.0),
    "e3m2": (3, 2, 4, 28.0),
    "e2m3": (2, 3, 2, 7.5),
    "e2m1": (2, 1, 2, 6.0),
}

# MX INT8 elements: two's complement fixed point with 6 fraction bits, q / 64, q in [-127, 127].
INT8_FRACTION_BITS = 6
INT8_QMAX = 127

# Largest exponent of each element format (the `emax_elem` of the shared-scale rule).
ELEM_EMAX: dict[str, int] = {name: fmt[2] for name, fmt in FP_FORMATS.items()} | {"int8": 0}

# Largest magnitude of each element format.
ELEM_MAX: dict[str, float] = {name: fmt[3] for name, fmt in FP_FORMATS.items()} | {
    "int8": INT8_QMAX / 2.0**INT8_FRACTION_BITS
}

# Range of the E8M0 shared exponent (255 is NaN in the spec and is never produced).
SCALE_EMIN = -127
SCALE_EMAX = 127


def _check_elem(name: str) -> None:
    """Raise ValueError unless `name` is a known element format."""
    if name not in ELEM_EMAX:
        raise ValueError(f"unknown element format {name!r}; expected one of {', '.join(ELEM_EMAX)}")


def _as_finite(x: np.ndarray) -> np.ndarray:
    """Return `x` as a float64 array, raising ValueError on Inf/NaN."""
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("values contain Inf or NaN")
    return x


def floor_log2(x: np.ndarray) -> np.ndarray:
    """Exact floor(log2|x|) as int64 for nonzero finite x (via frexp; 0 maps to -1075, unused)."""
    _, e = np.frexp(np.asarray(x, dtype=np.float64))
    return np.where(x == 0, -1075, e.astype(np.int64) - 1)


def round_to_format(
    x: np.ndarray, name: str, mode: str = "nearest", rng: np.random.Generator | None = None
) -> np.ndarray:
    """Round float64 values onto the grid of element format `name` (a key of ELEM_EMAX).

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
    exp_bits, man_bits, _, max_normal = FP_FORMATS[name]
    emin = 2 - 2 ** (exp_bits - 1)
    exponent = np.maximum(floor_log2(x), emin) - man_bits
    scaled = np.ldexp(x, -exponent)  # exact: division by a power of two
    q = np.ldexp(round_values(scaled, mode, rng), exponent)
    return np.clip(q, -max_normal, max_normal)


def _blocked(x: np.ndarray, block: int, axis: int) -> tuple[np.ndarray, int]:
    """Move `axis` last and split it into (n_blocks, block); return the view and the axis index."""
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block must be a positive integer, got {block!r}")
    if x.ndim == 0:
        raise ValueError("mx quantization needs at least a 1-D array")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"axis must be an integer, got {axis!r}")  # noqa: TRY004
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of range for an array of {x.ndim} dimensions")
    axis = int(axis) % x.ndim
    length = x.shape[axis]
    if length % block:
        raise ValueError(
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

    Per block: e = floor(log2(max|v|)) - ELEM_EMAX[elem], clamped to [-127, 127] (E8M0 range); an
    all-zero block gets e = -127 (its elements are all 0 whatever the scale). Elements are
    round_to_format(v / 2^e, elem, mode), saturating to the format's max. Returns `(values, exps)`:
    the element values (shape of x, float64, NOT multiplied by 2^e) and the int64 exponents (shape
    of x with the `axis` length divided by `block`). The axis length must be a multiple of `block`.
    """
    _check_elem(elem)
    x = _as_finite(x)
    blocks, axis = _blocked(x, block, axis)
    amax = np.max(np.abs(blocks), axis=-1)
    e = np.where(amax > 0, floor_log2(amax) - ELEM_EMAX[elem], SCALE_EMIN)
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
        raise ValueError(f"exps must be integers, got dtype {exps.dtype}")
    exps = np.moveaxis(exps, axis, -1)
    if exps.shape != blocks.shape[:-1]:
        raise ValueError(
            f"exps has shape {np.moveaxis(exps, -1, axis).shape}, expected one exponent per block "
            f"of {block} along axis {axis} of values with shape {values.shape}"
        )
    return _unblocked(np.ldexp(blocks, exps[..., None]), axis)


def frac_bits(name: str) -> int:
    """f such that every element value of `name` times 2^f is an integer (int8: 6; e2m1: 1)."""
    _check_elem(name)
    if name == "int8":
        return INT8_FRACTION_BITS
    exp_bits, man_bits, _, _ = FP_FORMATS[name]
    return man_bits - (2 - 2 ** (exp_bits - 1))
