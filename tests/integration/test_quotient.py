"""The quantizers' division x / s done as a product by 1 / s and four FMAs (te.quantize
.quotient): bit for bit numpy's float64 division over values built to sit on and next to the
rounding boundaries of the codes, at scales across float32's range; and whole kernels whose
codes sit exactly on those boundaries, against the reference."""

from __future__ import annotations

import numpy as np
import pytest

import lrqc
from lrqc.reference import int_accumulate, matmul, quantize

pytest.importorskip("tvm")

from lrqc.backend.compat import Schedule, TvmTarget, compile_module, te, tensor, tir  # noqa: E402
from lrqc.backend.target import host_target  # noqa: E402
from lrqc.backend.te.quantize import quotient  # noqa: E402

N = 1 << 16


@pytest.fixture(scope="module", params=["host", "generic"])
def divide(request):
    """f(x, s) -> x / s through quotient, compiled for the host (vectorized as quantize_a)
    and for a generic x86-64 CPU (no FMA instructions: libm's fma)."""
    X = te.placeholder((N,), "float64", name="X")
    S = te.placeholder((N,), "float64", name="S")
    Y = te.compute((N,), lambda i: tir.const(1.0, "float64") / S[i], name="Y")
    Q = te.compute((N,), lambda i: quotient(X[i], S[i], Y[i]), name="Q")
    sch = Schedule(te.create_prim_func([X, S, Q]))
    for name in ("Y", "Q"):
        (i,) = sch.get_loops(sch.get_sblock(name))
        sch.vectorize(sch.split(i, [None, 8])[1])
    target = host_target().tvm() if request.param == "host" else TvmTarget({"kind": "llvm"})
    f = compile_module(sch.mod, target)

    def run(x: np.ndarray, s: np.ndarray) -> np.ndarray:
        out = tensor(np.zeros(N))
        f(tensor(x), tensor(s), out)
        return out.numpy()
    return run


def _cases(rng: np.random.Generator, top: float) -> tuple[np.ndarray, np.ndarray]:
    """(x, s): s = max|x| / top for maxima across float32's range, x float32 values at and next
    to (n + 1/2)·s (nearest rounding's boundaries) and n·s (floor's and trunc's), and spread."""
    hi = (np.abs(rng.standard_normal(N)) + 0.01).astype(np.float32) \
        * np.float32(2.0) ** rng.integers(-140, 120, N).astype(np.float32)
    s = hi.astype(np.float64) / top
    n = rng.integers(-int(top), int(top) + 1, N) + rng.choice([0.0, 0.5], N)
    x = (n * s).astype(np.float32)
    step = rng.integers(-2, 3, N)
    for _ in range(2):
        x = np.where(step > 0, np.nextafter(x, np.float32(np.inf)),
                     np.where(step < 0, np.nextafter(x, np.float32(-np.inf)), x))
        step = step - np.sign(step)
    spread = (rng.uniform(-1, 1, N) * hi).astype(np.float32)
    x = np.where(rng.random(N) < 0.25, spread, x)
    x[:4] = [0.0, -0.0, hi[2], -hi[3]]
    return x.astype(np.float64), s


@pytest.mark.parametrize("top", [127.0, 7.0, 255.0, 1.5, 32767.0])
def test_quotient_is_the_division(divide, top):
    rng = np.random.default_rng(int(top * 10))
    for _ in range(4):
        x, s = _cases(rng, top)
        want = x / s
        got = divide(x, s)
        assert np.array_equal(got.view(np.int64), want.view(np.int64)), \
            f"{np.sum(got != want)} quotients differ, first at {np.argmax(got != want)}"
        # the product alone is not the division on these values: the test can fail
        assert np.any(x * (1.0 / s) != want)


@pytest.mark.parametrize("body", [
    "a: int8 per_channel\n b: int8 per_channel",
    "a: int8 per_tensor round=floor\n b: int8 per_channel",
    "a: int4 per_vector(16) round=trunc\n b: int8 per_channel",
    "a: uint8 per_channel calibrate=minmax round=nearest_away\n b: int8 per_channel",
])
def test_kernels_at_code_boundaries(body):
    """A whose entries are row max · (n + 1/2) / qmax (nearest's ties and their float32
    neighbours): codes the kernel must round as the reference does (its integer sums equal
    the reference's; C within the float32 epilogue's rounding)."""
    s = lrqc.parse_schemes(f"scheme s {{\n{body}\n}}")["s"]
    rng = np.random.default_rng(3)
    m, n, k = 24, 32, 128
    top = 7.0 if "int4" in body else 127.0
    row = (rng.uniform(0.5, 2.0, (m, 1)) * 2.0 ** rng.integers(-20, 20, (m, 1))).astype(np.float32)
    codes = rng.integers(-int(top), int(top), (m, k)) + rng.choice([0.0, 0.5, 1.0], (m, k))
    A = (codes * (row.astype(np.float64) / top)).astype(np.float32)
    A = np.where(rng.random((m, k)) < 0.3, np.nextafter(A, np.float32(np.inf)), A)
    A[:, 0] = row[:, 0]  # the row's maximum: the scale is row / top
    B = rng.standard_normal((k, n)).astype(np.float32)
    kern = lrqc.compile(s, M=m, N=n, K=k)
    packed = kern.pack(B)
    qa, qb = quantize(A, s.a.quant, "a"), quantize(B, s.b.quant, "b")
    sums = np.stack([part for _, part in int_accumulate(qa, qb)])
    np.testing.assert_array_equal(kern.int_accumulate(A, packed), sums)  # the codes, exactly
    R = matmul(s, A, B)
    assert np.abs(kern(A, packed) - R).max() <= 2e-6 * kern.plan.groups ** 0.5 * np.abs(R).max()
