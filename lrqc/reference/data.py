"""Built-in test data: the distributions of the papers' tables, seeded."""

from __future__ import annotations

import numpy as np

DISTRIBUTIONS = ("uniform", "normal", "exp", "chi2")


def sample(dist: str, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """uniform U[0,1), normal N(0,1), exp Exp(1), chi2 with 1 degree of freedom; float64."""
    rng = np.random.default_rng(seed)
    if dist == "uniform":
        return rng.random(shape)
    if dist == "normal":
        return rng.standard_normal(shape)
    if dist == "exp":
        return rng.exponential(1.0, shape)
    if dist == "chi2":
        return rng.chisquare(1.0, shape)
    raise ValueError(f"unknown distribution {dist!r}; expected one of {', '.join(DISTRIBUTIONS)}")


def pair(dist: str, m: int, n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A (M x K) and B (K x N) drawn independently."""
    return sample(dist, (m, k), seed), sample(dist, (k, n), seed + 1)
