"""Compiled compensated GEMMs: every residual term, LPLR and LRAMM against
lrqc.reference.matmul on the same inputs, the error reductions docs/numerics.md states, M
buckets, artifacts, and clear refusals."""

from __future__ import annotations

import re

import numpy as np
import pytest

import lrqc
from lrqc.backend.target import host_cpu_flags
from lrqc.reference import matmul
from lrqc.reference.scheme import direct_scheme, rel_error

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TOL = 2e-6  # float32 accumulation and float32 glue vs the float64 reference


def scheme(a: str, b: str):
    return lrqc.parse_schemes(f"scheme t {{\n a: {a}\n b: {b}\n}}")["t"]


def example(file: str, name: str):
    return lrqc.load_schemes(f"examples/{file}")[name]


def check(s, m, n, k, A=None, B=None, M=None, seed=0):
    """Compile s, run it on A, B and compare with the reference; returns (kernel, C)."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, k)) if A is None else A
    B = rng.standard_normal((k, n)) if B is None else B
    kernel = lrqc.compile(s, M=M or m, N=n, K=k)
    C = kernel.run(A, B)
    ref = matmul(s, np.asarray(A, np.float32).astype(np.float64), B)
    assert C.shape == (m, n)
    assert rel_error(C, ref) < TOL, rel_error(C, ref)
    return kernel, C


@pytest.mark.parametrize("file,name,dims", [
    ("lrqmm.lrq", "lrqmm_int8", (40, 48, 72)),
    ("lrqmm.lrq", "lrqmm_w4a8_r16", (40, 48, 72)),
    ("dense.lrq", "full_int8", (40, 48, 72)),
    ("sparse.lrq", "sparse_int8", (40, 48, 72)),
    ("lplr.lrq", "lplr_w", (40, 96, 96)),
    ("lplr.lrq", "lplr_w_a8", (40, 96, 96)),
    ("lramm.lrq", "lramm_r64", (72, 72, 80)),
])
def test_example_schemes_match_reference(file, name, dims):
    m, n, k = dims
    rng = np.random.default_rng(1)
    check(example(file, name), m, n, k, rng.random((m, k)), rng.random((k, n)))


CASES = {
    "rank-1 sketch, per_channel": ("int8 per_channel + lowrank(rank=1, method=sketch)",
                                   "int8 per_channel + lowrank(rank=1, method=sketch)"),
    "svd, trunc": ("int8 per_tensor round=trunc + lowrank(rank=3, method=svd)",
                   "int4 per_channel round=trunc + lowrank(rank=2, method=svd)"),
    "rsvd power 2, per_vector": ("int8 per_vector(32) + lowrank(rank=4, power_iters=2)",
                                 "int4 per_vector(32) + dense(int8 per_tensor)"),
    "zero-point weights": ("int8 per_channel",
                           "uint4 per_channel calibrate=minmax + lowrank(rank=3)"),
    "two-level scales": ("int8 per_vector(16, scale=uint4) + dense(int8 per_tensor)",
                         "int8 per_vector(16, scale=uint4) + lowrank(rank=2)"),
    "chained terms": ("int8 per_tensor round=floor + dense(int4 per_channel)"
                      " + lowrank(rank=1, method=sketch)",
                      "int8 per_channel + sparse(threshold=0.3) + lowrank(rank=2, method=svd)"),
    "float weights-only": ("float16",
                           "int4 per_channel + dense(int4 per_tensor) + lowrank(rank=4)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_compensated_kernels_match_reference_across_buckets(case):
    s = scheme(*CASES[case])
    rng = np.random.default_rng(7)
    kernel = lrqc.compile(s, M="4..21", N=40, K=100)
    assert len(kernel.plans) > 1
    for m in (4, 6, 21):  # bucket sizes, and rows padded with copies of the last row
        A = rng.standard_normal((m, 100)).astype(np.float32)
        B = rng.standard_normal((100, 40))
        C = kernel.run(A, B)
        ref = matmul(s, A.astype(np.float64), B)
        assert rel_error(C, ref) < TOL, (m, rel_error(C, ref))


def test_floor_codes_on_a_group_maximum_are_exact():
    """A residual's row maximum divided by its scale lands exactly on an integer: FMA
    contraction in the kernel moved floor/trunc codes there (fixed by te_base.no_contract)."""
    s = scheme("int8 per_tensor round=floor + dense(int4 per_channel)",
               "int8 per_channel + sparse(threshold=0.3)")
    for seed in range(3):
        check(s, 20, 40, 72, seed=seed)


def test_sparse_copies_sparse_or_dense_as_the_data_says():
    # A's term thresholds B (at pack), B's term thresholds A (per call); Exp data: e^-1 = 0.37
    s = scheme("int8 per_channel round=trunc + sparse(threshold=0.5, max_density=0.35)",
               "int8 per_channel round=trunc + sparse(threshold=0.5, max_density=0.4)")
    rng = np.random.default_rng(3)
    A, B = rng.exponential(size=(24, 256)), rng.exponential(size=(256, 32))
    kernel, _ = check(s, 24, 32, 256, A, B)
    notes = " ".join(kernel.last_notes)
    assert "B density 0.3" in notes and "dense B used" in notes  # 0.37 > 0.35
    assert "A density 0.3" in notes and "sparse A used" in notes  # 0.37 <= 0.4
    A2 = rng.random((24, 256))  # uniform: density 0.5 > 0.4, decided again on this call
    C = kernel.run(A2, B)
    assert "A density 0.5" in " ".join(kernel.last_notes)
    assert "dense A used" in " ".join(kernel.last_notes)
    assert rel_error(C, matmul(s, A2.astype(np.float32).astype(np.float64), B)) < TOL


SPARSE_CASES = {  # (a, b, A's distribution): sparse products with groups, dense copies
    "per_vector groups": ("int8 per_vector(16) + sparse(int8 per_vector(16), threshold=0.4)",
                          "int8 per_vector(16) + sparse(int4 per_vector(16), threshold=0.6)"),
    "above max_density": (
        "int8 per_channel + sparse(int8 per_tensor, threshold=0.5, max_density=0.9)",
        "int8 per_channel + sparse(int8 per_channel, threshold=0.5, max_density=0.9)"),
    "one side, then dense": ("int8 per_tensor round=trunc + sparse(threshold=0.7)"
                             " + dense(int4 per_tensor)",
                             "int8 per_channel"),
}


@pytest.mark.parametrize("case", list(SPARSE_CASES))
def test_sparse_products_match_reference(case):
    s = scheme(*SPARSE_CASES[case])
    kernel = lrqc.compile(s, M="4..21", N=48, K=96)
    p = kernel.plan
    assert p.sparse and all(sg.a == "base" or sg.a.startswith("res") for sg in p.segments)
    assert not any(sg.b.startswith("sparse") for sg in p.segments)
    rng = np.random.default_rng(11)
    for m in (4, 13, 21):
        A = rng.exponential(size=(m, 96)).astype(np.float32) * rng.choice([-1, 1], (m, 96))
        B = rng.standard_normal((96, 48))
        C = kernel.run(A, B)
        ref = matmul(s, A.astype(np.float64), B)
        assert rel_error(C, ref) < TOL, (m, rel_error(C, ref))


@pytest.mark.parametrize("case,dims", [("one side, then dense", (16, 48, 96)),
                                       ("per_vector groups", (16, 48, 96)),
                                       ("per_vector groups", (64, 128, 96))])  # (VNNI: quads)
def test_modules_with_sparse_products_compile_every_function_with_noalias_pointers(case, dims):
    """TVM compiles each function's body as a separate function whose pointer arguments are
    noalias (what lets LLVM keep the GEMM's accumulators in registers) only where every
    function of the module declares its buffers free of aliases: one sparse product without
    that declaration made the GEMM of the same module load and store its accumulators around
    every vpdpbusd (6.5x slower at 256x4096x4096)."""
    import re

    from lrqc.pipeline.compile import compile

    texts: dict[str, str] = {}
    compile(scheme(*SPARSE_CASES[case]), *dims, emit=("llvm",), on_text=texts.__setitem__)
    ll = texts["llvm"]
    exported = re.findall(r"define dllexport i32 @__tvm_ffi_(\w+)\(", ll)
    m = dims[0]
    assert {f"gemm_m{m}", f"quantize_a_m{m}", f"sparse0_m{m}"} <= set(exported), exported
    for name in exported:
        body = re.search(rf"define internal fastcc i32 @{name}_compute_\(([^)]*)\)", ll)
        assert body is not None, name  # its body in a function of its own
        pointers = re.findall(r"(?:^|, )ptr( noalias)?", body.group(1))
        assert pointers and all(pointers), (name, body.group(1))


@pytest.mark.parametrize("copy,own_pass", [("int8 per_tensor", False),
                                           ("int8 per_channel", True)])
def test_sparse_copy_of_a_takes_its_max_from_the_base_statistics(copy, own_pass):
    """A per-tensor copy's max |A_s| is A's largest |x| (from the base quantizer's row maxima)
    or 0: no reduction over A of its own. The numbers are the reference's, for data where the
    copy keeps some, all (max_density exceeded) or none (a constant A) of A."""
    from lrqc.backend.te import compensated

    s = scheme("int8 per_channel round=trunc",
               f"int8 per_channel round=trunc + sparse({copy}, threshold=0.6, max_density=0.5)")
    kernel = lrqc.compile(s, M="4..21", N=24, K=64)
    ops, seen = [t.op for t in compensated.quantize_a(kernel.plan)], set()
    while ops:  # every block the pass's outputs read
        op = ops.pop()
        if op.name not in seen:
            seen.add(op.name)
            ops += [t.op for t in op.input_tensors]
    assert ("a_stats_s0" in seen) == own_pass and ("a_copy_top_s0" in seen) != own_pass, seen
    rng = np.random.default_rng(2)
    B = rng.standard_normal((64, 24))
    signs = rng.choice([-1, 1], (21, 64))
    for A, used in [(rng.exponential(size=(13, 64)) * signs[:13], "sparse A used"),  # some
                    # 60 % of |x| at 1, the rest 0.001: the cut is 0.72, density 0.6: all of A
                    (np.where(rng.random((21, 64)) < 0.6, 1.0, 0.001) * signs, "dense A used"),
                    (np.full((4, 64), -0.75), "A density 0.000")]:  # |x| = the mean: none
        C = kernel.run(A.astype(np.float32), B)
        ref = matmul(s, A.astype(np.float32).astype(np.float64), B)
        assert rel_error(C, ref) < TOL, (len(A), rel_error(C, ref))
        assert used in " ".join(kernel.last_notes), kernel.last_notes


def test_sparse_copy_of_b_is_csr_and_a_static_product_works():
    from lrqc.plan.layout import csr_columns
    from lrqc.runtime.manifest import product_text

    rng = np.random.default_rng(5)
    full = rng.integers(-3, 4, (32, 24)) * (rng.random((32, 24)) < 0.3)
    ptr, idx, val = csr_columns(full, 3)
    back = np.zeros_like(full)
    for n in range(32):
        for g in range(3):
            lo, hi = ptr[n * 3 + g], ptr[n * 3 + g + 1]
            assert np.all(idx[lo:hi] // 8 == g)  # entries grouped by scale group
            back[n, idx[lo:hi]] = val[lo:hi]
    assert np.array_equal(back, full) and ptr[-1] == np.count_nonzero(full)
    s = lrqc.parse_schemes("scheme t {\n a: int8 per_channel + sparse(threshold=0.5)\n"
                           " b: int8 per_channel + sparse(threshold=0.5)\n static: a\n}")["t"]
    kernel, _ = check(s, 24, 20, 64, rng.random((24, 64)), rng.random((64, 20)))
    text = product_text(kernel)
    assert "CSR" in text and "zero-skip" in text, text


def test_lrqmm_floor_gain_and_its_collapse_with_nearest():
    """docs/numerics.md: LRQMM rank 1 with floor rounding is >= 30x more accurate than direct
    quantization on U[0,1) at 1024^3; with nearest rounding the gain is about 1x."""
    rng = np.random.default_rng(0)
    n = 1024
    A, B = rng.random((n, n)).astype(np.float32), rng.random((n, n)).astype(np.float32)
    exact = A.astype(np.float64) @ B.astype(np.float64)
    gains = {}
    for rnd in ("floor", "nearest"):
        q = f"int8 per_tensor round={rnd}"
        s = scheme(f"{q} + lowrank(rank=1, method=sketch)", f"{q} + lowrank(rank=1, method=sketch)")
        comp = lrqc.compile(s, M=n, N=n, K=n).run(A, B)
        direct = lrqc.compile(direct_scheme(s, n, n, n), M=n, N=n, K=n).run(A, B)
        assert rel_error(comp, matmul(s, A, B)) < TOL
        gains[rnd] = rel_error(direct, exact) / rel_error(comp, exact)
    assert gains["floor"] >= 30, gains
    assert 0.5 < gains["nearest"] < 2.0, gains


def test_dense_and_sparse_reduce_error():
    rng = np.random.default_rng(0)
    A, B = rng.random((64, 256)), rng.random((256, 64))
    exact = A @ B
    for file, name in (("dense.lrq", "full_int8"), ("sparse.lrq", "sparse_int8")):
        s = example(file, name)
        comp = lrqc.compile(s, M=64, N=64, K=256).run(A, B)
        direct = lrqc.compile(direct_scheme(s, 64, 64, 256), M=64, N=64, K=256).run(A, B)
        assert rel_error(comp, exact) < rel_error(direct, exact) / 5


def test_rank_above_rows_is_a_clear_error():
    s = scheme("int8 per_channel + lowrank(rank=4)", "int8 per_channel")
    kernel = lrqc.compile(s, M="1..8", N=16, K=32)
    with pytest.raises(lrqc.InputError, match=r"lowrank\(rank=4\) needs at least 4 rows, got 2"):
        kernel.run(np.ones((2, 32)), np.ones((32, 16)))


def test_m_range_below_the_rank_compiles_buckets_from_the_rank():
    """An M range starting below A's rank compiles buckets from the rank up (the smaller ones
    would serve no call): rows below it are refused at the call, the others are the
    reference's; a range that ends below the rank is refused at compile time, naming M."""
    s = scheme("int8 per_tensor + lowrank(rank=8, method=rsvd)", "int8 per_channel")
    kernel = lrqc.compile(s, M="3..200", N=40, K=72)
    assert [p.m for p in kernel.plans][0] == 8 and kernel.m_min == 3
    rng = np.random.default_rng(5)
    B = rng.standard_normal((72, 40))
    packed = kernel.pack(B)
    for m in (8, 9, 200):
        A = rng.random((m, 72)).astype(np.float32)
        assert rel_error(kernel(A, packed), matmul(s, A.astype(np.float64), B)) < TOL
    with pytest.raises(lrqc.InputError, match=r"needs at least 8 rows, got 7"):
        kernel(rng.random((7, 72)).astype(np.float32), packed)
    with pytest.raises(lrqc.SchemeError, match=r"exceeds min\(M, K\) = 5"):
        lrqc.compile(s, M="3..5", N=40, K=72)


@pytest.mark.parametrize("a,b,msg", [
    ("int8 + lowrank(rank=1) + dense(int8)", "int8", "a residual term after lowrank"),
    ("float32", "int4 + sparse(threshold=0.5)", "only lowrank and dense terms on the weights"),
    ("int8 + dense(e4m3 per_tensor)", "int8", "do not fit int8"),
    # a per-call zero point far outside the codes (a residual of nearly equal values) would
    # wrap their int16 copies: refused, on either operand
    ("int8 per_channel + sparse(uint8 per_tensor calibrate=minmax, threshold=0.5)", "int8",
     "sparse terms of A with zero points"),
    ("int8", "int8 per_channel + sparse(int8 per_tensor calibrate=minmax, threshold=0.5)",
     "B-side residual codes with zero points"),
])
def test_uncompiled_combinations_say_why(a, b, msg):
    from lrqc.errors import UnsupportedScheme

    with pytest.raises(UnsupportedScheme, match=msg):
        lrqc.compile(scheme(a, b), M=4, N=16, K=64)


LPLR_CASES = [  # (a, b, whether A' L is an integer GEMM)
    ("int8 per_tensor round=floor", "lplr(rank=8, left=int4, right=int8, seed=3)", True),
    ("int4 per_vector(32)", "lplr(rank=8, left=int8, right=int4, normalize_shift=true)", True),
    ("uint8 per_channel calibrate=minmax", "lplr(rank=6, left=int2, right=int8, method=dsvd)",
     True),
    ("float16", "lplr(rank=8, left=int4, right=int8, normalize_shift=true)", False),
    # integer A whose plan falls back to float32 (vectors not a multiple of 4; MX on one side)
    ("int8 per_vector(24)", "lplr(rank=8, left=int4, right=int8)", True),
    ("int8 per_vector(30)", "lplr(rank=8, left=int4, right=int8)", False),
    ("e2m1 per_block(32, scale=e8m0)", "lplr(rank=8, left=int4, right=int8)", False)]


@pytest.mark.parametrize("a,b,integer", LPLR_CASES)
def test_lplr_first_gemm_is_integer_for_integer_activations(a, b, integer):
    """A' L on L's int8 codes plus a ones column (chain.left_codes), over M buckets; float32
    on L's values whenever the integer plan would fall back to float."""
    s = scheme(a, b)
    rng = np.random.default_rng(11)
    B = rng.standard_normal((96, 40)) + 0.5  # L's grid offset far from 0
    kernel = lrqc.compile(s, M="3..20", N=40, K=96)
    assert kernel.integer_left == integer
    packed = kernel.pack(B)
    for m in (3, 20):
        A = rng.standard_normal((m, 96)).astype(np.float32)
        ref = matmul(s, A.astype(np.float64), B)
        assert rel_error(kernel(A, packed), ref) < TOL


def test_lplr_left_codes_are_exact():
    from lrqc.reference.lplr import minmax_quantize
    from lrqc.runtime.chain import left_codes

    L = minmax_quantize(np.random.default_rng(0).standard_normal((50, 7)) + 3.0, 4)
    X, q, step, ratio = left_codes(L, 4)
    codes = q.codes.T  # (K, m + 1)
    assert codes.min() >= -8 and codes.max() <= 7 and np.all(codes[:, -1] == 1)
    assert np.allclose(X[:, :7] + ratio * X[:, 7:], L, rtol=0, atol=1e-12)
    for seed in range(300):  # step recovered from L's extremes may be an ulp off: still fine
        Lr = minmax_quantize(np.random.default_rng(seed).standard_normal((300, 8)), 4)
        Xr, _, _, rr = left_codes(Lr, 4)
        assert np.allclose(Xr[:, :8] + rr * Xr[:, 8:], Lr, rtol=0, atol=1e-12)
    Xc, qc, _, ratio_c = left_codes(np.full((5, 2), 0.25), 4)  # a constant factor
    assert np.all(qc.codes[:2] == qc.codes[0, 0])
    assert np.allclose(Xc[:, :2] + ratio_c * Xc[:, 2:], 0.25)


def test_lplr_needs_static_weights():
    from lrqc.errors import UnsupportedScheme

    s = lrqc.parse_schemes("scheme t { a: lplr(rank=4)\n b: float32\n static: a }")["t"]
    with pytest.raises(UnsupportedScheme, match="static: b"):
        lrqc.compile(s, M=8, N=16, K=16)


@pytest.mark.parametrize("file,name,dims", [
    ("lrqmm.lrq", "lrqmm_w4a8_r16", "M=16..40,N=48,K=64"),
    ("lplr.lrq", "lplr_w", "M=1..16,N=96,K=96"),
    ("lplr.lrq", "lplr_w_a8", "M=1..16,N=96,K=96"),
])
def test_artifacts_of_compensated_and_chained_kernels(tmp_path, file, name, dims):
    from lrqc.pipeline.export import build_artifact
    from lrqc.runtime.artifact import load_kernel

    s = example(file, name)
    d = dict(x.split("=") for x in dims.split(","))
    man = build_artifact(s, d["M"], int(d["N"]), int(d["K"]), tmp_path / "k")
    assert man["functions"] and "GEMM" in man["product"]
    kernel = load_kernel(tmp_path / "k")
    rng = np.random.default_rng(5)
    A, B = rng.random((16, int(d["K"]))), rng.random((int(d["K"]), int(d["N"])))
    ref = matmul(s, A.astype(np.float32).astype(np.float64), B)
    assert rel_error(kernel.run(A, B), ref) < TOL


# A's lowrank term with other=packed: F_Aᵀ B̂ from B's codes (and B's own terms), B̂ = B as the
# kernel holds it; the reference computes the same form in float64. apart: whether B - B̂ is
# coarse enough for the exact form's result to lie far outside the kernel's rounding
PACKED_CASES = {
    "int8 per_channel": ("int8 per_channel", "int8 per_channel", True),
    "int4 per_channel, B's lowrank": ("int8 per_channel", "int4 per_channel + lowrank(rank=2)",
                                      True),
    "int8 per_vector, B's lowrank": ("int8 per_vector(32)",
                                     "int8 per_vector(32) + lowrank(rank=3, method=svd)", False),
    "int4 per_vector, zero points": ("int8 per_vector(16)",
                                     "uint4 per_vector(16) calibrate=minmax", True),
    "dense terms on both": ("int8 per_channel + dense(int8 per_tensor)",
                            "int4 per_vector(32) + dense(int8 per_tensor) + lowrank(rank=2)",
                            False),
    "B's sparse term": ("int8 per_channel", "int8 per_channel + sparse(threshold=0.3)", False),
}


@pytest.mark.parametrize("case", list(PACKED_CASES))
def test_lowrank_times_packed_weights_matches_reference_across_buckets(case):
    a, b, apart = PACKED_CASES[case]
    s = scheme(f"{a} + lowrank(rank=4, other=packed)", b)
    exact = scheme(f"{a} + lowrank(rank=4)", b)
    rng = np.random.default_rng(3)
    kernel = lrqc.compile(s, M="4..21", N=40, K=100)
    assert len(kernel.plans) > 1
    B = rng.standard_normal((100, 40))
    packed = kernel.pack(B)
    assert packed.arrays.b32t is None  # no float copy of B: F_Aᵀ B̂ comes from its codes
    for m in (4, 6, 21):
        A = rng.standard_normal((m, 100)).astype(np.float32)
        C = kernel(A, packed)
        ref = matmul(s, A.astype(np.float64), B)
        assert rel_error(C, ref) < TOL, (m, rel_error(C, ref))
        if apart:  # the exact form differs by R_A (B - B̂), far above the kernel's rounding
            assert rel_error(matmul(exact, A.astype(np.float64), B), ref) > 10 * TOL


# rank 1 (the sketch) on int8 weights with one scale per column sums B's codes in place
# (te.compensated.lanes_w); the other rank-1 cases keep the panel form
RANK1_CASES = {
    "int8 per_tensor floor": ("int8 per_tensor round=floor", True),
    "int8 per_channel": ("int8 per_channel", True),
    "int8 per_channel, B's lowrank": ("int8 per_channel + lowrank(rank=2)", True),
    "int4 per_channel": ("int4 per_channel", False),
    "int8 per_vector": ("int8 per_vector(32)", False),
    "zero points": ("uint8 per_channel calibrate=minmax", False),
}


@pytest.mark.parametrize("case", list(RANK1_CASES))
def test_rank1_times_packed_weights_matches_reference(case):
    from lrqc.backend.te.compensated import lanes_form

    b, lanes = RANK1_CASES[case]
    s = scheme("int8 per_tensor round=floor + lowrank(rank=1, method=sketch, power_iters=1, "
               "other=packed)", b)
    rng = np.random.default_rng(7)
    kernel = lrqc.compile(s, M="3..20", N=72, K=132)
    assert [lanes_form(p) for p in kernel.plans] == [lanes] * len(kernel.plans)
    B = rng.standard_normal((132, 72)) * rng.uniform(0.1, 3.0, 72)  # columns of unequal scale
    packed = kernel.pack(B)
    for m in (3, 9, 20):
        A = rng.random((m, 132)).astype(np.float32)
        ref = matmul(s, A.astype(np.float64), B)
        C = kernel(A, packed)
        assert rel_error(C, ref) < TOL, (m, rel_error(C, ref))
        # the term matters: without it the product is far from the reference
        direct = matmul(direct_scheme(s, m, 72, 132), A.astype(np.float64), B)
        assert rel_error(direct, ref) > 100 * TOL


@pytest.mark.parametrize("n,blocks", [(40, 3), (128, 8), (512, 16), (1024, 16), (2048, 16)])
def test_rank1_times_packed_weights_in_blocks_of_panels(n, blocks):
    """lanes_w takes its 16-column panels in blocks on AVX-512 targets (2, 4 and 8 panels at
    N = 512, 1024, 2048, leaving 16 blocks to run in parallel; one at a time at 40 and 128,
    and on other targets): every block size gives the reference's C."""
    from lrqc.pipeline.compile import compile as compile_stages

    s = scheme("int8 per_tensor round=floor + lowrank(rank=1, method=sketch, power_iters=1, "
               "other=packed)", "int8 per_channel")
    if lrqc.compile(s, M=4, N=16, K=32).rule in ("x86_vnni", "x86_amx"):  # AVX-512 registers
        texts: dict[str, str] = {}
        compile_stages(s, 40, n, 260, emit=("tir",), on_text=texts.__setitem__)
        tir = texts["tir"].split("def lowrank_w")[1].split("@T.prim_func")[0]
        assert f"in T.parallel({blocks})" in tir
    rng = np.random.default_rng(11)
    kernel = lrqc.compile(s, M="1..40", N=n, K=260)
    B = rng.standard_normal((260, n)) * rng.uniform(0.1, 3.0, n)
    packed = kernel.pack(B)
    for m in (1, 17, 40):
        A = (rng.random((m, 260)) * rng.uniform(0.5, 2.0, 260)).astype(np.float32)
        ref = matmul(s, A.astype(np.float64), B)
        assert rel_error(kernel(A, packed), ref) < TOL, (n, m)


# A's lowrank term times the exact B: with K a multiple of 16 the compiled exact_w forms W =
# F_Aᵀ B from pack's float32 Bᵀ (held once: the packed arrays view the kernel's tensor);
# other K, numpy's BLAS. (a, K, N, compiled)
EXACT_W_CASES = {
    "rsvd rank 16": ("int8 per_channel round=floor + lowrank(rank=16, oversample=8, "
                     "power_iters=1)", 96, 44, True),
    "sketch rank 1, N not a multiple of 4": ("int8 per_tensor round=floor + lowrank(rank=1, "
                                             "method=sketch)", 96, 45, True),
    "svd, per_vector": ("int4 per_vector(32) + lowrank(rank=3, method=svd)", 128, 44, True),
    "K of 100": ("int8 per_channel round=floor + lowrank(rank=4)", 100, 44, False),
}


@pytest.mark.parametrize("case", list(EXACT_W_CASES))
def test_lowrank_times_exact_b_matches_reference(case):
    from lrqc.runtime.glue import view

    a, k, n, compiled = EXACT_W_CASES[case]
    s = scheme(a, "int8 per_channel + lowrank(rank=2)")
    rng = np.random.default_rng(11)
    kernel = lrqc.compile(s, M="17..40", N=n, K=k)
    B = rng.standard_normal((k, n)) * rng.uniform(0.1, 3.0, n)  # columns of unequal scale
    packed = kernel.pack(B)
    assert [bk.exact_w for bk in kernel._buckets] == [compiled] * len(kernel._buckets)
    assert ("Bt" in packed.tensors) == compiled
    if compiled:
        assert np.shares_memory(packed.arrays.b32t, view(packed.tensors["Bt"]))
    bk = kernel._buckets[-1]  # W itself: F_Aᵀ B for a unit F_A, within float32 rounding
    r = bk.plan.rank_a
    ft = np.linalg.qr(rng.standard_normal((k, r)))[0].T
    want = ft @ B.astype(np.float32).astype(np.float64)
    assert np.abs(bk._w_of(packed)(ft) - want).max() < 1e-5 * np.abs(want).max()
    for m in (17, 29, 40):
        A = rng.random((m, k)).astype(np.float32)
        ref = matmul(s, A.astype(np.float64), B)
        assert rel_error(kernel(A, packed), ref) < TOL, (m, rel_error(kernel(A, packed), ref))


def _exact_w_forms(s, n: int, target: str) -> dict[str, bool]:
    """{exact_w function: whether its TIR has the outer-product form's transposed block}."""
    from lrqc.pipeline.compile import compile as pipeline_compile

    texts: dict[str, str] = {}
    pipeline_compile(s, 40, n, 96, target, emit=("tir",), on_text=texts.__setitem__)
    parts = re.split(r"(?m)^# (\w+_m\d+)$", texts["tir"])
    return {name[: name.rindex("_m")]: 'T.sblock("exact_w_across")' in text
            for name, text in zip(parts[1::2], parts[2::2], strict=True)
            if name.startswith("exact_w")}


@pytest.mark.parametrize("rank,n,wide,narrow", [(16, 48, True, True), (32, 40, True, True),
                                                (16, 44, False, True), (8, 48, False, True),
                                                (16, 42, False, False)])
def test_exact_w_outer_products_match_reference(rank, n, wide, narrow):
    """exact_w takes the outer-product form (rows of Bᵀ broadcast against F_A's ranks side by
    side) where the ranks fill whole vectors (16 lanes on AVX-512, 8 on AVX2) and N whole
    blocks of rows (8 on AVX-512, 4 on AVX2); row dot products elsewhere (N = 42) and from
    16-bit copies of B. W = F_Aᵀ B within float32 rounding either way, and C against the
    reference, on this machine's form."""
    a = f"int8 per_channel round=floor + lowrank(rank={rank}, oversample=8, power_iters=1)"
    s = scheme(a, "int8 per_channel + lowrank(rank=2)")
    assert _exact_w_forms(s, n, "x86-avx512-vnni") == {
        "exact_w": wide, "exact_w_bf16": False, "exact_w_f16": False}
    assert _exact_w_forms(s, n, "x86-avx2") == {
        "exact_w": narrow, "exact_w_bf16": False, "exact_w_f16": False}
    rng = np.random.default_rng(21)
    kernel = lrqc.compile(s, M="33..40", N=n, K=96)
    B = rng.standard_normal((96, n)) * rng.uniform(0.1, 3.0, n)
    packed = kernel.pack(B)
    bk = kernel._buckets[-1]
    ft = np.linalg.qr(rng.standard_normal((96, rank)))[0].T * 1e3  # W of unequal rows
    ft[0] *= 1e-3
    want = ft @ B.astype(np.float32).astype(np.float64)
    got = bk._w_of(packed)(ft)
    assert np.abs(got - want).max() < 1e-5 * np.abs(want).max()
    assert np.abs(got[0] - want[0]).max() < 1e-5 * np.abs(want[0]).max()
    for m in (33, 40):
        A = rng.random((m, 96)).astype(np.float32)
        ref = matmul(s, A.astype(np.float64), B)
        assert rel_error(kernel(A, packed), ref) < TOL, (m, rel_error(kernel(A, packed), ref))


def _lowrank_w_form(s, n: int, target: str) -> str:
    """How lowrank_w of s at 40 x n x 96 is written for target: "outer" (te.outer_w, its
    int32 words of B's blocks), "lanes" (te.compensated.lanes_w) or "panel"."""
    from lrqc.pipeline.compile import compile as pipeline_compile

    texts: dict[str, str] = {}
    pipeline_compile(s, 40, n, 96, target, emit=("tir",), on_text=texts.__setitem__)
    parts = re.split(r"(?m)^# (\w+_m\d+)$", texts["tir"])
    text = next(t for name, t in zip(parts[1::2], parts[2::2], strict=True)
                if name.startswith("lowrank_w_m"))
    if 'T.reinterpret("int32x16"' in text:
        return "outer"
    return "lanes" if 'T.sblock("lowrank_w_fa")' in text else "panel"


# B's format, A's rank, the form on AVX-512 VNNI (outer products where B's codes are a byte
# each with one scale per column and no zero points, rank 2 and up), N and K. N = 48 has an
# odd number of 16-column blocks and N = 64 too few pairs (one block a group of ranks); 500,
# 512 and 544 pair them
OUTER_W_CASES = {
    "int8 per_channel, rank 16": ("int8 per_channel", 16, "outer", 48, 96),
    "int8 per_channel, rank 16, pairs of blocks (two groups of 8)": (
        "int8 per_channel", 16, "outer", 512, 96),
    "per_tensor with B's lowrank, rank 24 (groups of 12)": (
        "int8 per_tensor round=floor + lowrank(rank=2)", 24, "outer", 48, 96),
    "per_tensor with B's lowrank, rank 24, pairs (three groups of 8)": (
        "int8 per_tensor round=floor + lowrank(rank=2)", 24, "outer", 544, 96),
    "int8 per_tensor, rank 2": ("int8 per_tensor", 2, "outer", 48, 96),
    "int8 per_tensor, rank 2, pairs": ("int8 per_tensor", 2, "outer", 512, 96),
    "int8 per_tensor, rank 16, N = 64: two blocks, not paired": (
        "int8 per_tensor", 16, "outer", 64, 96),
    "rank 17 (groups of 9 and 8), N and K padded": ("int8 per_channel", 17, "outer", 40, 99),
    "rank 17, pairs (groups of 6, 6 and 5), N and K padded": (
        "int8 per_channel", 17, "outer", 500, 99),
    "int4 per_channel (two codes a byte)": ("int4 per_channel", 16, "panel", 48, 96),
    "rank 1": ("int8 per_channel", 1, "lanes", 48, 96),
    "per_vector": ("int8 per_vector(32)", 16, "panel", 48, 96),
    "zero points": ("uint8 per_channel calibrate=minmax", 16, "panel", 48, 96),
}


def test_outer_w_groups_of_ranks_per_pair_of_blocks():
    """outer_w's groups of ranks: at most 16 ranks on one block, 8 on a pair (at most 16
    registers of sums either way); blocks pair up where B's columns, padded to a multiple of
    16, are a multiple of 32 and make at least 16 pairs."""
    from lrqc.backend.te import outer_w

    assert [outer_w.paired(n) for n in (16, 32, 48, 64, 496, 512, 528, 544, 4096)] == \
        [1, 1, 1, 1, 1, 2, 1, 2, 2]
    assert outer_w.rank_groups(16) == ((0, 17), (1, 16))
    assert outer_w.rank_groups(17) == ((1, 9), (1, 8))
    assert outer_w.rank_groups(16, 2) == ((0, 9), (2, 8))
    assert outer_w.rank_groups(17, 2) == ((2, 6), (1, 5))
    assert outer_w.rank_groups(24, 2) == ((0, 9), (3, 8))
    assert outer_w.rank_groups(2, 2) == ((0, 3), (1, 2))
    for rank in range(2, 40):
        for blocks in (1, 2):
            (n1, s1), (n2, s2) = outer_w.rank_groups(rank, blocks)
            assert n1 * s1 + n2 * s2 == rank and max(s1 * (n1 > 0), s2) * blocks <= 16


@pytest.mark.parametrize("case", list(OUTER_W_CASES))
def test_lowrank_w_outer_products_match_reference(case):
    """lowrank_w (W = F_Aᵀ B̂ from B's codes, other=packed) as outer products from B's VNNI
    blocks where OUTER_W_CASES says so, never on AVX2 (its 16 registers); W against F_Aᵀ B̂
    in float64 (B̂ as the reference holds B: its codes dequantized plus its own terms), its
    smallest row on its own scale, and C against the reference."""
    from lrqc.reference.operand import held, prepare

    b, rank, form, n, k = OUTER_W_CASES[case]
    s = scheme(f"int8 per_tensor round=floor + lowrank(rank={rank}, other=packed)", b)
    assert _lowrank_w_form(s, n, "x86-avx512-vnni") == form
    assert _lowrank_w_form(s, n, "x86-avx2") == ("lanes" if rank == 1 else "panel")
    rng = np.random.default_rng(23)
    kernel = lrqc.compile(s, M="33..40", N=n, K=k)
    B = rng.standard_normal((k, n)) * rng.uniform(0.1, 3.0, n)
    packed = kernel.pack(B)
    ft = np.linalg.qr(rng.standard_normal((k, rank)))[0].T * 1e3  # W of unequal rows
    ft[0] *= 1e-3
    want = ft @ held(prepare(s.b, B, "b"))
    got = kernel._buckets[-1]._w_of(packed)(ft)
    assert np.abs(got - want).max() < 1e-5 * np.abs(want).max()
    assert np.abs(got[0] - want[0]).max() < 1e-5 * np.abs(want[0]).max()
    for m in (33, 40):
        A = rng.random((m, k)).astype(np.float32)
        ref = matmul(s, A.astype(np.float64), B)
        assert rel_error(kernel(A, packed), ref) < TOL, (m, rel_error(kernel(A, packed), ref))


def _epilogue_vectors(tir: str) -> int:
    """The 16-lane vectors of columns in the register block of the GEMM's low-rank epilogue
    (the unrolled loop whose variable steps v_j by 16 in the C_update block; 1 where none)."""
    parts = re.split(r"(?m)^# (\w+_m\d+)$", tir)  # [head, name, text, name, text, ..]
    gemm = next(text for name, text in zip(parts[1::2], parts[2::2], strict=True)
                if name.startswith("gemm_m"))
    body = gemm[: gemm.index('T.sblock("C_update")')]
    binding = gemm[gemm.index('T.sblock("C_update")'):].split("v_j = ")[1].split("\n")[0]
    var = re.search(r"(\w+) \* 16 \+ \w+\)$", binding)
    if var is None:
        return 1
    return int(re.findall(rf"for {var.group(1)} in T\.unroll\((\d+)\)", body)[-1])


@pytest.mark.parametrize("target,vectors", [("x86-avx512-vnni", 4), ("x86-avx2", 2)])
def test_lowrank_epilogue_register_block_per_target(target, vectors):
    """The low-rank epilogue's register block: 4 rows take 64 columns (16 registers of sums)
    where registers hold 16 float32 lanes and there are 32 of them, 32 columns elsewhere."""
    from lrqc.pipeline.compile import compile as pipeline_compile

    s = scheme("int8 per_channel + lowrank(rank=4)", "int8 per_channel + lowrank(rank=4)")
    texts: dict[str, str] = {}
    pipeline_compile(s, 64, 128, 256, target, emit=("tir",), on_text=texts.__setitem__)
    assert _epilogue_vectors(texts["tir"]) == vectors


def test_rank_16_epilogue_in_64_column_blocks_matches_reference():
    """Ranks 16 on both sides through the host's epilogue (64-column blocks on AVX-512), N a
    multiple of 64 with a partial last panel of 128-column tiles, against the reference."""
    s = scheme("int8 per_tensor round=floor + lowrank(rank=16, oversample=8, power_iters=1)",
               "int8 per_channel + lowrank(rank=16)")
    rng = np.random.default_rng(3)
    kernel = lrqc.compile(s, M="16..64", N=192, K=128)
    B = rng.standard_normal((128, 192))
    packed = kernel.pack(B)
    for m in (16, 40, 64):
        A = rng.standard_normal((m, 128)).astype(np.float32)
        ref = matmul(s, A.astype(np.float64), B)
        assert rel_error(kernel(A, packed), ref) < TOL, (m, rel_error(kernel(A, packed), ref))


def test_row_dots_in_k_pieces_give_the_same_bits(monkeypatch):
    """The row-dot kernels (exact_w, lowrank_u, the sketch product R Ω of the quantization
    pass) walk K in pieces of lanes.K_CHUNK chunks where K allows: every sum still runs over K
    in order, so C is bit for bit the one of kernels that walk K whole."""
    from lrqc.backend.schedule import lanes

    # (rank + oversample 7 and ranks 5 and 3: row dot products on every target, not te.outer_dots)
    s = scheme("int8 per_channel round=floor + lowrank(rank=5, oversample=2, power_iters=1)",
               "int8 per_channel + lowrank(rank=3)")
    k = 16 * lanes.K_CHUNK * 2  # two pieces
    rng = np.random.default_rng(12)
    A, B = rng.random((24, k)).astype(np.float32), rng.standard_normal((k, 40))
    pieces = lrqc.compile(s, 24, 40, k)
    monkeypatch.setattr(lanes, "K_CHUNK", 10**9)
    whole = lrqc.compile(s, 24, 40, k)
    assert pieces._buckets[0].exact_w and whole._buckets[0].exact_w
    c1, c2 = pieces(A, pieces.pack(B)), whole(A, whole.pack(B))
    np.testing.assert_array_equal(c1, c2)
    assert rel_error(c1, matmul(s, A.astype(np.float64), B)) < TOL


RSVD16 = "int8 per_tensor round=floor + lowrank(rank=16, oversample=8, power_iters=1)"


def _dot_block(tir: str, fn: str) -> tuple[int, int]:
    """(rows, ranks) of the register block of row dot product fn's 16-lane sums in emitted
    TIR: the two unrolled loops over the block's rows and ranks."""
    body = tir.split(f"def {fn}_m")[1].split("@T.prim_func")[0]
    m = re.search(r"for ax0_init in T\.unroll\((\d+)\):\s+for ax1_1_init in T\.unroll\((\d+)\)",
                  body)
    assert m is not None, body[:600]
    return int(m.group(1)), int(m.group(2))


def _col_piece(tir: str) -> int:
    """resid_tq's piece of columns: the vectorized loop under the unrolled block of ranks."""
    body = tir.split("def resid_tq_m")[1].split("@T.prim_func")[0]
    m = re.search(r"for c_1_init in T\.unroll\(\d+\):\s+for k_2_init in T\.vectorized\((\d+)\)",
                  body)
    assert m is not None, body[:600]
    return int(m.group(1))


@pytest.mark.parametrize("target,block,piece", [("x86-avx512-vnni", (4, 4), 64),
                                                ("x86-avx2", None, None)])
def test_float_products_register_blocks_per_target(target, block, piece):
    """The row dot products (R Ω in the quantization pass, A' L_B and R Z) take blocks of 4
    rows x 4 ranks of 16-lane sums where the target has AVX-512's 32 registers; on AVX2's 16
    they take the outer-product form's contiguous parts of k instead. Rᵀ Q takes pieces of 64
    columns there, and here blocks of 4 of R's columns against vectors of 8 of Q's."""
    from lrqc.pipeline.compile import compile as pipeline_compile

    texts: dict[str, str] = {}
    pipeline_compile(scheme(RSVD16, "int8 per_channel + lowrank(rank=16)"), 64, 128, 1024,
                     target, emit=("tir",), on_text=texts.__setitem__)
    tir = texts["tir"]
    wide = target != "x86-avx2"
    for fn in ("lowrank_u", "resid_z"):
        body = tir.split(f"def {fn}_m")[1].split("@T.prim_func")[0]
        assert (f"{fn}_parts = T.sblock_alloc_buffer" in body) is not wide, fn
        if wide:
            assert _dot_block(tir, fn) == block, fn
        else:  # 4 rows a block, each row's sums in three vectors of 8 lanes
            assert re.search(r"in T\.unroll\(4\):\s+for \w+ in T\.unroll\(\d\):\s+"
                             r"for \w+ in T\.vectorized\(8\)", body), fn
    sketch = tir.split("def quantize_a_m")[1].split("@T.prim_func")[0]
    if wide:
        assert f"for ax0_init in T.unroll({block[0]})" in sketch
    assert ("a_sketch_parts = T.sblock_alloc_buffer" in sketch) is not wide
    tq = tir.split("def resid_tq_m")[1].split("@T.prim_func")[0]
    assert ("resid_tq_columns = T.sblock_alloc_buffer" in tq) is not wide
    if wide:
        assert _col_piece(tir) == piece
    else:  # a part's 32 rows unrolled, 4 columns of R a block, 3 vectors of 8 of Q's columns
        assert re.search(r"for i_1 in T\.unroll\(32\):\s+for k_2 in T\.unroll\(4\):\s+"
                         r"for c_1 in T\.unroll\(3\):\s+for c_2 in T\.vectorized\(8\)", tq)


def test_float_products_in_either_targets_blocks_give_the_same_bits(monkeypatch):
    """The row dot products' and Rᵀ Q's register blocks differ by target (the test above), but
    not their sums' order: a kernel built with the other kind of target's blocks, run here,
    gives C bit for bit (the outer-product forms turned off, so that every product takes
    those blocks)."""
    from lrqc.backend.schedule import lanes, passes
    from lrqc.backend.te import compensated

    monkeypatch.setattr(compensated, "outer_form", lambda *args: False)
    monkeypatch.setattr(compensated, "columns_form", lambda *args: False)
    s = scheme(RSVD16, "int8 per_channel + lowrank(rank=16)")
    rng = np.random.default_rng(21)
    A, B = rng.random((64, 1024)).astype(np.float32), rng.standard_normal((1024, 96))
    own = lrqc.compile(s, 64, 96, 1024)
    monkeypatch.setattr(lanes, "DOT_BLOCK", {True: lanes.DOT_BLOCK[False],
                                             False: lanes.DOT_BLOCK[True]})
    for name in ("COL_PIECE", "COL_ROWS"):
        sizes = getattr(passes, name)
        monkeypatch.setattr(passes, name, {True: sizes[False], False: sizes[True]})
    other = lrqc.compile(s, 64, 96, 1024)
    c1, c2 = own(A, own.pack(B)), other(A, other.pack(B))
    np.testing.assert_array_equal(c1, c2)
    assert rel_error(c1, matmul(s, A.astype(np.float64), B)) < TOL


@pytest.mark.skipif("avx2" not in host_cpu_flags(), reason="runs x86-avx2 kernels")
@pytest.mark.parametrize("lowrank,m,k", [
    ("lowrank(rank=16, oversample=8, power_iters=1)", "33..48", 512),  # Q's 24 columns at once
    ("lowrank(rank=24, oversample=8, power_iters=2)", 64, 1024),  # two groups of 16
    ("lowrank(rank=4, oversample=4)", 9, 20),  # one vector of Q; K padded to 32: 2 chunks
    ("lowrank(rank=5, oversample=2)", 40, 64)])  # 7 columns: the earlier form
def test_r_columns_form_gives_the_same_bits(monkeypatch, lowrank, m, k):
    """Built for AVX2, Rᵀ Q's outer-product form (blocks of R's columns against vectors of Q's)
    gives C bit for bit as the earlier form (pieces of R's rows against Q's values): both sum
    each column's terms over R's rows in order, so only the loops differ; both agree with
    the reference."""
    from lrqc.backend.te import compensated

    s = scheme(f"int8 per_tensor round=floor + {lowrank}", "int8 per_channel")
    rng = np.random.default_rng(41)
    A, B = rng.random((48 if m == "33..48" else m, k)).astype(np.float32), rng.random((k, 24))
    taken: list[bool] = []
    form = compensated.columns_form
    monkeypatch.setattr(compensated, "columns_form", lambda *a: taken.append(form(*a)) or taken[-1])
    new = lrqc.compile(s, M=m, N=24, K=k, target="x86-avx2")
    assert taken and all(taken) is ("rank=5" not in lowrank)
    monkeypatch.setattr(compensated, "columns_form", lambda *args: False)
    old = lrqc.compile(s, M=m, N=24, K=k, target="x86-avx2")
    c1, c2 = new(A, new.pack(B)), old(A, old.pack(B))
    np.testing.assert_array_equal(c1, c2)
    assert rel_error(c1, matmul(s, A.astype(np.float64), B)) < TOL


@pytest.mark.skipif("avx2" not in host_cpu_flags(), reason="runs x86-avx2 kernels")
@pytest.mark.parametrize("a,b", [
    (RSVD16, "int8 per_channel + lowrank(rank=16)"),  # exact_w, R Z, R Ω, A' L_B from codes
    ("float32", "int8 per_channel + lowrank(rank=8)"),  # A' L_B on the float path
    ("float16", "int4 per_vector(32) + lowrank(rank=24)")])  # ... with 16-bit A's row scales
def test_outer_products_match_row_dots_within_float32_rounding(monkeypatch, a, b):
    """Built for AVX2 (whatever this CPU's own rule), the outer-product forms give C within
    float32 rounding of the row dot products' (the same kernel with them turned off), both
    within the suite's tolerance of the reference; the sums run in another order, so the
    bits differ."""
    from lrqc.backend.te import compensated

    s = scheme(a, b)
    rng = np.random.default_rng(31)
    A, B = rng.standard_normal((44, 512)).astype(np.float32), rng.standard_normal((512, 96))
    outer = lrqc.compile(s, M="33..48", N=96, K=512, target="x86-avx2")
    monkeypatch.setattr(compensated, "outer_form", lambda *args: False)
    dots = lrqc.compile(s, M="33..48", N=96, K=512, target="x86-avx2")
    c1, c2 = outer(A, outer.pack(B)), dots(A, dots.pack(B))
    assert not np.array_equal(c1, c2)
    assert np.abs(c1 - c2).max() < 1e-5 * np.abs(c2).max()
    ref = matmul(s, A.astype(np.float64), B)
    assert rel_error(c1, ref) < TOL and rel_error(c2, ref) < TOL


def test_pack_holds_each_array_once():
    """On CPUs the packed arrays are views of the kernel's tensors: the codes, scales, factors,
    bias and the float32 Bᵀ of A's lowrank term are each held once."""
    from lrqc.runtime.glue import view

    s = scheme("int8 per_channel + lowrank(rank=2)", "int4 per_vector(32) + lowrank(rank=2)")
    kernel = lrqc.compile(s, 16, 48, 64)
    rng = np.random.default_rng(13)
    B = rng.standard_normal((64, 48))
    bias = rng.standard_normal(48)
    packed = kernel.pack(B, bias=bias)
    names_ = dict(packed.arrays.params()).keys()
    assert {"Bp", "sb", "cs", "LBt", "Wb", "bias", "Bt"} <= names_ == packed.tensors.keys()
    for name, arr in packed.arrays.params():
        assert np.shares_memory(arr, view(packed.tensors[name])), name
    A = rng.standard_normal((16, 64))
    ref = matmul(s, A.astype(np.float32).astype(np.float64), B, bias=bias)
    assert rel_error(kernel(A, packed), ref) < TOL


def test_exact_b_of_16_bit_values_is_held_in_16_bits(monkeypatch):
    """Where exact_w runs and every value of B is a bfloat16's (or a float16's), pack holds
    Bᵀ in 16 bits (bfloat16's bits as uint16, or float16), says so, and C is bit for bit the
    one from the float32 Bᵀ; a saved pack restores as it was, and a kernel without exact_w
    widens it back exactly."""
    import warnings
    from dataclasses import replace

    from lrqc.runtime import buckets, packstate
    from lrqc.runtime.glue import view

    s = scheme("int8 per_channel round=floor + lowrank(rank=4)", "int8 per_channel")
    kernel = lrqc.compile(s, M="8..32", N=48, K=64)
    rng = np.random.default_rng(14)
    B = rng.standard_normal((64, 48)).astype(np.float32)
    A = rng.random((20, 64)).astype(np.float32)
    bf16 = (B.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
    f16 = B.astype(np.float16).astype(np.float32)
    f16[0, 0] = -0.0  # kept with its sign
    held = {}
    big = B * 1e6  # past float16's range (no numpy warning for it)
    for b, dtype in ((bf16, np.uint16), (f16, np.float16), (B, np.float32), (big, np.float32)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            packed = kernel.pack(b)
        bt = packed.arrays.b32t
        assert bt.dtype == dtype and bt.shape == (48, 64)
        assert np.shares_memory(bt, view(packed.tensors["Bt"]))
        assert any("B held as" in n for n in packed.notes) == (dtype != np.float32)
        held[dtype] = (b, packed, kernel(A, packed))
        ref = matmul(s, A.astype(np.float64), b)
        assert rel_error(held[dtype][2], ref) < TOL
    for dtype in (np.uint16, np.float16):
        b, packed, C = held[dtype]
        restored = packstate.restore(kernel, *packstate.save(packed))
        assert restored.arrays.b32t.dtype == dtype
        np.testing.assert_array_equal(kernel(A, restored), C)
        wide = buckets.held_bt(packed.arrays, exact_w=False)  # e.g. a CUDA kernel's
        assert wide.b32t.dtype == np.float32 and not any("B held as" in n for n in wide.notes)
        np.testing.assert_array_equal(wide.b32t.view(np.uint32), b.T.view(np.uint32))
    for bad in (np.float64, ">f4"):  # no other type stands for Bᵀ
        arrays = replace(held[np.float32][1].arrays,
                         b32t=held[np.float32][1].arrays.b32t.astype(bad))
        with pytest.raises(lrqc.LrqcError, match="pack B again"):
            kernel._adopt(arrays)  # (a saved state's arrays: their fingerprint matched)
    monkeypatch.setattr(buckets, "held_bt", lambda arrays, exact_w: arrays)  # float32 Bᵀ
    for dtype in (np.uint16, np.float16):
        b, _, C = held[dtype]
        packed = kernel.pack(b)
        assert packed.arrays.b32t.dtype == np.float32
        np.testing.assert_array_equal(kernel(A, packed), C)


def test_lowrank_times_exact_b_in_an_artifact(tmp_path):
    from lrqc.pipeline.export import build_artifact
    from lrqc.runtime.artifact import load_kernel

    s = scheme("int8 per_channel + lowrank(rank=4)", "int8 per_channel")
    man = build_artifact(s, "8..16", 48, 64, tmp_path / "k")
    assert sorted(fn for fn in man["functions"] if fn.startswith("exact_w")) == [
        "exact_w_bf16_m16", "exact_w_bf16_m8", "exact_w_f16_m16", "exact_w_f16_m8",
        "exact_w_m16", "exact_w_m8"]
    kernel = load_kernel(tmp_path / "k")
    rng = np.random.default_rng(5)
    A, B = rng.standard_normal((12, 64)), rng.standard_normal((64, 48))
    for b in (B, B.astype(np.float16)):  # float32, and held as float16
        packed = kernel.pack(b)
        assert packed.tensors["Bt"].dtype == ("float16" if b.dtype == np.float16 else
                                              "float32")
        ref = matmul(s, A.astype(np.float32).astype(np.float64), b)
        assert rel_error(kernel(A, packed), ref) < TOL


def test_randomized_svd_products_run_compiled(tmp_path):
    """On CPUs the randomized SVD's products with A's residual R (Rᵀ Q and R Z) run as the
    kernel's resid_tq and resid_z on the R quantize_a left: equal to float64 products within
    float32 rounding for calls of fewer rows than the bucket's (R's rows past them are copies
    of the last) and narrower bases (fewer rows than rank + oversample), with K's padding
    columns of R nonzero (codes with a zero point); C the reference's, in an artifact too."""
    from lrqc.pipeline.export import build_artifact
    from lrqc.runtime.artifact import load_kernel
    from lrqc.runtime.glue import view

    s = scheme("uint8 per_channel calibrate=minmax + lowrank(rank=4, oversample=4, "
               "power_iters=1)", "int8 per_channel")
    k, n = 200, 40  # K's padding: 200 -> 208
    kernel = lrqc.compile(s, M="5..24", N=n, K=k)
    assert all(bk.r_products for bk in kernel._buckets)
    rng = np.random.default_rng(13)
    B = rng.standard_normal((k, n))
    packed = kernel.pack(B)
    for m in (5, 7, 17, 24):
        A = (rng.standard_normal((m, k)) + 1000.0).astype(np.float32)
        ref = matmul(s, A.astype(np.float64), B)
        assert rel_error(kernel(A, packed), ref) < TOL, (m, rel_error(kernel(A, packed), ref))
        bk, rows = kernel._quantize(A)
        R = view(bk.comp.R)[:rows, :k].astype(np.float64)
        assert np.abs(view(bk.comp.R)[:, k:]).max() > 0  # the padding columns
        rt, rz = bk.comp._products(rows, lambda fn, bk=bk: bk.run(fn, packed))
        for w in sorted({1, min(8, m)}):
            Q = rng.standard_normal((rows, w)).astype(np.float32)
            Z = rng.standard_normal((k, w)).astype(np.float32)
            for got, want in ((rt(None, Q), R.T @ Q), (rz(None, Z), R @ Z)):
                assert got.shape == want.shape
                assert np.abs(got - want).max() < 1e-5 * np.abs(want).max(), (m, w)
    man = build_artifact(s, "8..16", n, k, tmp_path / "k")
    assert {"resid_tq_m8", "resid_z_m16"} <= set(man["functions"])
    loaded = load_kernel(tmp_path / "k")
    A = (rng.standard_normal((12, k)) + 1000.0).astype(np.float32)
    assert rel_error(loaded.run(A, B), matmul(s, A.astype(np.float64), B)) < TOL


def test_lowrank_times_packed_weights_in_an_artifact(tmp_path):
    from lrqc.pipeline.export import build_artifact
    from lrqc.runtime.artifact import load_kernel

    s = scheme("int8 per_channel + lowrank(rank=2, other=packed)",
               "int4 per_channel + lowrank(rank=2)")
    man = build_artifact(s, "8..16", 48, 64, tmp_path / "k")
    assert any(fn.startswith("lowrank_w_m") for fn in man["functions"])
    assert "B's codes" in man["product"]
    kernel = load_kernel(tmp_path / "k")
    rng = np.random.default_rng(4)
    A, B = rng.standard_normal((12, 64)), rng.standard_normal((64, 48))
    ref = matmul(s, A.astype(np.float32).astype(np.float64), B)
    assert rel_error(kernel.run(A, B), ref) < TOL


@pytest.mark.parametrize("a,method,k", [
    ("int8 per_tensor round=floor", "sketch", 200), ("int8 per_tensor", "rsvd", 200),
    ("int8 per_channel", "svd", 200), ("int8 per_tensor", "rsvd", 8),  # K of one chunk
    # codes with a zero point on rows away from 0: K's padding (200 -> 208) holds -deq(Q(0))
    ("uint8 per_channel calibrate=minmax", "sketch", 200)])
def test_quantize_pass_gives_each_rows_largest_residual(a, method, k):
    """The quantization pass writes max |R| over A's K columns of each row of A's residual as
    it writes R (the factorization's power-of-two scaling reads it): equal to numpy's, for the
    call's rows."""
    from lrqc.runtime.glue import view

    rank = 1 if method == "sketch" else 2
    s = scheme(f"{a} + lowrank(rank={rank}, method={method})", "int8 per_channel")
    kernel = lrqc.compile(s, M="5..24", N=32, K=k)
    rng = np.random.default_rng(11)
    for m in (5, 17, 24):
        A = (rng.standard_normal((m, k)) * rng.uniform(0.01, 100, (m, 1))).astype(np.float32)
        A += 1000.0 * ("minmax" in a)
        bk, rows = kernel._quantize(A)
        R = view(bk.comp.R)[:rows, :k]
        np.testing.assert_array_equal(view(bk.comp.Rtop)[:rows], np.abs(R).max(axis=1))


@pytest.mark.parametrize("target,sums", [("x86-avx512-vnni", "a_sketch_lanes_update"),
                                         ("x86-avx2", "a_sketch_parts_update")])
def test_rsvd_sketch_product_follows_each_block_of_r_rows(target, sums):
    """The randomized SVD's R Ω is computed right after each block of R's rows, under the
    same parallel loop (R then still in cache), never reading a row of R before the block
    that writes it, as row dot products with AVX-512's registers and as outer products on
    AVX2's; the calls are the reference's."""
    from lrqc.pipeline.compile import compile as compile_stages

    s = scheme("int8 per_tensor round=floor + lowrank(rank=4, oversample=4, power_iters=1)",
               "int8 per_channel")
    texts: dict[str, str] = {}
    compile_stages(s, 64, 32, 96, target, emit=("tir",), on_text=texts.__setitem__)
    tir = texts["tir"].split("def quantize_a")[1].split("@T.prim_func")[0].splitlines()
    at = {name: next(i for i, line in enumerate(tir) if f'T.sblock("{name}")' in line)
          for name in ("a_resid", sums)}
    loop = max(i for i in range(at["a_resid"]) if "T.parallel" in tir[i])
    depth = len(tir[loop]) - len(tir[loop].lstrip())
    for line in tir[loop + 1: at[sums]]:  # still inside R's loop
        assert len(line) - len(line.lstrip()) > depth, line
    written: set[str] = set()
    for line in tir:  # blocks in program order: R read only after it is written
        if "T.writes(" in line:
            written.add(line.split("T.writes(")[1].split("[")[0])
        if "T.reads(" in line and "a_resid[" in line:
            assert "a_resid" in written, line
    k = lrqc.compile(s, M=64, N=32, K=96)
    rng = np.random.default_rng(4)
    B = rng.standard_normal((96, 32))
    A = rng.random((64, 96)).astype(np.float32)
    assert rel_error(k(A, k.pack(B)), matmul(s, A.astype(np.float64), B)) < TOL
