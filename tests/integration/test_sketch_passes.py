"""The rank-1 sketch's products with A's residual R in compiled code: quantize_a's Rᵀ (R s) per
chunk of rows and sketch_ab's R u and Rᵀ R u, against numpy's on the R the kernel wrote (the
call's rows only, whatever the bucket's), and whole calls against the reference."""

from __future__ import annotations

import numpy as np
import pytest

import lrqc
from lrqc.plan import names
from lrqc.plan import signature as sig
from lrqc.runtime.glue import view


def _scheme(tail: str = ""):
    body = ("a: int8 per_tensor round=floor + lowrank(rank=1, method=sketch, power_iters=1"
            f"{tail})\n b: int8 per_channel")
    return lrqc.parse_schemes(f"scheme s {{\n{body}\n}}")["s"]


def _close(got, want, tol):
    assert np.abs(got - want).max() <= tol * max(np.abs(want).max(), 1e-30)


@pytest.mark.parametrize("m", [70, 96, 1])
def test_chunk_sums_and_sketch_ab_are_numpys_on_the_calls_rows(m):
    """M bucket 96 (32 chunks of 3 rows): a call of m rows leaves rows past m holding copies of
    A's last row, which neither Rᵀ (R s) nor Rᵀ R u may count."""
    k = lrqc.compile(_scheme(), M="1..96", N=32, K=64)
    rng = np.random.default_rng(3)
    A = (rng.standard_normal((m, 64)) * 3).astype(np.float32)
    packed = k.pack(rng.standard_normal((64, 32)))
    k(A, packed)
    bk = next(b for b in k._buckets if b.plan.mp >= m)
    comp = bk.comp
    assert bk.plan.mp != 96 or sig.sketch_chunks(bk.plan) == 32
    R = view(comp.R)[:m, :64].astype(np.float64)
    t = view(comp.T)[:m, 0].astype(np.float64)
    # the call's rows only: the pad rows (A's last row again) would double-count that row
    _close(np.sum(view(comp.Trt)[:, :64], axis=0), R.T @ t, 1e-5)
    u = rng.standard_normal(64).astype(np.float32)
    x = view(comp.Su).copy()
    x[0, :64] = u
    comp.Su.copyfrom(x)
    bk.run(names.FN_SKETCH_AB, packed)
    a = view(comp.Sa)[:m, 0]
    _close(a, R @ u, 1e-5)
    _close(np.sum(view(comp.Sb)[:, :64], axis=0), R.T @ a.astype(np.float64), 1e-5)


@pytest.mark.parametrize("M", [1, 33, 200])
def test_calls_through_the_compiled_sketch_are_the_references(M):
    """Whole calls whose factors come from the compiled passes equal the reference within
    float32 rounding (one bucket; buckets of every row count up to 200)."""
    s = _scheme(", seed=4")
    k = lrqc.compile(s, M=f"1..{max(M, 64)}", N=48, K=96)
    rng = np.random.default_rng(M)
    A = rng.random((M, 96)).astype(np.float32)
    B = rng.random((96, 48))
    got = k(A, k.pack(B))
    assert all(b.comp.Sb is not None for b in k._buckets)
    want = lrqc.reference.matmul(s, A.astype(np.float64), B)
    _close(got, want, 2e-5)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_a_residual_scaled_first_takes_numpys_passes_quietly(scale):
    """max |R| far outside [2^-24, 2^24]: the factors come from R scaled by a power of two
    (numpy's passes on the copy); quantize_a's Rᵀ (R s), which may overflow there, is not
    read (no warning), and the call is the reference's."""
    s = _scheme(", seed=2")
    k = lrqc.compile(s, M=40, N=24, K=48)
    rng = np.random.default_rng(9)
    A = (rng.random((40, 48)) * scale).astype(np.float32)
    B = rng.random((48, 24))
    got = k(A, k.pack(B))
    _close(got, lrqc.reference.matmul(s, A.astype(np.float64), B), 2e-5)


def test_no_power_iteration_compiles_no_sketch_ab():
    k = lrqc.compile(lrqc.parse_schemes(
        "scheme s {\n a: int8 per_tensor round=floor + lowrank(rank=1, method=sketch, "
        "power_iters=0)\n b: int8 per_channel\n}")["s"], M=16, N=16, K=32)
    assert names.FN_SKETCH_AB not in sig.cpu_functions(k.plan)
    assert all(b.comp.Sb is None for b in k._buckets)


@pytest.mark.parametrize("b,merged", [("int8 per_channel", True),
                                      ("uint8 per_channel calibrate=minmax", False)])
def test_codes_and_r_share_a_row_loop_unless_a_block_between_reads_the_codes(b, merged):
    """The schedule merges the codes' row loop with R's (no dependence check of its own):
    taken where nothing between them reads the codes, refused before the row sums of weights
    with zero points; in the scheduled function no block reads a buffer before the block that
    writes it, and the calls are the reference's either way."""
    from lrqc.pipeline.compile import compile as compile_stages

    s = lrqc.parse_schemes("scheme s {\n a: int8 per_tensor round=floor + lowrank(rank=1, "
                           f"method=sketch, power_iters=1)\n b: {b}\n}}")["s"]
    texts: dict[str, str] = {}
    compile_stages(s, 64, 24, 48, emit=("tir",), on_text=texts.__setitem__)
    tir = texts["tir"].split("def quantize_a")[1].split("@T.prim_func")[0]
    assert ("_m in T.parallel" in tir) == merged
    written: set[str] = set()
    for line in tir.splitlines():  # blocks in program order: reads of intermediate codes
        if "T.writes(" in line:
            written.add(line.split("T.writes(")[1].split("[")[0])
        if "T.reads(" in line and "a_codes[" in line:
            assert "a_codes" in written, line
    rng = np.random.default_rng(1)
    k = lrqc.compile(s, M=64, N=24, K=48)
    A = rng.random((64, 48)).astype(np.float32)
    B = rng.standard_normal((48, 24))
    _close(k(A, k.pack(B)), lrqc.reference.matmul(s, A.astype(np.float64), B), 2e-5)
