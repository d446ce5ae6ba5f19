"""The numerical contract where it is easiest to break silently: exact int64 accumulation for
every K, the output type of C, scale equivariance of every shipped scheme, 1-bit residual
terms, and the reference and the compiler accepting the same schemes at the same sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lrqc
from lrqc.frontend.model import QuantOperand
from lrqc.reference import matmul
from lrqc.reference.inputs import output_dtype
from lrqc.reference.scheme import rel_error
from lrqc.resources import host_cpu_flags

pytest.importorskip("tvm")

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.lrq"))


def scheme(body: str) -> lrqc.Scheme:
    return lrqc.parse_schemes(f"scheme s {{\n{body}\n}}")["s"]


def matches_reference(s, m: int, n: int, k: int, seed: int) -> bool:
    """The compiled kernel's C on random float32 A and float64 B is the reference's, within
    float32 rounding."""
    rng = np.random.default_rng(seed)
    A, B = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n))
    return rel(lrqc.compile(s, m, n, k).run(A, B), matmul(s, A, B)) < 2e-6


def rel(C, R) -> float:
    C, R = np.asarray(C, np.float64), np.asarray(R, np.float64)
    return float(np.abs(C - R).max() / np.abs(R).max())


# ---------------------------------------------------------------- accumulate: int64

K_BIG = 140_000  # 255 * 127 * K passes 2^31: one int32 sum cannot hold it


@pytest.mark.parametrize("acc", ["int64", "int32"])
def test_integer_accumulation_is_exact_past_one_int32_sum(acc):
    """accumulate: promises exact sums: int32 and int64 alike (the int32 version fell back to
    a float32 GEMM whose error grew with K: 1.2e-2 at K = 1e6)."""
    s = scheme(f"a: int8\nb: int8\naccumulate: {acc}")
    kernel = lrqc.compile(s, 4, 16, K_BIG)
    assert kernel.plan.chunked and any(f"accumulate: {acc}" in n and "int64" in n
                                       for n in kernel.plan.notes)
    A = np.ones((4, K_BIG), np.float32)  # every product is +127 * +127
    B = np.ones((K_BIG, 16))
    B[:, 1] = -1.0  # and -127 * 127 in one column
    packed = kernel.pack(B)
    sums = kernel.int_accumulate(A, packed)
    assert sums.dtype == np.int64 and sums.shape == (1, 4, 16)
    assert (sums[0, :, 0] == 127 * 127 * K_BIG).all()
    assert (sums[0, :, 1] == -127 * 127 * K_BIG).all()
    C = kernel(A, packed)
    np.testing.assert_array_equal(C[:, 0], np.float32(K_BIG))
    np.testing.assert_array_equal(C[:, 1], np.float32(-K_BIG))
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((4, K_BIG)).astype(np.float32), rng.standard_normal((K_BIG, 16))
    assert rel(kernel.run(A, B), matmul(s, A, B)) < 1e-6


@pytest.mark.parametrize("body", [
    "a: int8 + dense(int8)\nb: int8\naccumulate: int64",
    "a: int8\nb: int8 + lowrank(rank=1)",
])
def test_sums_that_cannot_be_chunked_are_refused(body):
    from lrqc.plan.support import make_plan

    with pytest.raises(lrqc.LrqcError, match="exceed int32"):
        make_plan(scheme(body), 4, 16, K_BIG)


# ---------------------------------------------------------------- output types

OUTPUTS = ("float32", "float16", "bfloat16")


@pytest.mark.parametrize("out", (*OUTPUTS, "float64"))
def test_reference_rounds_once_to_the_output_type(out):
    s = scheme(f"a: int8\nb: int8\noutput: {out}")
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((6, 32)) * 300, rng.standard_normal((32, 8)) * 300
    C = matmul(s, A, B)
    exact = matmul(s, A, B, exact=True)
    assert C.dtype == output_dtype(out) and exact.dtype == np.float64
    with np.errstate(over="ignore"):  # float16 overflows to inf, as declared
        np.testing.assert_array_equal(C, exact.astype(output_dtype(out)))  # one rounding, RNE


def test_reference_rounding_is_single_not_through_float32():
    # 1 + 2^-8 + 2^-30 rounds up to 1 + 2^-7 in bfloat16; through float32 it would tie to 1
    x = np.array([1 + 2.0**-8 + 2.0**-30])
    from lrqc.reference.inputs import to_output

    assert float(to_output(x, "bfloat16")[0]) == 1 + 2.0**-7
    assert float(to_output(np.array([70000.0]), "float16")[0]) == np.inf  # declared overflow


@pytest.mark.parametrize("out", OUTPUTS)
@pytest.mark.parametrize("body", ["a: int8 per_channel\nb: int4 per_channel",
                                  "a: float32\nb: int8 per_channel",
                                  "a: int8 + lowrank(rank=2)\nb: int8 + lowrank(rank=2)"])
def test_kernels_return_the_output_type(out, body):
    s = scheme(f"{body}\noutput: {out}")
    rng = np.random.default_rng(2)
    A, B = (rng.standard_normal((8, 64)) * 40).astype(np.float32), rng.standard_normal((64, 24))
    C = lrqc.compile(s, 8, 24, 64).run(A, B)
    R = matmul(s, A, B)
    assert C.dtype == R.dtype == output_dtype(out)
    eps = {"float32": 2e-6, "float16": 2.0**-10, "bfloat16": 2.0**-7}[out]  # one ulp
    assert rel(C, R) <= eps


def test_float16_output_overflows_to_inf_as_declared():
    s = scheme("a: int8\nb: int8\noutput: float16")
    A, B = np.full((4, 16), 100.0, np.float32), np.full((16, 16), 100.0)
    C = lrqc.compile(s, 4, 16, 16).run(A, B)
    assert np.isinf(C).all() and np.isinf(matmul(s, A, B)).all()


def test_float64_output_is_refused_by_the_compiler():
    with pytest.raises(lrqc.LrqcError, match="float64"):
        lrqc.compile(scheme("a: int8\nb: int8\noutput: float64"), 4, 16, 16)


# ---------------------------------------------------------------- scale equivariance

EQ_DIMS = (96, 128, 128)  # room for the shipped LPLR (rank 83) and LRAMM (rank 64) schemes
EXPONENTS = (-100, -37, -1, 1, 37, 100)  # |A| from 1e-30 to 1e30: C stays in float32's range


def _shipped():
    out = {}
    for path in EXAMPLES:
        out.update(lrqc.load_schemes(path))
    return sorted(out.items())


SHIPPED = _shipped()


def _inputs():
    from lrqc.reference.data import pair

    m, n, k = EQ_DIMS
    A, B = pair("uniform", m, n, k, 0)
    return A.astype(np.float32).astype(np.float64), B.astype(np.float32).astype(np.float64)


def _moving(s) -> str:
    """The operands whose scales move with the data: all but fixed point's static range."""
    return "".join(r for r in "ab" if not (isinstance(op := s.operand(r), QuantOperand)
                                          and op.quant.is_fixed))


