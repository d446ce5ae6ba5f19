"""Quantizer Q(X) of docs/numerics.md, section 1 for every format and granularity, as QArray.

Both operands are handled as "rows x K" (A as is, B transposed) so that the reduction axis is
always the last one: per_channel = one scale per row, per_vector/per_block = groups along K.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from ..errors import InputError
from ..frontend.model import Calibration, Granularity, Quant, Rounding, fp_format
from . import minifloat
from .rounding import round_values


@dataclass(frozen=True)
class QArray:
    """A quantized operand. codes/zero/scale are float64 arrays in the rows x Kp layout:

    codes (rows, Kp): integers for integer formats, element values for e*m* formats;
    zero (rows or 1, G or 1): zero points (0 for symmetric); scale (rows or 1, G or 1);
    value = (codes - zero) * scale, groups of `group` columns sharing a scale. Kp >= k (padding).
    Two-level VS-Quant scales also keep scale_int (rows, G) and gamma (rows, 1): scale = int*gamma.
    MX keeps the shared exponents in `exps` (scale = 2**exps).
    """

    quant: Quant
    role: str
    k: int
    group: int
    codes: np.ndarray
    zero: np.ndarray
    scale: np.ndarray
    scale_int: np.ndarray | None = None
    gamma: np.ndarray | None = None
    exps: np.ndarray | None = None

    def expand(self, arr: np.ndarray) -> np.ndarray:
        """Per-group array -> per-element (rows, Kp)."""
        if arr.shape[-1] == 1:
            return arr
        return np.repeat(arr, self.group, axis=-1)

    def centered(self) -> np.ndarray:
        """codes - zero, rows x Kp (integer-valued for integer formats)."""
        return self.codes - self.expand(self.zero)

    def dequantize(self) -> np.ndarray:
        """deq(Q(X)) in the operand's own layout (M x K for a, K x N for b), float64."""
        v = (self.centered() * self.expand(self.scale))[:, : self.k]
        return v if self.role == "a" else v.T


def int_range(q: Quant) -> tuple[int, int]:
    """(qmin, qmax) of the integer codes (fixed point: every two's complement / unsigned code)."""
    b = q.bits
    if q.signed:
        if q.calibrate == Calibration.MINMAX or q.is_fixed:
            return -(2 ** (b - 1)), 2 ** (b - 1) - 1
        return (-1, 1) if b == 1 else (-(2 ** (b - 1) - 1), 2 ** (b - 1) - 1)
    return 0, 2**b - 1


def group_size(q: Quant, k: int) -> int:
    return q.vector if q.grouped else k


