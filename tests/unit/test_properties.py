"""Property tests (hypothesis) over randomly generated, valid, canonical typed Schemes:

* unparse -> parse is the identity on the typed AST;
* verify() holds after every IR pass, the cost table is non-negative at concrete dims, bind()
  keeps the program valid;
* the IR interpreter agrees with the numpy reference (reference.matmul) at small sizes;
* the quantizer's round-trip error is bounded by the group scale (1/2 for round-to-nearest).

The strategies build Scheme objects directly from the dataclasses of lrqc.frontend.model and
respect the rules of lrqc.frontend.elaborate (_check_quant, _normalize, elaborate), so that every
generated object is the canonical form that parsing its text must give back.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lrqc.api import parse_schemes
from lrqc.frontend.model import (
    FLOAT_TYPES,
    Dense,
    FloatOperand,
    LowRank,
    LowRankProduct,
    LplrOperand,
    Quant,
    QuantOperand,
    Scheme,
    Sparse,
    fp_format,
    int_format,
)
from lrqc.frontend.schema import MAX_POWER_ITERS, MAX_SCALE_BITS
from lrqc.frontend.unparse import unparse
from lrqc.ir import lower_ast, print_program, verify
from lrqc.passes import bind, estimate_cost, infer_shapes, run_passes, split_stages
from lrqc.passes.shapes import K as SYM_K
from lrqc.passes.shapes import M as SYM_M
from lrqc.passes.shapes import N as SYM_N
from lrqc.reference import matmul, quantize
from lrqc.reference.interp import interpret
from lrqc.reference.minifloat import all_fp_formats
from lrqc.reference.rounding import ROUNDINGS

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
# LRQC_PROPERTY_SCALE=20 multiplies every max_examples below (a longer local bug hunt).
SCALE = max(1, int(os.environ.get("LRQC_PROPERTY_SCALE", "1")))


def _n(examples: int) -> int:
    return examples * SCALE


INT_FORMATS = tuple(f"{s}int{b}" for s in ("", "u") for b in range(1, 9))
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)


# ---- strategies ----------------------------------------------------------------------------------

def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def quants(draw, k: int | None = None) -> Quant:
    """A valid, normalised Quant (int1..int8, uint1..uint8, e*m*). With `k` (the concrete K)
    vector lengths stay small and pad=false is only drawn with a V that divides K, so the scheme
    binds to that K. (hypothesis favours the first of sampled_from: richest choices go first.)"""
    family = draw(st.sampled_from(["fp", "int", "uint", "int8", "fixed"]))  # int8: MX too
    if family == "fixed":  # one static scale: per_tensor, maxabs, no calibration
        bits = draw(st.integers(1, 8))
        # evaluated schemes (k given) keep V near the data's scale: a static range far above
        # it makes floor / trunc codes of magnitude V that residual terms then cancel
        lo, hi = (1e-30, 1e30) if k is None else (0.25, 16.0)
        top = draw(st.floats(lo, hi, allow_nan=False, allow_infinity=False))
        rnd = draw(st.sampled_from(ROUNDINGS))
        seed = draw(st.integers(0, 2**31 - 1)) if rnd == "stochastic" else 0
        fmt = f"{'' if draw(st.booleans()) else 'u'}int{bits}"
        return Quant(fmt, round=rnd, seed=seed, fixed_max=top)
    fmt = draw(st.sampled_from({
        "fp": all_fp_formats(), "int8": ("int8",),
        "int": [f for f in INT_FORMATS if f.startswith("int")],
        "uint": [f for f in INT_FORMATS if f.startswith("uint")]}[family]))
    fp = fp_format(fmt) is not None
    allowed = ["per_vector", "per_block", "per_channel", "per_tensor"]
    if fp:  # per_vector needs an integer element format
        allowed.remove("per_vector")
    if not (fp or fmt == "int8"):  # per_block (MX) elements are e*m* or int8
        allowed.remove("per_block")
    gran = draw(st.sampled_from(allowed))
    vector, scale, scale_round, pad = 0, "float32", "ceil", True
    if gran in ("per_vector", "per_block"):
        pad = draw(st.booleans())
        if k is None:
            vector = draw(st.integers(1, 4096))
        elif pad:
            vector = draw(st.integers(1, 48))
        else:
            vector = draw(st.sampled_from(_divisors(k)))
        if gran == "per_block":
            scale = "e8m0"
        else:
            scale = draw(st.sampled_from(
                ["float32"] + [f"uint{m}" for m in range(1, MAX_SCALE_BITS + 1)]))
            if scale != "float32":
                scale_round = draw(st.sampled_from(["ceil", "nearest"]))
    rnd = draw(st.sampled_from(ROUNDINGS))
    seed = draw(st.integers(0, 2**31 - 1)) if rnd == "stochastic" else 0
    # minmax needs an integer format and is not defined for per_block; otherwise either
    # calibration may be written explicitly (unsigned formats included).
    cal = "maxabs" if (fp or gran == "per_block") else draw(st.sampled_from(["maxabs", "minmax"]))
    return Quant(fmt, gran, vector, scale, scale_round, rnd, cal, seed, pad)


@st.composite
def lowranks(draw, max_rank: int | None = None) -> LowRank:
    method = draw(st.sampled_from(["sketch", "rsvd", "svd"]))
    if method == "sketch":
        rank = 1
    else:
        rank = draw(st.integers(1, max_rank if max_rank is not None else 10**6))
    small = max_rank is not None
    return LowRank(
        rank=rank, method=method,
        oversample=draw(st.integers(0, 8 if small else 10**6)),
        power_iters=draw(st.integers(0, 2 if small else MAX_POWER_ITERS)),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


@st.composite
def residuals(draw, k: int | None = None, max_rank: int | None = None):
    kind = draw(st.sampled_from(["lowrank", "sparse", "dense"]))
    if kind == "lowrank":
        return draw(lowranks(max_rank))
    q = draw(quants(k))
    if kind == "dense":
        return Dense(q)
    threshold = draw(st.floats(0.0, 1e6 if k is None else 2.0, allow_nan=False,
                               allow_infinity=False))
    max_density = draw(st.floats(0.0, 1.0, allow_nan=False))
    return Sparse(threshold, max_density, q)


@st.composite
def lplrs(draw, max_rank: int | None = None) -> LplrOperand:
    return LplrOperand(
        rank=draw(st.integers(1, max_rank if max_rank is not None else 10**6)),
        left=draw(st.sampled_from(INT_FORMATS)),
        right=draw(st.sampled_from(INT_FORMATS)),
        sketch="gaussian",
        seed=draw(st.integers(0, 2**31 - 1)),
        method=draw(st.sampled_from(["lplr", "dsvd"])),
        power_iters=draw(st.integers(0, 2 if max_rank is not None else MAX_POWER_ITERS)),
        normalize_shift=draw(st.booleans()),
    )


@st.composite
def operands(draw, static: bool, k: int | None = None, max_rank: int | None = None):
    # hypothesis favours the first choice: put the richest kind first
    kinds = ["quant", "float", "quant"] + (["lplr"] if static else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "float":
        return FloatOperand(draw(st.sampled_from(FLOAT_TYPES)))
    if kind == "lplr":
        return draw(lplrs(max_rank))
    q = draw(quants(k))
    terms = draw(st.lists(residuals(k, max_rank), min_size=0, max_size=2))
    return QuantOperand(q, tuple(terms))


@st.composite
def products(draw, max_rank: int | None = None) -> LowRankProduct:
    small = max_rank is not None
    return LowRankProduct(
        rank=draw(st.integers(1, max_rank if small else 10**6)),
        method=draw(st.sampled_from(["rsvd", "svd"])),
        oversample=draw(st.integers(0, 8 if small else 10**6)),
        power_iters=draw(st.integers(0, 2 if small else MAX_POWER_ITERS)),
        seed=draw(st.integers(0, 2**31 - 1)),
        bits=tuple(draw(st.integers(1, 8)) for _ in range(3)),
    )


@st.composite
def schemes(draw, dims: tuple[int, int, int] | None = None) -> Scheme:
    """A valid canonical Scheme; with dims = (M, N, K) it also binds to those sizes (ranks
    <= min(M, N, K), vectors dividing K where pad=false) and stays cheap to evaluate."""
    k = max_rank = None
    if dims is not None:
        k = dims[2]
        max_rank = min(min(dims), 6)
    static = draw(st.sampled_from(["a", "b", "none"]))
    top = dict(accumulate=draw(st.sampled_from(["int32", "int64"])),
               output=draw(st.sampled_from(FLOAT_TYPES)), static=static)
    name = draw(NAMES)
    if draw(st.sampled_from(["operands"] * 5 + ["product"])) == "product":
        a, b = (FloatOperand(draw(st.sampled_from(FLOAT_TYPES))) for _ in range(2))
        return Scheme(name, a, b, draw(products(max_rank)), **top)
    a = draw(operands(static == "a", k, max_rank))
    b = draw(operands(static == "b", k, max_rank))
    ops = {"a": a, "b": b}
    op = ops.get(static)
    if isinstance(op, QuantOperand) and op.quant.is_int and op.quant.bits < 8 \
            and op.quant.granularity != "per_block":  # pack= on the static operand's codes
        pack = draw(st.sampled_from(["auto", "dense", "byte"]))
        ops[static] = replace(op, quant=replace(op.quant, pack=pack))
    return Scheme(name, ops["a"], ops["b"], None, **top)


def _dims():
    return st.tuples(st.integers(8, 40), st.integers(8, 40), st.integers(8, 40))


# ---- unparse / parse -----------------------------------------------------------------------------

@settings(max_examples=_n(200), **SETTINGS)
@given(schemes())
def test_unparse_parse_round_trip(s):
    text = unparse(s)
    parsed = parse_schemes(text)
    assert list(parsed) == [s.name]
    assert parsed[s.name] == s, text
    assert unparse(parsed[s.name]) == text


@settings(max_examples=_n(50), **SETTINGS)
@given(st.lists(schemes(), min_size=1, max_size=4, unique_by=lambda s: s.name))
def test_several_schemes_in_one_file_round_trip(ss):
    parsed = parse_schemes("".join(unparse(s) for s in ss))
    assert list(parsed) == [s.name for s in ss]
    assert list(parsed.values()) == ss


# ---- IR passes -----------------------------------------------------------------------------------

@settings(max_examples=_n(60), **SETTINGS)
@given(schemes(), st.tuples(st.integers(1, 300), st.integers(1, 300), st.integers(1, 300)))
def test_verify_holds_after_every_pass_and_costs_are_nonnegative(s, dims):
    p = lower_ast(s)
    verify(p)
    p = infer_shapes(p)
    verify(p)
    assert all(p.type_of(r) is not None for op in p.ops for r in op.results)
    p = split_stages(p)
    verify(p)
    assert {op.stage for op in p.ops} <= {"pack", "run"}
    print_program(p)  # every attribute prints

    m, n, k = dims
    sub = {SYM_M: m, SYM_N: n, SYM_K: k}
    table = estimate_cost(p)
    assert len(table.rows) == len(p.ops)
    for stage in ("pack", "run", None):
        for total in table.total(stage):
            v = sympy.sympify(total).subs(sub)
            assert v.is_number, (stage, total)
            assert float(v) >= 0, (stage, total, dims)
    for row in table.rows:
        for e in (row.flops, row.bytes_read, row.bytes_written):
            assert float(sympy.sympify(e).subs(sub)) >= 0, (row, dims)

    bound = bind(p, m, n, k)
    verify(bound)
    for _, t in bound.types:
        assert all(isinstance(d, int) and d >= 1 for d in t.shape), t


@settings(max_examples=_n(30), **SETTINGS)
@given(schemes())
def test_run_passes_equals_the_passes_one_by_one(s):
    p = lower_ast(s)
    assert run_passes(p) == split_stages(infer_shapes(p))


# ---- interpreter vs reference --------------------------------------------------------------------

def _data(kind: str, seed: int, m: int, n: int, k: int):
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.standard_normal((m, k)), rng.standard_normal((k, n))
    return rng.uniform(-1, 1, (m, k)), rng.uniform(0, 2, (k, n))


def _rel_maxabs(x: np.ndarray, ref: np.ndarray, A: np.ndarray, B: np.ndarray) -> float:
    """max|x - ref| relative to max|ref|, or to max(|A| |B|) when the product cancels to
    (nearly) zero (e.g. an LRAMM core whose 1-bit factors' signs balance out)."""
    scale = max(np.max(np.abs(ref)), np.max(np.abs(A) @ np.abs(B)))
    return float(np.max(np.abs(x - ref)) / scale)


@st.composite
def schemes_with_dims(draw):
    dims = draw(_dims())
    return dims, draw(schemes(dims))


@settings(max_examples=_n(250), **SETTINGS)
@given(schemes_with_dims(), st.sampled_from(["normal", "uniform"]), st.integers(0, 2**16))
def test_interpreter_agrees_with_reference(sd, data, seed):
    (m, n, k), s = sd
    A, B = _data(data, seed, m, n, k)
    ref = matmul(s, A, B, exact=True)  # both round once to the output type: compare before
    prog = run_passes(lower_ast(s))
    got = interpret(replace(prog, out_dtype="float64"), A, B)
    assert interpret(prog, A, B).dtype == matmul(s, A, B).dtype
    assert got.shape == ref.shape == (m, n)
    assert np.all(np.isfinite(ref))
    err = _rel_maxabs(got, ref, A, B)
    assert err <= 1e-8, f"relative max-abs error {err:.3e}\n{unparse(s)}"


# ---- quantizer error bound -----------------------------------------------------------------------

SIGNED_INT = tuple(f"int{b}" for b in range(2, 9))


@st.composite
def symmetric_int_quants(draw) -> Quant:
    """Signed int2..int8, maxabs, every rounding; per_vector scales float32 or
    two-level uintM rounded up (ceil never shrinks a scale, so nothing saturates)."""
    fmt = draw(st.sampled_from(SIGNED_INT))
    gran = draw(st.sampled_from(["per_tensor", "per_channel", "per_vector"]))
    rnd = draw(st.sampled_from(["nearest", "nearest_away", "floor", "trunc", "stochastic"]))
    seed = draw(st.integers(0, 2**31 - 1)) if rnd == "stochastic" else 0
    if gran != "per_vector":
        return Quant(fmt, gran, round=rnd, seed=seed)
    scale = draw(st.sampled_from(["float32", "uint4", "uint6", "uint8"]))
    return Quant(fmt, gran, draw(st.integers(1, 16)), scale, "ceil", rnd, "maxabs", seed,
                 draw(st.booleans()))


def _element_scale(qa, role: str) -> np.ndarray:
    """The scale of each element's group, in the operand's own layout."""
    rows = qa.codes.shape[0]
    s = np.broadcast_to(qa.expand(qa.scale), (rows, qa.codes.shape[1]))[:, : qa.k]
    return s if role == "a" else s.T


@settings(max_examples=_n(100), **SETTINGS)
@given(symmetric_int_quants(), st.sampled_from(["a", "b"]),
       st.integers(1, 6), st.integers(1, 40), st.data())
def test_quantize_round_trip_error_is_bounded_by_the_scale(q, role, rows, k, data):
    shape = (rows, k) if role == "a" else (k, rows)
    mag = data.draw(st.sampled_from([1e-3, 1.0, 1e4]))
    x = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(
        -mag, mag, allow_nan=False, allow_infinity=False, allow_subnormal=False)))
    qa = quantize(x, q, role)
    deq = qa.dequantize()
    assert deq.shape == x.shape
    err = np.abs(x - deq)
    scale = _element_scale(qa, role)
    assert np.all(scale > 0)
    factor = 0.5 if q.round in ("nearest", "nearest_away") else 1.0  # floor, trunc, stochastic
    bound = factor * scale * (1 + 1e-9) + 1e-300
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), (q, worst, x[worst], deq[worst], scale[worst])
    # the codes are integers inside the symmetric range
    qmax = 2 ** (q.bits - 1) - 1
    assert np.all(qa.codes == np.rint(qa.codes))
    assert np.all(np.abs(qa.codes) <= qmax)