def _equivariance(run, tol: float, sides: str = "ab"):
    A, B = _inputs()
    C0 = np.asarray(run(A, B), np.float64)
    assert np.isfinite(C0).all()
    for e in EXPONENTS:
        for side in sides:
            A2, B2 = (np.ldexp(A, e), B) if side == "a" else (A, np.ldexp(B, e))
            C = np.ldexp(np.asarray(run(A2, B2), np.float64), -e)
            assert rel(C, C0) <= tol, (side, e, rel(C, C0))


@pytest.mark.parametrize("name,s", SHIPPED, ids=[n for n, _ in SHIPPED])
def test_reference_is_scale_equivariant(name, s):
    _equivariance(lambda A, B: matmul(s, A, B), 0.0, _moving(s))


@pytest.mark.parametrize("name,s", SHIPPED, ids=[n for n, _ in SHIPPED])
def test_kernels_are_scale_equivariant(name, s):
    kernel = lrqc.compile(s, *EQ_DIMS)
    # power-of-two scaling is exact in every step; LRAMM's QR of an odd power differs by ulps
    _equivariance(kernel.run, 1e-6, _moving(s))


def test_fixed_point_is_the_documented_exception():
    """A fixed(...) operand has a static range: scaled up it saturates, so C does not scale
    with it (and the other operand still does)."""
    s = dict(SHIPPED)["fixed_a"]
    assert _moving(s) == "b"
    A, B = _inputs()
    C0, C = matmul(s, A, B), np.ldexp(matmul(s, np.ldexp(A, 37), B), -37)
    assert rel(C, C0) > 1e-3


