"""Differential test of the compiler against the reference: random valid schemes at random
small sizes either compile to the reference's numbers or are refused with an LrqcError that
says why. Nothing in between (a kernel that runs and returns other numbers) is allowed.

A few dozen schemes in the default run; LRQC_PROPERTY_SCALE=N (or the slow variant) for more.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import lrqc
from lrqc.reference import matmul
from lrqc.reference.inputs import output_dtype

from ..unit.test_properties import SETTINGS, _dims, _n, schemes

pytest.importorskip("tvm")

ULP = {"float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7, "float64": 2.0**-52}


@st.composite
def cases(draw):
    dims = draw(_dims())
    return dims, draw(schemes(dims))


def compare(s, dims, seed: int) -> str:
    """'refused: why' or 'ok' (asserting the kernel's numbers are the reference's)."""
    m, n, k = dims
    try:
        kernel = lrqc.compile(s, m, n, k)
    except lrqc.LrqcError as exc:
        assert str(exc).strip(), "a refusal must say why"
        return f"refused: {exc}"
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, k)).astype(np.float32).astype(np.float64)
    B = rng.standard_normal((k, n)).astype(np.float32).astype(np.float64)
    try:
        R = matmul(s, A, B)
    except lrqc.LrqcError as exc:  # data the scheme cannot take (e.g. a zero point's range)
        with pytest.raises(lrqc.LrqcError):
            kernel.run(A, B)
        return f"input refused: {exc}"
    C = kernel.run(A, B)
    assert C.dtype == R.dtype == output_dtype(s.output) and C.shape == R.shape
    C64, R64 = C.astype(np.float64), R.astype(np.float64)
    finite = np.isfinite(R64)
    np.testing.assert_array_equal(np.isfinite(C64), finite)
    scale = float(np.abs(R64[finite]).max()) if finite.any() else 0.0
    # float32 arithmetic in the epilogue and the glue (compensation, chains), one rounding of
    # the output type; a wrong formula shows at 1e-3 or more
    tol = max(1e-4, 2 * ULP[s.output]) * scale + 1e-30
    err = float(np.abs(C64[finite] - R64[finite]).max()) if finite.any() else 0.0
    assert err <= tol, f"{lrqc.frontend.unparse.unparse(s)} at {dims}: {err / max(scale, 1e-300)}"
    return "ok"


@settings(max_examples=_n(30), **SETTINGS)
@given(cases(), st.integers(0, 2**16))
def test_compiled_schemes_match_the_reference_or_are_refused(case, seed):
    dims, s = case
    event(compare(s, dims, seed).split(":")[0])


@pytest.mark.slow
@pytest.mark.long
@settings(max_examples=_n(300), **SETTINGS)
@given(cases(), st.integers(0, 2**16))
def test_compiled_schemes_match_the_reference_or_are_refused_long(case, seed):
    dims, s = case
    event(compare(s, dims, seed).split(":")[0])
