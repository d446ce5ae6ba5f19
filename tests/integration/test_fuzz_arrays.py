"""Fuzz (hypothesis) of the arrays given to compiled kernels: odd dtypes, shapes, layouts and
values (NaN, inf, zeros, constants, magnitudes across and beyond the float32 range) as A per
call and as B to pack. Whatever comes in, a kernel raises nothing but LrqcError, accepts every
array the rules accept (2-D, real, right shape, finite in float32), and when it accepts, C is
lrqc.reference.matmul's on the same inputs (A as the float32 it computes with).

A few hundred examples by default; `pytest -m slow tests/integration/test_fuzz_arrays.py`
runs many more (LRQC_PROPERTY_SCALE multiplies both)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lrqc
from lrqc.reference import matmul
from lrqc.reference.inputs import F32_LIMIT

pytest.importorskip("tvm")

SCALE = max(1, int(os.environ.get("LRQC_PROPERTY_SCALE", "1")))
SETTINGS = {"deadline": None,
            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]}
F32_MAX = float(np.finfo(np.float32).max)
N, K = 16, 32

SCHEMES = {  # name -> (scheme text, M: rows or lo..hi)
    "int8": ("a: int8 per_channel\n b: int8 per_channel", "4"),
    "vsquant": (("a: uint4 per_vector(16, scale=uint6 per_channel)\n"
                 " b: int4 per_vector(16, scale=uint6 per_channel)"), "4"),
    "lrqmm": (("a: int8 per_tensor round=floor + lowrank(rank=1, method=sketch, power_iters=1)\n"
               " b: int8 per_tensor round=floor + lowrank(rank=1, method=sketch, power_iters=1)"),
              "6"),
    "float": ("a: float16\n b: int4 per_channel", "4"),
    "mrange": ("a: int8 per_tensor calibrate=minmax\n b: int4 per_vector(16)", "1..8"),
}


@pytest.fixture(scope="module")
def kernels():
    out = {}
    for name, (body, m) in SCHEMES.items():
        s = lrqc.parse_schemes(f"scheme {name} {{\n {body}\n}}")[name]
        out[name] = (s, lrqc.compile(s, M=m, N=N, K=K))
    return out


# ---------------------------------------------------------------- values


def rows_of(kernel) -> list[int]:
    return sorted({kernel.m_min, kernel.m_max, (kernel.m_min + kernel.m_max) // 2})


# Magnitudes: each operand is a pattern times 2^e, over float32's whole range: where the
# kernels' float32 arithmetic leaves it (only near its limits), they must refuse the call.
# Below 2^-119 a group's scale (max |x| / 127) is subnormal in float32 and loses precision.
EXPONENTS = [-130, -110, -100, -60, -20, 0, 0, 0, 20, 60, 100, 120, 126]


@st.composite
def values(draw, shape, e: int):
    """A float64 array of `shape`: a pattern (gaussian, uniform, one sign, all zero, constant,
    one nonzero, integers, powers of two, many octaves) times 2^e, sometimes with a NaN, an
    inf or a value beyond float32 planted (subnormal values come with e = -110)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pattern = draw(st.sampled_from(["normal", "uniform", "positive", "zero", "constant", "one",
                                    "integers", "pow2", "wide"]))
    if pattern == "normal":
        x = rng.standard_normal(shape)
    elif pattern == "uniform":
        x = rng.uniform(-1, 1, shape)
    elif pattern == "positive":
        x = rng.random(shape) + 0.5
    elif pattern == "zero":
        x = np.zeros(shape)
    elif pattern == "constant":
        x = np.full(shape, draw(st.sampled_from([1.0, -3.0, 0.1])))
    elif pattern == "one":
        x = np.zeros(shape)
        x[tuple(rng.integers(0, d) for d in shape)] = 1.0
    elif pattern == "integers":
        x = rng.integers(-4, 5, shape).astype(np.float64)
    elif pattern == "pow2":
        x = np.exp2(rng.integers(-3, 4, shape)) * rng.choice([-1, 1], shape)
    else:  # magnitudes spread over 16 octaves within one matrix
        x = rng.standard_normal(shape) * np.exp2(rng.integers(-8, 8, shape))
    x = x * 2.0**e
    plant = draw(st.sampled_from([None] * 8 + [np.nan, np.inf, -np.inf, 1e39, -F32_LIMIT]))
    if plant is not None:
        x[tuple(rng.integers(0, d) for d in shape)] = plant
    return x


def accepted(x) -> bool:
    """Whether the rules accept x as an operand of these shapes (checked by the caller)."""
    return bool(np.all(np.isfinite(x)) and np.abs(x).max() < F32_LIMIT)


def run(kernel, A, B):
    """C, or the LrqcError: never any other exception."""
    try:
        return kernel(A, kernel.pack(B))
    except lrqc.LrqcError as exc:
        assert "\n" not in str(exc), str(exc)
        return exc


