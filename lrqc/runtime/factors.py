"""The factors (L, Fᵀ) of A's lowrank term from its residual R, as the runtime computes them
after quantize_a (lrqc.reference.lowrank's factorizations in float32 products): the test
matrix, the sketch in a pass per power iteration, the randomized SVD, the exact SVD; the
products with R are numpy's (linalg) or the kernel's own (glue.CompBuffers)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import cast

import numpy as np

from ..frontend.model import LowRank
from ..reference.lowrank import top_exponent, unit_pow2, unit_shift
from .linalg import pmatmul, r_rt, rt_mul, rt_vec, span_basis, top_svd

F32 = np.float32
F64 = np.float64


def test_matrix(t: LowRank, k: int, width: int) -> np.ndarray:
    """The reference's Gaussian draws for A's term: s (sketch) or Ω (rsvd), as (K, width)."""
    rng = np.random.default_rng(t.seed)
    if t.method == "sketch":
        return rng.standard_normal(k).reshape(k, 1)
    return rng.standard_normal((k, width))


# |e| of R's scale exponent up to which the factorization runs on R itself: every product it
# forms (|R|^2 K |a| for sketch, |R| sqrt(K) for rsvd) stays far inside float32's normal
# range, and scaling by 2^-e is exact, so the factors equal those of R 2^-e scaled back.
UNSCALED_EXPONENT = 24


# Rᵀ Q and R Z of the randomized SVD, each (R, X) -> product: numpy's BLAS (linalg) or the
# kernel's resid_tq and resid_z on the R it holds (CompBuffers._products)
RsvdProducts = tuple[Callable[[np.ndarray, np.ndarray], np.ndarray],
                     Callable[[np.ndarray, np.ndarray], np.ndarray]]
# the rank-1 sketch's: (() -> Rᵀ (R s), u -> (R u, Rᵀ R u)), from quantize_a and sketch_ab
SketchProducts = tuple[Callable[[], np.ndarray],
                       Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]]
Products = RsvdProducts | SketchProducts


def a_factors(t: LowRank, R: np.ndarray, T: np.ndarray | None, top: float,
              products: Products | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(L, Ft) of lrqc.reference.lowrank.factorize(R, ...) from R (float32), T = R Ω and
    top = max |R| (the quantization pass computes it as it writes R). As the reference, it
    factors R 2^-e (max |R 2^-e| in [1, 4), an exact scaling) and scales L back by 2^e: the
    factors follow the data's scale and no product of R overflows or underflows. For |e| <=
    UNSCALED_EXPONENT that is the factorization of R itself (the same numbers: power-of-two
    scaling commutes with every product), without the copy of R, and the products with R
    may be `products` (the kernel's own, on the R it holds); the scaled copy's are numpy's."""
    e = top_exponent(top)
    if abs(e) <= UNSCALED_EXPONENT:
        return _a_factors(t, R, T, products)
    R = np.ldexp(R, -e).astype(F32)
    if T is not None:
        T = np.ldexp(T, -e).astype(F32)
        if not np.all(np.isfinite(T)):  # R Ω past float32 (R near its largest values)
            T = R @ test_matrix(t, R.shape[1], T.shape[1]).astype(F32)
    L, Ft = _a_factors(t, R, T)
    return np.ldexp(L, e), Ft


def sketch_factors(R: np.ndarray, t: np.ndarray, u: np.ndarray, power_iters: int,
                   ab: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The sketch's (L, Ft) from t = R s and u = Rᵀ t in a pass per power iteration: a = R u'
    and Rᵀ a together (linalg.r_rt), with u' = u times a power of two bringing max |u'| into
    [1, 2) and b = Rᵀ a times the one unit_pow2 puts on a. Power-of-two scalings are exact and
    the sketch keeps only a's direction, so a and b are those of the reference's steps
    (a = unit_pow2(R (Rᵀ a)), b = Rᵀ a) within float32 rounding, in power_iters + 1 passes
    over R instead of 2 power_iters + 1 (and no pass of its own for max |R|). The caller
    guarantees |scale_exponent(R)| <= UNSCALED_EXPONENT, so no product leaves float32's
    range: |R u'| <= 2 max|R| K, |Rᵀ R u'| <= 2 max|R|^2 M K. ab(u'): (R u', Rᵀ R u') (default
    linalg.r_rt; the kernel's sketch_ab)."""
    a = t
    for _ in range(power_iters):
        a, b = (ab or partial(r_rt, R))(unit_pow2(u))
        shift = unit_shift(a)
        a, u = np.ldexp(a, shift), np.ldexp(b, shift)  # unit_pow2(a), Rᵀ unit_pow2(a)
    b, a = u.astype(F64), a.astype(F64)
    a_sq, b_norm = float(a @ a), float(np.linalg.norm(b))
    if a_sq == 0.0 or b_norm == 0.0:
        return np.zeros((R.shape[0], 1)), np.zeros((1, R.shape[1]))
    return (a * (b_norm / a_sq))[:, None], (b / b_norm)[None, :]


def _a_factors(t: LowRank, R: np.ndarray, T: np.ndarray | None,
               products: Products | None = None) -> tuple[np.ndarray, np.ndarray]:
    if t.method == "svd":
        U, S, Vt = np.linalg.svd(R.astype(F64), full_matrices=False)
        return U[:, : t.rank] * S[: t.rank], Vt[: t.rank]
    if T is None:
        raise TypeError(f"lowrank(method={t.method}) factors R from its sketch product R Ω")
    if t.method == "sketch":
        if products is None:
            return sketch_factors(R, T[:, 0], rt_vec(R, T[:, 0]), t.power_iters)
        u, ab = cast(SketchProducts, products)
        return sketch_factors(R, T[:, 0], u(), t.power_iters, ab)
    rt, rz = cast(RsvdProducts, products) if products is not None else (rt_mul, pmatmul)
    Q = span_basis(T.astype(F64))
    for _ in range(t.power_iters):
        Z = span_basis(rt(R, Q.astype(F32)).astype(F64))
        Q = span_basis(rz(R, Z.astype(F32)).astype(F64))
    Ut, S, Vt = top_svd(rt(R, Q.astype(F32)).T.astype(F64), t.rank)
    return (Q @ Ut) * S, Vt