@pytest.mark.parametrize("role", ["a", "b"])
def test_quantize_bound_examples(role):
    """A fixed instance of the bound at the three granularities (fast sanity check)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 12))
    x = x if role == "a" else x.T
    for q in (Quant("int4"), Quant("int4", "per_channel"), Quant("int4", "per_vector", 5)):
        qa = quantize(x, q, role)
        assert np.all(np.abs(x - qa.dequantize()) <= _element_scale(qa, role) / 2 * (1 + 1e-12))


def test_strategies_are_canonical():
    """Generated quantizers are fixed points of the frontend's normalisation."""
    from lrqc.frontend.elaborate import _normalize

    @settings(max_examples=_n(100), **SETTINGS)
    @given(quants())
    def check(q):
        assert _normalize(q) == q
        assert int_format(q.fmt) is not None or fp_format(q.fmt) is not None

    check()


# ---- regression tests of bugs the property tests found (all fixed) ------------------------------

def _agree(text: str, m: int = 16, n: int = 10, k: int = 12) -> None:
    s = parse_schemes(text)["s"]
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    ref = matmul(s, A, B)
    got = interpret(run_passes(lower_ast(s)), A, B)
    err = _rel_maxabs(got, ref, A, B)
    assert err <= 1e-8, f"relative max-abs error {err:.3e}"


