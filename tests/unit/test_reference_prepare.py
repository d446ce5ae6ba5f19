"""lrqc.reference.prepare: a static operand treated once gives matmul and evaluate the same
numbers, bit for bit, as the raw array; a bias is added in float64 before the one rounding to
the output type; misuse is an LrqcError."""

from __future__ import annotations

import numpy as np
import pytest

import lrqc
from lrqc.reference import PreparedOperand, evaluate, matmul, prepare, prepared, residual
from lrqc.reference.data import pair
from lrqc.reference.inputs import as_bias, to_output

M, N, K = 64, 96, 128  # LPLR's rank 83 and LRAMM's rank 64 fit
EXTRA = """
scheme half_static_a {
    a: int4 per_channel round=trunc + lowrank(rank=4, method=rsvd) + dense(int8 per_tensor)
    b: float16
    static: a
    output: float16
}
scheme packed_other {
    a: int8 per_channel round=floor + lowrank(rank=2, method=svd, other=packed)
    b: int4 per_vector(32) + sparse(threshold=0.5, max_density=0.35) + lowrank(rank=3)
    output: bfloat16
}
scheme none_static {
    a: int8
    b: int8 per_channel + dense(int4 per_channel)
    static: none
}
"""


def _schemes(all_examples):
    return {**all_examples, **lrqc.parse_schemes(EXTRA)}


@pytest.fixture(scope="module")
def data():
    A, B = pair("normal", M, N, K, seed=5)
    bias = np.random.default_rng(9).standard_normal(N) * 3
    return A, B, bias


def _same_report(r1, r2):
    assert (r1.direct, r1.compensated, r1.float32) == (r2.direct, r2.compensated, r2.float32)
    assert r1.metrics == r2.metrics and r1.operands == r2.operands and r1.notes == r2.notes
    assert r1.table() == r2.table()


def test_prepared_gives_the_same_numbers_for_every_scheme(all_examples, data):
    A, B, bias = data
    schemes = _schemes(all_examples)
    assert len(schemes) >= 12
    for name, s in schemes.items():
        raw = [(b, matmul(s, A, B, exact=True, bias=b)) for b in (None, bias)]
        typed = matmul(s, A, B, bias=bias)
        report = evaluate(s, A, B, bias=bias)
        for role in ("a", "b"):
            P = prepare(s, A if role == "a" else B, role=role)
            assert isinstance(P, PreparedOperand) and P.role == role
            args = (P, B) if role == "a" else (A, P)
            for b, want in raw:
                assert np.array_equal(matmul(s, *args, exact=True, bias=b), want), (name, role)
            got = matmul(s, *args, bias=bias)
            assert got.dtype == typed.dtype and np.array_equal(got, typed), (name, role)
            for _ in range(2):  # the second time from what the first one kept
                _same_report(evaluate(s, *args, bias=bias), report)


def test_default_role_is_the_static_operand(all_examples, data):
    A, B, _ = data
    schemes = _schemes(all_examples)
    assert prepare(schemes["lrqmm_int8"], B).role == "b"
    assert prepare(schemes["half_static_a"], A).role == "a"
    assert prepare(schemes["none_static"], B).role == "b"
    P = prepare(schemes["half_static_a"], A)
    assert np.array_equal(matmul(schemes["half_static_a"], P, B),
                          matmul(schemes["half_static_a"], A, B))


def test_later_changes_to_the_array_do_not_reach_the_prepared_operand(all_examples, data):
    A, B, _ = data
    s = all_examples["lrqmm_w4a8_r16"]
    mine = B.copy()
    P = prepare(s, mine)
    mine[:] = 0.0
    assert np.array_equal(matmul(s, A, P, exact=True), matmul(s, A, B, exact=True))
    assert not P.x.flags.writeable


def test_the_weight_is_factorized_once(all_examples, data, monkeypatch):
    """lrqmm_int8 has a lowrank term on each operand: with B prepared, a product factorizes
    only A's residual; evaluate's direct baseline of B is quantized on first use only."""
    A, B, _ = data
    s = all_examples["lrqmm_int8"]
    calls = {"factorize": 0, "treat": 0}

    def counting(name, fn):
        def wrapped(*args, **kw):
            calls[name] += 1
            return fn(*args, **kw)
        return wrapped

    monkeypatch.setattr(residual, "factorize", counting("factorize", residual.factorize))
    monkeypatch.setattr(prepared, "prepare_part", counting("treat", prepared.prepare_part))
    matmul(s, A, B)
    assert calls == {"factorize": 2, "treat": 2}
    P = prepare(s, B)
    assert calls == {"factorize": 3, "treat": 3}
    A2 = A[::-1].copy()
    for X in (A, A2, A):
        matmul(s, X, P)
    assert calls == {"factorize": 6, "treat": 6}  # A's term and A's treatment per product
    evaluate(s, A, P)  # A under the scheme and the direct scheme; B's direct baseline, once
    assert calls == {"factorize": 7, "treat": 9}
    evaluate(s, A2, P)
    assert calls == {"factorize": 8, "treat": 11}


