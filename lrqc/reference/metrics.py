"""Error metrics that see outliers: besides the relative Frobenius error, per-column relative
errors (worst, 99th percentile) and the cosine similarity of C with the reference; and operand
statistics (max|x|/rms, the largest channel's share of ||x||²)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import InputError

# evaluate's table explains its Frobenius figures when the largest TOP_FRACTION of the columns
# of the reference (at least one) hold at least DOMINANT_SHARE of its squared norm
TOP_FRACTION = 0.01
DOMINANT_SHARE = 0.5


@dataclass(frozen=True)
class ErrorMetrics:
    """Errors of C against a reference `ref` (both M x N).

    rel_frobenius: ||C - ref||_F / ||ref||_F (||C||_F when ref is all zero).
    col_worst, col_p99: the largest and the 99th-percentile (numpy's linear interpolation) of
    the per-column relative errors ||C[:, j] - ref[:, j]|| / ||ref[:, j]||, over the columns
    whose reference is not all zero (`zero_columns` counts those left out; nan when no column
    is left); `worst_column` is j of the largest (-1 when none).
    cosine: <C, ref> / (||C|| ||ref||) of the flattened matrices (1.0 when both are all zero,
    0.0 when only one is).
    """

    rel_frobenius: float
    col_worst: float
    col_p99: float
    cosine: float
    worst_column: int = -1
    zero_columns: int = 0


@dataclass(frozen=True)
class OperandStats:
    """How outlier-heavy an operand is. A channel is one index of `axis` (for A, M x K: a
    column, axis=1; for B, K x N: a row, axis=0; both are K, the hidden channel).

    max_over_rms: max|x| / sqrt(mean(x²)) (1 for a constant magnitude; grows with outliers).
    top_channel_share: the largest channel's share of ||x||²; top_channel: its index.
    An all-zero x gives 0.0, 0.0 and channel 0.
    """

    max_over_rms: float
    top_channel_share: float
    top_channel: int


def rel_error(C: npt.ArrayLike, ref: npt.ArrayLike) -> float:
    """||C - ref||_F / ||ref||_F (||C||_F when ref is all zero), in float64 on both scaled by
    the power of two nearest their largest magnitude (exact), so float32 arrays near their
    range's ends neither overflow nor underflow in the squares."""
    c, r = (np.asarray(v).astype(np.float64) for v in (C, ref))
    top = max(float(np.abs(c).max(initial=0.0)), float(np.abs(r).max(initial=0.0)))
    e = int(np.frexp(top)[1]) if 0.0 < top < np.inf else 0
    c, r = np.ldexp(c, -e), np.ldexp(r, -e)
    den = np.linalg.norm(r)
    if den > 0:
        return float(np.linalg.norm(c - r) / den)
    return float(np.ldexp(np.linalg.norm(c), e))


def _pair(C: npt.ArrayLike, ref: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    c, r = (np.asarray(v).astype(np.float64) for v in (C, ref))
    if c.ndim != 2 or c.shape != r.shape:
        raise InputError(f"error_metrics: C and ref must be matrices of one shape, got "
                         f"{c.shape} and {r.shape}")
    return c, r


def error_metrics(C: npt.ArrayLike, ref: npt.ArrayLike) -> ErrorMetrics:
    """ErrorMetrics of C against ref (any real dtypes, computed in float64)."""
    c, r = _pair(C, ref)
    ref_norms = np.linalg.norm(r, axis=0)
    keep = np.flatnonzero(ref_norms > 0)
    if keep.size:
        errs = np.linalg.norm(c[:, keep] - r[:, keep], axis=0) / ref_norms[keep]
        worst = int(np.argmax(errs))
        col_worst, col_p99 = float(errs[worst]), float(np.percentile(errs, 99))
        worst_column = int(keep[worst])
    else:
        col_worst = col_p99 = float("nan")
        worst_column = -1
    return ErrorMetrics(rel_error(c, r), col_worst, col_p99, cosine(c, r), worst_column,
                        int(r.shape[1] - keep.size))


def cosine(c: np.ndarray, r: np.ndarray) -> float:
    """Cosine similarity of two arrays, flattened (1.0 when both are zero, 0.0 when one is)."""
    nc, nr = np.linalg.norm(c), np.linalg.norm(r)
    if nc == 0 or nr == 0:
        return 1.0 if nc == nr else 0.0
    return float(np.clip(np.vdot(c / nc, r / nr), -1.0, 1.0))


def operand_stats(X: npt.ArrayLike, axis: int) -> OperandStats:
    """OperandStats of a matrix whose channels run along `axis` (0: rows, 1: columns)."""
    x = np.asarray(X).astype(np.float64)
    if x.ndim != 2:
        raise InputError(f"operand_stats: expected a 2-D matrix, got shape {x.shape}")
    if axis not in (0, 1):
        raise InputError(f"operand_stats: axis must be 0 (rows) or 1 (columns), got {axis!r}")
    top = float(np.max(np.abs(x))) if x.size else 0.0
    if not top > 0:
        return OperandStats(0.0, 0.0, 0)
    y = x / top  # scaled: no overflow in the squares
    energy = np.sum(y * y, axis=1 - axis)
    total = float(energy.sum())
    j = int(np.argmax(energy))
    return OperandStats(float(1.0 / np.sqrt(total / x.size)), float(energy[j] / total), j)


def top_columns(ref: npt.ArrayLike) -> tuple[int, float]:
    """(count, share): the largest 1% (TOP_FRACTION) of the columns of ref, at least one, and
    their share of ||ref||_F² (0.0 for an all-zero ref)."""
    r = np.asarray(ref).astype(np.float64)
    if r.ndim != 2:
        raise InputError(f"top_columns: expected a 2-D matrix, got shape {r.shape}")
    count = max(1, int(np.ceil(TOP_FRACTION * r.shape[1])))
    top = float(np.max(np.abs(r))) if r.size else 0.0
    if not top > 0:
        return count, 0.0
    energy = np.sum((r / top) ** 2, axis=0)
    return count, float(np.sort(energy)[::-1][:count].sum() / energy.sum())


def dominated(share: float) -> bool:
    """Whether a few columns dominate every Frobenius figure against the reference: its largest
    1% of the columns hold at least half of its squared norm (top_columns), so the errors of all
    columns are divided by, in effect, the size of those few, and the figures say little of how
    the other columns fare."""
    return share >= DOMINANT_SHARE
