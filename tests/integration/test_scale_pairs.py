"""Per-vector products whose two-level scales (integers times a row's or column's float) sum
over the groups in int32, two groups at a time as int16 pairs (te.gemm's pair sums, the x86
VNNI rule's vpdpwssd): which plans take it, the TIR and instructions each rule gets, and the
numbers of every rule this CPU runs against lrqc.reference, with codes and integer scales at
the ends of their ranges (the int32 total near its proven bound), A's zero points from the
data (its codes stored centred on them; calls with a group that is not run gemm_groups), a
bias, static A, an artifact and several threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import lrqc
from lrqc.plan import ranges
from lrqc.plan import signature as sig
from lrqc.reference import int_accumulate, matmul, quantize

pytest.importorskip("tvm")

from lrqc.backend.schedule.rules import load_rules
from lrqc.backend.target import host_cpu_flags
from lrqc.pipeline.compile import compile as pipeline_compile
from lrqc.pipeline.export import build_artifact
from lrqc.plan import names
from lrqc.plan.buckets import bucket_plans
from lrqc.runtime.artifact import load_kernel

FLAGS = host_cpu_flags()
VNNI = "avx512_vnni" in FLAGS
# the rule that sums int16 pairs on this CPU (vpdpwssd, or vpmaddwd on AVX2); None: none
PAIRS_RULE = "x86_vnni" if VNNI else "x86_avx2_bytes" if "avx2" in FLAGS else None
NO_PAIRS = "this CPU has neither AVX-512 VNNI nor AVX2 to run the int16 pairs"
TWO = "per_vector(16, scale=uint6 per_channel)"
CASES = [  # (a, b): each fits int16 pairs at K = 512
    (f"int4 {TWO}", f"int4 {TWO}"),  # A's codes + 8: the sums start from -8 cs
    (f"uint4 {TWO} calibrate=maxabs", f"int4 {TWO}"),  # zero point 0
    (f"int8 {TWO}", f"int4 {TWO}"),  # group sums up to 16·127·7
    ("int4 per_vector(32, scale=uint4 per_channel)", "int3 per_vector(32, scale=uint4 "
     "per_channel)"),
    ("int4 per_vector(16, scale=uint2 per_channel)",  # B's integer scales past a byte
     "int3 per_vector(16, scale=uint12 per_channel)"),
    (f"int4 {TWO}", f"int8 {TWO}"),  # column sums past a byte; group sums up to 16·8·128
    (f"uint4 {TWO}", f"int4 {TWO}"),  # VS-Quant's example: min-max A, zero points per group
]
MINMAX = CASES[-1]


def scheme(a: str, b: str, extra: str = "") -> lrqc.Scheme:
    return lrqc.parse_schemes(f"scheme s {{\n a: {a}\n b: {b}\n{extra}}}")["s"]


def data(m: int, n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns whose groups differ in size by up to 1e3 (integer scales from 1 to
    the top), with exact zeros and values at their group's maximum."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, k)) * rng.choice([1e-3, 0.1, 1.0], size=(m, k // 16, 1)).repeat(
        16, axis=2).reshape(m, k)
    A[:, ::7] = 0.0
    B = rng.standard_normal((k, n)) * rng.choice([1e-3, 1.0], size=(k // 16, 1, n)).repeat(
        16, axis=1).reshape(k, n)
    B[::5] = np.sign(B[::5]) * np.abs(B).max(axis=0)
    return A.astype(np.float32), B.astype(np.float32)


def check(kernel, s, A, B, groups: bool = False) -> None:
    """The integer sums bit for bit and C within float32 rounding of the reference: of the
    chunks' exact totals (a few ulps, growing with their number), or with groups (each group
    scaled and added in float32) of G terms, as tests/integration/test_group_sums.py allows."""
    packed = kernel.pack(B)
    sp = ranges.scale_pairs(kernel.plan)
    if sp is not None and sp.usable:  # B's integer scales and column sums: bytes where they fit
        assert packed.arrays.sqb.dtype == sp.narrow[0]
        cqb = packed.arrays.cqb
        assert (cqb is None) if not sp.offset else cqb.dtype == sp.narrow[1]
    qa, qb = quantize(A, s.a.quant, "a"), quantize(B, s.b.quant, "b")
    ref = np.stack([part for _, part in int_accumulate(qa, qb)])
    np.testing.assert_array_equal(kernel.int_accumulate(A, packed), ref)
    C, R = kernel(A, packed), matmul(s, A, B)
    chunks = kernel.plan.groups // sp.chunk if sp is not None and sp.usable else 1
    tol = 2e-6 * kernel.plan.groups ** 0.5 if groups else 4e-7 * chunks ** 0.5
    assert np.abs(C - R).max() <= tol * np.abs(R).max(), np.abs(C - R).max()


def test_which_plans_sum_groups_as_int16_pairs():
    """Both operands per_vector with uint scales, codes whose group sums fit int16, scale
    products that do, a total that fits int32, an even number of groups, A's zero point fixed
    by the format and no compensation; and the arrays the functions then take."""
    def plan(a, b, K=512, extra=""):  # the kernel's plan, without compiling it (the pairs'
        #   kernels compile and run in test_pair_sums_match_the_reference)
        return bucket_plans(scheme(a, b, extra), 8, 32, K)[-1]

    for a, b in CASES:
        p = plan(a, b)
        assert sig.scale_pairs(p), (a, b)
        assert sig.params(p, names.FN_QUANTIZE)[-2:] == (sig.SQA, sig.GA)
        assert (sig.SQA, sig.GA, sig.SQB, sig.GB) == sig.params(p, names.FN_GEMM)[6:10]
        assert sig.SQA not in sig.params(p, names.FN_ACC)
        zeros = "maxabs" not in a  # a zero correction (storage offset or centre): cqb
        assert sig.zero_pairs(p) == zeros == (sig.CQB in sig.params(p, names.FN_GEMM)), a
        assert names.FN_GEMM_GROUPS in sig.cpu_functions(p)  # for calls the pairs cannot hold
    sp = ranges.scale_pairs(plan(*MINMAX))  # 32 groups of codes up to 127 from zc (a byte)
    assert (sp.group, sp.zeros, sp.offset, sp.reach, sp.chunk) == (
        ranges.Interval(-14224, 14224), 16 * 7, 127, 127, 32) and sp.data
    assert sp.centred == ranges.Interval(15 - 127, 127)  # the centre, 127, is its top
    assert sp.centred_codes == ranges.Interval(0, 254)
    sp = ranges.scale_pairs(plan(*MINMAX, K=4096))  # chunks of 64 groups: 64 · 3969 · 16 · 7
    assert (sp.chunk, sp.reach, sp.centred, sp.offset) == (64, 75, ranges.Interval(-60, 75), 75)
    assert sp.total == 64 * 8400 * 3969 <= 2**31 - 1
    assert "codes stored centred, a - zc + 75, in the groups whose zc lies in [-60, 75]" \
        in sp.why()
    sp = ranges.scale_pairs(plan(f"int4 {TWO}", f"int4 {TWO}"))
    assert (sp.offset, sp.zeros, sp.data) == (8, 112, False) and "8·cs" in sp.why()
    assert sp.narrow == ("uint8", "int8")  # scales up to 63, column sums in [-128, 112]
    assert ranges.scale_pairs(plan(*CASES[-3])).narrow == ("int16", "int8")  # up to 4095
    assert ranges.scale_pairs(plan(*CASES[-2])).narrow == ("uint8", "int16")  # to ±2048
    sp = ranges.scale_pairs(plan(f"int4 {TWO}", f"int4 {TWO}", K=4096))
    assert (sp.group.lo, sp.group.hi, sp.scales, sp.total) == (-784, 784, 63 * 63,
                                                               256 * 784 * 63 * 63)
    assert sp.exact and sp.verdict == "exact" and "inside int32" in sp.why()
    assert sp.chunk == 256  # all the groups in one int32 total
    sp = ranges.scale_pairs(plan(f"int8 {TWO}", f"int4 {TWO}", K=4096))  # 256 groups of up to
    assert sp.usable and sp.chunk == 32 and sp.total == 32 * 14224 * 3969  # 14224 · 3969 each
    assert "32 groups (the 256 in chunks)" in sp.why()
    no = {  # why not
        "int8 x int8: a group sum beyond int16": plan(f"int8 {TWO}", f"int8 {TWO}"),
        "uint8 scales: their products beyond int16": plan(
            "int4 per_vector(16, scale=uint8 per_channel)",
            "int4 per_vector(16, scale=uint8 per_channel)"),
        "an odd number of groups": plan(f"int4 {TWO}", f"int4 {TWO}", K=144),
        "float scales on B": plan(f"int4 {TWO}", "int4 per_vector(16)"),
        "compensation": plan(f"int4 {TWO} + lowrank(rank=1, method=sketch)", f"int4 {TWO}"),
        "362 groups, chunks of 2": plan(f"int4 {TWO}", f"int8 {TWO}", K=16 * 362),
        "min-max codes of 8 bits": plan(f"uint8 {TWO}", f"int4 {TWO}"),
    }
    for why, p in no.items():
        assert not sig.scale_pairs(p), why
        assert sig.SQA not in sig.params(p, names.FN_QUANTIZE), why
        assert sig.SQB not in sig.params(p, names.FN_GEMM), why
        assert names.FN_GEMM_GROUPS not in sig.cpu_functions(p), why
    assert not ranges.scale_pairs(no["int8 x int8: a group sum beyond int16"]).exact
    assert ranges.scale_pairs(no["float scales on B"]) is None
    for why, said in [("an odd number of groups", "an odd number of groups (9)"),
                      ("362 groups, chunks of 2", "no even divisor of the 362 groups from 8"),
                      ("compensation", "residual terms"),
                      ("min-max codes of 8 bits", "A's min-max codes span 255, more than the 127")]:
        sp = ranges.scale_pairs(no[why])
        assert sp.exact and said in sp.blocked and sp.verdict == "not used", why


def _gemm(text: str) -> str:
    return text[text.index("def gemm_m8"):text.index("def int_acc_m8")]


BASELINE_X86 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64"}


@pytest.mark.parametrize("target,pairs", [("x86-avx512-vnni", "vpdpwssd"),
                                          ("x86-amx", "vpdpwssd"), ("x86-avx2", "vpmaddwd"),
                                          (BASELINE_X86, "")],
                         ids=["vnni", "amx (groups of 16: the VNNI rule)", "avx2", "generic"])
def test_the_vnni_rule_sums_pairs_with_vpdpwssd(target, pairs):
    """The VNNI rule: a pair-sum block tensorized to vpdpwssd (in the assembly, next to
    vpdpbusd); the AVX2 bytes rule: the same block as vpmaddwd on 8 columns twice (next to
    vpmaddubsw); the output dequantized once by the row and column scales. The portable rule
    takes the same arrays and leaves them unread (its groups scaled in float32)."""
    texts: dict = {}
    pipeline_compile(scheme(*CASES[0]), 8, 64, 256, target, emit=("tir", "asm", "plan"),
                     on_text=texts.__setitem__)
    tir = _gemm(texts["tir"])
    if pairs:  # the build's proof names the rule's own pair instruction
        assert f"; {pairs} exact: integer scales as int16 pairs" in texts["plan"]
        assert ("vpdpwssd" in texts["plan"]) == (pairs == "vpdpwssd")
    intrin = {"vpdpwssd": "llvm.x86.avx512.vpdpwssd.512", "vpmaddwd": "llvm.x86.avx2.pmadd.wd",
              "": "-"}[pairs]
    assert (f'T.sblock("{names.PAIR_SUMS}' in tir) == bool(pairs)
    if pairs:
        sums = tir[tir.index(f'T.sblock("{names.PAIR_SUMS}_update'):]
        assert intrin in sums[:sums.index("T.sblock(", 10)]
    assert ("ga[" in tir and "gb[" in tir) == bool(pairs)
    assert "def gemm_m8(" in tir and "sqa: T.Buffer" in tir and "gb: T.Buffer" in tir
    if pairs == "vpdpwssd":
        assert "vpdpwssd" in texts["asm"] and "vpdpbusd" in texts["asm"]
    if pairs == "vpmaddwd":
        assert "vpmaddwd" in texts["asm"] and "vpmaddubsw" in texts["asm"]
        assert "vpdpwssd" not in texts["asm"] and "zmm" not in texts["asm"]
    texts.clear()  # A's data zero points: its codes centred; gemm_groups on CPUs
    pipeline_compile(scheme(*MINMAX), 8, 64, 256, target, emit=("tir",), on_text=texts.__setitem__)
    tir = texts["tir"]
    gemm, quant = _gemm(tir), tir[:tir.index("def gemm")]
    assert "zc_data[" in quant and "zc[v_i, v_g] = zc_data[" in quant  # centred: zc = 127
    if pairs:  # the pair sums less 127·cs: no zc read, one vpdpwssd (or a vpmaddwd per half)
        sums = gemm[gemm.index(f'T.sblock("{names.PAIR_SUMS}_update'):]
        assert "zc[" not in sums and "cqb[" in sums and sums.count(intrin) == 1
    groups = tir[tir.index("def gemm_groups_m8"):]
    assert names.PAIR_SUMS not in groups and "cqb: T.Buffer" in groups
    assert "vpdpwssd" not in groups
    assert "zc[" in groups  # each group's own zero correction
    if pairs:  # 128 groups in 2 chunks of 64: the output starts from the bias, adds each total
        texts.clear()
        pipeline_compile(scheme(*MINMAX), 8, 64, 2048, target, emit=("tir",),
                         on_text=texts.__setitem__)
        gemm = _gemm(texts["tir"])
        assert "pair_sums = T.sblock_alloc_buffer((8, 2, 64)" in gemm
        init = gemm[gemm.index(f'T.sblock("{names.OUT}_init")'):]
        assert "bias[" in init[:init.index("T.sblock(", 10)]
        sums = gemm[gemm.index(f'T.sblock("{names.PAIR_SUMS}_update'):]
        assert sums[:sums.index("T.sblock(", 10)].count(intrin) == 1


RULES = [(BASELINE_X86, "generic")]
RULES += [("x86-avx2", "x86_avx2_bytes")] if "avx2" in FLAGS else []
RULES += [("x86-avx512-vnni", "x86_vnni")] if VNNI else []


@pytest.mark.parametrize("target,rule", RULES, ids=[r or "x86-avx2" for _, r in RULES])
@pytest.mark.parametrize("a,b", CASES, ids=[f"{a}|{b}" for a, b in CASES])
@pytest.mark.parametrize("m,n,k", [(9, 40, 512), (1, 16, 64), (37, 300, 160), (13, 200, 160)])
def test_pair_sums_match_the_reference(target, rule, a, b, m, n, k):
    s = scheme(a, b)
    kernel = lrqc.compile(s, M=m, N=n, K=k, target=target)
    if rule is not None:
        assert kernel.rule == rule
    check(kernel, s, *data(m, n, k, seed=m + n + k), groups=rule == "generic")


@pytest.mark.skipif(PAIRS_RULE is None, reason=NO_PAIRS)
@pytest.mark.parametrize("a,b,K,top", [
    (f"int4 {TWO}", f"int4 {TWO}", 4096, 256 * 784 * 3969),
    (f"uint4 {TWO} calibrate=maxabs", f"int4 {TWO}", 4096, 256 * 1680 * 3969),
    (f"int8 {TWO}", f"int4 {TWO}", 512, 32 * 14224 * 3969),
    (f"int8 {TWO}", f"int4 {TWO}", 4096, 32 * 14224 * 3969),  # 8 chunks of 32 groups
])
def test_codes_and_integer_scales_at_their_range_ends(a, b, K, top):
    """Every group at its largest codes and both integer scales at their top (63): each
    group sum at the end of its proven interval, in int16 pairs, and each chunk's int32 total
    at its bound (80 % of 2^31 for uint4 x int4 at K = 4096, 84 % for int8 x int4), with both
    signs; and one group per row and column far larger than the rest (integer scales of 1
    elsewhere)."""
    s = scheme(a, b)
    sp = ranges.scale_pairs(lrqc.compile(s, M=4, N=32, K=K).plan)
    assert sp.exact and sp.total == top
    kernel = lrqc.compile(s, M=4, N=32, K=K)
    assert sig.scale_pairs(kernel.plan) and kernel.rule == PAIRS_RULE
    A = np.ones((4, K), np.float32)
    A[1] = -1.0  # the most negative code of a symmetric format (unsigned A: zero)
    B = np.ones((K, 32), np.float32)
    B[:, 1::2] = -1.0
    check(kernel, s, A, B)
    C = kernel(A, kernel.pack(B))
    qa, qb = quantize(A, s.a.quant, "a"), quantize(B, s.b.quant, "b")
    assert int(qa.scale_int.min()) == int(qb.scale_int.min()) == 63
    parts = [int(part[0, 0]) for _, part in int_accumulate(qa, qb)]
    assert set(parts) == {sp.group.hi} and sp.chunk * parts[0] * 63 * 63 == top
    assert np.isclose(C[0, 0], sum(parts) * 63 * 63 * qa.gamma[0, 0] * qb.gamma[0, 0])
    A[:, 16:32] *= 1e3  # group 1 holds each row's largest values: the others' integers are 1
    B[32:48] *= 1e3
    check(kernel, s, A, B)


@pytest.mark.skipif(PAIRS_RULE is None, reason=NO_PAIRS)
@pytest.mark.parametrize("m", [13, 37])
def test_few_rows_tile_both_gemms(m):
    """The VNNI rule: buckets of at most 32 rows take tiles of 8 rows x 16 columns by hand, more
    rows 4 x 32 (AVX2: 2 x 16); gemm and gemm_groups (the calls whose numbers leave the pairs)
    each give the reference's C."""
    s = scheme(*CASES[0])
    kernel = lrqc.compile(s, M=m, N=250, K=160)
    A, B = data(m, 250, 160, seed=m)
    packed, R = kernel.pack(B), matmul(s, A, B)
    (bucket,) = kernel._buckets
    rule = next(r for r in load_rules("x86") if r.name == kernel.rule)
    hand = {name: choice for name, (_, choice) in rule.knobs(bucket.plan).items()}
    if kernel.rule == "x86_vnni":
        assert hand == ({"mr": 8, "nr": 1} if m <= 32 else {"mr": 4, "nr": 2})
    else:  # AVX2's 16 registers: the sums of two groups and the total of 2 rows x 16 columns
        assert hand == {"mr": 2, "nr": 1}
    for fn in (names.FN_GEMM, names.FN_GEMM_GROUPS):
        kernel(A, packed)
        bucket.run(fn, packed)
        C = bucket.c.numpy()[:m, :250]
        assert np.abs(C - R).max() <= 2e-6 * kernel.plan.groups ** 0.5 * np.abs(R).max(), fn


