"""A's codes from float32 where that is proven exact, float64 elsewhere (te.fastcodes): the
integer sums of whole kernels equal the reference's bit for bit on A built to sit on, next to
and just outside the float32 margin of every rounding boundary, on rows whose scales leave
float32's range, and on ordinary rows; and the same A catches a guard without its margin."""

from __future__ import annotations

import numpy as np
import pytest

import lrqc
from lrqc.reference import int_accumulate, matmul, quantize

pytest.importorskip("tvm")

from lrqc.backend.te import fastcodes  # noqa: E402

M, N = 48, 32
K = 256
BODIES = [
    "a: int8 per_channel\n b: int8 per_channel",
    "a: int4 per_channel\n b: int8 per_channel",
    "a: int8 per_tensor round=floor\n b: int8 per_channel",
    "a: int8 per_channel round=trunc\n b: int4 per_channel",
    "a: int4 per_vector(16) round=trunc\n b: int8 per_channel",
    "a: uint8 per_channel calibrate=minmax round=nearest_away\n b: int8 per_channel",
    "a: uint4 per_vector(16, scale=uint6 per_channel)\n"
    " b: int4 per_vector(16, scale=uint6 per_channel)",
]


def scheme(body: str) -> lrqc.Scheme:
    return lrqc.parse_schemes(f"scheme s {{\n{body}\n}}")["s"]


def adversarial_a(q, seed: int, k: int = K, extremes: bool = True) -> np.ndarray:
    """M x k float32: rows 0-11 ordinary; 12-23 with a quarter of their entries moved onto a
    rounding boundary of their code (half-integers and integers of x / s) and 0-2 float32
    steps beside it; 24-35 the same boundaries moved out by 2^-17 of a step (just past the
    float32 margin: codes from float32, decided by a hair); 36 zeros; 37 values near the
    smallest the kernels take (scales about 2^-116, reciprocals near float32's largest);
    38 values near float32's largest; 39 one huge value among tiny ones; the rest ordinary at
    scales from 2^-60 to 2^60, 40 with exact zeros, 41 with float32's smallest subnormals
    (whose products by 1 / s underflow: floor's code of -2^-149 is -1, not that of -0).
    extremes=False: rows 37-39 and 40-47 ordinary too (one scale for the whole tensor would
    otherwise come from row 38 and leave every other row's codes at 0 and -1)."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((M, k)).astype(np.float32)
    if extremes:
        A[40:] *= np.float32(2.0) ** rng.integers(-60, 60, (M - 40, 1)).astype(np.float32)
    qa = quantize(A, q, "a")
    s = np.broadcast_to(qa.expand(qa.scale), qa.codes.shape)[:, :k]
    t = A.astype(np.float64) / s
    lo, hi = t.min(axis=1, keepdims=True), t.max(axis=1, keepdims=True)
    inner = (t > lo + 2) & (t < hi - 2) & (np.abs(t) < np.abs(t).max(axis=1, keepdims=True) - 2)
    pick = inner & (rng.random((M, k)) < 0.25)
    edge = np.floor(t) + rng.choice([0.0, 0.5], (M, k))
    on = (edge * s).astype(np.float32)
    for _ in range(2):
        step = rng.integers(-1, 2, (M, k))
        on = np.where(step > 0, np.nextafter(on, np.float32(np.inf)),
                      np.where(step < 0, np.nextafter(on, np.float32(-np.inf)), on))
    near = ((edge + rng.choice([-1.0, 1.0], (M, k)) * 2.0**-17) * s).astype(np.float32)
    rows = np.arange(M)[:, None]
    A = np.where(pick & (rows >= 12) & (rows < 24), on, A)
    A = np.where(pick & (rows >= 24) & (rows < 36), near, A)
    A[36] = 0.0
    if not extremes:
        A[40, ::5] = 0.0
        return A
    A[37] = rng.standard_normal(k).astype(np.float32) * np.float32(2e-33)
    A[38] = rng.uniform(-1, 1, k).astype(np.float32) * np.float32(3e38)
    A[39] = rng.standard_normal(k).astype(np.float32) * np.float32(1e-30)
    A[39, 7] = np.float32(1e30)
    A[40, ::5] = 0.0  # exact zeros: codes z, from float32 under floor and trunc too
    A[41, 1::7], A[41, 2::7] = -np.float32(1e-45), np.float32(1e-45)  # products underflow
    return A


def compiled(s: lrqc.Scheme, k: int = K):
    return lrqc.compile(s, M=(1, M), N=N, K=k)  # buckets: rows past a call's padded too


def check(s: lrqc.Scheme, A: np.ndarray, B: np.ndarray, kern=None) -> None:
    """kern: the scheme compiled for A's K (compiled() where None)."""
    kern = kern or compiled(s, A.shape[1])
    packed = kern.pack(B)
    qa, qb = quantize(A, s.a.quant, "a"), quantize(B, s.b.quant, "b")
    sums = np.stack([part for _, part in int_accumulate(qa, qb)])
    np.testing.assert_array_equal(kern.int_accumulate(A, packed), sums)  # the codes, exactly
    ordinary = np.r_[0:36, 40:M]
    R = matmul(s, A[ordinary], B)
    C = kern(A[ordinary], packed)
    assert np.abs(C - R).max() <= 2e-6 * kern.plan.groups ** 0.5 * np.abs(R).max()


@pytest.mark.parametrize("body", BODIES)
def test_codes_at_boundaries_are_the_reference(body):
    s = scheme(body)
    B = np.random.default_rng(1).standard_normal((K, N)).astype(np.float32)
    kern = compiled(s)  # one kernel for every call: each gets other codes
    for seed in range(3):
        check(s, adversarial_a(s.a.quant, seed), B, kern)
        check(s, adversarial_a(s.a.quant, seed + 10, extremes=False), B, kern)