def padded_k(q: Quant, k: int) -> int:
    if not q.grouped:
        return k
    return -(-k // q.vector) * q.vector


def rows_k(x: np.ndarray, role: str) -> np.ndarray:
    return np.asarray(x, dtype=np.float64) if role == "a" else np.asarray(x, dtype=np.float64).T


def quantize(x: np.ndarray, q: Quant, role: str) -> QArray:
    """Q(x) for operand `role` ('a': x is M x K, 'b': x is K x N)."""
    if role not in ("a", "b"):
        raise InputError(f"quantize: role must be 'a' or 'b', got {role!r}")
    if not isinstance(q, Quant):
        hint = " (an operand's quantizer is its .quant)" if hasattr(q, "quant") else ""
        raise InputError(f"quantize: expected a Quant, got {type(q).__name__}{hint}")
    xr = rows_k(x, role)
    rows, k = xr.shape
    kp = padded_k(q, k)
    if kp != k:
        xr = np.concatenate([xr, np.zeros((rows, kp - k))], axis=1)
    g = group_size(q, kp)
    rng = np.random.default_rng(q.seed) if q.round == Rounding.STOCHASTIC else None
    if q.granularity == Granularity.PER_BLOCK:
        return _zero_padding(_quantize_mx(xr, q, role, k, rng))
    groups = xr.reshape(rows, kp // g, g)
    if q.granularity == Granularity.PER_TENSOR:
        groups = xr.reshape(1, 1, rows * kp)
    if fp_format(q.fmt) is not None:
        return _zero_padding(_quantize_fp(xr, groups, q, role, k, g, rng))
    if q.is_fixed:
        return _zero_padding(_quantize_fixed(xr, q, role, k, g, rng))
    if q.bits == 1 and q.signed:
        return _zero_padding(_quantize_binary(xr, groups, q, role, k, g))
    return _zero_padding(_quantize_int(xr, groups, q, role, k, g, rng))


def _zero_padding(qa: QArray) -> QArray:
    """The padded K columns (k..Kp) hold centered code 0, whatever the quantizer would make of
    a 0 there (int1 maps 0 to +1; a min-max zero point can lie outside [qmin, qmax]): padding
    is not data and must add nothing to an integer accumulation. Their scales are those of the
    data in the same group."""
    if qa.codes.shape[1] == qa.k:
        return qa
    codes = qa.codes.copy()
    codes[:, qa.k:] = np.broadcast_to(qa.expand(qa.zero), codes.shape)[:, qa.k:]
    return replace(qa, codes=codes)


def _stat_shape(q: Quant, rows: int, ngroups: int) -> tuple[int, int]:
    return (1, 1) if q.granularity == Granularity.PER_TENSOR else (rows, ngroups)


def _quantize_int(xr, groups, q, role, k, g, rng) -> QArray:
    rows, kp = xr.shape
    qmin, qmax = int_range(q)
    levels = qmax - qmin
    shape = _stat_shape(q, rows, kp // g)
    if q.calibrate == Calibration.MINMAX:
        lo, hi = groups.min(axis=-1), groups.max(axis=-1)
        with np.errstate(over="ignore"):
            rng_ = hi - lo
        rng_ = np.where(rng_ > 0, rng_, np.maximum(np.abs(hi), np.abs(lo)))
        scale = _safe_scale(rng_, levels)
        # hi - lo past the largest float64: the same quotient from halves (finite for levels >= 2)
        scale = np.where(np.isfinite(rng_), scale, _safe_scale(hi / 2 - lo / 2, levels / 2))
        scale = scale.reshape(shape)
    else:
        amax = np.abs(groups).max(axis=-1)
        scale = _safe_scale(amax, qmax).reshape(shape)
        lo = None
    scale_int = gamma = None
    if q.scale.startswith("uint"):
        scale, scale_int, gamma = _two_level(scale, q)
    if q.calibrate == Calibration.MINMAX:
        zero = qmin - np.rint(lo.reshape(shape) / scale)
    else:
        zero = np.zeros(shape)
    tmp = QArray(q, role, k, g, xr, zero, scale)
    codes = np.clip(round_values(xr / tmp.expand(scale), q.round, rng) + tmp.expand(zero),
                    qmin, qmax)
    return QArray(q, role, k, g, codes, zero, scale, scale_int, gamma)


def _quantize_fixed(xr, q, role, k, g, rng) -> QArray:
    """fixed(bits, max=V): the static scale q.fixed_scale, zero point 0, no statistics:
    codes clip(R(x / s), qmin, qmax) (not scale-equivariant: the range is fixed)."""
    qmin, qmax = int_range(q)
    scale = np.full((1, 1), q.fixed_scale)
    with np.errstate(over="ignore"):  # |x| past the float64 range over s: clipped anyway
        codes = np.clip(round_values(xr / q.fixed_scale, q.round, rng), qmin, qmax)
    return QArray(q, role, k, g, codes, np.zeros((1, 1)), scale)


TINY = np.nextafter(0.0, 1.0)  # the smallest positive float64 (a subnormal)


def _safe_scale(stat: np.ndarray, top: float) -> np.ndarray:
    """stat / top, at least the smallest subnormal where stat > 0 (a subnormal max |x| would
    otherwise give a zero scale and divide by it), 1 for an all-zero group; never above the
    largest float64 (a scale must be finite: inf would make every value 0 * inf = NaN)."""
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        scale = np.where(stat > 0, np.maximum(stat / top, TINY), 1.0)
    return np.minimum(scale, np.finfo(np.float64).max)


def _two_level(scale: np.ndarray, q: Quant):
    """VS-Quant: per-vector scales as M-bit unsigned integers times a per-row float gamma."""
    top = 2**q.scale_bits - 1
    gamma = scale.max(axis=-1, keepdims=True) / top
    gamma = np.where(gamma > 0, gamma, 1.0)
    ratio = scale / gamma
    si = np.ceil(ratio) if q.scale_round == "ceil" else np.rint(ratio)
    si = np.clip(si, 1, top)
    return si * gamma, si, gamma


def _quantize_binary(xr, groups, q, role, k, g) -> QArray:
    """int1: sign binarization, codes in {-1, +1}, scale = mean |x| of the group."""
    rows, kp = xr.shape
    shape = _stat_shape(q, rows, kp // g)
    with np.errstate(over="ignore"):
        mean = np.abs(groups).mean(axis=-1)
    # a sum past the largest float64: the mean of the values divided first (finite)
    mean = np.where(np.isfinite(mean), mean, (np.abs(groups) / groups.shape[-1]).sum(axis=-1))
    mean = mean.reshape(shape)
    # an all-zero group gets scale 0 (its codes are ±1, its values must be 0)
    scale = np.where(np.abs(groups).max(axis=-1).reshape(shape) > 0, np.maximum(mean, TINY), 0.0)
    codes = np.where(xr >= 0, 1.0, -1.0)
    return QArray(q, role, k, g, codes, np.zeros(shape), scale)


def _quantize_fp(xr, groups, q, role, k, g, rng) -> QArray:
    """e*m* elements with a float scale per tensor/channel: max|x| maps to the max normal."""
    rows, kp = xr.shape
    shape = _stat_shape(q, rows, kp // g)
    max_normal = minifloat.elem_max(q.fmt)
    amax = np.abs(groups).max(axis=-1).reshape(shape)
    scale = _safe_scale(amax, max_normal)
    tmp = QArray(q, role, k, g, xr, np.zeros(shape), scale)
    codes = minifloat.round_to_format(xr / tmp.expand(scale), q.fmt, q.round, rng)
    return QArray(q, role, k, g, codes, np.zeros(shape), scale)


def _quantize_mx(xr, q, role, k, rng) -> QArray:
    rows, kp = xr.shape
    values, exps = minifloat.mx_quantize(xr, q.fmt, block=q.vector, axis=-1, mode=q.round, rng=rng)
    scale = np.exp2(exps.astype(np.float64))
    return QArray(q, role, k, q.vector, values, np.zeros_like(scale), scale, exps=exps)


def int_accumulate(qa: QArray, qb: QArray) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield, per K-group, the exact integer sum  sum_k (qa - za)[i,k] (qb - zb)[k,j]
    (M x N, int64) together with the group's column slice. Groups are the finer of the two
    operands' groups (the gcd of the group sizes of operands whose scale varies along K). e*m* /
    MX codes enter as integers (values times 2^frac_bits, see integer_codes); ValueError when the
    sums could leave float64's exact integers (wide e*m* formats: use grouped_sums)."""
    ca, cb = integer_codes(qa), integer_codes(qb)
    bound = float(np.abs(ca).max(initial=0)) * float(np.abs(cb).max(initial=0)) * ca.shape[1]
    if bound >= 2.0**53:
        raise ValueError(f"integer codes of {qa.quant.fmt} x {qb.quant.fmt} can sum past 2^53")
    for sl, part in _grouped(qa, qb, ca, cb):
        yield sl, np.rint(part).astype(np.int64)


def grouped_sums(qa: QArray, qb: QArray) -> Iterator[tuple[slice, np.ndarray]]:
    """(K slice, sums of centered values) per common K-group, in float64: exact integers for
    integer formats, dyadic sums for e*m* (the value of int_accumulate times the code units)."""
    yield from _grouped(qa, qb, qa.centered(), qb.centered())


def _grouped(qa: QArray, qb: QArray, ca: np.ndarray, cb: np.ndarray):
    kp = max(ca.shape[1], cb.shape[1])  # operands padded to different widths: zeros past the end
    ca = np.pad(ca, ((0, 0), (0, kp - ca.shape[1])))
    cb = np.pad(cb, ((0, 0), (0, kp - cb.shape[1])))
    g = _common_group(qa, qb, kp)
    for start in range(0, kp, g):
        sl = slice(start, start + g)
        yield sl, ca[:, sl] @ cb[:, sl].T


def code_unit(q: Quant) -> float:
    """Value of one integer code step: 2^-frac_bits for e*m* and MX elements, 1 for integers,
    so that value = integer_codes(q) * code_unit * scale."""
    if q.is_int and q.granularity != Granularity.PER_BLOCK:
        return 1.0
    return 2.0 ** -minifloat.frac_bits(q.fmt)


def integer_codes(q: QArray) -> np.ndarray:
    """Centered codes as integers: e*m* and MX element values times 2^frac_bits (exact)."""
    return q.centered() / code_unit(q.quant)


def _common_group(qa: QArray, qb: QArray, kp: int) -> int:
    ga = qa.group if qa.scale.shape[-1] > 1 else kp
    gb = qb.group if qb.scale.shape[-1] > 1 else kp
    return int(np.gcd(ga, gb))