@pytest.mark.skipif(PAIRS_RULE is None, reason=NO_PAIRS)
@pytest.mark.parametrize("lo,runs", [(112, names.FN_GEMM), (113, names.FN_GEMM_GROUPS)])
def test_centred_codes_at_their_reach(lo, runs):
    """Min-max A whose groups hold 15 values at 127·63 and one at lo·63 (scale 63, integer
    scales 63): row 0's zero points -112, row 1 (mirrored) 127, both ends of the zero points
    the pairs centre at K = 512 (reach 127): stored codes 254 and 0, group sums ±14119, each
    chunk's total 83 % of 2^31; at 113·63 they lie past it (-121, 136) and the call runs
    gemm_groups. The reference's integers and C either way."""
    s = scheme(*MINMAX)
    kernel = lrqc.compile(s, M=4, N=32, K=512)
    sp = ranges.scale_pairs(kernel.plan)
    assert sp.centred == ranges.Interval(-112, 127) and sp.chunk == 32
    A = np.full((4, 512), 127 * 63, np.float32)
    A[:, ::16] = lo * 63
    A[1] = -A[1][::-1]
    B = np.ones((512, 32), np.float32)
    B[:, 1::2] = -1.0
    check(kernel, s, A, B, groups=runs == names.FN_GEMM_GROUPS)
    qa = quantize(A, s.a.quant, "a")
    assert {int(z) for z in np.unique(qa.zero)} == ({-112, 127} if lo == 112 else {-121, 136})
    packed = kernel.pack(B)
    (bucket,) = kernel._buckets
    assert bucket.gemm(4, packed) == runs
    if runs == names.FN_GEMM:
        codes = bucket.aq.numpy()[:2].reshape(2, 32, 16).astype(int)  # a - zc + 127
        assert (codes[0, :, 0] == 0 + 112 + 127).all() and (codes[0, :, 1:] == 254).all()
        assert (codes[1, :, 15] == 15 - 127 + 127).all() and (codes[1, :, :15] == 0).all()
        assert set(np.unique(bucket.zc.numpy())) == {sp.offset}
        parts = [int(part[0, 0]) for _, part in int_accumulate(qa, quantize(B, s.b.quant, "b"))]
        assert set(parts) == {14119} and 32 * 14119 * 63 * 63 > 0.8 * 2**31


