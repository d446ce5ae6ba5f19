"""Per-group integer sums that start from minus their zero correction (te.gemm's start, made
the sums' initialization by backend.compat.prim_func): the TIR each rule gets, and the numbers
of every x86 rule this CPU runs against lrqc.reference, with zero points and codes at the ends
of their ranges."""

from __future__ import annotations

import re

import numpy as np
import pytest

import lrqc
from lrqc.reference import int_accumulate, matmul, quantize

pytest.importorskip("tvm")

from lrqc.backend.compat import START, prim_func, te, tensor, tvm
from lrqc.backend.target import host_cpu_flags
from lrqc.pipeline.compile import compile as pipeline_compile
from lrqc.plan import names

FLAGS = host_cpu_flags()
BASELINE_X86 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64"}
# (target, the rule it takes) of every x86 rule this CPU runs
RULES = [(BASELINE_X86, "generic")]
if "avx2" in FLAGS:
    RULES.append(("x86-avx2", None))  # vpmaddubsw where the ranges allow, else vpmaddwd
if "avx512_vnni" in FLAGS:
    RULES.append(("x86-avx512-vnni", "x86_vnni"))

PAIRS = [  # (a, b)
    # a correction per row and group: min-max activations (uint4 defaults to min-max), or
    # weights with zero points; the sums start from 0 and the correction follows them
    ("uint4 per_vector(16, scale=uint6 per_channel)",
     "int4 per_vector(16, scale=uint6 per_channel)"),
    ("uint8 per_vector(32) calibrate=minmax", "int4 per_vector(32)"),
    ("uint4 per_vector(8) calibrate=minmax", "int8 per_vector(8)"),
    ("int4 per_vector(16)", "uint4 per_vector(16)"),
    # the same correction for every row and group (max-abs): the sums start from it
    ("int8 per_vector(16)", "int8 per_vector(16)"),  # -128 cs
    ("int8 per_vector(16)", "int4 per_vector(16)"),  # -128 cs, the rule's vpmaddubsw on AVX2
    ("int4 per_vector(16)", "int4 per_vector(16)"),  # -8 cs
    ("int7 per_vector(32)", "int8 per_vector(32)"),  # -64 cs
    ("uint4 per_vector(16) calibrate=maxabs", "int4 per_vector(16)"),  # 0
]


def scheme(a: str, b: str) -> lrqc.Scheme:
    return lrqc.parse_schemes(f"scheme s {{\n a: {a}\n b: {b}\n}}")["s"]