def test_reference_lowrank_survives_float64_extremes():
    """The sketch's power iteration multiplies R three times: unnormalized it overflowed near
    1e150 (NaN C) and lost the compensation below 1e-100."""
    s = scheme("a: int8 per_tensor round=floor + lowrank(rank=1, method=sketch, power_iters=2)\n"
               "b: int8 per_tensor round=floor + lowrank(rank=1, method=sketch)\n"
               "output: float64")
    A, B = _inputs()
    C0 = matmul(s, A, B)
    for e in (-900, -400, 400, 900):
        np.testing.assert_array_equal(np.ldexp(matmul(s, np.ldexp(A, e), B), -e), C0)


# ---------------------------------------------------------------- 1-bit residual terms

@pytest.mark.parametrize("side", "ab")
@pytest.mark.parametrize("term", ["dense(int1)", "sparse(int1)", "dense(int1 per_channel)",
                                  "dense(int1 per_vector(16))"])
@pytest.mark.parametrize("base", ["int8", "int1 per_channel"])
def test_one_bit_residual_terms_match_the_reference(side, term, base):
    a = f"{base} + {term}" if side == "a" else base
    b = f"int8 + {term}" if side == "b" else "int8"
    s = scheme(f"a: {a}\nb: {b}")
    assert matches_reference(s, 5, 20, 50, seed=3)


@pytest.mark.parametrize("a,b", [("int1", "int8"), ("int8 + dense(int1)", "int8"),
                                 ("int8", "int8 + sparse(int1)")])
def test_one_bit_per_tensor_activations_with_an_m_range_are_refused(a, b):
    """mean |A| over the rows would include the bucket's padding rows."""
    with pytest.raises(lrqc.LrqcError, match="int1 per_tensor"):
        lrqc.compile(scheme(f"a: {a}\nb: {b}"), "2..16", 16, 32)
    lrqc.compile(scheme(f"a: {a}\nb: {b}"), 16, 16, 32)  # one M is fine


# ---------------------------------------------------------------- one validation

@pytest.mark.parametrize("body,dims", [
    ("a: float32\nb: lplr(rank=40)", (8, 16, 32)),  # rank > min(K, N)
    ("product: lowrank(rank=10)", (8, 16, 32)),  # rank > min(M, N, K)
    ("a: int8 + lowrank(rank=9)\nb: int8", (8, 16, 32)),  # rank > min(M, K)
])
def test_reference_and_compiler_refuse_the_same_sizes(body, dims):
    s = scheme(body)
    m, n, k = dims
    rng = np.random.default_rng(4)
    with pytest.raises(lrqc.LrqcError, match="exceeds"):
        matmul(s, rng.standard_normal((m, k)), rng.standard_normal((k, n)))
    with pytest.raises(lrqc.LrqcError, match="exceeds"):
        lrqc.compile(s, m, n, k)


