"""A call on an M range computes its own rows, not its bucket's: the GEMMs take the call's row
count and skip the row tiles past it. Every call's C against lrqc.reference, with calls of
few and many rows alternating on the same bucket (a later call must not inherit an earlier
call's row count), and the rows past a call's last row tile left untouched."""

from __future__ import annotations

import re

import numpy as np
import pytest

import lrqc
from lrqc.plan import names

pytest.importorskip("tvm")

from lrqc.backend.compat import tensor  # noqa: E402
from lrqc.backend.target import host_target, resolve  # noqa: E402
from lrqc.pipeline.compile import compile as compile_kernel  # noqa: E402
from lrqc.plan import signature as sig  # noqa: E402


def scheme(a: str, b: str) -> lrqc.Scheme:
    return lrqc.parse_schemes(f"scheme t {{\n a: {a}\n b: {b}\n}}")["t"]


# (A's operand, B's operand): the integer rules' single-group and per-group loop nests, packed
# weights, zero points, B's low-rank epilogue, a sparse term (the general call path), the
# float32 GEMM of a float operand and its 16-bit form
SCHEMES = [
    ("int8 per_channel", "int8 per_channel"),
    ("int8 per_channel", "int4 per_channel"),
    ("int4 per_vector(16, scale=uint6 per_channel)",
     "int4 per_vector(16, scale=uint6 per_channel)"),
    ("int8 per_vector(32)", "uint4 per_vector(32)"),
    ("int8 per_channel", "int4 per_channel + lowrank(rank=2)"),
    ("int8 per_channel", "int4 per_channel + sparse(threshold=2.5)"),
    ("float32", "int4 per_channel"),
    ("float16", "e4m3 per_channel"),
]
ROWS = (3, 64, 1, 33, 17, 64, 5, 2, 63)  # few and many in turn, on the buckets of 1..64
TARGETS = ["host", "x86-avx2"]  # the AVX2 rules run on every x86 CPU this suite runs on


def _target(name: str):
    return None if name == "host" else resolve(name)


def _runs_here(name: str) -> bool:
    return name == "host" or "avx2" in host_target().features


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("a,b", SCHEMES)
def test_calls_of_any_rows_in_turn_match_the_reference(a, b, target):
    if not _runs_here(target):
        pytest.skip("this CPU lacks AVX2")
    s = scheme(a, b)
    n, k = 48, 96
    kernel = lrqc.compile(s, "1..64", n, k, target=_target(target))
    rng = np.random.default_rng(5)
    B = rng.standard_normal((k, n))
    packed = kernel.pack(B)
    for m in ROWS:
        A = rng.standard_normal((m, k)).astype(np.float32)
        C = kernel(A, packed)
        ref = lrqc.reference.matmul(s, A.astype(np.float64), B)
        assert C.shape == (m, n)
        np.testing.assert_allclose(C, ref, rtol=2e-5, atol=2e-5 * np.abs(ref).max(),
                                   err_msg=f"{m} rows, rule {kernel.rule}")
        if kernel.plan.float_path:
            continue  # float32 products: no integer sums
        acc = kernel.int_accumulate(A, packed)  # int_acc takes the call's rows too
        assert acc.shape[1] == m and acc.shape[2] == n


def _sentinel_call(kernel, A, packed, m: int) -> np.ndarray:
    """The GEMM of the bucket that serves m rows, into an output filled with a sentinel, with
    m_rows = m: the whole output, padding rows included."""
    bk, _ = kernel._quantize(A)
    p = bk.plan
    out = tensor(np.full((p.mp, p.np_), -7.25, np.float32))
    assert bk.rows == m
    bk.run(names.FN_GEMM, packed, out)
    return out.numpy()


@pytest.mark.parametrize("a,b", [SCHEMES[0], SCHEMES[2], SCHEMES[6]])
def test_rows_past_the_calls_last_row_tile_are_not_computed(a, b):
    """At most 8 rows a tile (the rules' row tiles: 1, 2, 4 or 8), so a call of m rows leaves
    the output's rows from m rounded up to 8 on as they were."""
    s = scheme(a, b)
    kernel = lrqc.compile(s, "33..64", 48, 96)  # one bucket, of 64 rows
    rng = np.random.default_rng(2)
    B = rng.standard_normal((96, 48))
    packed = kernel.pack(B)
    for m in (64, 35, 57, 33):
        A = rng.standard_normal((m, 96)).astype(np.float32)
        out = _sentinel_call(kernel, A, packed, m)
        ref = lrqc.reference.matmul(s, A.astype(np.float64), B)
        np.testing.assert_allclose(out[:m, :48], ref, rtol=2e-5,
                                   atol=2e-5 * np.abs(ref).max())
        past = -(-m // 8) * 8
        assert (out[past:] == -7.25).all(), f"{m} rows: rows {past}.. were computed"


def _gemm_tir(s: lrqc.Scheme, target: str, m: int = 64) -> str:
    texts: dict[str, str] = {}
    compile_kernel(s, m, 48, 96, target=_target(target), emit=("tir",),
                   on_text=texts.__setitem__)
    found = re.search(r"def gemm_m\d+\((.*?)(?=\n    @T.prim_func|\Z)", texts["tir"], re.S)
    assert found, texts["tir"]
    return found.group(1)


@pytest.mark.parametrize("target", ["x86-avx512-vnni", "x86-avx2", "x86-avxvnni"])
@pytest.mark.parametrize("a,b", [s for s in SCHEMES if "sparse" not in s[1]])
def test_every_rules_gemm_bounds_its_row_tiles_by_the_calls_rows(a, b, target):
    """The scheduled GEMM of each x86 rule (compiled, not run: the target need not be this
    CPU's) takes m_rows last and bounds a loop over row tiles with it."""
    text = _gemm_tir(scheme(a, b), target)
    head = text.split("):\n", 1)[0]
    assert head.endswith(f"C: T.Buffer((64, 48), \"float32\"), {sig.M_ROWS}: T.int32"), head
    bounded = r"for \w+ in range\(T\.min\(\d+, (m_rows|\(m_rows \+ \d+\) // \d+)\)\)"
    assert re.search(bounded, text), text[:3000]  # tiles of 1 row: min(Mp, m_rows)