@pytest.mark.skipif(PAIRS_RULE is None, reason=NO_PAIRS)
@pytest.mark.parametrize("a,zero", [(f"uint4 {TWO}", 128), (f"int4 {TWO} calibrate=minmax", 120)])
def test_a_zero_point_at_the_old_centre_is_not_taken_for_a_centred_group(a, zero):
    """A group left uncentred keeps its own zc, which may be any value outside the centred
    interval: 128 here (uint4's zero point 128; int4's 120 plus its offset 8), past the reach
    of K = 4096's chunks. The call must run gemm_groups: as centred codes, the pairs would sum
    codes 128 away from zc and a chunk's int32 total would wrap (C's sign flipped)."""
    s = scheme(a, f"int4 {TWO}")
    kernel = lrqc.compile(s, M=4, N=32, K=4096)
    sp = ranges.scale_pairs(kernel.plan)
    assert sp.data and sp.offset == sp.centred.hi == 75
    lo = -8 if "int4" == a[:4] else 0  # the format's smallest code
    A = np.full((4, 4096), (lo - zero) * 63.0, np.float32)  # scale 63: codes lo + 15 ...
    A[:, ::16] = (lo - zero + 15) * 63.0  # ... and each group's top at code lo + 15
    B = np.ones((4096, 32), np.float32)
    B[:, 1::2] = -1.0
    qa = quantize(A, s.a.quant, "a")
    assert set(np.unique(qa.zero).astype(int)) == {zero}
    check(kernel, s, A, B, groups=True)
    (bucket,) = kernel._buckets
    assert bucket.gemm(4, kernel.pack(B)) == names.FN_GEMM_GROUPS