@pytest.mark.parametrize("target", ["x86-avx512-vnni", "x86-avx2"])
@pytest.mark.parametrize("body", [
    "a: int8 per_channel + dense(int8 per_vector(5))\nb: int8 per_channel",
    "a: int8 per_vector(4)\nb: int4 per_vector(4)",
    "a: int8\nb: int8\naccumulate: int64",
])
def test_rules_leave_what_they_cannot_tile_to_the_portable_rule(target, body):
    """Vectors that are not whole blocks of 4 k (or one block, for vpmaddwd) and int64 chunks:
    the fast rules decline them (their schedules failed inside TVM), the portable rule takes
    them; compiled here for both CPUs. One block of 4 k per group is one vpdpbusd or one
    vpmaddubsw (int8 x int4: proven exact), which the VNNI and AVX2 bytes rules tile; the
    AVX2 one runs here against the reference."""
    k = K_BIG if "int64" in body else 40
    s = scheme(body)
    kernel = lrqc.compile(s, 8, 16, k, target=target)
    one_block = "per_vector(4)" in body
    fast = {"x86-avx512-vnni": "x86_vnni", "x86-avx2": "x86_avx2_bytes"}[target]
    assert kernel.rule == (fast if one_block else "generic")
    if one_block and target == "x86-avx2" and "avx2" in host_cpu_flags():
        rng = np.random.default_rng(7)
        A, B = rng.standard_normal((8, k)), rng.standard_normal((k, 16))
        ref = matmul(s, A.astype(np.float32).astype(np.float64), B)
        assert rel_error(kernel.run(A, B), ref) < 1e-6


@pytest.mark.parametrize("body", ["a: int8 per_channel\nb: int8 per_channel",
                                  "a: int8 per_vector(16)\nb: int4 per_vector(16)"])
def test_tiny_operands_on_both_sides_keep_their_scales(body):
    """max |A| max |B| below 2^-112: the product of the two scales is subnormal in float32
    (the epilogue multiplied it first and lost C), while C itself is a normal number."""
    s = scheme(body)
    kernel = lrqc.compile(s, 8, 16, 64)
    rng = np.random.default_rng(5)
    A = rng.standard_normal((8, 64)).astype(np.float32).astype(np.float64)
    B = rng.standard_normal((64, 16)).astype(np.float32).astype(np.float64)
    C0 = kernel.run(A, B).astype(np.float64)
    for ea, eb in ((-60, -60), (-70, 60), (40, 40)):
        C = np.ldexp(kernel.run(np.ldexp(A, ea), np.ldexp(B, eb)).astype(np.float64), -ea - eb)
        np.testing.assert_array_equal(C, C0)


def test_results_that_leave_float32_are_refused_not_nan():
    s = scheme("a: int8 per_vector(16)\nb: int8 per_vector(16)")
    kernel = lrqc.compile(s, 4, 16, 64)
    A, B = np.full((4, 64), 3e38, np.float32), np.ones((64, 16))
    B[:32] = -1.0  # partial sums of opposite infinities made NaN
    with pytest.raises(lrqc.InputError, match="float32's range"):
        kernel.run(A, B)
    assert np.isinf(matmul(s, A, np.ones((64, 16)))).all()  # the reference rounds to inf


def test_an_lramm_intermediate_past_float32_is_named_not_blamed_on_a():
    """LRAMM multiplies A's factors by B's on the host before its kernels: where that product
    leaves float32 (finite A and B near 1e30), the refusal names the intermediate; it used to
    report an infinity in A, which holds none."""
    s = lrqc.parse_schemes("scheme s { product: lowrank(rank=1, bits=(2, 4, 4)) }")["s"]
    kernel = lrqc.compile(s, 4, 2, 16)
    rng = np.random.default_rng(0)
    A = (rng.standard_normal((4, 16)) * 1e30).astype(np.float32)
    B = (rng.standard_normal((16, 2)) * 1e30).astype(np.float32)
    assert np.isfinite(A).all() and np.isfinite(B).all()
    with pytest.raises(lrqc.InputError, match=r"A: its LRAMM factors times B's, U_A \(V_Aᵀ "
                       r"U_B\), leave float32's range \(an intermediate of the chain\)"):
        kernel(A, kernel.pack(B))
    assert not np.isfinite(matmul(s, A, B)).all()  # the reference's float64 C is past float32
    small = (A / np.float32(1e28), B / np.float32(1e28))  # the same kernel takes them
    assert rel_error(kernel(small[0], kernel.pack(small[1])), matmul(s, *small)) < 1e-3