@pytest.mark.parametrize("text", [
    "scheme s { a: int8\n b: int8 per_vector(4) }",
    "scheme s { a: int8 per_block(4)\n b: int8 per_channel }",
    "scheme s { a: int8 per_channel + dense(int8 per_vector(4))\n b: int8 }",
])
def test_bug1_infer_shapes_with_one_grouped_operand(text):
    verify(infer_shapes(lower_ast(parse_schemes(text)["s"])))


@pytest.mark.parametrize("text", [
    "scheme s { a: int8 + lowrank(rank=2)\n b: float16 }",
    "scheme s { a: float16\n b: int8 + sparse() }",
])
def test_bug2_rounded_float_operand_in_compensation(text):
    _agree(text)


@pytest.mark.parametrize("text", [
    # 3a: e*m* blocks of 4 and 6: the group step is min(4, 6) = 4, not gcd = 2
    "scheme s { a: e4m3 per_block(4)\n b: e4m3 per_block(6) }",
    # 3b: MX INT8 elements are q/64, not integers, but int_accumulate rounds their sums
    "scheme s { a: int8 per_block(4)\n b: int8 per_block(4) }",
    # 3c: K=12 pads to 12 and 15: a group index past the end of the shorter operand
    "scheme s { a: int8 per_vector(1)\n b: int8 per_vector(5) }",
    "scheme s { a: e4m3 per_block(1)\n b: e4m3 per_block(5) }",
])
def test_bug3_grouped_accumulation_in_the_interpreter(text):
    _agree(text)


