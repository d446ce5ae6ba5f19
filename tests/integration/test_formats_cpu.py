"""CPU kernels of the custom element formats against lrqc.reference on the same inputs: eXmY
elements with float scales and in MX blocks, fixed point on either side (integer
accumulations exactly), and an eXmY whose codes do not fit a byte (the float32 fallback)."""

from __future__ import annotations

import numpy as np
import pytest

from lrqc.reference import matmul

pytest.importorskip("tvm")

import lrqc

from .test_backend_cpu import HOST_RULE_TARGET, compile_and_check, data, scheme
from .test_fuzz_arrays import check_against_reference

INTEGER_CASES = [  # a, b, (M, N, K): the integer path, sums equal to the reference's exactly
    ("e2m4 per_tensor", "int8 per_channel", (5, 20, 64)),
    ("int8 per_channel", "e1m5 per_channel", (7, 17, 48)),
    ("e2m2 per_block(32, scale=e8m0)", "e2m2 per_block(32, scale=e8m0)", (4, 16, 96)),
    ("fixed(8, max=4.0)", "int8 per_channel", (6, 16, 50)),
    ("fixed(4, max=1.0, signed=false) round=floor", "int4 per_channel", (3, 16, 40)),
    ("int8 per_channel", "fixed(4, max=2.0)", (5, 24, 64)),
    ("e3m0 per_channel", "fixed(8, max=3.0, signed=false)", (4, 16, 32)),
    ("fixed(1, max=2)", "int8 per_tensor", (4, 16, 32)),
    ("fixed(8, max=1.0)", "int8 per_channel", (4, 16, 40)),  # codes -128 and 127 both occur
    ("fixed(6, max=2.0) round=stochastic seed=4", "int4 per_channel", (3, 16, 48)),
]


@pytest.mark.parametrize("a,b,dims", INTEGER_CASES, ids=[f"{c[0]}|{c[1]}" for c in INTEGER_CASES])
def test_integer_kernels_match_the_reference(a, b, dims):
    kernel = compile_and_check(a, b, dims)
    assert not kernel.plan.float_path, kernel.plan.notes


@pytest.mark.parametrize("a,b", [("e3m4 per_tensor", "int8 per_channel"),
                                 ("e2m5 per_block(32, scale=e8m0)",
                                  "e2m5 per_block(32, scale=e8m0)")])
def test_wide_minifloats_take_the_float_fallback(a, b):
    s = scheme(a, b)
    m, n, k = 5, 16, 64
    kernel = lrqc.compile(s, M=m, N=n, K=k, target=HOST_RULE_TARGET)
    assert any("float32 GEMM fallback" in note for note in kernel.plan.notes)
    A, B = data(m, n, k, seed=3)
    C, R = kernel.run(A, B), matmul(s, A, B)
    bound = (np.abs(A) @ np.abs(B)).max() * 4
    assert np.abs(C - R).max() <= 2.0**-22 * k**0.5 * bound


@pytest.mark.parametrize("a,b,a_mag,b_mag", [
    ("e7m0 per_channel", "float32", 1e-6, 1.0),
    ("e7m0 per_channel", "float32", 1e-12, 1.0),
    ("e7m0 per_tensor", "int8 per_channel", 1e-12, 1.0),
    ("e5m2 per_channel", "float32", 1e-33, 1e30),
    ("e6m1 per_channel", "float32", 1e-25, 1.0),
])
def test_small_minifloat_values_on_the_float_fallback(a, b, a_mag, b_mag):
    """A per-call eXmY operand on the float32 fallback, with ordinary float32 values too small
    for its scale times 2^-f (the element codes' unit: 2^-62 for e7m0) to stay a normal
    float32: dequantized in float64 and rounded once, as the reference, or (the 16-bit path,
    e7m0 x int8 in bfloat16) its float32 row scale made from the float64 one (the float32
    product of scale and unit had gone subnormal or zero: C off by percents, or all zeros)."""
    s = scheme(a, b)
    m, n, k = 8, 16, 64
    kernel = lrqc.compile(s, M=m, N=n, K=k)
    assert kernel.plan.float_path
    A, B = data(m, n, k, seed=11)
    A, B = (A * a_mag).astype(np.float32), (B * b_mag).astype(np.float32)
    C, R = kernel.run(A, B), matmul(s, A.astype(np.float64), B.astype(np.float64))
    assert np.abs(C - R).max() <= 1e-5 * np.abs(R).max()


