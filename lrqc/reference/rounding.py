"""Rounding modes (docs/numerics.md, section 1): every rounding in lrqc is explicit, and here."""

from __future__ import annotations

import numpy as np

from ..frontend.model import Rounding

ROUNDINGS = tuple(r.value for r in Rounding)


def round_values(x: np.ndarray, mode: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Round float64 values to integers (still float64) with one of ROUNDINGS.

    nearest = half to even (numpy rint); nearest_away = half away from zero; floor; trunc = toward
    zero; stochastic = floor(x + u), u ~ U[0, 1) from `rng` (required, seeded by the caller).
    """
    x = np.asarray(x, dtype=np.float64)
    if mode == "nearest":
        return np.rint(x)
    if mode == "nearest_away":
        return np.sign(x) * np.floor(np.abs(x) + 0.5)
    if mode == "floor":
        return np.floor(x)
    if mode == "trunc":
        return np.trunc(x)
    if mode == "stochastic":
        if rng is None:
            raise ValueError("stochastic rounding needs a seeded numpy Generator")
        return np.floor(x + rng.random(x.shape))
    raise ValueError(f"unknown rounding {mode!r}; expected one of {', '.join(ROUNDINGS)}")
