"""The host's linear algebra between a compensated kernel's functions (lrqc.runtime.linalg and
the factor steps of lrqc.runtime.glue) against numpy and lrqc.reference.lowrank: the blocked,
parallel products equal the plain ones within float32 rounding, the Cholesky-QR basis spans
the Householder one (and falls back to it where X is ill-conditioned), and the fused sketch
gives the reference's factors."""

from __future__ import annotations

import numpy as np
import pytest

from lrqc.frontend.model import LowRank
from lrqc.reference.lowrank import factorize
from lrqc.runtime import factors, glue, linalg


@pytest.fixture(params=[(7, 40), (300, 96), (1030, 1100)])  # one block, several, both cores
def residual(request):
    m, k = request.param
    rng = np.random.default_rng(m)
    R = ((rng.random((m, k)) - 0.3) * 1e-2).astype(np.float32)
    R[:, 3] += 4e-3  # a constant bias, as floor rounding leaves: a strong rank-1 part
    return R


def _top(R):
    return float(np.abs(R).max())


def _close(got, want, tol=3e-6):
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= tol * np.abs(want).max()


def test_blocked_products_equal_numpys(residual):
    R = residual
    rng = np.random.default_rng(1)
    t = rng.standard_normal(R.shape[0]).astype(np.float32)
    X = rng.standard_normal((R.shape[0], 5)).astype(np.float32)
    _close(linalg.rt_vec(R, t), R.T.astype(np.float64) @ t)
    _close(linalg.rt_mul(R, X), R.T.astype(np.float64) @ X)
    v = rng.standard_normal(R.shape[1]).astype(np.float32)
    a, b = linalg.r_rt(R, v)
    _close(a, R.astype(np.float64) @ v)
    _close(b, R.T.astype(np.float64) @ (R.astype(np.float64) @ v))


def test_orth_spans_householders_basis_and_falls_back():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((500, 12)) @ np.diag(np.logspace(0, 4, 12))
    Q = linalg.orth(X)
    H = np.linalg.qr(X)[0]
    assert np.abs(Q.T @ Q - np.eye(12)).max() < 1e-13
    assert np.abs(H @ (H.T @ Q) - Q).max() < 1e-12  # the same column space
    singular = X.copy()
    singular[:, 5] = singular[:, 4]  # rank-deficient: Cholesky cannot factor its Gram matrix
    np.testing.assert_array_equal(linalg.orth(singular), np.linalg.qr(singular)[0])
    near = X.copy()
    near[:, 5] = near[:, 4] * (1 + 1e-11)  # cond ~1e12: Householder's basis
    np.testing.assert_array_equal(linalg.orth(near), np.linalg.qr(near)[0])
    for Y in (X, near):  # thin_qr's R: X = Q R, upper triangular, |R| Householder's
        Q, R = linalg.thin_qr(Y)
        assert np.abs(Q @ R - Y).max() < 1e-13 * np.abs(Y).max()
        assert np.all(np.tril(R, -1) == 0)
        np.testing.assert_allclose(np.abs(R), np.abs(np.linalg.qr(Y)[1]), rtol=1e-9,
                                   atol=1e-12 * np.abs(R).max())


def test_thin_qr_keeps_cholesky_qr_up_to_its_condition_limit(monkeypatch):
    """Inputs with condition numbers up to 1e7 (a sketch R Ω of a nearly low-rank residual)
    stay on Cholesky QR, orthonormal to float64 rounding, without Householder's fallback."""
    rng = np.random.default_rng(4)

    def no_fallback(X):
        raise AssertionError("fell back to Householder QR")

    monkeypatch.setattr(linalg, "_householder", no_fallback)
    for m, w, cond in ((2048, 24, 1e6), (2048, 24, 1e7), (256, 8, 3e5), (4096, 1, 1.0)):
        u = np.linalg.qr(rng.standard_normal((m, w)))[0]
        v = np.linalg.qr(rng.standard_normal((w, w)))[0]
        X = (u * np.logspace(0, -np.log10(cond), w)) @ v
        Q, R = linalg.thin_qr(X)
        assert np.abs(Q.T @ Q - np.eye(w)).max() < 1e-13
        assert np.abs(Q @ R - X).max() < 1e-13 * np.abs(X).max()