def coupled(s) -> tuple[bool, bool]:
    """(rows, columns) whose float32 rounding errors mix in C: a lowrank term on A factors A's
    whole residual (every row's C carries float32 errors of the largest row), one on B B's."""
    def lowrank(op):
        return any(type(t).__name__ == "LowRank" for t in getattr(op, "residuals", ()))
    return lowrank(s.a), lowrank(s.b)


def check_against_reference(s, C, A, B):
    """C equals reference.matmul(s, float32 A, B): per element within a few float32 ulps of
    sum_k |A_ik| |B_kj| (the magnitudes the kernel's float32 epilogue and glue round; the
    largest over the rows and columns a lowrank term mixes) plus float32's subnormal spacing;
    where the reference's C is not finite (a float16 operand overflowed) or beyond float32's
    range, C must be the same NaN or infinity."""
    A32 = np.asarray(A).astype(np.float32)
    with np.errstate(all="ignore"):
        R = matmul(s, A32, B, exact=True)
        S = np.abs(A32.astype(np.float64)) @ np.abs(np.asarray(B, np.float64))
    rows, cols = coupled(s)
    S = S.max(axis=0, keepdims=True) if rows else S
    S = S.max(axis=1, keepdims=True) if cols else S
    bound = 3e-5 * S + 2 * float(np.finfo(np.float32).smallest_subnormal)
    bound = np.broadcast_to(bound, R.shape)  # (a row or column of bounds where a term couples)
    C = np.asarray(C, np.float64)
    assert C.shape == R.shape and C.dtype == np.float64
    special = ~np.isfinite(R) | (np.abs(R) >= F32_MAX * (1 - 1e-4))
    with np.errstate(invalid="ignore"):
        err = np.abs(C - R)
    bad = ~special & ~(err <= bound)
    assert not bad.any(), (f"{bad.sum()} elements off: worst {err[bad].max():.3g} vs bound "
                           f"{bound[bad][np.argmax(err[bad])]:.3g}")
    Rs = np.where(np.isfinite(R[special]), np.sign(R[special]) * np.inf, R[special])
    np.testing.assert_array_equal(np.where(np.abs(C[special]) >= F32_MAX * (1 - 1e-3),
                                           np.sign(C[special]) * np.inf, C[special]), Rs)


def check_values(kernels, data, name):
    s, kernel = kernels[name]
    m = data.draw(st.sampled_from(rows_of(kernel)), "m")
    ea = data.draw(st.sampled_from(EXPONENTS), "e_A")
    eb = data.draw(st.sampled_from(EXPONENTS), "e_B")
    A = data.draw(values((m, K), ea), "A")
    B = data.draw(values((K, N), eb), "B")
    C = run(kernel, A, B)
    if not (accepted(A) and accepted(B)):
        assert isinstance(C, lrqc.InputError), "non-finite or out-of-range input accepted"
        return
    try:
        with np.errstate(all="ignore"):
            matmul(s, np.asarray(A).astype(np.float32), B)
    except lrqc.InputError as exc:  # a float16 operand beyond float16's range: both refuse
        assert "range" in str(exc) and isinstance(C, lrqc.InputError), C
        return
    if isinstance(C, lrqc.InputError):
        # the kernel's float32 arithmetic left float32's range: only near its limits (or a
        # group of values below 1.5e-36, whose scale is subnormal in float32)
        assert ("float32's range" in str(C) and near_float32_limit(A, B)) or (
            "subnormal in float32" in str(C) and min(tiny_group(A), tiny_group(B.T)) < 2**-119
        ), f"refused: {C}"
        return
    check_against_reference(s, C, A, B)


def tiny_group(X) -> float:
    """The smallest nonzero |x|: a quantization group whose largest |x| is below 1.5e-36 has
    values at least that small."""
    x = np.abs(np.asarray(X, np.float64))
    return float(x[x > 0].min()) if (x > 0).any() else np.inf


def near_float32_limit(A, B) -> bool:
    """Whether C, or the integer sum times one operand's scale, can reach float32's largest
    values: sum_k |A_ik| |B_kj| within 2^8 of it, or 127 K max|X| for either operand."""
    A, B = np.abs(np.asarray(A, np.float64)), np.abs(np.asarray(B, np.float64))
    with np.errstate(all="ignore"):
        top = max((A @ B).max(), 127 * K * A.max(), 127 * K * B.max())
    return not top < F32_MAX / 2**8


@pytest.mark.parametrize("name", list(SCHEMES))
@settings(max_examples=60 * SCALE, **SETTINGS)
@given(data=st.data())
def test_values(kernels, name, data):
    check_values(kernels, data, name)


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.parametrize("name", list(SCHEMES))
@settings(max_examples=1500 * SCALE, **SETTINGS)
@given(data=st.data())
def test_values_long(kernels, name, data):
    check_values(kernels, data, name)


