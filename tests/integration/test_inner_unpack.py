"""Packed weights unpacked next to their use in buckets of one or two row tiles (the GEMM's
k_inner loop order for one group, k_outer for per-group scales, per two groups for int16
pairs of integer scales): which buckets take it, and their integer sums and C against
lrqc.reference for every packed width, with codes at the ends of their ranges, on the host's
rule and on the AVX2 bytes rule."""

from __future__ import annotations

import numpy as np
import pytest

import lrqc

pytest.importorskip("tvm")

from lrqc.backend.schedule import blocks  # noqa: E402
from lrqc.backend.target import host_cpu_flags  # noqa: E402

from .test_backend_cpu import check  # noqa: E402

TARGETS = [None, *(["x86-avx2"] if "avx2" in host_cpu_flags() else [])]


def _plans(a: str, b: str, target):
    """(plans of the buckets of 1..64 rows at 64 x 256, the rule each compiles with)."""
    from lrqc.backend.schedule.rules import choose
    from lrqc.backend.target import resolve
    from lrqc.plan.buckets import bucket_plans

    plans = bucket_plans(scheme(a, b), "1..64", 64, 256)
    return [(p, choose("x86", p, resolve(target))[0]) for p in plans]


def _unpack_depth(plan, rule, variant=None, sampled=False) -> int:
    """The loops the GEMM's unpacking of B's codes shares with its output block once
    scheduled (by hand, or with the knobs lrqc tune samples): 1 (the column panel) where it
    unpacks per panel, more where it unpacks inside a row tile."""
    from lrqc.backend.compat import Schedule, prim_func
    from lrqc.pipeline.functions import functions, schedule_function
    from lrqc.plan import names
    from lrqc.tuning.search import sampling_knob, unit_safe

    sch = Schedule(prim_func(functions(plan, rule)[names.FN_GEMM]))
    knob = sampling_knob(sch, unit_safe(names.FN_GEMM, plan, rule)) if sampled else None
    schedule_function(names.FN_GEMM, sch, plan, rule, knob, variant)
    out = [sch.get(lp) for lp in sch.get_loops(_out_block(sch, names.OUT))]
    return sum(any(sch.get(lp).same_as(o) for o in out)
               for lp in sch.get_loops(sch.get_sblock(names.UNPACK)))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("a,b", [("int8 per_channel", "int4 per_channel"),
                                 ("int8 per_channel", "int3 per_channel"),
                                 ("int8 per_vector(16)", "int4 per_vector(16)"),
                                 ("int4 per_vector(16, scale=uint6 per_channel)",
                                  "int4 per_vector(16, scale=uint6 per_channel)")])
def test_the_scheduled_loop_nest_unpacks_inside_the_row_tiles_of_few_rows(target, a, b):
    """The hand schedule of a bucket of one or two row tiles unpacks B's codes under the row
    tile and k loops (more loops around it than per panel); larger buckets per panel. The
    space lrqc tune samples for single-group products builds k_inner's own loop nest, and
    every order of every bucket schedules with sampled knobs (no knob's value decides the
    loop structure: lrqc tune replays traces)."""
    few = []
    for plan, rule in _plans(a, b, target):
        hand = _unpack_depth(plan, rule)
        mr = tiles_mr(plan, rule)
        if plan.mp <= blocks.INNER_TILES * mr:
            few.append(plan.mp)
            assert hand >= 2, (plan.mp, hand)
        else:
            assert hand == 1, (plan.mp, hand)
        for v in rule.variants(plan):
            depth = _unpack_depth(plan, rule, v, sampled=True)
            if v == "rows_outer":
                assert depth == 1, (plan.mp, depth)
            if v == "k_inner":
                assert depth >= 2, (plan.mp, depth)
    assert few


def _out_block(sch, out: str):
    """The block that writes the output C: its update where its reduction was decomposed."""
    for name in (out + "_update", out):
        try:
            return sch.get_sblock(name)
        except Exception:  # TVM's ScheduleError: no block of that name
            continue
    raise AssertionError("no output block")


def tiles_mr(plan, rule) -> int:
    """The hand rows per tile of the plan's rule."""
    from lrqc.backend.schedule import tiles

    return tiles.picks(rule.knobs(plan))["mr"]


def scheme(a: str, b: str) -> lrqc.Scheme:
    return lrqc.parse_schemes(f"scheme t {{\n a: {a}\n b: {b}\n}}")["t"]


def _record(monkeypatch, name: str, at: int) -> list:
    """(bucket rows, rows per tile, the loop order argument) of every call of blocks' schedule
    function `name` (its plan the argument at `at`, the tile's rows next, the order last)."""
    seen = []
    fn = getattr(blocks, name)

    def record(*args):
        seen.append((args[at].mp, args[at + 1], args[-1]))
        return fn(*args)

    monkeypatch.setattr(blocks, name, record)
    return seen


@pytest.fixture
def orders(monkeypatch):
    """(bucket rows, rows per tile, loop order) of every single-group GEMM scheduled."""
    return _record(monkeypatch, "_single_group", 1)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("b", ["int4 per_channel", "int8 per_channel"])