@pytest.mark.parametrize("body,big", [("a: float16\nb: int8", "A"), ("a: int8\nb: float16", "B"),
                                      ("a: bfloat16\nb: int8", "A"),
                                      ("a: float16\nb: int8\nstatic: a", "A")])
def test_float_operands_beyond_their_type_are_refused(body, big):
    s = scheme(body)
    A, B = np.ones((4, 32)), np.ones((32, 16))
    X = A if big == "A" else B
    X[1, 3] = 3.4e38 if "bfloat16" in body else 1e5  # inf in that type, not a value
    kernel = lrqc.compile(s, 4, 16, 32)
    for run in (lambda: matmul(s, A, B), lambda: kernel.run(A, B)):
        with pytest.raises(lrqc.InputError, match="range"):
            run()


def test_blas_limit_is_shared_by_overlapping_callers():
    """Kernels called from several threads: OpenBLAS's thread count is one process-wide
    setting, so a caller leaving its block must neither undo the limit of one still inside
    nor leave the limit behind when it is the last."""
    import threading

    from lrqc.runtime import glue as comp_call
    from lrqc.runtime.glue import one_blas_thread

    with one_blas_thread():  # the BLAS libraries it controls: those loaded at its first use
        pass

    def threads():
        return {lib.get_num_threads() for lib in comp_call._BLAS["libs"]}

    before = threads()
    inside, leave = threading.Event(), threading.Event()

    def hold():
        with one_blas_thread():
            inside.set()
            leave.wait(10)

    with one_blas_thread():
        assert threads() <= {1}
    assert threads() == before
    t = threading.Thread(target=hold)
    t.start()
    assert inside.wait(10)
    with one_blas_thread():
        assert comp_call._BLAS["depth"] == 2
    assert comp_call._BLAS["depth"] == 1  # the other caller's limit stays in place
    leave.set()
    t.join()
    assert threads() == before and comp_call._BLAS["depth"] == 0  # and none is left behind


@pytest.mark.parametrize("body", [
    "a: int8 + lowrank(rank=2, method=svd)\nb: int8\nstatic: a",
    "a: int8\nb: int8 + lowrank(rank=1, method=sketch)\nstatic: a",
    ("a: e5m2 per_block(1) pad=false + lowrank(rank=1, method=sketch, power_iters=0)\n"
     "b: float32\nstatic: a"),
])
def test_static_a_with_lowrank_terms_is_refused(body):
    """The transposed kernel of static: a swaps which operand a term multiplies exactly (A's
    term multiplies B, B's term A's codes) and draws the random test vectors for the
    transposed residual: it ran and was up to 4 % off."""
    with pytest.raises(lrqc.LrqcError, match="static: a with lowrank"):
        lrqc.compile(scheme(body), 8, 8, 17)


def test_static_a_with_dense_and_sparse_terms_matches_the_reference():
    s = scheme("a: int8 per_channel + dense(int8)\nb: int8 per_channel + sparse(threshold=0.5)\n"
               "static: a")
    assert matches_reference(s, 8, 24, 40, seed=6)


@pytest.mark.parametrize("out,text", [("float16", "65504"), ("bfloat16", "3.38953e+38"),
                                      ("float64", "reference only")])
def test_explain_states_the_output_range(out, text):
    from lrqc.explain import notes

    assert any(f"output: {out}" in n and text in n
               for n in notes(scheme(f"a: int8\nb: int8\noutput: {out}"), None))


