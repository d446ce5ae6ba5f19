"""Instruction selection from proven code ranges: which x86 rule each format pair gets, what
it emits, and kernels whose codes all sit at the ends of their ranges (where a saturating
vpmaddubsw would show) computed bit for bit as the reference does."""

from __future__ import annotations

import numpy as np
import pytest

import lrqc
from lrqc.reference import int_accumulate, matmul, quantize

pytest.importorskip("tvm")

from lrqc.backend.schedule.rules import choose  # noqa: E402
from lrqc.backend.target import host_cpu_flags, resolve  # noqa: E402
from lrqc.pipeline.compile import compile as compile_stages  # noqa: E402
from lrqc.plan.support import make_plan  # noqa: E402

HAS_AVX2 = "avx2" in host_cpu_flags()

# (a, b, rule on an AVX2 target without VNNI): the bytes rule exactly where every int16 pair
# sum of vpmaddubsw is proven inside [-32768, 32767]; else the signed
# rule where B has no code -128 (its pair sums of A's codes less 128 reach 2*128*127 = 32512)
# and the groups are whole blocks of 4 k
CHOICES = [
    ("int8 per_channel", "int8 per_channel", "x86_avx2_signed"),  # 2*255*127 = 64770; 32258
    ("uint8 per_channel", "int8 per_channel", "x86_avx2_signed"),  # A's 0 read as -128
    ("int8 per_tensor calibrate=minmax", "int8 per_channel", "x86_avx2_signed"),
    ("int8 per_channel", "int4 per_channel", "x86_avx2_bytes"),  # 2*255*7 = 3570
    ("uint8 per_channel", "int7 per_channel", "x86_avx2_bytes"),  # 2*255*63 = 32130
    ("uint8 per_channel", "int5 per_channel", "x86_avx2_bytes"),  # 7650: 4 sums per int16
    ("uint8 per_channel", "int7 per_channel calibrate=minmax", "x86_avx2_bytes"),  # 32640
    ("int8 per_channel", "uint7 per_channel", "x86_avx2_bytes"),  # stored -64..63
    ("int8 per_channel", "uint8 per_channel", "x86_avx2"),  # stored -128..127: no vpsignb
    ("int8 per_vector(32)", "int8 per_vector(32)", "x86_avx2_signed"),
    ("int8 per_vector(4)", "int8 per_vector(4)", "x86_avx2_signed"),  # one block per group
    ("uint8 per_vector(16)", "int8 per_vector(16) calibrate=minmax", "x86_avx2"),
    ("int7 per_channel", "int8 per_channel", "x86_avx2_bytes"),  # [1, 127]: 2*127*127 = 32258
    ("int7 per_tensor calibrate=minmax", "int8 per_channel", "x86_avx2_bytes"),  # [0, 127]
    ("uint4 per_vector(16, scale=uint6 per_channel)",
     "int4 per_vector(16, scale=uint6 per_channel)", "x86_avx2_bytes"),
    ("e2m1 per_block(32, scale=e8m0)", "e2m1 per_block(32, scale=e8m0)", "x86_avx2_bytes"),
    ("int8 per_channel", "int2 per_channel + dense(int8)", "x86_avx2_signed"),  # int8 segment
    ("int8 per_channel + dense(uint8)", "int8 per_channel", "x86_avx2_signed"),  # A: any byte
    ("int8 per_channel", "int4 per_channel + dense(int4)", "x86_avx2_bytes"),
]


def scheme(a: str, b: str) -> lrqc.Scheme:
    return lrqc.parse_schemes(f"scheme s {{\n a: {a}\n b: {b}\n}}")["s"]


@pytest.mark.parametrize("a,b,rule", CHOICES, ids=[f"{a}|{b}" for a, b, _ in CHOICES])
def test_rule_follows_the_proven_ranges(a, b, rule):
    plan = make_plan(scheme(a, b), 8, 32, 64)
    got, skipped = choose("x86", plan, resolve("x86-avx2"))
    assert got.name == rule
    reasons = dict(skipped)
    if rule in ("x86_avx2", "x86_avx2_signed"):
        assert "vpmaddubsw NOT exact" in reasons["x86_avx2_bytes"]
        assert "saturates" in reasons["x86_avx2_bytes"]
    if rule == "x86_avx2":
        assert "vpsignb NOT exact" in reasons["x86_avx2_signed"]
    vnni, _ = choose("x86", plan, resolve("x86-avx512-vnni"))
    assert vnni.name == "x86_vnni"  # vpdpbusd is exact for every byte code


def _asm(s, dims):
    texts = {}
    compile_stages(s, *dims, resolve("x86-avx2"), emit=("asm", "plan"), on_text=texts.__setitem__)
    return texts


@pytest.mark.parametrize("a,b,instruction", [
    ("int8 per_channel", "int4 per_channel", "vpmaddubsw"),
    ("uint4 per_vector(16)", "int4 per_vector(16)", "vpmaddubsw"),
    ("int8 per_channel", "int8 per_channel", "vpsignb"),
    ("int8 per_channel", "uint8 per_channel", "vpmaddwd")])
def test_the_proven_instruction_is_emitted_and_the_proof_printed(a, b, instruction):
    texts = _asm(scheme(a, b), (16, 64, 256))
    assert (texts["asm"].count("vpmaddubsw") >= 8) == (instruction != "vpmaddwd")
    assert (texts["asm"].count("vpsignb") >= 8) == (instruction == "vpsignb")
    assert texts["asm"].count("vpmaddwd") >= 8  # by ones after vpmaddubsw, or on words
    assert f"instruction {instruction} exact" in texts["plan"]


