"""The kernel plan, the backend's IR, without TVM: lowered from the passed IR Program for every
shipped scheme, verified (and the verifier catches broken plans), printed."""

from __future__ import annotations

from dataclasses import replace

import pytest

import lrqc
from lrqc.errors import LrqcError, UnsupportedScheme
from lrqc.explain import explain
from lrqc.ir import lower_ast
from lrqc.passes import run_passes
from lrqc.plan.buckets import m_buckets
from lrqc.plan.lower import lower_program
from lrqc.plan.printer import print_plan
from lrqc.plan.verify import PlanError, verify_plan

from ..conftest import EXAMPLES

SCHEMES = {name: s for path in EXAMPLES for name, s in lrqc.load_schemes(path).items()}
DIMS = ((64, 128), 256, 512)  # ranks up to 64 need M >= 64


def _parts(s, dims=DIMS):
    return lower_program(run_passes(lower_ast(s)), *dims)


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_every_example_lowers_to_verified_plans(name):
    s = SCHEMES[name]
    parts = _parts(s)
    assert parts and all(part.plans for part in parts)
    for part in parts:
        assert [p.m for p in part.plans] == list(m_buckets(64, 128))
        for p in part.plans:
            assert verify_plan(p) is p
            text = print_plan(p)
            assert text.startswith(f"plan {part.scheme.name} @ M={p.m}:")
            assert f"Mp={p.mp} Np={p.np_} Kp={p.kp}" in text
    chain = s.product is not None or type(s.b).__name__ == "LplrOperand"
    assert all(part.prefix for part in parts) == chain  # chains: p1_, p2_ (LRAMM: one GEMM)


def test_the_plan_needs_the_passed_program():
    s = SCHEMES["lrqmm_int8"]
    with pytest.raises(LrqcError, match="run the passes"):
        lower_program(lower_ast(s), 16, 64, 64)
    with pytest.raises(LrqcError, match="no scheme declarations"):
        lower_program(replace(run_passes(lower_ast(s)), decl=None), 16, 64, 64)


@pytest.mark.parametrize("broken,why", [
    (dict(mp=15), "M padded"),
    (dict(np_=72), "N padded"),
    (dict(groups=3), "groups of"),
    (dict(a_offset=64), "code offset"),
    (dict(vector=131, kp=262, groups=2), "blocks of 4"),
])
def test_the_verifier_refuses_broken_plans(broken, why):
    plan = _parts(SCHEMES["lrqmm_int8"], (16, 64, 256))[0].plans[-1]
    with pytest.raises(PlanError, match=why):
        verify_plan(replace(plan, **broken))


def test_the_verifier_compares_the_plan_with_the_program():
    s = SCHEMES["lrqmm_int8"]
    program = run_passes(lower_ast(s))
    plan = lower_program(program, 16, 64, 256)[0].plans[0]
    with pytest.raises(PlanError, match="low-rank terms differ"):
        verify_plan(replace(plan, lowrank_a=None), program)
    with pytest.raises(PlanError, match="output"):
        verify_plan(plan, replace(program, out_dtype="float16"))


def test_unsupported_schemes_are_refused_at_the_plan():
    s = lrqc.parse_schemes("scheme x {\n a: int8 per_vector(16)\n b: int8 per_vector(32)\n"
                           " + dense(int8)\n}\n")["x"]
    with pytest.raises(UnsupportedScheme):
        _parts(s, (16, 64, 256))


@pytest.mark.parametrize("dims,what", [((53687, 16, 39999), "A's codes (53688 x 40000"),
                                       ((16, 53687, 39999), "B's codes (40000 x 53696"),
                                       ((20000, 16, 40000), "in 3 K segments of 40000")])