def test_bug4_lplr_a_with_lowrank_b_lowers_to_valid_ir():
    verify(lower_ast(parse_schemes(
        "scheme s { a: lplr(rank=1)\n b: int8 + lowrank(rank=1)\n static: a }")["s"]))


@pytest.mark.parametrize("q", [Quant("int8"), Quant("uint8", calibrate="minmax"), Quant("e4m3")],
                         ids=["int8", "uint8-minmax", "e4m3"])
def test_bug5_quantize_subnormal_input(q):
    x = np.array([[5e-324, 0.0], [0.0, -5e-324]])
    with np.errstate(all="ignore"):
        deq = quantize(x, q, "a").dequantize()
    assert np.all(np.isfinite(deq)) and np.all(np.abs(x - deq) <= 5e-324)


@pytest.mark.parametrize("q", [Quant("uint8", calibrate="minmax"),
                               Quant("int4", calibrate="minmax"), Quant("int1"), Quant("int8")],
                         ids=["uint8", "int4-minmax", "int1", "int8"])
def test_quantize_range_past_float64_max_has_a_finite_scale(q):
    """The other end of BUG 5: max - min (or the int1 sum of |x|) overflows to inf; the scale
    must stay finite, or every value would dequantize to 0 * inf = NaN."""
    x = np.array([[1e308, -1e308, 0.5, 0.0], [1e308, 1e308, 1e308, -1e308]])
    with np.errstate(all="raise"):
        qa = quantize(x, q, "a")
        deq = qa.dequantize()
    assert np.all(np.isfinite(qa.scale)) and np.all(np.isfinite(deq))
    assert np.all(np.abs(x - deq) <= np.abs(x).max())  # int1: |x - mean|x|| up to max|x|


@pytest.mark.parametrize("quant", [
    "int1 per_vector(3)",
    "int8 per_vector(3, scale=uint2 per_channel) calibrate=minmax scale_round=nearest",
])
def test_bug6_padding_codes_are_zero(quant):
    s = parse_schemes(f"scheme s {{ a: {quant}\n b: {quant} }}")["s"]
    rng = np.random.default_rng(0)
    qa = quantize(rng.standard_normal((8, 10)), s.a.quant, "a")
    qb = quantize(rng.standard_normal((10, 8)), s.b.quant, "b")
    padded = (qa.centered()[:, 10:] != 0).any() and (qb.centered()[:, 10:] != 0).any()
    _agree(f"scheme s {{ a: {quant}\n b: {quant} }}", k=10)
    assert not padded