def test_wide_svd_is_numpys():
    """The SVD of a wide matrix through thin_qr of its transpose: numpy's singular values and
    vectors (up to signs), on a spread spectrum and on a nearly rank-deficient one."""
    rng = np.random.default_rng(3)
    for spread in (4, 12):
        x = np.diag(np.logspace(0, -spread, 24)) @ rng.standard_normal((24, 3000))
        u, s, vt = linalg.wide_svd(x)
        U, S, Vt = np.linalg.svd(x, full_matrices=False)
        np.testing.assert_allclose(s, S, rtol=1e-10, atol=1e-13 * S[0])
        top = S > 1e-6 * S[0]  # well separated: the vectors agree up to sign
        signs = np.sign(np.sum(vt[top] * Vt[top], axis=1))
        assert np.abs(vt[top] * signs[:, None] - Vt[top]).max() < 1e-7
        assert np.abs((u * s) @ vt - x).max() < 1e-12 * S[0]


def test_span_basis_is_one_cholesky_step_up_to_its_condition_limit():
    """The per-call bases: orthonormal to 1e-10 and spanning Householder's basis; one Cholesky
    step while the condition number is at most SPAN_COND (decided by ||L||_F ||L⁻¹||_F where
    that bound passes, else by L's singular values), orth's basis past it; singular or not
    finite: orth's basis."""
    rng = np.random.default_rng(5)
    bounds = []
    for m, w, spectrum in (
            (4096, 24, np.ones(24)), (2048, 24, np.logspace(0, -2, 24)),
            (256, 24, np.logspace(0, -np.log10(linalg.SPAN_COND / 8), 24)),
            (256, 24, np.logspace(0, -np.log10(linalg.SPAN_COND / 2), 24)),  # bound past it
            (4096, 24, np.r_[np.ones(12), np.full(12, 1e-2)]),  # cond 100, bound 1200
            (512, 24, np.logspace(0, -np.log10(5 * linalg.SPAN_COND), 24))):
        u = np.linalg.qr(rng.standard_normal((m, w)))[0]
        v = np.linalg.qr(rng.standard_normal((w, w)))[0]
        X = (u * spectrum) @ v
        Q = linalg.span_basis(X)
        assert np.abs(Q.T @ Q - np.eye(w)).max() < 1e-10
        H = np.linalg.qr(X)[0]
        assert np.abs(H @ (H.T @ Q) - Q).max() < 1e-10  # the same column space
        L = np.linalg.cholesky(X.T @ X)
        Li = np.linalg.inv(L)
        cond = spectrum.max() / spectrum.min()
        bound = np.linalg.norm(L) * np.linalg.norm(Li)
        assert cond * (1 - 1e-6) <= bound <= w * cond * (1 + 1e-6)
        step = cond <= linalg.SPAN_COND
        np.testing.assert_array_equal(Q, X @ Li.T if step else linalg.orth(X))
        bounds.append((bound <= linalg.SPAN_COND, step))
    assert bounds == [(True, True), (True, True), (True, True), (False, True), (False, True),
                      (False, False)]
    X = rng.standard_normal((500, 12)) @ np.diag(np.logspace(0, 4, 12))  # cond ~1e4
    singular = X.copy()
    singular[:, 5] = singular[:, 4]
    nan = X.copy()
    nan[3, 3] = np.nan
    for Y in (X, singular, nan):
        np.testing.assert_array_equal(linalg.span_basis(Y), linalg.orth(Y))


