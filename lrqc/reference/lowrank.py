"""Low-rank factorizations of residuals (docs/numerics.md, section 3): sketch, rsvd, svd.

Every function returns factors `(L, Ft)` or SVD triplets whose product approximates `R`.
"""

from __future__ import annotations

import numpy as np

METHODS = ("sketch", "rsvd", "svd")
SPLITS = ("left", "sqrt")


def _as_matrix(R: np.ndarray) -> np.ndarray:
    """Return `R` as a finite, non-empty 2-D float64 array, or raise ValueError."""
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got an array of shape {R.shape}")
    if R.size == 0:
        raise ValueError(f"expected a non-empty matrix, got shape {R.shape}")
    if not np.all(np.isfinite(R)):
        raise ValueError("matrix contains Inf or NaN")
    return R


def _check_int(name: str, value: int, minimum: int) -> int:
    """Return `value` as an int if it is an integer >= minimum, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")  # noqa: TRY004
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_rank(rank: int, shape: tuple[int, int]) -> int:
    """Validate a truncation rank against the matrix shape (1 <= rank <= min(M, N))."""
    rank = _check_int("rank", rank, 1)
    if rank > min(shape):
        raise ValueError(
            f"rank {rank} exceeds min(M, N) = {min(shape)} for a matrix of shape {shape}"
        )
    return rank


def sketch(R: np.ndarray, power_iters: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rank-1 LRQMM sketch: return `(L, Ft)` of shapes (M, 1), (1, N) with `L @ Ft ≈ R`.

    s ~ N(0, I) (length N, `default_rng(seed).standard_normal`), a = R s, then `power_iters` times
    a = R (Rᵀ a); b = Rᵀ a; L = a ||b|| / ||a||², F = b / ||b||. With power_iters = 1 this is the
    note's t = R s, a = R (Rᵀ t), b = Rᵀ a (four matrix-vector products). L Fᵀ = a aᵀ R / ||a||² is
    the projection of R onto span(a). A zero R (or a sketch that lands in its null space) gives
    zero factors.
    """
    R = _as_matrix(R)
    power_iters = _check_int("power_iters", power_iters, 0)
    m, n = R.shape
    s = np.random.default_rng(seed).standard_normal(n)
    a = R @ s
    for _ in range(power_iters):
        a = unit_pow2(R @ (R.T @ a))
    b = R.T @ a
    a_sq = float(a @ a)
    b_norm = float(np.linalg.norm(b))
    if a_sq == 0.0 or b_norm == 0.0:
        return np.zeros((m, 1)), np.zeros((1, n))
    L = (a * (b_norm / a_sq)).reshape(m, 1)
    Ft = (b / b_norm).reshape(1, n)
    return L, Ft


def unit_pow2(a: np.ndarray) -> np.ndarray:
    """a times the power of two that brings max |a| into [1, 2): the direction is all the
    sketch keeps (L Fᵀ = a aᵀ R / ||a||²), and exact scaling keeps repeated products of R
    in range."""
    return np.ldexp(a, unit_shift(a))


def unit_shift(a: np.ndarray) -> int:
    """The exponent unit_pow2 scales a by (0 for a zero a)."""
    top = float(np.max(np.abs(a)))
    return 1 - int(np.frexp(top)[1]) if top > 0 else 0


def rsvd(
    R: np.ndarray, rank: int, oversample: int = 8, power_iters: int = 1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Randomized SVD (Halko–Martinsson–Tropp): top `rank` triplets `(U, S, Vt)` of R.

    Ω ~ N(0, 1) of shape N × min(rank + oversample, M, N) from `default_rng(seed)`; Q = qr(R Ω);
    `power_iters` times Q = qr(R qr(Rᵀ Q)) (re-orthonormalised at every step); SVD of Qᵀ R = Ũ S Vt;
    U = Q Ũ. Returns U (M × rank), S (rank,), Vt (rank × N).
    """
    R = _as_matrix(R)
    rank = _check_rank(rank, R.shape)
    oversample = _check_int("oversample", oversample, 0)
    power_iters = _check_int("power_iters", power_iters, 0)
    m, n = R.shape
    width = min(rank + oversample, m, n)
    omega = np.random.default_rng(seed).standard_normal((n, width))
    Q = np.linalg.qr(R @ omega)[0]
    for _ in range(power_iters):
        Z = np.linalg.qr(R.T @ Q)[0]
        Q = np.linalg.qr(R @ Z)[0]
    Ut, S, Vt = np.linalg.svd(Q.T @ R, full_matrices=False)
    U = Q @ Ut
    return U[:, :rank], S[:rank], Vt[:rank, :]


def svd(R: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact truncated SVD (the Eckart–Young optimum): U (M × rank), S (rank,), Vt (rank × N)."""
    R = _as_matrix(R)
    rank = _check_rank(rank, R.shape)
    U, S, Vt = np.linalg.svd(R, full_matrices=False)
    return U[:, :rank], S[:rank], Vt[:rank, :]


def factorize(
    R: np.ndarray,
    method: str,
    rank: int,
    oversample: int = 8,
    power_iters: int = 1,
    seed: int = 0,
    split: str = "left",
) -> tuple[np.ndarray, np.ndarray]:
    """Factor R ≈ L @ Ft with L (M × rank), Ft (rank × N) by `method` in sketch | rsvd | svd.

    sketch requires rank == 1 and ignores `split` and `oversample`; svd ignores `oversample`,
    `power_iters` and `seed`. split="left": L = U·S, Ft = Vt; split="sqrt": L = U·√S, Ft = √S·Vt
    (the LRAMM convention).
    """
    if method not in METHODS:
        raise ValueError(
            f"unknown low-rank method {method!r}; expected one of {', '.join(METHODS)}"
        )
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    R = _as_matrix(R)
    e = scale_exponent(R)  # factor R 2^-e (exact), then scale the factors back: see below
    R = np.ldexp(R, -e)
    if method == "sketch":
        if _check_int("rank", rank, 1) != 1:
            raise ValueError(f"method 'sketch' is rank 1 only, got rank {rank}; use rsvd or svd")
        L, Ft = sketch(R, power_iters=power_iters, seed=seed)
        return np.ldexp(L, e), Ft
    if method == "rsvd":
        U, S, Vt = rsvd(R, rank, oversample=oversample, power_iters=power_iters, seed=seed)
    else:
        U, S, Vt = svd(R, rank)
    if split == "left":
        return np.ldexp(U * S, e), Vt
    root = np.sqrt(S)
    return np.ldexp(U * root, e // 2), np.ldexp(root[:, None] * Vt, e // 2)


def scale_exponent(R: np.ndarray) -> int:
    """An even e with max |R 2^-e| in [1, 4) (0 for a zero R). Every factorization runs on
    R 2^-e: scaling by a power of two is exact, so the factors of 2^k R are those of R times
    2^k (scale equivariance), while the products of the power iterations (|R|^3 and more) can
    neither overflow for huge R nor underflow for tiny R. Even, so that the sqrt split puts
    exactly 2^(e/2) on each side."""
    top = max(float(R.max()), -float(R.min())) if R.size else 0.0  # max |R|, no temporary
    return top_exponent(top)


def top_exponent(top: float) -> int:
    """scale_exponent of a matrix whose max |R| is top."""
    if top == 0.0:
        return 0
    e = int(np.frexp(top)[1]) - 1  # top = f 2^(e+1), f in [0.5, 1): 2^e <= top < 2^(e+1)
    return e - (e % 2)