def test_buckets_of_one_or_two_row_tiles_unpack_in_the_k_loop(orders, target, b):
    """Packed weights: k_inner exactly in the buckets of at most INNER_TILES row tiles (each
    tile unpacks every weight again), rows_outer above; int8 weights have nothing to
    unpack and keep rows_outer everywhere."""
    lrqc.compile(scheme("int8 per_channel", b), "1..64", 64, 128, target=target)
    packed = b.startswith("int4")
    assert orders or not packed  # (int8 x int8 on x86-avx2: another rule's loop nest)
    for rows, mr, order in orders:
        few = rows <= blocks.INNER_TILES * mr
        assert order == ("k_inner" if packed and few else "rows_outer"), (rows, mr, order)
    if packed:
        assert {o for *_, o in orders} == {"k_inner", "rows_outer"}


@pytest.mark.parametrize("target", TARGETS)
def test_per_group_scales_take_the_k_outer_order_in_the_same_buckets(monkeypatch, target):
    """Per-vector scales with packed weights: each group's weights unpacked per group and row
    block (k_outer) where the bucket has at most INNER_TILES row tiles, per panel above."""
    seen = _record(monkeypatch, "_groups", 2)
    lrqc.compile(scheme("int8 per_vector(16)", "int4 per_vector(16)"), "1..64", 64, 128,
                 target=target)
    assert seen
    for rows, mr, rows_outer in seen:
        assert rows_outer == (rows > blocks.INNER_TILES * mr), (rows, mr)
    assert {r for *_, r in seen} == {True, False}


GROUPS = [("int8 per_vector(16)", "int4 per_vector(16)"),
          ("int8 per_vector(32)", "uint3 per_vector(32)"),
          ("int4 per_vector(16, scale=uint6 per_channel)",
           "int4 per_vector(16, scale=uint6 per_channel)"),
          ("uint4 per_vector(16, scale=uint6 per_channel)",
           "int4 per_vector(16, scale=uint6 per_channel)")]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("a,b", GROUPS)
@pytest.mark.parametrize("m", [1, 3, 8])
def test_per_group_scales_at_few_rows_give_the_reference_sums(target, a, b, m):
    """Per-vector scales (float, and two-level integer scales summed in int16 pairs on the
    VNNI rule) with packed weights at 1, 3 and 8 rows: the integer sums equal the
    reference's, C within float32 rounding."""
    s = scheme(a, b)
    k, n = 256, 48
    kernel = lrqc.compile(s, M=m, N=n, K=k, target=target)
    rng = np.random.default_rng(m + k)
    A = (rng.random((m, k)) if a.startswith("uint") else rng.standard_normal((m, k)))
    check(kernel, s, A.astype(np.float32), rng.standard_normal((k, n)))


WIDTHS = ["uint1", "int2", "int3", "int4", "uint4", "int5", "int6", "int7"]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("b", WIDTHS)
@pytest.mark.parametrize("m,k", [(1, 256), (3, 64), (8, 320), (2, 72)])
def test_inner_unpacking_gives_the_reference_sums(orders, target, b, m, k):
    """Every packed width at 1, 3, 8 and 2 rows (K = 72: a k chunk of 2 blocks on the VNNI
    rule, not a whole packed group of 16 k, unpacks per block with its shifts computed; 8
    rows are four row tiles of the AVX2 rule, which unpack per panel),
    with A's and B's codes at the ends of their ranges (every weight +-max of its column, A
    +-max of its row): the integer sums equal the reference's, C within float32 rounding."""
    s = scheme("int8 per_channel", f"{b} per_channel")
    n = 48
    kernel = lrqc.compile(s, M=m, N=n, K=k, target=target)
    assert orders and all((o == "k_inner") == (rows <= blocks.INNER_TILES * mr)
                          for rows, mr, o in orders)  # (8 rows on x86-avx2: four tiles)
    rng = np.random.default_rng(m * k)
    A = np.where(rng.random((m, k)) < 0.5, -1.0, 1.0).astype(np.float32)
    B = np.where(rng.random((k, n)) < 0.5, -2.0, 2.0)
    if b.startswith("uint"):  # min-max codes: both ends of [0, 2^b - 1]
        B = np.abs(B) * (rng.random((k, n)) < 0.5)
    check(kernel, s, A, B)


@pytest.mark.skipif("avx512_vnni" not in host_cpu_flags(), reason="the VNNI rule's tile")
@pytest.mark.parametrize("b", ["int4", "uint4", "int2", "int7"])
@pytest.mark.parametrize("m", [8, 13, 16])
def test_packed_weights_at_8_to_16_rows_take_tiles_of_8_rows(orders, b, m):
    """On AVX-512 VNNI, buckets of 8 and 16 rows with packed weights take tiles of 8 rows x 2
    column blocks, one or two tiles unpacking in the k loop, with codes at the ends of their
    ranges: the reference's integer sums and C."""
    s = scheme("int8 per_channel", f"{b} per_channel")
    n, k = 96, 320
    kernel = lrqc.compile(s, M=m, N=n, K=k)
    assert kernel.rule == "x86_vnni"
    (bucket,) = kernel._buckets
    from lrqc.backend.schedule import tiles
    from lrqc.backend.schedule.rules import load_rules

    rule = next(r for r in load_rules("x86") if r.name == kernel.rule)
    pick = tiles.picks(rule.knobs(bucket.plan))
    assert (pick["mr"], pick["nr"]) == (8, 2)
    assert {o for *_, o in orders} == {"k_inner"}
    rng = np.random.default_rng(m * k)
    A = np.where(rng.random((m, k)) < 0.5, -1.0, 1.0).astype(np.float32)
    B = np.where(rng.random((k, n)) < 0.5, -2.0, 2.0)
    if b.startswith("uint"):
        B = np.abs(B) * (rng.random((k, n)) < 0.5)
    check(kernel, s, A, B)