def edge_data(m: int, n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A whose groups of 8 run from [-1, 0] (zero point at the top of the code range) through
    mixed signs to [0, 1] (zero point 0), with exact zeros, so min-max zero points cover their
    whole range; B with columns of very different sizes and values at their group's maximum."""
    rng = np.random.default_rng(seed)
    lo = rng.choice([-1.0, -0.5, 0.0], size=(m, k // 8, 1))
    A = lo + (rng.random((m, k // 8, 8)) * np.where(lo == -1.0, 1.0, 1.0 - lo))
    A[:, :, 0] = np.where(lo[:, :, 0] == 0.0, 0.0, A[:, :, 0])
    A = A.reshape(m, k).astype(np.float32)
    B = rng.standard_normal((k, n)) * rng.choice([1e-3, 1.0, 1e3], size=(1, n))
    B[::5] = np.sign(B[::5]) * np.abs(B).max(axis=0)
    return A, B


@pytest.mark.parametrize("target,rule", RULES, ids=[r or "x86-avx2" for _, r in RULES])
@pytest.mark.parametrize("a,b", PAIRS, ids=[f"{a}|{b}" for a, b in PAIRS])
def test_group_sums_match_the_reference(target, rule, a, b):
    """Integer sums bit for bit (kernel.int_accumulate: the sums less their corrections) and C
    within float32 rounding, on the edge data, for each rule."""
    s = scheme(a, b)
    m, n, k = 9, 40, 128
    kernel = lrqc.compile(s, M=m, N=n, K=k, target=target)
    if rule is not None:
        assert kernel.rule == rule
    A, B = edge_data(m, n, k, seed=len(a) + len(b))
    packed = kernel.pack(B)
    qa, qb = quantize(A, s.a.quant, "a"), quantize(B, s.b.quant, "b")
    ref = np.stack([part for _, part in int_accumulate(qa, qb)])
    np.testing.assert_array_equal(kernel.int_accumulate(A, packed), ref)
    C, R = kernel(A, packed), matmul(s, A, B)
    tol = 2e-6 * kernel.plan.groups ** 0.5 * np.abs(R).max()
    assert np.abs(C - R).max() <= tol
    # a bias: added after the sums over the groups (none given: pack's zero row, not added)
    bias = np.linspace(-1, 1, n) * np.abs(R).max()
    Cb = kernel(A, kernel.pack(B, bias=bias))
    assert np.abs(Cb - matmul(s, A, B, bias=bias)).max() <= 2 * tol
    np.testing.assert_array_equal(kernel(A, kernel.pack(B, bias=np.zeros(n))), C)


def _block(tir: str, name: str) -> str:
    """The text of TIR block `name` (its first occurrence), up to the next block."""
    at = tir.index(f'T.sblock("{name}")')
    nxt = tir.find("T.sblock(", at + 1)
    return tir[at: nxt if nxt > 0 else len(tir)]


def _gemm_tir(a: str, b: str, target: str) -> str:
    texts: dict = {}
    pipeline_compile(scheme(a, b), 8, 64, 256, target, emit=("tir",), on_text=texts.__setitem__)
    tir = texts["tir"]
    return tir[tir.index("def gemm_m8"): tir.index("def int_acc_m8")
               if tir.index("def int_acc_m8") > tir.index("def gemm_m8") else len(tir)]


def test_static_zero_corrections_start_each_group_from_a_column_vector():
    """Max-abs A (zero correction 128 for every row and group): each group's sums start from
    -128 times B's column sums, no zc read anywhere in the GEMM, and the output block
    subtracts nothing; min-max A (a correction per row and group): the sums start from 0 and
    the output block subtracts zc[i, g] cs[g, j] (VNNI rule)."""
    tir = _gemm_tir("int8 per_vector(16)", "int8 per_vector(16)", "x86-avx512-vnni")
    init = _block(tir, names.PARTIAL + "_init")
    assert re.search(r"cs\[[^]]*\] \* -128", init), init
    assert "zc[" not in tir
    assert "cs[" not in _block(tir, names.OUT + "_update")
    assert "bias[" in _block(tir, names.OUT + "_init")  # the output starts from the bias
    tir = _gemm_tir("uint4 per_vector(16) calibrate=minmax", "int4 per_vector(16)",
                    "x86-avx512-vnni")
    assert "cs[" not in _block(tir, names.PARTIAL + "_init")
    out = _block(tir, names.OUT + "_update")
    assert "zc[" in out and "cs[" in out, out


def test_amx_tiles_start_from_zero_and_subtract_after():
    """The AMX rule zeroes its tiles of sums with an instruction: its sums start from 0 and the
    output block subtracts the correction (static: 128 times the column sums, no zc)."""
    tir = _gemm_tir("int8 per_vector(128)", "int8 per_vector(128)", "x86-amx")
    assert "cs[" not in _block(tir, names.PARTIAL + "_init_o")
    out = _block(tir, names.OUT + "_update")
    assert "cs[" in out and "zc[" not in out


def test_start_values_are_checked():
    """A reduction whose te.sum has an init but no start block, or a start that reads another
    block's output (the initialization decompose_reduction makes would not declare it), is
    refused rather than started from 0."""
    A = te.placeholder((4, 8), "int32", name="A")
    other = te.compute((4,), lambda i: A[i, 0], name="y_other")
    k = te.reduce_axis((0, 8), "k")
    Y = te.compute((4,), lambda i: te.sum(A[i, k], axis=k, init=other[i]), name="y")
    with pytest.raises(TypeError, match="y" + START):
        prim_func([A, Y])
    M = te.compute((4, 8), lambda i, j: A[i, j] + 1, name="m")
    first = te.compute((4,), lambda i: M[i, 0], name="z" + START)
    k = te.reduce_axis((0, 8), "k")
    Z = te.compute((4,), lambda i: te.sum(A[i, k], axis=k, init=first[i]), name="z")
    with pytest.raises(TypeError, match="parameters only"):
        prim_func([A, Z])


def test_outputs_add_the_bias_at_the_first_group_where_the_rule_cannot_start_from_it():
    """The grouped output without a start (ScheduleRule.output_start False: CUDA's dlight
    fallback) adds the bias and the low-rank terms at its first group: the same C, compiled
    here for LLVM unscheduled, as the output that starts from the bias."""
    from lrqc.backend.te import gemm as te_gemm
    from lrqc.plan.support import make_plan

    plan = make_plan(scheme("int8 per_vector(16)", "int8 per_vector(16) + lowrank(rank=2)"),
                     8, 32, 64)
    rng = np.random.default_rng(5)
    outs = []
    for start in (True, False):
        tensors = te_gemm.gemm(plan, out_start=start)
        args = [tensor(_random(t, rng)) for t in tensors[:-1]]
        out = tensor(np.zeros([int(d) for d in tensors[-1].shape], np.float32))
        tvm.compile(prim_func(tensors), target="llvm")["main"](*args, out)
        outs.append(out.numpy())
        rng = np.random.default_rng(5)
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-6, atol=1e-6 * np.abs(outs[0]).max())


def _random(t, rng) -> np.ndarray:
    shape, dt = [int(d) for d in t.shape], str(t.dtype)
    if dt.startswith("float"):
        return rng.standard_normal(shape).astype(dt)
    lo, hi = (0, 256) if dt == "uint8" else (-8, 8)
    return rng.integers(lo, hi, shape).astype(dt)


def test_prim_func_starts_a_reduction_from_its_start_block():
    """backend.compat.prim_func: a reduction `x` whose te.sum starts from x + START's values
    (TVM 0.27's create_prim_func alone starts every sum from 0), the start block inlined."""
    A = te.placeholder((4, 8), "int32", name="A")
    first = te.compute((4,), lambda i: A[i, 0] * 3 - 7, name="x" + START)
    k = te.reduce_axis((0, 8), "k")
    X = te.compute((4,), lambda i: te.sum(A[i, k], axis=k, init=first[i]), name="x")
    mod = prim_func([A, X])
    assert "x" + START not in mod.script()
    f = tvm.compile(mod, target="llvm")["main"]
    a = np.arange(32, dtype=np.int32).reshape(4, 8)
    out = tensor(np.zeros(4, np.int32))
    f(tensor(a), out)
    np.testing.assert_array_equal(out.numpy(), a.sum(axis=1) + a[:, 0] * 3 - 7)