def test_top_svd_is_numpys_up_to_its_condition_limit():
    """The rank largest singular triplets from x xᵀ: numpy's within 1e-9 where the rank-th
    singular value is at least the first / SPAN_COND; past it, or for x = 0, wide_svd's."""
    rng = np.random.default_rng(6)
    for spread, rank in ((1.0, 16), (2.5, 16), (2.5, 24), (6.0, 8)):  # log10 of s[0] / s[-1]
        x = np.diag(np.logspace(0, -spread, 24)) @ rng.standard_normal((24, 3000))
        u, s, vt = linalg.top_svd(x, rank)
        U, S, Vt = np.linalg.svd(x, full_matrices=False)
        assert u.shape == (24, rank) and s.shape == (rank,) and vt.shape == (rank, 3000)
        np.testing.assert_allclose(s, S[:rank], rtol=1e-9)
        signs = np.sign(np.sum(vt * Vt[:rank], axis=1))
        assert np.abs(vt * signs[:, None] - Vt[:rank]).max() < 1e-8
        assert np.abs(u * signs - U[:, :rank]).max() < 1e-8
    x = np.diag(np.logspace(0, -4, 24)) @ rng.standard_normal((24, 3000))
    for y, rank in ((x, 24), (x, 20), (np.zeros((24, 3000)), 16)):  # s[rank - 1] too small
        u, s, vt = linalg.wide_svd(y)
        got = linalg.top_svd(y, rank)
        for a, b in zip(got, (u[:, :rank], s[:rank], vt[:rank]), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("power_iters", [0, 1, 2])
def test_sketch_factors_are_the_references(residual, power_iters):
    """The sketch in power_iters + 1 passes (factors.sketch_factors via factors.a_factors) gives
    lrqc.reference.lowrank's L Fᵀ; so does rsvd with its blocked products."""
    R = residual
    for term in (LowRank(rank=1, method="sketch", power_iters=power_iters, seed=5),
                 LowRank(rank=min(3, *R.shape), method="rsvd", power_iters=power_iters,
                         seed=5)):
        w = 1 if term.method == "sketch" else min(term.rank + term.oversample, *R.shape)
        T = R @ factors.test_matrix(term, R.shape[1], w).astype(np.float32)
        L, Ft = factors.a_factors(term, R, T, _top(R))
        Lr, Fr = factorize(R.astype(np.float64), method=term.method, rank=term.rank,
                           oversample=term.oversample, power_iters=power_iters,
                           seed=term.seed)
        _close(L @ Ft, Lr @ Fr, tol=2e-5)


@pytest.mark.filterwarnings("error")
def test_sketch_of_huge_and_tiny_residuals_follows_the_scale():
    """Residuals far outside float32's comfortable range take the scaled path: the factors
    of 2^e R are 2^e times R's (scale equivariance), none overflows or underflows."""
    rng = np.random.default_rng(4)
    R = ((rng.random((64, 48)) - 0.5)).astype(np.float32)
    term = LowRank(rank=1, method="sketch", power_iters=1, seed=0)
    T = R @ factors.test_matrix(term, 48, 1).astype(np.float32)
    L, Ft = factors.a_factors(term, R, T, _top(R))
    for e in (100, -100):  # and no warning
        Rs = np.ldexp(R, e).astype(np.float32)
        Ls, Fts = factors.a_factors(term, Rs, np.ldexp(T, e).astype(np.float32), _top(Rs))
        assert np.all(np.isfinite(Ls)) and np.all(np.isfinite(Fts))
        _close(np.ldexp(Ls, -e) @ Fts, L @ Ft, tol=1e-5)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("e", [66, -66])
def test_sketch_of_a_residual_of_several_blocks_far_outside_the_range(e):
    """A residual of several row blocks on both cores, at 2^±66: its first product (made
    before the scale is known, then dropped for the scaled path) warns of nothing, and the
    factors are those of R 2^-e times 2^e."""
    rng = np.random.default_rng(9)
    R = (rng.random((1100, 2048)) - 0.5).astype(np.float32)  # ~9 MB: three 4 MiB blocks
    term = LowRank(rank=1, method="sketch", power_iters=1, seed=0)
    T = R @ factors.test_matrix(term, 2048, 1).astype(np.float32)
    L, Ft = factors.a_factors(term, R, T, _top(R))
    Rs = np.ldexp(R, e).astype(np.float32)
    Ls, Fts = factors.a_factors(term, Rs, np.ldexp(T, e).astype(np.float32), _top(Rs))
    _close(np.ldexp(Ls, -e) @ Fts, L @ Ft, tol=1e-5)


def test_overlapping_blas_limits_hold_until_the_last_caller_leaves():
    """numpy's OpenBLAS keeps its "local" thread count once for the process: a kernel call
    that ends while another runs must not restore it under the other (whose products would
    split over 2 threads and round differently); the last one out restores it."""
    import threading

    local = linalg.blas_local()
    if local is None:
        pytest.skip("numpy's BLAS has no openblas_set_num_threads_local")
    before = local(2)
    entered, left, seen = threading.Event(), threading.Event(), []

    def other():
        with glue.one_blas_thread():
            entered.set()
            left.wait(10)
            seen.append(local(1))  # the first caller has left: still 1 here

    try:
        t = threading.Thread(target=other)
        with glue.one_blas_thread():
            t.start()
            assert entered.wait(10)
        left.set()
        t.join()
        assert seen == [1]
        assert local(2) == 2  # restored by the last one out
    finally:
        local(before)