TWO_LEVEL_LOWRANK = ("int8 per_vector(20, scale=uint1 per_channel) + lowrank(rank=1, "
                     "method=rsvd, oversample=0, power_iters=0)")


@pytest.mark.parametrize("a,b,dims", [
    # two-level scales: gamma over the reference's groups only (the 16-lane K padding of a
    # compensated kernel added all-zero groups of scale 1: 31 % off)
    (TWO_LEVEL_LOWRANK, "e2m3 per_channel", (8, 8, 8)),
    ("int8 per_vector(20, scale=uint4 per_channel) + dense(int4)", "int8 per_channel",
     (8, 16, 40)),
    # a K of one 16-lane chunk with a one-column sketch: the row-dot schedule failed in TVM
    ("int8 per_channel + lowrank(rank=1, method=rsvd, oversample=0, power_iters=1)",
     "int8 per_channel", (8, 8, 8)),
])
def test_compensated_kernels_found_by_the_differential_test(a, b, dims):
    s = scheme(f"a: {a}\nb: {b}")
    m, n, k = dims
    assert matches_reference(s, m, n, k, seed=7)


@pytest.mark.parametrize("body,side", [
    ("a: uint8 per_tensor\nb: int8 per_channel", "a"),
    ("a: int8 per_channel\nb: uint8 per_channel", "b"),
    ("a: uint8 per_vector(16)\nb: int8 per_vector(16)", "a"),
    ("a: uint8 per_tensor\nb: int8\naccumulate: int64", "a"),
    ("a: uint8 per_channel\nb: lplr(rank=2)", "a"),
])
def test_zero_points_far_from_the_codes_are_refused_or_exact(body, side):
    """Min-max zero points of data of one sign far from zero (1e4 + U[0, 1) in uint8: z near
    -2.5e6) made the int32 sums overflow: C was off by 100 %. Nearer offsets stay exact."""
    s = scheme(body)
    kernel = lrqc.compile(s, 8, 64, 256)
    rng = np.random.default_rng(8)
    for offset, refused in ((0.0, False), (100.0, False), (1e4, True)):
        A = rng.uniform(size=(8, 256)) + (offset if side == "a" else 0.0)
        B = rng.uniform(size=(256, 64)) + offset if side == "b" else rng.standard_normal((256, 64))
        A = A.astype(np.float32).astype(np.float64)
        if refused:
            with pytest.raises(lrqc.InputError, match="zero points"):
                kernel.run(A, B)
        else:
            assert rel(kernel.run(A, B), matmul(s, A, B)) < 2e-6


@pytest.mark.parametrize("body", ["a: int8 per_channel\nb: int4 per_channel",
                                  "a: int8 per_vector(16)\nb: int8 per_vector(16)",
                                  "a: int8 per_channel\nb: int8 per_channel\nstatic: a"])
@pytest.mark.parametrize("side", "ab")
def test_subnormal_scales_are_refused(body, side):
    """Values near 1e-42 (float32 subnormals): their scale max / 127 is subnormal in float32
    and the epilogue kept a few of its bits (C off by 3 %)."""
    s = scheme(body)
    kernel = lrqc.compile(s, 16, 32, 64)
    rng = np.random.default_rng(9)
    A, B = rng.standard_normal((16, 64)), rng.standard_normal((64, 32))
    tiny = (np.ldexp(A, -140), np.ldexp(B, 40)) if side == "a" else (np.ldexp(A, 40),
                                                                        np.ldexp(B, -140))
    with pytest.raises(lrqc.InputError, match=f"{side.upper()}: .*subnormal in float32"):
        kernel.run(*tiny)
    A32 = np.ldexp(A, -100).astype(np.float32)  # normal scales: exact as ever
    assert rel(kernel.run(A32, B), matmul(s, A32, B)) < 2e-6
