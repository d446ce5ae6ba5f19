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