@pytest.mark.parametrize("b", [f"int8 {TWO}", "int7 per_vector(16, scale=uint4 per_channel)",
                               "int5 per_vector(64, scale=uint2 per_channel)"])
def test_centred_codes_bound_the_avx2_rules_too(b):
    """The range proof takes min-max A's centred codes (up to 254 at K = 512), not its
    format's [0, 15]: the AVX2 bytes rule must not sum vpmaddubsw pairs of them with wide
    weights in saturating int16 lanes. Zero points 0 (the data's own minimum)."""
    a = f"uint4 {TWO.replace('16', b.split('(')[1].split(',')[0])}"
    s = scheme(a, b)
    v = int(b.split("(")[1].split(",")[0])
    kernel = lrqc.compile(s, M=4, N=32, K=32 * v, target="x86-avx2")
    r, sp = ranges.ranges(kernel.plan), ranges.scale_pairs(kernel.plan)
    if sp.usable:
        assert r.a.hi == sp.centred_codes.hi > 15
    A = np.full((4, 32 * v), 15.0, np.float32)
    A[:, ::16] = 0.0
    B = np.ones((32 * v, 32), np.float32)
    B[:, 1::2] = -1.0
    check(kernel, s, A, B, groups=True)


@pytest.mark.skipif(PAIRS_RULE is None, reason=NO_PAIRS)
def test_pairs_with_a_bias_static_a_an_artifact_and_threads(tmp_path):
    a, b = CASES[1]
    s = scheme(a, b)
    kernel = lrqc.compile(s, M=(1, 40), N=48, K=256)
    A, B = data(33, 48, 256, seed=3)
    bias = np.linspace(-1, 1, 48)
    packed = kernel.pack(B, bias=bias)
    C, R = kernel(A, packed), matmul(s, A, B, bias=bias)
    assert np.abs(C - R).max() <= 4e-7 * np.abs(R).max()
    for rows in (1, 5, 33):  # buckets of the M range, the row tiles past a call's rows skipped
        np.testing.assert_allclose(kernel(A[:rows], packed), C[:rows], rtol=0, atol=0)
    build_artifact(s, (1, 40), 48, 256, tmp_path / "k")
    loaded = load_kernel(tmp_path / "k")
    np.testing.assert_array_equal(loaded(A, loaded.pack(B, bias=bias)), C)
    zs = scheme(*MINMAX)  # A's data zero points: gemm_groups exported, loaded and chosen
    build_artifact(zs, 8, 48, 256, tmp_path / "z")
    loaded, far = load_kernel(tmp_path / "z"), far_zero_points(8, 256, 6.0, seed=7)
    Cz, Rz = loaded(far, loaded.pack(B)), matmul(zs, far, B)
    assert np.abs(Cz - Rz).max() <= 4e-7 * np.abs(Rz).max()
    assert loaded._buckets[0].gemm(8, loaded.pack(B)) == names.FN_GEMM_GROUPS
    out: dict = {}

    def call(t: int) -> None:
        out[t] = [kernel(A[: 8 + t], packed) for _ in range(5)]

    threads = [threading.Thread(target=call, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for t, cs in out.items():
        for c in cs:
            np.testing.assert_array_equal(c, C[: 8 + t])
    static = scheme(*CASES[0], " static: a\n")  # A packed, B per call (Cᵀ = Bᵀ Aᵀ)
    ks = lrqc.compile(static, M=33, N=48, K=256)
    assert sig.scale_pairs(ks.plan)
    per_call, static_op = ks.split(A, B)
    Cs, Rs = ks(per_call, ks.pack(static_op)), matmul(static, A, B)
    assert Cs.shape == (33, 48) and np.abs(Cs - Rs).max() <= 4e-7 * np.abs(Rs).max()


def far_zero_points(m: int, k: int, offset: float, seed: int) -> np.ndarray:
    """A whose even groups lie in [offset, offset + 0.15] (data of one sign: min-max zero
    points near -offset / 0.01) and odd groups straddle 0 (zero points within the codes)."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, k // 16, 16))
    A[:, ::2] = offset + 0.15 * rng.random((m, (k // 16 + 1) // 2, 16))
    A[:, ::2, 0], A[:, ::2, 1] = offset, offset + 0.15  # each group's range exactly
    return A.reshape(m, k).astype(np.float32)


@pytest.mark.skipif(PAIRS_RULE is None, reason=NO_PAIRS)
@pytest.mark.parametrize("K,offset,runs", [
    (64, 0.0, names.FN_GEMM),  # zero points within the codes
    (64, 1.0, names.FN_GEMM),  # zc down to -98: centred (4 groups, reach 127)
    (64, 1.2, names.FN_GEMM_GROUPS),  # -118: beyond -112
    (64, 3.0, names.FN_GEMM_GROUPS),  # -295: beyond a byte
    (512, 1.2, names.FN_GEMM),  # -102
    (512, 1.5, names.FN_GEMM_GROUPS),  # -127
    (4096, 0.0, names.FN_GEMM),  # 4 chunks of 64 groups (reach 75)
    (4096, 0.5, names.FN_GEMM),  # -44
    (4096, 0.8, names.FN_GEMM_GROUPS),  # -71: beyond the reach of chunks of 64 (-60)
])
def test_data_zero_points_in_pairs_or_in_float_groups(K, offset, runs):
    """Min-max A (VS-Quant's example formats): where every group's zero point lies within the
    reach of its codes (ScalePairs.centred, from the reference's own zero points) its codes
    are stored centred and the pairs subtract c·cs; else the call runs gemm_groups (each
    group scaled in float32, its own zero point); the reference's numbers either way."""
    s = scheme(*MINMAX)
    kernel = lrqc.compile(s, M=8, N=48, K=K)
    sp = ranges.scale_pairs(kernel.plan)
    assert sig.zero_pairs(kernel.plan) and sp.data
    A = far_zero_points(8, K, offset, seed=K)
    B = data(8, 48, K, seed=2)[1]
    check(kernel, s, A, B, groups=runs == names.FN_GEMM_GROUPS)
    zero = quantize(A, s.a.quant, "a").zero
    within = bool(((sp.centred.lo <= zero) & (zero <= sp.centred.hi)).all())
    assert within == (runs == names.FN_GEMM), (float(zero.min()), float(zero.max()))
    (bucket,) = kernel._buckets
    zc = bucket.zc.numpy()
    assert bucket.gemm(8, kernel.pack(B)) == runs, (int(zc.min()), int(zc.max()))
    assert ((zc == sp.offset).all()) == within
    assert kernel.short_path() is not None  # min-max, centred: the short call path serves
