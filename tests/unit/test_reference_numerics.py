"""Tests of the numpy reference numerics: low-rank factorizations, MX minifloats, LPLR, phantom."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrqc.reference import lowrank, lplr, minifloat
from lrqc.reference.phantom import shepp_logan

ROUNDING_MODES = ("nearest", "nearest_away", "floor", "trunc", "stochastic")


def _rng_for(mode: str) -> np.random.Generator | None:
    return np.random.default_rng(123) if mode == "stochastic" else None


def _decaying(m: int, n: int, decay: float, seed: int) -> np.ndarray:
    """Random m × n matrix with singular values decay^k."""
    rng = np.random.default_rng(seed)
    k = min(m, n)
    U = np.linalg.qr(rng.standard_normal((m, k)))[0]
    V = np.linalg.qr(rng.standard_normal((n, k)))[0]
    return (U * decay ** np.arange(k)) @ V.T


# --------------------------------------------------------------------------------------------------
# lowrank


@pytest.mark.parametrize("power_iters", [0, 1, 2])
def test_sketch_is_projection_onto_power_iterated_vector(power_iters):
    rng = np.random.default_rng(7)
    R = rng.random((40, 30)) - 0.3
    L, Ft = lowrank.sketch(R, power_iters=power_iters, seed=11)
    assert L.shape == (40, 1) and Ft.shape == (1, 30)
    a = R @ np.random.default_rng(11).standard_normal(30)
    for _ in range(power_iters):
        a = R @ (R.T @ a)
    projection = np.outer(a, a) @ R / (a @ a)
    np.testing.assert_allclose(L @ Ft, projection, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(Ft), 1.0)


def test_sketch_matches_note_formula_with_one_power_iteration():
    R = np.random.default_rng(3).standard_normal((25, 17))
    s = np.random.default_rng(5).standard_normal(17)
    t = R @ s
    a = R @ (R.T @ t)
    b = R.T @ a
    L, Ft = lowrank.sketch(R, power_iters=1, seed=5)
    np.testing.assert_allclose(L[:, 0], a * (np.linalg.norm(b) / np.linalg.norm(a) ** 2))
    np.testing.assert_allclose(Ft[0], b / np.linalg.norm(b))


def test_sketch_captures_floor_bias():
    # A floor-rounding residual has a constant mean, i.e. a rank-1 component: the sketch finds it.
    rng = np.random.default_rng(0)
    R = 0.5 + 0.01 * rng.standard_normal((64, 48))
    L, Ft = lowrank.sketch(R)
    assert lplr.rel_error(R, L @ Ft) < 0.05


def test_rsvd_close_to_eckart_young_on_decaying_spectrum():
    R = _decaying(120, 90, 0.8, seed=1)
    rank = 10
    U, S, Vt = lowrank.svd(R, rank)
    s_all = np.linalg.svd(R, compute_uv=False)
    svd_err = np.linalg.norm(R - (U * S) @ Vt)
    np.testing.assert_allclose(svd_err, np.sqrt(np.sum(s_all[rank:] ** 2)), rtol=1e-8)
    Ur, Sr, Vtr = lowrank.rsvd(R, rank, oversample=8, power_iters=1, seed=0)
    assert Ur.shape == (120, rank) and Sr.shape == (rank,) and Vtr.shape == (rank, 90)
    np.testing.assert_allclose(Ur.T @ Ur, np.eye(rank), atol=1e-10)
    np.testing.assert_allclose(Vtr @ Vtr.T, np.eye(rank), atol=1e-10)
    rsvd_err = np.linalg.norm(R - (Ur * Sr) @ Vtr)
    assert svd_err <= rsvd_err <= 1.05 * svd_err
    assert np.all(np.diff(Sr) <= 0)


def test_rsvd_width_clamped_to_matrix():
    R = _decaying(6, 5, 0.5, seed=2)
    _, S, _ = lowrank.rsvd(R, 4, oversample=8)  # width min(12, 6, 5) = 5: exact
    np.testing.assert_allclose(S, np.linalg.svd(R, compute_uv=False)[:4], rtol=1e-10)
    L, Ft = lowrank.factorize(R, "rsvd", 5)
    np.testing.assert_allclose(L @ Ft, R, atol=1e-12)


@pytest.mark.parametrize("method", ["sketch", "rsvd", "svd"])
@pytest.mark.parametrize("split", ["left", "sqrt"])
def test_rank_one_recovered_exactly(method, split):
    rng = np.random.default_rng(4)
    R = np.outer(rng.standard_normal(33), rng.standard_normal(21))
    L, Ft = lowrank.factorize(R, method, 1, split=split)
    assert L.shape == (33, 1) and Ft.shape == (1, 21)
    np.testing.assert_allclose(L @ Ft, R, rtol=1e-10, atol=1e-12)


def test_split_sqrt_balances_factors():
    R = _decaying(30, 20, 0.7, seed=3)
    L1, F1 = lowrank.factorize(R, "svd", 5, split="left")
    L2, F2 = lowrank.factorize(R, "svd", 5, split="sqrt")
    np.testing.assert_allclose(L1 @ F1, L2 @ F2, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(L2, axis=0), np.linalg.norm(F2, axis=1))
    np.testing.assert_allclose(np.linalg.norm(F1, axis=1), 1.0)


@pytest.mark.parametrize("method", ["sketch", "rsvd"])
def test_seeds_deterministic_and_distinct(method):
    R = np.random.default_rng(9).standard_normal((30, 20))
    rank = 1 if method == "sketch" else 3
    a = lowrank.factorize(R, method, rank, power_iters=0, seed=1)
    b = lowrank.factorize(R, method, rank, power_iters=0, seed=1)
    c = lowrank.factorize(R, method, rank, power_iters=0, seed=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.allclose(a[0] @ a[1], c[0] @ c[1])


@pytest.mark.parametrize("method,rank", [("sketch", 1), ("rsvd", 2), ("svd", 2)])
@pytest.mark.parametrize("split", ["left", "sqrt"])
def test_zero_matrix(method, rank, split):
    L, Ft = lowrank.factorize(np.zeros((8, 6)), method, rank, split=split)
    assert np.all(np.isfinite(L)) and np.all(np.isfinite(Ft))
    np.testing.assert_array_equal(L @ Ft, np.zeros((8, 6)))


@pytest.mark.parametrize(
    "call",
    [
        lambda R: lowrank.factorize(R, "qr", 1),
        lambda R: lowrank.factorize(R, "sketch", 2),
        lambda R: lowrank.factorize(R, "svd", 0),
        lambda R: lowrank.factorize(R, "svd", 7),
        lambda R: lowrank.factorize(R, "rsvd", 2.5),
        lambda R: lowrank.factorize(R, "rsvd", 2, split="middle"),
        lambda R: lowrank.factorize(R, "rsvd", 2, oversample=-1),
        lambda R: lowrank.sketch(R, power_iters=-1),
        lambda R: lowrank.sketch(R[0]),
        lambda R: lowrank.svd(np.full((3, 3), np.nan), 1),
        lambda R: lowrank.rsvd(np.zeros((0, 3)), 1),
    ],
)
def test_lowrank_bad_arguments(call):
    with pytest.raises(ValueError):
        call(np.ones((6, 7)))


# --------------------------------------------------------------------------------------------------
# minifloat / MX


def _grid(name: str) -> np.ndarray:
    """All non-negative values of an OCP FP element format, built from its bit fields."""
    f = minifloat.fp_params(name)
    exp_bits, man_bits, max_normal = f.exp_bits, f.man_bits, f.max_normal
    bias = 2 ** (exp_bits - 1) - 1
    values = []
    for E in range(2**exp_bits):
        for M in range(2**man_bits):
            if E == 0:
                v = M / 2**man_bits * 2.0 ** (1 - bias)
            else:
                v = (1 + M / 2**man_bits) * 2.0 ** (E - bias)
            if v <= max_normal:
                values.append(v)
    return np.array(sorted(set(values)))


@pytest.mark.parametrize(
    "name,count,smallest",
    [
        ("e5m2", 124, 2.0**-16),
        ("e4m3", 127, 2.0**-9),
        ("e3m2", 32, 2.0**-4),
        ("e2m3", 32, 2.0**-3),
        ("e2m1", 8, 0.5),
    ],
)
def test_format_grids_match_spec(name, count, smallest):
    grid = _grid(name)
    assert len(grid) == count
    assert grid[1] == smallest
    assert grid[-1] == minifloat.fp_params(name).max_normal == minifloat.elem_max(name)
    if name == "e2m1":
        np.testing.assert_array_equal(grid, [0, 0.5, 1, 1.5, 2, 3, 4, 6])


@pytest.mark.parametrize("name", list(minifloat.NAMED_FORMATS))
@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_grid_points_round_trip(name, mode):
    grid = _grid(name)
    both = np.concatenate([-grid[::-1], grid])
    np.testing.assert_array_equal(minifloat.round_to_format(both, name, mode, _rng_for(mode)), both)


@pytest.mark.parametrize("name", list(minifloat.NAMED_FORMATS))
def test_nearest_is_nearest_grid_point_and_saturates(name):
    grid = _grid(name)
    both = np.concatenate([-grid[::-1], grid])
    max_normal = grid[-1]
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.uniform(-1.2 * max_normal, 1.2 * max_normal, 2000),
            rng.standard_normal(2000) * grid[1] * 8,
            [0.0, -0.0],
        ]
    )
    q = minifloat.round_to_format(x, name)
    assert np.all(np.isin(q, both))
    dist = np.abs(x[:, None] - both[None, :]).min(axis=1)
    np.testing.assert_array_equal(np.abs(x - q), dist)
    big = np.abs(x) >= max_normal
    np.testing.assert_array_equal(q[big], np.sign(x[big]) * max_normal)


@pytest.mark.parametrize("name", list(minifloat.NAMED_FORMATS) + ["int8"])
def test_directed_modes(name):
    top = minifloat.elem_max(name)  # inside the range: saturation does not interfere
    x = np.random.default_rng(1).uniform(-top, top, 1000)
    lo = minifloat.round_to_format(x, name, "floor")
    tr = minifloat.round_to_format(x, name, "trunc")
    assert np.all(lo <= x) and np.all(np.abs(tr) <= np.abs(x))


def test_e4m3_and_e5m2_saturate_never_inf():
    x = np.array([448.0, 460.0, 470.0, 1e6, -1e300, -500.0])
    np.testing.assert_array_equal(
        minifloat.round_to_format(x, "e4m3"), [448, 448, 448, 448, -448, -448]
    )
    np.testing.assert_array_equal(
        minifloat.round_to_format(np.array([57344.0, 61440.0, -1e9]), "e5m2"),
        [57344, 57344, -57344],
    )
    assert minifloat.round_to_format(np.array([465.0]), "e4m3", "floor")[0] == 448.0


def test_round_half_to_even_on_grid():
    q = minifloat.round_to_format(np.array([0.25, 0.75, 2.5, 5.0, -5.0]), "e2m1")
    np.testing.assert_array_equal(q, [0.0, 1.0, 2.0, 4.0, -4.0])


def test_stochastic_rounding_is_seeded_and_unbiased():
    x = np.full(20000, 0.75)
    a = minifloat.round_to_format(x, "e2m1", "stochastic", np.random.default_rng(5))
    b = minifloat.round_to_format(x, "e2m1", "stochastic", np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {0.5, 1.0}
    assert abs(a.mean() - 0.75) < 0.01
    with pytest.raises(ValueError):
        minifloat.round_to_format(x, "e2m1", "stochastic")


def test_int8_elements():
    x = np.array([1.0, 2.0, -2.0, 0.5 / 64, 1.5 / 64, -1.984375, 0.01])
    np.testing.assert_array_equal(
        minifloat.round_to_format(x, "int8"),
        [1.0, 127 / 64, -127 / 64, 0.0, 2 / 64, -127 / 64, 1 / 64],
    )
    assert minifloat.elem_emax("int8") == 0 and minifloat.elem_max("int8") == 127 / 64


def test_mx_e2m1_saturation_property():
    # The note's known property: amax = 1.99 -> X = 2^(0 - 2) = 0.25, 1.99 / X = 7.96 -> 6 -> 1.5.
    x = np.concatenate([[1.99], np.linspace(-1, 1, 31)])
    values, exps = minifloat.mx_quantize(x, "e2m1")
    assert exps.shape == (1,) and exps.dtype == np.int64 and exps[0] == -2
    assert values[0] == 6.0
    assert minifloat.mx_dequantize(values, exps)[0] == 1.5


@pytest.mark.parametrize("scale", [1e-3, 1.0, 37.0, 1e5])
def test_mx_e2m1_doubled_values_are_small_integers(scale):
    x = np.random.default_rng(2).standard_normal((16, 128)) * scale
    values, exps = minifloat.mx_quantize(x, "e2m1", block=32, axis=-1)
    doubled = 2 * values
    np.testing.assert_array_equal(doubled, np.round(doubled))
    assert doubled.min() >= -12 and doubled.max() <= 12
    assert exps.shape == (16, 4)


@pytest.mark.parametrize("elem", list(minifloat.NAMED_FORMATS) + ["int8", "e2m2", "e1m5"])
def test_mx_idempotent_and_error_bounded(elem):
    x = np.random.default_rng(3).standard_normal((8, 64)) * np.exp(np.arange(8))[:, None]
    values, exps = minifloat.mx_quantize(x, elem, block=16)
    deq = minifloat.mx_dequantize(values, exps, block=16)
    v2, e2 = minifloat.mx_quantize(deq, elem, block=16)
    np.testing.assert_array_equal(v2, values)
    np.testing.assert_array_equal(e2, exps)
    # block max: X = 2^e with amax in [2^(e + emax), 2^(e + emax + 1)); at worst saturation error
    amax = np.abs(x).reshape(8, 4, 16).max(axis=-1)
    assert np.all(np.abs(x - deq).reshape(8, 4, 16).max(axis=-1) <= 0.25 * amax + 1e-300)


def test_mx_int8_blocks():
    x = np.random.default_rng(4).uniform(-3, 3, 64)
    values, exps = minifloat.mx_quantize(x, "int8")
    np.testing.assert_array_equal(values * 64, np.round(values * 64))
    assert np.abs(values * 64).max() <= 127
    blocks = np.abs(x).reshape(2, 32).max(axis=1)
    np.testing.assert_array_equal(exps, np.floor(np.log2(blocks)).astype(np.int64))
    deq = minifloat.mx_dequantize(values, exps)
    step = np.repeat(2.0**exps, 32) / 64
    assert np.all(np.abs(deq - x) <= step / 2)


def test_mx_axis_and_layout():
    x = np.random.default_rng(5).standard_normal((64, 3, 5))
    v0, e0 = minifloat.mx_quantize(x, "e4m3", block=32, axis=0)
    vt, et = minifloat.mx_quantize(np.moveaxis(x, 0, -1), "e4m3", block=32, axis=-1)
    assert v0.shape == x.shape and e0.shape == (2, 3, 5)
    np.testing.assert_array_equal(np.moveaxis(vt, -1, 0), v0)
    np.testing.assert_array_equal(np.moveaxis(et, -1, 0), e0)
    deq = minifloat.mx_dequantize(v0, e0, block=32, axis=0)
    np.testing.assert_allclose(deq, x, rtol=2**-3)


def test_mx_zero_and_clamped_blocks():
    x = np.concatenate([np.zeros(32), np.full(32, 2.0**200), np.full(32, 2.0**-200)])
    values, exps = minifloat.mx_quantize(x, "e4m3")
    np.testing.assert_array_equal(exps, [-127, 127, -127])
    np.testing.assert_array_equal(values[:32], 0.0)
    np.testing.assert_array_equal(values[32:64], 448.0)  # 2^200 / 2^127 saturates
    np.testing.assert_array_equal(values[64:], 0.0)  # 2^-200 * 2^127 underflows e4m3
    assert np.all(np.isfinite(minifloat.mx_dequantize(values, exps)))


@pytest.mark.parametrize(
    "call",
    [
        lambda: minifloat.round_to_format(np.ones(3), "e4m4"),
        lambda: minifloat.round_to_format(np.array([np.inf]), "e4m3"),
        lambda: minifloat.round_to_format(np.ones(3), "e4m3", "up"),
        lambda: minifloat.mx_quantize(np.ones(40), "e2m1"),
        lambda: minifloat.mx_quantize(np.ones(32), "fp4"),
        lambda: minifloat.mx_quantize(np.ones(32), "e2m1", block=0),
        lambda: minifloat.mx_quantize(np.ones((32, 2)), "e2m1", axis=2),
        lambda: minifloat.mx_dequantize(np.ones(64), np.zeros(3, dtype=np.int64)),
        lambda: minifloat.mx_dequantize(np.ones(64), np.zeros(2)),
    ],
)
def test_minifloat_bad_arguments(call):
    with pytest.raises(ValueError):
        call()


@settings(max_examples=200, deadline=None)
@given(st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from(list(minifloat.NAMED_FORMATS)))
def test_round_to_format_on_grid_property(x, name):
    q = minifloat.round_to_format(np.array([x]), name)[0]
    grid = _grid(name)
    assert abs(q) in grid
    assert abs(x - q) == np.abs(x - np.concatenate([-grid, grid])).min()


# --------------------------------------------------------------------------------------------------
# LPLR and baselines


def test_minmax_quantize_levels():
    X = np.random.default_rng(6).uniform(-2, 3, (50, 40))
    for bits in (1, 2, 4):
        Xh = lplr.minmax_quantize(X, bits)
        step = (X.max() - X.min()) / (2**bits - 1)
        assert len(np.unique(np.round((Xh - X.min()) / step, 9))) <= 2**bits
        assert np.isclose(Xh.min(), X.min()) and np.isclose(Xh.max(), X.max())
        assert np.abs(Xh - X).max() <= step / 2 + 1e-12
    C = np.full((3, 4), 2.5)
    np.testing.assert_array_equal(lplr.minmax_quantize(C, 2), C)
    np.testing.assert_array_equal(lplr.nq(X, 3), lplr.minmax_quantize(X, 3))


def test_budget_rank():
    assert lplr.budget_rank(1000, 1000, 1, 4, 8) == 83
    assert lplr.budget_rank(1000, 1000, 2, 4, 8) == 166
    assert lplr.budget_rank(1000, 1000, 1, 4, 8, cr=0.5) == 41
    assert lplr.budget_rank(12, 12, 1, 4, 8) == 1  # exactly 144 / 144
    with pytest.raises(ValueError):
        lplr.budget_rank(0, 10, 1, 4, 8)
    with pytest.raises(ValueError):
        lplr.budget_rank(10, 10, 1, 4, 8, cr=-1.0)


def test_lplr_shapes_determinism_and_normalize_shift():
    X = _decaying(60, 50, 0.85, seed=7) + 0.3
    L, R, beta = lplr.lplr(X, 8, 4, 8, seed=0)
    assert L.shape == (60, 8) and R.shape == (8, 50) and beta == 0.0
    L2, R2, _ = lplr.lplr(X, 8, 4, 8, seed=0)
    np.testing.assert_array_equal(L @ R, L2 @ R2)
    L3, R3, _ = lplr.lplr(X, 8, 4, 8, seed=1)
    assert not np.allclose(L @ R, L3 @ R3)
    assert len(np.unique(L)) <= 16 and len(np.unique(R)) <= 256
    Ln, Rn, bn = lplr.lplr(X, 8, 4, 8, seed=0, normalize_shift=True)
    np.testing.assert_array_equal(Ln, L)
    plain = lplr.rel_error(X, L @ R)
    shifted = lplr.rel_error(X, Ln @ Rn + bn)
    assert shifted <= plain
    # (alpha, beta) is the least-squares optimum: the residual is orthogonal to [L R, 1]
    resid = X - (Ln @ Rn + bn)
    assert abs(resid.sum()) < 1e-8 and abs(np.sum(resid * (L @ R))) < 1e-8
    for q in (1, 2):
        Lq, Rq, _ = lplr.lplr(X, 8, 4, 8, power_iters=q, seed=0)
        assert lplr.rel_error(X, Lq @ Rq) < 1.0


def test_lplr_zero_matrix_and_bad_arguments():
    L, R, beta = lplr.lplr(np.zeros((5, 4)), 2, 4, 8, normalize_shift=True)
    assert np.all(np.isfinite(L)) and np.all(np.isfinite(R)) and np.isfinite(beta)
    np.testing.assert_array_equal(L @ R + beta, 0.0)
    X = np.ones((5, 4))
    for call in (
        lambda: lplr.lplr(X, 0, 4, 8),
        lambda: lplr.lplr(X, 2, 0, 8),
        lambda: lplr.lplr(X, 2, 4, 8, power_iters=-1),
        lambda: lplr.lplr(X[0], 2, 4, 8),
        lambda: lplr.dsvd(X, 5, 4, 8),
        lambda: lplr.dsvd(X, 2, 4, 8, split="sqrt"),
        lambda: lplr.minmax_quantize(X, 1.5),
        lambda: lplr.rel_error(X, X[:, :2]),
    ):
        with pytest.raises(ValueError):
            call()
    assert lplr.rel_error(np.zeros(3), np.zeros(3)) == 0.0


def test_dsvd_full_rank_high_bits_is_close():
    X = np.random.default_rng(8).standard_normal((20, 15))
    for split in ("left", "right"):
        L, R, beta = lplr.dsvd(X, 15, 16, 16, split=split)
        assert beta == 0.0 and lplr.rel_error(X, L @ R) < 1e-3


# --------------------------------------------------------------------------------------------------
# Shepp–Logan phantom and the LPLR facts of the note


@pytest.fixture(scope="module")
def phantom():
    return shepp_logan(1000)


@pytest.fixture(scope="module")
def phantom_errors(phantom):
    X = phantom
    rank = lplr.budget_rank(1000, 1000, 1, 4, 8)
    L, R, beta = lplr.lplr(X, rank, 4, 8, seed=0)
    Ld, Rd, bd = lplr.dsvd(X, rank, 4, 8)
    return {
        "rank": rank,
        "nq": lplr.rel_error(X, lplr.nq(X, 1)),
        "lplr": lplr.rel_error(X, L @ R + beta),
        "dsvd": lplr.rel_error(X, Ld @ Rd + bd),
    }


def test_phantom_small_and_values(phantom):
    np.testing.assert_allclose(shepp_logan(3), [[0, 0, 0], [0, 0.2, 0], [0, 0, 0]], atol=1e-15)
    assert phantom.shape == (1000, 1000) and phantom.dtype == np.float64
    levels = np.unique(np.round(phantom, 9))
    np.testing.assert_allclose(levels, [0, 0.1, 0.2, 0.3, 0.4, 1.0], atol=1e-9)
    with pytest.raises(ValueError):
        shepp_logan(1)


@pytest.mark.parametrize(
    "x,y,value",
    [
        (0.0, 0.35, 0.3),  # ellipse 5 is in the upper half (MATLAB's y axis points up)
        (0.0, -0.35, 0.2),
        (-0.08, -0.605, 0.3),  # the small ellipses are at the bottom
        (-0.08, 0.605, 0.2),
        (0.1427, -0.238, 0.0),  # ellipse 3 (x0 = 0.22, phi = -18 deg) is tilted this way ...
        (0.297, -0.238, 0.2),  # ... not that way
        (-0.1273, -0.285, 0.0),  # ellipse 4 (x0 = -0.22, phi = +18 deg)
        (-0.3127, -0.285, 0.2),
        (0.0, 0.0, 0.2),
        (0.0, 0.95, 0.0),
        (0.0, 0.9, 1.0),  # skull: ellipse 1 only
    ],
)
def test_phantom_orientation(phantom, x, y, value):
    n = phantom.shape[0]
    row = round((1 - y) * (n - 1) / 2)
    col = round((x + 1) * (n - 1) / 2)
    assert phantom[row, col] == pytest.approx(value, abs=1e-12)


def test_phantom_nq_fact(phantom_errors):
    # Note, section 4: NQ with b_nq = 1 bit on the 1000^2 modified Shepp-Logan phantom -> 0.5323.
    # Exact value here: 0.5322886027806937.
    assert round(phantom_errors["nq"], 4) == 0.5323


def test_phantom_lplr_fact(phantom_errors):
    # Rank 83 = floor(10^6 / (4000 + 8000)); (b1, b2) = (4, 8), seed 0.
    # Exact values here: LPLR 0.24719713 (seeds 1, 2: 0.2350, 0.2265; with normalize_shift
    # 0.24719168), DSVD (split="left", the authors' code) 0.51044943, NQ 0.53228860.
    # DSVD with split="right" (Q(U_r), Q(Sigma_r V_r^T)) would give 0.2429: not the paper's DSVD.
    assert phantom_errors["rank"] == 83
    assert 0.20 <= phantom_errors["lplr"] <= 0.28
    assert phantom_errors["lplr"] < phantom_errors["dsvd"] < phantom_errors["nq"]