@pytest.mark.parametrize("a,b,a_mag,b_mag,msg", [
    ("e5m2 per_channel", "float16", 1e-37, 1.0, "A: row 0: a quantization scale of"),
    ("int8 per_channel", "float16", 1e-38, 1.0, "A: row 0: a quantization scale of"),
    ("float16", "e5m2 per_channel", 1.0, 1e-37, "B: column 0: a quantization scale of"),
])
def test_16_bit_float_path_refuses_subnormal_scales(a, b, a_mag, b_mag, msg):
    """The 16-bit float path multiplies codes and applies float32 scales in its epilogue: a
    scale subnormal in float32 is refused as on the integer path (it lost precision: C off by
    about 1e-4 at these values); ordinary values run."""
    s = scheme(a, b)
    m, n, k = 8, 16, 64
    kernel = lrqc.compile(s, M=m, N=n, K=k)
    assert kernel.plan.half
    A, B = data(m, n, k, seed=12)
    C, R = kernel.run(A.astype(np.float32), B), matmul(s, A.astype(np.float32), B)
    assert np.abs(C - R).max() <= 1e-5 * np.abs(R).max()
    with pytest.raises(lrqc.InputError, match=msg + ".*is subnormal in float32"):
        kernel.run((A * a_mag).astype(np.float32), (B * b_mag).astype(np.float32))


def test_narrow_outputs_refuse_values_at_their_overflow_threshold():
    """output: float16. An exact C of 65519.997 (the reference: 65504) comes out of the float32
    epilogue as 65520.0, which float16 rounds to infinity: refused, since float32 cannot decide
    it; values clearly on either side give the reference's 65504-range numbers and infinities."""
    s = lrqc.parse_schemes("scheme t {\n a: int8 per_channel\n b: int8 per_channel\n "
                           "output: float16\n}")["t"]
    k = lrqc.compile(s, 4, 16, 32)
    A, B = np.zeros((4, 32), np.float32), np.zeros((32, 16), np.float32)
    A[:, 0], B[0, :] = np.float32(1.845201849937439), np.float32(35508.30859375)
    P = k.pack(B)
    with pytest.raises(lrqc.InputError, match="within float32's rounding of float16's overflow "
                       "threshold"):
        k(A, P)
    for f in (0.99, 1.01):
        C, R = k(A * np.float32(f), P), matmul(s, A * np.float32(f), B)
        assert C.dtype == np.float16 and np.array_equal(np.isinf(C), np.isinf(R))
        np.testing.assert_array_equal(C[np.isfinite(R)], R[np.isfinite(R)])


@pytest.mark.parametrize("a,b", [
    ("int8 per_tensor", "e2m1 per_tensor + dense(int8)"),
    ("int8 per_channel", "e3m0 per_channel + dense(int4)"),
    ("uint8 per_channel", "e2m1 per_channel + dense(int8) + sparse(int8, threshold=0.1)"),
    ("int8 per_tensor + lowrank(rank=2, other=packed)", "e2m1 per_channel + dense(int8)"),
])
def test_minifloat_weights_with_dense_terms_match_the_reference(a, b):
    """eXmY weights whose codes are their values times 2^f, with a dense residual term on B:
    the term runs as a second K segment of integer codes, and each segment's scales carry its
    own format's 2^-f (the base segment's 2^-f, the residual's 1), as without the term."""
    s = scheme(a, b)
    kernel = lrqc.compile(s, M=6, N=24, K=64, target=HOST_RULE_TARGET)
    assert len(kernel.plan.segments) == 2 and not kernel.plan.float_path
    A, B = data(6, 24, 64, seed=3, dist="uniform" if a.startswith("uint") else "normal")
    check_against_reference(s, kernel(A, kernel.pack(B)), A, B)