def test_bias_is_added_in_float64_before_the_one_rounding(all_examples, data):
    A, B, bias = data
    s = all_examples["lrqmm_w4a8_r16"]
    exact = matmul(s, A, B, exact=True)
    with_bias = matmul(s, A, B, exact=True, bias=bias)
    assert np.array_equal(with_bias, exact + bias[None, :])
    assert np.array_equal(matmul(s, A, B, bias=bias), (exact + bias).astype(np.float32))
    # any real dtype, shape (N,) or (1, N)
    ints = np.arange(N, dtype=np.int16) - 40
    assert np.array_equal(matmul(s, A, B, exact=True, bias=ints[None, :]), exact + ints)
    assert np.array_equal(matmul(s, A, B, exact=True, bias=ints.tolist()), exact + ints)


def test_bias_with_a_float64_scheme_is_the_formula(data):
    A, B, bias = data
    s = lrqc.parse_schemes("scheme f { a: float64\n b: float64\n output: float64 }")["f"]
    C = matmul(s, A, B, bias=bias)
    assert C.dtype == np.float64 and np.array_equal(C, A @ B + bias)
    half = lrqc.parse_schemes("scheme h { a: float64\n b: float64\n output: float16 }")["h"]
    assert np.array_equal(matmul(half, A, B, bias=bias), to_output(A @ B + bias, "float16"))


def test_evaluate_with_bias_measures_against_the_product_plus_bias(all_examples, data):
    A, B, bias = data
    s = all_examples["lrqmm_int8"]
    r = evaluate(s, A, B, bias=bias)
    ref = A @ B + bias
    C = matmul(s, A, B, bias=bias).astype(np.float64)
    assert r.compensated == lrqc.reference.rel_error(C, ref)
    assert r.metrics["compensated"] == lrqc.reference.error_metrics(C, ref)
    c32 = A.astype(np.float32) @ B.astype(np.float32) + bias.astype(np.float32)
    assert r.float32 == lrqc.reference.rel_error(c32.astype(np.float64), ref)
    assert r.bias and "A @ B + bias" in r.table()
    assert not evaluate(s, A, B).bias


@pytest.mark.parametrize("bias,msg", [
    (np.ones(N - 1), f"bias: has {N - 1} values but C has N={N} columns"),
    (np.ones((N, 1)), rf"bias: expected a vector of N={N} values \(shape \({N},\) or \(1, {N}\)\)"),
    (np.ones((2, N)), r"got shape \(2, 96\)"),
    (np.r_[np.ones(N - 1), np.inf], rf"bias: contains non-finite values \(first at \[{N - 1}\]"),
    (np.array(["x"] * N), "bias: dtype <U1 is not a real number type"),
    ([[1.0], [1.0, 2.0]], "bias: cannot be read as an array"),
])
def test_bad_bias_is_an_input_error(all_examples, data, bias, msg):
    A, B, _ = data
    s = all_examples["lrqmm_int8"]
    P = prepare(s, B)
    for call in (lambda: matmul(s, A, B, bias=bias), lambda: matmul(s, A, P, bias=bias),
                 lambda: evaluate(s, A, P, bias=bias), lambda: as_bias(bias, N)):
        with pytest.raises(lrqc.InputError, match=msg):
            call()


def test_misuse_of_prepared_operands(all_examples, data):
    A, B, _ = data
    s, other = all_examples["lrqmm_int8"], all_examples["lrqmm_w4a8_r16"]
    P = prepare(s, B)
    for fn in (matmul, evaluate):
        with pytest.raises(lrqc.InputError, match="made for scheme 'lrqmm_int8' was given to "
                           "scheme 'lrqmm_w4a8_r16'"):
            fn(other, A, P)
        with pytest.raises(lrqc.InputError, match="A: a PreparedOperand of operand 'b' was given"):
            fn(s, P, B)
        with pytest.raises(lrqc.InputError, match=r"K differs \(100 vs 128\)"):
            fn(s, A[:, :100], P)
    twin = lrqc.parse_schemes("scheme lrqmm_int8 { a: int8\n b: int8 }")["lrqmm_int8"]
    with pytest.raises(lrqc.InputError, match="same name, defined differently"):
        matmul(twin, A, P)
    same = lrqc.parse_schemes("scheme lrqmm_int8 {\n a: int8 per_tensor round=floor + lowrank("
                              "rank=1, method=sketch, power_iters=1, seed=0)\n b: int8 per_tensor "
                              "round=floor + lowrank(rank=1, method=sketch, power_iters=1, seed=0)"
                              "\n}")["lrqmm_int8"]
    assert np.array_equal(matmul(same, A, P), matmul(s, A, B))  # an equal scheme is the scheme
    with pytest.raises(lrqc.InputError, match="role must be 'a' or 'b', got 'c'"):
        prepare(s, B, role="c")
    with pytest.raises(lrqc.InputError, match="B: expected a 2-D matrix"):
        prepare(s, B[0])
    with pytest.raises(lrqc.InputError, match="B: contains non-finite"):
        prepare(s, np.full((4, 4), np.nan))
    with pytest.raises(lrqc.SchemeError, match=r"rank 16 of 'b' exceeds min\(K, N\) = 8"):
        prepare(other, B[:, :8])
    with pytest.raises(lrqc.SchemeError, match=r"product rank 64 exceeds min\(M, N, K\) = 32"):
        prepare(all_examples["lramm_r64"], B[:, :32])
    vector = lrqc.parse_schemes("scheme v { a: int8 per_vector(32) pad=false\n b: int8 "
                                "per_vector(32) pad=false }")["v"]
    with pytest.raises(lrqc.SchemeError, match="needs K divisible by 32, K=100"):
        prepare(vector, B[:100])