# ---------------------------------------------------------------- dtypes, shapes, layouts

DTYPES = [np.bool_, np.int8, np.uint8, np.int32, np.int64, np.float16, np.float32, np.float64,
          np.complex64, object, "U8", "S4", "datetime64[s]"]


def as_dtype(x: np.ndarray, dtype):
    with np.errstate(all="ignore"):
        if dtype == "datetime64[s]":
            return x.astype(np.int64).astype(dtype)
        return x.astype(dtype)


def views(x: np.ndarray, how: str):
    """x (2-D) in another memory layout, same values."""
    if how == "fortran":
        return np.asfortranarray(x)
    if how == "strided":  # every other column of a wider array
        wide = np.zeros((x.shape[0], 2 * x.shape[1]), x.dtype)
        wide[:, ::2] = x
        return wide[:, ::2]
    if how == "reversed":
        return x[::-1, ::-1].copy()[::-1, ::-1]
    if how == "unaligned":  # a buffer one byte off the dtype's alignment
        raw = np.zeros(x.nbytes + 1, np.uint8)
        out = np.frombuffer(raw.data, x.dtype, x.size, offset=1).reshape(x.shape)
        out[...] = x
        return out
    if how == "readonly":
        x = x.copy()
        x.flags.writeable = False
        return x
    if how == "list":
        return x.tolist()
    return x


SHAPES = ["ok", "ok", "ok", "k+1", "k-1", "1-D", "3-D", "no rows", "no columns", "m+1", "m-1",
          "scalar"]


def reshape(x: np.ndarray, how: str, role: str):
    """x (2-D, right shape) made wrong in one way; role "a" (M x K) or "b" (K x N)."""
    k_axis = 1 if role == "a" else 0
    if how == "k+1":
        return np.concatenate([x, x.take([0], axis=k_axis)], axis=k_axis)
    if how == "k-1":
        return x.take(range(K - 1), axis=k_axis)
    if how == "1-D":
        return x.ravel()
    if how == "3-D":
        return x[None]
    if how == "no rows":
        return x[:0]
    if how == "no columns":
        return x[:, :0]
    if how == "m+1":
        return np.concatenate([x, x[:1]]) if role == "a" else x
    if how == "m-1":
        return x[:-1] if role == "a" else x
    if how == "scalar":
        return x[0, 0]
    return x


def check_arrays(kernels, data, name):
    s, kernel = kernels[name]
    m = data.draw(st.sampled_from(rows_of(kernel)), "m")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), "seed"))
    role = data.draw(st.sampled_from(["a", "b"]), "operand")
    base = {"a": rng.standard_normal((m, K)) * 3, "b": rng.standard_normal((K, N)) * 3}
    dtype = data.draw(st.sampled_from(DTYPES), "dtype")
    shape = data.draw(st.sampled_from(SHAPES), "shape")
    layout = data.draw(st.sampled_from(["c", "fortran", "strided", "reversed", "unaligned",
                                        "readonly", "list"]), "layout")
    x = as_dtype(base[role], dtype)
    x = reshape(x, shape, role)
    if isinstance(x, np.ndarray) and x.ndim == 2 and x.size and x.dtype != object:
        x = views(x, layout)
    args = dict(base, **{role: x})
    C = run(kernel, args["a"], args["b"])
    arr = np.asarray(x)
    rows = arr.shape[0] if arr.ndim == 2 else 0
    ok_shape = arr.ndim == 2 and arr.size and (
        arr.shape == (K, N) if role == "b" else (arr.shape[1] == K and kernel.m_min <= rows
                                                 <= kernel.m_max))
    ok = ok_shape and arr.dtype.kind in "biuf"
    if not ok:
        assert isinstance(C, lrqc.InputError), f"{dtype} {shape} {layout} accepted: {C!r:.80}"
        return
    assert not isinstance(C, lrqc.LrqcError), f"valid {dtype} {shape} {layout} refused: {C}"
    A, B = (np.asarray(args["a"]), np.asarray(args["b"]))
    check_against_reference(s, C, A.astype(np.float64), B.astype(np.float64))
    # the same values in a plain float64 C-order array give the same C, bit for bit
    same = run(kernel, A.astype(np.float64), B.astype(np.float64))
    np.testing.assert_array_equal(C, same)


@pytest.mark.parametrize("name", list(SCHEMES))
@settings(max_examples=40 * SCALE, **SETTINGS)
@given(data=st.data())
def test_dtypes_shapes_layouts(kernels, name, data):
    check_arrays(kernels, data, name)


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.parametrize("name", list(SCHEMES))
@settings(max_examples=800 * SCALE, **SETTINGS)
@given(data=st.data())
def test_dtypes_shapes_layouts_long(kernels, name, data):
    check_arrays(kernels, data, name)
