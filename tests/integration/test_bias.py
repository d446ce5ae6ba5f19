"""The bias of C = A @ B + bias in compiled kernels: added by the GEMM's epilogue (sums over
several K groups of scales start from it), for every shipped scheme, in
the transposed (static: a) and chained (LPLR, LRAMM) kernels, with M buckets, compared with
lrqc.reference.matmul(..., bias=...) on the same inputs; and its misuse refused."""

from __future__ import annotations

import numpy as np
import pytest

import lrqc
from lrqc.plan import names
from lrqc.plan import signature as sig
from lrqc.reference import matmul

from ..conftest import EXAMPLES

pytest.importorskip("tvm")

SCHEMES = {name: s for path in EXAMPLES for name, s in lrqc.load_schemes(path).items()}
M, N, K = 24, 40, 64


def scheme(body: str) -> lrqc.Scheme:
    return lrqc.parse_schemes(f"scheme s {{\n{body}\n}}")["s"]


def rel(C, R) -> float:
    C, R = np.asarray(C, np.float64), np.asarray(R, np.float64)
    return float(np.abs(C - R).max() / np.abs(R).max())


def data(seed: int = 0, m: int = M, n: int = N, k: int = K):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, k)).astype(np.float32)
    B = rng.standard_normal((k, n)).astype(np.float32)
    return A, B, rng.standard_normal(n) * 8 + 3  # a bias as large as C's entries


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_every_example_adds_the_bias_as_the_reference(name):
    s = SCHEMES[name]
    A, B, bias = data(m=64, n=128, k=256)  # sizes every example accepts (ranks up to 83)
    kernel = lrqc.compile(s, 64, 128, 256)
    C = kernel.run(A, B, bias=bias)
    ref = matmul(s, A, B, bias=bias)
    assert rel(C, ref) < 2e-6
    plain = kernel.run(A, B)  # and the bias is really there: C - C0 is the bias
    assert np.abs(C.astype(np.float64) - plain - bias).max() < 1e-4 * np.abs(bias).max()


@pytest.mark.parametrize("body", [
    "a: int8 per_channel\n b: int8 per_channel",  # one group: the epilogue adds it
    "a: int8 per_vector(16)\n b: int4 per_vector(16)",  # groups: the sum starts from it
    "a: float16\n b: int8 per_channel",  # the float path
    "a: int8 per_channel\n b: int8 per_channel + lowrank(rank=2)",
])
def test_bias_with_m_buckets_and_one_packed_operand(body):
    s = scheme(body)
    kernel = lrqc.compile(s, (1, 32), N, K)
    A, B, bias = data(1, m=32)
    packed = kernel.pack(B, bias=bias)
    for m in (1, 7, 32):
        assert rel(kernel(A[:m], packed), matmul(s, A[:m], B, bias=bias)) < 2e-6
    assert sig.BIAS in sig.params(kernel.plan, names.FN_GEMM)  # every GEMM adds the bias


def test_static_a_takes_the_bias_at_run_and_refuses_it_at_pack():
    s = scheme("a: int8 per_channel\n b: int8 per_channel\n static: a")
    A, B, bias = data(2)
    kernel = lrqc.compile(s, M, N, K)
    assert kernel.transposed
    assert rel(kernel.run(A, B, bias=bias), matmul(s, A, B, bias=bias)) < 2e-6
    with pytest.raises(lrqc.LrqcError, match="static: a"):
        kernel.pack(A, bias=bias)


@pytest.mark.parametrize("bias,match", [
    (np.ones(N + 1), "bias"),
    (np.ones((2, N)), "bias"),
    (np.full(N, np.nan), "bias"),
    (np.full(N, 1e39), "float32"),
])
def test_bad_bias_is_refused(bias, match):
    kernel = lrqc.compile(scheme("a: int8\n b: int8"), M, N, K)
    _, B, _ = data()
    with pytest.raises(lrqc.LrqcError, match=match):
        kernel.pack(B, bias=bias)