def test_kernel_buffers_past_int32_indices_are_refused(dims, what):
    """Operands within 2^31 - 1 values (which the reference takes) whose compiled buffers,
    padded and concatenated over K segments, hold more: refused with the sizes, not a TVM
    error at code generation."""
    term = " + dense(int8 per_tensor)" if dims[0] == 20000 else ""  # segments: 3 x K
    text = f"scheme x {{\n a: int8 per_channel{term}\n b: int8 per_channel{term}\n}}\n"
    s = lrqc.parse_schemes(text)["x"]
    with pytest.raises(UnsupportedScheme, match="2\\^31 - 1") as err:
        _parts(s, dims)
    assert what in str(err.value)
    _parts(s, (dims[0] // 2, dims[1], dims[2]) if dims[0] > dims[1] else
           (dims[0], dims[1] // 2, dims[2]))  # half the size compiles


@pytest.mark.parametrize("static", ["a", "b"])
def test_bad_dimensions_are_named_as_the_user_names_them(static):
    """static: a plans the transposed product (its M is the user's N): a bad N is still N."""
    from lrqc.errors import InputError
    from lrqc.plan.buckets import bucket_plans
    s = lrqc.parse_schemes("scheme x {\n a: int4 per_channel\n b: int8 per_channel\n"
                           f" static: {static}\n}}\n")["x"]
    for bad in (-3, "1..32", 0):
        for dims, name in (((16, bad, 40), "N"), ((16, 8, bad), "K")):
            with pytest.raises(InputError, match=f"dimension {name} must be a positive integer, "
                                                 f"got {bad!r}"):
                bucket_plans(s, *dims)


def test_a_range_below_the_factorizations_rows_says_so():
    """M=1..64 with a rank-4 lowrank term on A: calls of 1 to 3 rows are refused, which the
    plans' notes (the build report, explain) say before any call."""
    from lrqc.plan.buckets import bucket_plans
    s = lrqc.parse_schemes("scheme x {\n a: int8 per_tensor + lowrank(rank=4, method=rsvd)\n"
                           " b: int8 per_channel\n}\n")["x"]
    want = ("M=1..64: a call needs at least 4 rows (A's rank-4 factorization); calls of 1 to 3 "
            "rows are refused")
    assert all(want in p.notes for p in bucket_plans(s, (1, 64), 32, 64))
    assert all(want not in p.notes for p in bucket_plans(s, (4, 64), 32, 64))
    assert "calls of 3 rows are refused" in bucket_plans(s, (3, 64), 32, 64)[0].notes[-1]


def test_explain_prints_the_plan_of_every_bucket():
    text = explain(SCHEMES["lrqmm_int8"], ((1, 16), 64, 256), ("plan",))
    assert "== kernel plan (M=1..16, N=64, K=256) ==" in text
    assert [ln.split(":")[0] for ln in text.splitlines() if ln.startswith("plan ")] == [
        "plan lrqmm_int8 @ M=4", "plan lrqmm_int8 @ M=8", "plan lrqmm_int8 @ M=16"]
    assert "lowrank a   rank 1 (sketch)" in text
    with pytest.raises(LrqcError, match="needs sizes"):
        explain(SCHEMES["lrqmm_int8"], None, ("plan",))


RANGE_CASES = [  # a, b, A's stored codes, B's stored codes, pair-sum bound, vpmaddubsw exact,
    #   the signed formulation's pair-sum bound (A's codes less 128)
    ("int8 per_channel", "int8 per_channel", (1, 255), (-127, 127), 64770, False, 32258),
    ("int8 per_channel", "int4 per_channel", (1, 255), (-7, 7), 3570, True, 1778),
    ("uint8 per_channel", "int7 per_channel", (0, 255), (-63, 63), 32130, True, 16128),
    ("uint8 per_channel", "int7 per_channel calibrate=minmax", (0, 255), (-64, 63), 32640, True,
     16384),
    ("uint8 per_channel", "uint8 per_channel", (0, 255), (-128, 127), 65280, False, 32768),
    ("uint4 per_vector(16)", "int4 per_vector(16)", (0, 15), (-7, 7), 210, True, 1792),
    ("int7 per_channel", "int8 per_channel", (1, 127), (-127, 127), 32258, True, 32258),
    ("int4 per_channel", "int4 per_channel", (1, 15), (-7, 7), 210, True, 1778),
    ("e2m1 per_block(32, scale=e8m0)", "e2m1 per_block(32, scale=e8m0)", (116, 140),
     (-12, 12), 3360, True, 288),
]


@pytest.mark.parametrize("a,b,ca,cb,bound,exact,signed", RANGE_CASES)
def test_code_ranges_prove_which_instructions_are_exact(a, b, ca, cb, bound, exact, signed):
    from lrqc.plan.ranges import INT16, instruction_proofs, proof, ranges
    from lrqc.plan.support import make_plan

    s = lrqc.parse_schemes(f"scheme s {{\n a: {a}\n b: {b}\n}}")["s"]
    plan = make_plan(s, 8, 32, 64)
    r = ranges(plan)
    assert (r.a.lo, r.a.hi) == ca and (r.b.lo, r.b.hi) == cb
    assert max(-r.pair.lo, r.pair.hi) == bound
    assert r.pair_exact == exact == (bound <= INT16[1])
    if exact:  # int16 lanes add as many pair sums as the bound allows, and not one more
        assert r.int16_steps * bound <= INT16[1] < (r.int16_steps + 1) * bound
    # vpsignb cannot negate B's -128: the signed formulation needs B above it, and its pairs
    assert max(-r.signed_pair.lo, r.signed_pair.hi) == signed
    signed_exact = signed <= INT16[1] and cb[0] > -128
    assert r.signed_exact == signed_exact
    verdicts = {name: ok for name, ok, _ in instruction_proofs(plan)}
    assert verdicts == {"tdpbusd": True, "vpdpbusd": True, "vpmaddubsw": exact,
                        "vpsignb": signed_exact, "vpmaddwd": True}
    assert proof(plan, "vpmaddubsw").startswith("vpmaddubsw " + ("exact" if exact else
                                                                  "NOT exact"))
    assert proof(plan, "vpsignb").startswith("vpsignb " + ("exact" if signed_exact else
                                                            "NOT exact"))
    assert ("instructions" in explain(s, (8, 32, 64), emit=("instructions",)))


def test_the_ranges_cover_every_k_segment():
    from lrqc.plan.ranges import ranges
    from lrqc.plan.support import make_plan

    s = lrqc.parse_schemes("scheme s {\n a: int8 per_channel\n b: int2 per_channel + "
                           "dense(int8)\n}")["s"]
    r = ranges(make_plan(s, 8, 32, 64))
    assert (r.b.lo, r.b.hi) == (-127, 127) and not r.pair_exact  # the int8 residual segment


def test_the_cost_table_says_what_each_term_costs_in_passes():
    s = lrqc.parse_schemes("scheme s {\n a: int8 per_channel + lowrank(rank=4, power_iters=2)\n"
                           " b: int4 per_channel + lowrank(rank=2)\n}")["s"]
    text = explain(s, (64, 256, 256), emit=("cost",))
    assert "then 5 pass(es) over R" in text  # 2 power iterations and the projection
    assert "R times 12 Gaussian column(s)" in text  # rank 4 + oversample 8
    assert "per call one pass over A's codes (U = A' L_B)" in text


def test_sparse_products_bound_by_their_code_limits_and_scales():
    """runtime.checks.sparse_top: per sparse product Kq · limit² · max |per-call scale| ·
    max |static scale| (int8 terms: limit 127), None where an intermediate could overflow
    float32 or a scale is not a number."""
    import numpy as np

    from lrqc.plan.support import make_plan
    from lrqc.runtime.checks import sparse_top

    t = "int8 per_channel round=trunc + sparse(threshold=0.5)"
    s = lrqc.parse_schemes(f"scheme s {{\n a: {t}\n b: {t}\n}}")["s"]
    p = make_plan(s, 8, 16, 64)
    assert len(p.sparse) == 2 and p.kq == 64
    call = [np.array([[0.5], [-2.0]]), np.array([[1.0], [1.0]])]
    static = [np.array([[3.0, -1.0]]), np.array([[0.25, 0.0]])]
    assert sparse_top(p, call, static) == 64 * 127.0**2 * (2.0 * 3.0 + 1.0 * 0.25)
    assert sparse_top(p, [call[0], np.array([[1e36]])], static) is None  # acc · s overflows
    assert sparse_top(p, [call[0], np.array([[np.nan]])], static) is None
    assert sparse_top(p, call, [static[0], np.array([[np.inf]])]) is None


@pytest.mark.parametrize("a,b,k,refused", [
    ("e7m0 per_channel", "e7m0 per_channel", 8, True),  # 2^64 x 2^64 past float32 at any K
    ("e7m0 per_tensor", "e7m0 per_tensor", 1, True),
    ("e6m1 per_channel", "e6m1 per_channel", 4096, False),
    ("e7m0 per_channel", "int8 per_channel", 4096, False),
    ("e5m2 per_channel", "e5m2 per_channel", 8, False)])
def test_float_fallback_refuses_element_ranges_past_float32(a, b, k, refused):
    """The float32 fallback GEMM multiplies the element values before their scales: a scheme
    whose largest values' products, K of them, pass float32's range is refused at compile
    time with the bound (the kernel would return infinities for any data the reference takes)."""
    from lrqc.plan.support import make_plan

    s = lrqc.parse_schemes(f"scheme f {{\n a: {a}\n b: {b}\n}}")["f"]
    if refused:
        with pytest.raises(UnsupportedScheme, match="float32 GEMM fallback multiplies A's and "
                           r"B's element values before their scales: up to 1\.84e\+19 x"):
            make_plan(s, 4, 16, k)
    else:
        assert make_plan(s, 4, 16, k).float_path or "int8" in b