@pytest.mark.parametrize("body", [BODIES[0], BODIES[2], BODIES[4]])
def test_codes_with_k_padded(body):
    """K = 100: the pass pads each row to whole vectors (and groups) with zeros."""
    s = scheme(body)
    B = np.random.default_rng(2).standard_normal((100, N)).astype(np.float32)
    check(s, adversarial_a(s.a.quant, 5, k=100), B)


def test_the_pass_chooses_float32_codes():
    """The quantization pass has the blocks of the choice (its scores and scale checks)."""
    texts: dict[str, str] = {}
    from lrqc.pipeline.compile import compile as compile_stages
    compile_stages(scheme(BODIES[0]), M, N, K, emit=("tir",), on_text=texts.__setitem__)
    assert fastcodes.AMB in texts["tir"] and fastcodes.OKS in texts["tir"]


@pytest.mark.parametrize("body", BODIES[:4])
def test_a_guard_without_margin_gives_other_codes(monkeypatch, body):
    """With no allowance for float32's error, codes next to a boundary come from float32 and
    some differ from the reference's: the boundary rows above detect a wrong guard (per
    tensor, on A without its extreme rows: one scale for every row)."""
    monkeypatch.setattr(fastcodes, "MARGIN", 0.0)
    monkeypatch.setattr(fastcodes, "LIMIT", 1.0)
    s = scheme(body)
    B = np.random.default_rng(1).standard_normal((K, N)).astype(np.float32)
    A = adversarial_a(s.a.quant, 0, extremes="per_tensor" not in body)
    kern = lrqc.compile(s, M=M, N=N, K=K)
    qa, qb = quantize(A, s.a.quant, "a"), quantize(B, s.b.quant, "b")
    sums = np.stack([part for _, part in int_accumulate(qa, qb)])
    got = kern.int_accumulate(A, kern.pack(B))
    assert not np.array_equal(got[:, 12:24], sums[:, 12:24])
    if "round=" not in body:  # nearest: ordinary rows have no element on a boundary (under
        # floor and trunc each row's largest |x| is one: x / s = qmax up to float64 rounding)
        np.testing.assert_array_equal(got[:, :12], sums[:, :12])


COMPENSATED = [  # the compensated pass's base codes (its residual and terms read them back)
    "a: int8 per_tensor round=floor + lowrank(rank=1, method=sketch)\n b: int8 per_channel",
    "a: int4 per_channel + lowrank(rank=2, method=rsvd, oversample=2)\n b: int8 per_channel",
    "a: int8 per_channel round=trunc + sparse(threshold=0.5)\n b: int8 per_channel",
]


@pytest.mark.parametrize("body", COMPENSATED)
@pytest.mark.parametrize("margin", [True, False])
def test_compensated_pass_codes(monkeypatch, body, margin):
    """The compensated pass takes its base codes the same way: the reference's bit for bit
    with the guard's margin; without it, some boundary rows' codes differ (the float32 path is
    taken there too)."""
    if not margin:
        monkeypatch.setattr(fastcodes, "MARGIN", 0.0)
        monkeypatch.setattr(fastcodes, "LIMIT", 1.0)
    s = scheme(body)
    B = np.random.default_rng(1).standard_normal((K, N)).astype(np.float32)
    A = adversarial_a(s.a.quant, 0, extremes=margin and "per_tensor" not in body)
    kern = lrqc.compile(s, M=(1, M), N=N, K=K)
    assert kern.plan.compensated
    qa, qb = quantize(A, s.a.quant, "a"), quantize(B, s.b.quant, "b")
    sums = np.stack([part for _, part in int_accumulate(qa, qb)])
    got = kern.int_accumulate(A, kern.pack(B))
    if margin:
        np.testing.assert_array_equal(got, sums)
    else:
        assert not np.array_equal(got[:, 12:24], sums[:, 12:24])


@pytest.mark.parametrize("margin", [True, False])
def test_sparse_copy_codes(monkeypatch, margin):
    """A's thresholded copy for B's sparse term takes its codes the same way (its values are
    A's or 0): the reference's bit for bit with the guard's margin, others next to the
    boundaries without it."""
    if not margin:
        monkeypatch.setattr(fastcodes, "MARGIN", 0.0)
        monkeypatch.setattr(fastcodes, "LIMIT", 1.0)
    from lrqc.reference.residual import sparse_quant
    s = scheme("a: int8 per_channel\n b: int8 per_channel + sparse(threshold=0.3)")
    kern = lrqc.compile(s, M=M, N=N, K=K)
    (sp,) = kern.plan.sparse
    A = adversarial_a(sp.q, 0, extremes=False)
    B = np.random.default_rng(1).standard_normal((K, N)).astype(np.float32)
    packed = kern.pack(B)
    kern(A, packed)
    (bucket,) = kern._buckets
    got = bucket.comp.sparse[0][0].numpy()[:M, :K].astype(np.int64)
    q, _ = sparse_quant(A.astype(np.float64), sp.term, "a", "A")  # as matmul takes A
    want = q.codes.astype(np.int64) - np.broadcast_to(q.expand(q.zero), q.codes.shape)
    assert (got != 0).mean() > 0.3  # the copy keeps most of A: boundaries among its values
    if margin:
        np.testing.assert_array_equal(got, want[:, :K])
    else:
        assert not np.array_equal(got[12:24], want[12:24, :K])