def _ends(m, n, k, pattern, seed):
    """A (m x k) and B (k x n) of +-1 and 0 entries whose per-channel codes are all at the
    ends of their ranges: "same": every product has the sign of its neighbour (pair sums at
    their bound), "mixed": random signs."""
    rng = np.random.default_rng(seed)
    if pattern == "same":
        A = np.ones((m, k))
        B = -np.ones((k, n))
        B[:, ::2] = 1.0
    else:
        A = rng.choice([-1.0, 1.0], (m, k))
        B = rng.choice([-1.0, 1.0], (k, n))
    A[:, 0] = 1.0  # every row and column reaches both ends of its scale
    B[0, :], B[1, :] = 1.0, -1.0
    return A.astype(np.float32), B


@pytest.mark.skipif(not HAS_AVX2, reason="this CPU has no AVX2 to run the x86 rules")
@pytest.mark.parametrize("a,b,rule", [c for c in CHOICES if "dense" not in c[0] + c[1]],
                         ids=[f"{a}|{b}" for a, b, _ in CHOICES if "dense" not in a + b])
@pytest.mark.parametrize("pattern", ["same", "mixed"])
def test_codes_at_the_range_ends_are_exact(a, b, rule, pattern):
    s = scheme(a, b)
    m, n, k = 5, 32, 96
    kernel = lrqc.compile(s, M=m, N=n, K=k, target="x86-avx2")
    assert kernel.rule == rule
    A, B = _ends(m, n, k, pattern, seed=len(a) + len(b))
    if a.startswith("uint"):
        A = np.abs(A)  # unsigned activations (min-max): codes 0 and 2^b - 1
        A[:, 1] = 0.0
    packed = kernel.pack(B)
    qa, qb = quantize(A, s.a.quant, "a"), quantize(B, s.b.quant, "b")
    ref = np.stack([part for _, part in int_accumulate(qa, qb)])
    np.testing.assert_array_equal(kernel.int_accumulate(A, packed), ref)
    R = matmul(s, A, B)
    C = kernel(A, packed)
    assert np.abs(C - R).max() <= 2e-6 * kernel.plan.groups ** 0.5 * np.abs(R).max()


FLIPPED = [  # schemes on the signed rule whose other functions read A's codes too
    ("int8 per_channel", "int8 per_channel + lowrank(rank=2)"),  # lowrank_u: A' L_B
    ("int8 per_channel + lowrank(rank=2)", "int8 per_channel"),  # the residual of held codes
    ("int8 per_channel + dense(int8)", "int8 per_channel + dense(int8)"),  # K segments
    ("int8 per_channel round=trunc + sparse(threshold=0.5, max_density=0.3)",  # dense forms:
     "int8 per_channel round=trunc + sparse(threshold=0.5, max_density=0.3)"),  # every code
    ("uint8 per_channel", "int8 per_channel"),  # zero points: A's 0 flipped to -128
]


@pytest.mark.skipif(not HAS_AVX2, reason="this CPU has no AVX2 to run the x86 rules")
@pytest.mark.parametrize("a,b", FLIPPED, ids=[f"{a}|{b}" for a, b in FLIPPED])
def test_every_reader_of_the_signed_rules_flipped_codes_takes_them_back(a, b):
    """The signed rule's A codes are stored flipped (te.flipped): the GEMM reads them as int8,
    and the functions that read them for other ends (B's low-rank U from A's dequantized
    codes, A's residuals from its held codes, the K segments of dense terms, the sparse terms'
    dense formulation with both copies dense) take the stored code back: the reference's
    numbers, with the flipped codes in the kernel's buffer."""
    s = scheme(a, b)
    m, n, k = 24, 64, 128
    kernel = lrqc.compile(s, M=m, N=n, K=k, target="x86-avx2")
    assert kernel.rule == "x86_avx2_signed"
    rng = np.random.default_rng(len(a) * 31 + len(b))
    A = rng.standard_normal((m, k)).astype(np.float32)
    if a.startswith("uint"):
        A = np.abs(A)
    B = rng.standard_normal((k, n)).astype(np.float32)
    packed = kernel.pack(B)
    C = kernel(A, packed)
    R = matmul(s, A.astype(np.float64), B.astype(np.float64))
    assert np.abs(C - R).max() <= 1e-5 * np.abs(R).max(), kernel.last_notes
    if "sparse" in a:
        assert sum(" ran dense" in note for note in kernel.last_notes) == 2, kernel.last_notes
    qa = quantize(A, s.a.quant, "a")
    stored = kernel._buckets[-1].aq.numpy()[:m, :k].astype(np.int64)
    offset = 128 if s.a.quant.signed else 0  # the stored code: code + 128, or the u8 code
    np.testing.assert_array_equal(stored ^ 128, qa.codes + offset)


def test_the_x86_intrinsics_register_from_a_trace_in_a_fresh_process():
    """A tuning record replayed in a fresh process names the AVX2 blocks (over n k steps, the
    signed block) and the scale pairs (vpdpwssd, or AVX2's vpmaddwd, with or without a zero
    correction) by their parameters: replay registers each from its name, before any hand
    schedule has."""
    import subprocess
    import sys

    code = """
from lrqc.backend.compat import TensorIntrin
from lrqc.backend.intrin import pairs, x86
from lrqc.backend.schedule.trace import register_intrinsics
names = [x86.bytes_steps(4)[0], x86.signed_block()[0], pairs.scale_pairs(0, "uint8")[0],
         pairs.scale_pairs(75, "uint8", "int8", avx2=True)[0],
         pairs.scale_pairs(8, "int16", "int16")[0]]
register_intrinsics({"insts": [["Tensorize", [], [n]] for n in names]})
for n in names:
    assert TensorIntrin.get(n) is not None, n
print("ok", len(names))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "ok 5" in out.stdout, out.stderr[-2000:]
