"""CPU kernels against lrqc.reference on the same inputs: integer accumulations exactly, float
results within a tolerance set by float32 arithmetic; artifacts, refusals and the CLI."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys

import numpy as np
import pytest

import lrqc
from lrqc.reference import int_accumulate, matmul, quantize
from lrqc.reference.inputs import round_float
from lrqc.reference.scheme import rel_error

pytest.importorskip("tvm")

from lrqc.backend.target import host_cpu_flags

HAS_VNNI = "avx512_vnni" in host_cpu_flags()
HAS_AVX_VNNI = "avx_vnni" in host_cpu_flags()
# the kernel tests run the AVX2 rule wherever the host has AVX2 (VNNI hosts run both, below)
HOST_RULE_TARGET = "x86-avx2" if "avx2" in host_cpu_flags() else None


def scheme(a: str, b: str) -> lrqc.Scheme:
    return lrqc.parse_schemes(f"scheme s {{\n a: {a}\n b: {b}\n}}")["s"]


def data(m, n, k, seed=0, dist="normal"):
    rng = np.random.default_rng(seed)
    A = (rng.standard_normal((m, k)) if dist == "normal" else rng.random((m, k))).astype(np.float32)
    return A, rng.standard_normal((k, n))


def check(kernel, s, A, B):
    packed = kernel.pack(B)
    C = kernel(A, packed)
    R = matmul(s, A, B)
    assert C.dtype == np.float32 and C.shape == R.shape
    # float32 epilogue: a few ulps of the largest partial products per K-group
    tol = 2e-6 * kernel.plan.groups ** 0.5 * np.abs(R).max() + 1e-30
    assert np.abs(C - R).max() <= tol, np.abs(C - R).max() / np.abs(R).max()
    qa, qb = quantize(A, s.a.quant, "a"), quantize(B, s.b.quant, "b")
    ref = np.stack([part for _, part in int_accumulate(qa, qb)])
    np.testing.assert_array_equal(kernel.int_accumulate(A, packed), ref)


CASES = [  # a, b, (M, N, K)
    ("int8 per_channel", "int8 per_channel", (7, 33, 100)),
    ("int8 per_tensor", "int8 per_tensor", (1, 16, 1000)),
    ("int8 per_tensor round=floor", "int4 per_channel", (100, 7, 64)),
    ("int8 per_channel round=trunc", "int3 per_channel", (16, 100, 7)),
    ("int8 per_channel round=nearest_away", "int2 per_channel", (5, 48, 96)),
    ("int8 per_channel", "int5 per_channel", (9, 33, 100)),  # codes packed densely
    ("int8 per_channel", "int6 per_vector(16)", (9, 40, 100)),
    ("int8 per_tensor", "int7 per_channel", (3, 17, 300)),
    ("int8 per_channel", "uint1 per_channel", (5, 20, 64)),
    ("int8 per_channel", "uint3 per_channel", (5, 20, 70)),  # zero points, 3 bits
    ("int8 per_channel", "int3 per_channel", (100, 16, 3)),  # one block of 4 k: no k4 loop
    ("uint8 per_channel", "int8 per_channel", (9, 20, 37)),
    ("uint4 per_tensor", "int4 per_tensor", (3, 17, 50)),
    ("int4 per_channel", "int4 per_channel", (1000, 24, 40)),
    ("int8 per_vector(16)", "int4 per_vector(16)", (9, 40, 100)),
    ("int8 per_vector(64)", "int8 per_channel", (4, 32, 256)),
    ("int8 per_channel", "int8 per_vector(32)", (6, 16, 70)),
    ("uint4 per_vector(16, scale=uint6 per_channel)",
     "int4 per_vector(16, scale=uint6 per_channel)", (9, 40, 100)),
    ("int8 per_vector(16, scale=uint4 per_channel) scale_round=nearest",
     "int8 per_vector(16, scale=uint4 per_channel) scale_round=nearest", (8, 16, 64)),
    ("e2m1 per_block(32, scale=e8m0)", "e2m1 per_block(32, scale=e8m0)", (7, 33, 100)),
    ("int8 per_block(32, scale=e8m0)", "int8 per_block(32, scale=e8m0)", (1, 16, 1000)),
    ("e2m3 per_block(32, scale=e8m0) round=floor", "e2m1 per_block(32, scale=e8m0)", (5, 20, 96)),
    # weights with zero points (unsigned / min-max): row sums of A's codes in the epilogue
    ("int8 per_channel", "uint4 per_channel", (7, 33, 100)),
    ("uint8 per_tensor", "uint8 per_channel", (16, 20, 64)),
    ("int8 per_vector(16)", "uint4 per_vector(16)", (9, 40, 100)),
    ("int8 per_channel", "int4 per_channel calibrate=minmax", (5, 17, 64)),
    ("int8 per_tensor", "uint8 per_tensor calibrate=maxabs", (3, 16, 40)),
    # int1: sign binarization, scale mean |x| (K padding inside the groups)
    ("int1 per_channel", "int1 per_channel", (7, 33, 100)),
    ("int1 per_vector(16)", "int4 per_vector(16)", (5, 20, 90)),
    ("int1 per_tensor", "int8 per_channel", (4, 16, 64)),
    ("int8 per_tensor calibrate=minmax", "int8 per_channel", (6, 16, 50)),
    ("int4 per_vector(8) calibrate=minmax", "int4 per_vector(8)", (5, 16, 60)),
    # stochastic rounding of A: floor(y + u) with the reference's seeded draws
    ("int8 per_channel round=stochastic seed=3", "int8 per_channel", (7, 33, 100)),
    ("uint4 per_vector(16) round=stochastic", "int4 per_vector(16)", (5, 20, 90)),
    ("e2m1 per_channel round=stochastic seed=5", "int8 per_channel", (3, 16, 64)),
    # e*m* elements with float scales (max |x| -> max normal), as integer codes value x 2^f
    ("e2m1 per_channel", "e2m1 per_channel", (7, 33, 100)),
    ("e2m3 per_tensor round=floor", "e2m1 per_channel", (5, 20, 90)),
    ("e2m1 per_channel", "int4 per_vector(16)", (3, 16, 64)),
]


@pytest.mark.parametrize("a,b,dims", CASES, ids=[f"{c[0]}|{c[1]}|{c[2]}" for c in CASES])
def test_kernel_matches_reference(a, b, dims):
    compile_and_check(a, b, dims)


def compile_and_check(a: str, b: str, dims: tuple[int, int, int]):
    """Compile scheme (a, b) for the host rule at dims and check it against the reference on
    generated data (uniform for an unsigned A); returns the kernel."""
    s = scheme(a, b)
    m, n, k = dims
    kernel = lrqc.compile(s, M=m, N=n, K=k, target=HOST_RULE_TARGET)
    A, B = data(m, n, k, seed=m + n + k, dist="uniform" if a.startswith("uint") else "normal")
    check(kernel, s, A, B)
    return kernel


def test_m_varies_per_call_within_the_declared_range():
    s = scheme("uint8 per_tensor calibrate=minmax round=stochastic", "int4 per_channel")
    kernel = lrqc.compile(s, M="1..40", N=33, K=70)
    assert [p.m for p in kernel.plans] == [4, 8, 16, 32, 40]
    A, B = data(40, 33, 70, seed=5, dist="uniform")
    A -= 0.3  # min < 0 < max: padding rows must not move the per-tensor min or max
    for m in (1, 3, 4, 5, 17, 33, 40):
        check(kernel, s, A[:m], B)
    with pytest.raises(lrqc.InputError, match=r"A: expected shape 1\.\.40x70 \(M x K\).*got 41x70"):
        kernel(np.ones((41, 70)), kernel.pack(B))
    with pytest.raises(lrqc.LrqcError, match="lo <= hi"):
        lrqc.compile(s, M=(9, 3), N=33, K=70)


def test_inputs_of_any_layout_and_dtype():
    s = scheme("int8 per_channel", "int8 per_channel")
    kernel = lrqc.compile(s, M=7, N=20, K=30)
    A, B = data(7, 20, 30, seed=1)
    packed = kernel.pack(B)
    C = kernel(A, packed)
    np.testing.assert_array_equal(kernel(np.asfortranarray(A), packed), C)
    big = np.zeros(7 * 30 + 1, np.float32)
    unaligned = big[1:].reshape(7, 30)
    unaligned[:] = A
    np.testing.assert_array_equal(kernel(unaligned, packed), C)
    np.testing.assert_array_equal(kernel(A.astype(np.float64), packed), C)
    np.testing.assert_array_equal(kernel(A.tolist(), kernel.pack(np.asfortranarray(B))), C)


@pytest.mark.parametrize("static", ["a", "none"])
def test_static_a_and_none(static, tmp_path):
    s = lrqc.parse_schemes("scheme s {\n a: int4 per_channel calibrate=minmax\n"
                           f" b: uint8 per_vector(16)\n static: {static}\n}}")["s"]
    kernel = lrqc.compile(s, M=7, N=33, K=100)
    A, B = data(7, 33, 100, seed=6)
    R = matmul(s, A, B)
    C = kernel.run(A, B)
    assert C.shape == (7, 33) and np.abs(C - R).max() <= 2e-6 * 7 * np.abs(R).max()
    per_call, static_op = kernel.split(A, B)
    packed = kernel.pack(static_op)
    qa, qb = quantize(A, s.a.quant, "a"), quantize(B, s.b.quant, "b")
    ref = np.stack([part for _, part in int_accumulate(qa, qb)])
    np.testing.assert_array_equal(kernel.int_accumulate(per_call, packed), ref)
    if static == "a":
        with pytest.raises(lrqc.InputError, match=r"B: expected shape 100x33 \(K x N\)"):
            kernel(B[:, :5], packed)
        with pytest.raises(lrqc.InputError, match=r"A: expected shape 7x100"):
            kernel.pack(B)
        from lrqc.pipeline.export import build_artifact
        from lrqc.runtime.artifact import load_kernel

        build_artifact(s, 7, 33, 100, tmp_path / "k")
        np.testing.assert_array_equal(load_kernel(tmp_path / "k").run(A, B), C)


FLOAT_CASES = [  # a float operand: float32 GEMM against the reference within float32 rounding
    ("float32", "int4 per_channel", (7, 33, 100)),
    ("float16", "uint4 per_vector(32)", (1, 16, 1000)),
    ("bfloat16", "int8", (9, 20, 37)),
    ("bfloat16", "e4m3 per_tensor", (9, 20, 37)),
    ("int8 per_channel", "float16", (16, 17, 64)),
    ("float32", "float32", (5, 48, 96)),
    ("int8 per_vector(16) calibrate=minmax", "bfloat16", (3, 16, 70)),
    ("float16", "e4m3 per_channel round=stochastic", (4, 16, 50)),
    ("e2m1 per_block(32, scale=e8m0)", "float32", (7, 33, 100)),
    # quantized products the integer path cannot hold: the float fallback
    ("e4m3 per_block(32, scale=e8m0)", "e4m3 per_block(32, scale=e8m0)", (7, 33, 100)),
    ("e5m2 per_tensor", "int8", (5, 16, 64)),
    ("e2m1 per_block(32, scale=e8m0)", "int8 per_channel", (4, 20, 64)),
    ("int8 per_vector(16)", "int8 per_vector(32)", (6, 16, 70)),
    ("uint4 per_vector(6)", "int4 per_channel round=stochastic", (3, 16, 40)),
    ("e4m3 per_channel round=stochastic seed=1", "int8", (6, 16, 50)),
]
FLOAT_IDS = [f"{c[0]}|{c[1]}|{c[2]}" for c in FLOAT_CASES]


@pytest.mark.parametrize("a,b,dims", FLOAT_CASES, ids=FLOAT_IDS)
def test_products_with_a_float_operand(a, b, dims):
    s = scheme(a, b)
    m, n, k = dims
    kernel = lrqc.compile(s, M=m, N=n, K=k, target=HOST_RULE_TARGET)
    A, B = data(m, n, k, seed=m + k)
    C, R = kernel.run(A, B), matmul(s, A, B)
    if not (kernel.plan.a_float or kernel.plan.b_float):
        assert any("float32 GEMM fallback" in note for note in kernel.plan.notes)
    bound = (np.abs(A) @ np.abs(B)).max() * 4 * (1 + 2.0**-3) ** 2  # |deq| <= ~|x| (1 + 1 ulp)
    assert C.dtype == np.float32 and np.abs(C - R).max() <= 2.0**-22 * k**0.5 * bound
    with pytest.raises(lrqc.InputError, match="no integer accumulation"):
        kernel.int_accumulate(A, kernel.pack(B))


HALF_OF = {  # KernelPlan.half of FLOAT_CASES: the 16-bit type holding every GEMM value exactly
    ("bfloat16", "int8"): "bfloat16",
    ("int8 per_channel", "float16"): "float16",
    ("float16", "e4m3 per_channel round=stochastic"): "float16",
    ("bfloat16", "e4m3 per_tensor"): "bfloat16",
    ("e5m2 per_tensor", "int8"): "float16",
    ("e4m3 per_channel round=stochastic seed=1", "int8"): "float16",
}


@pytest.mark.parametrize("a,b,dims", FLOAT_CASES, ids=FLOAT_IDS)
def test_float_gemms_multiply_exact_16_bit_values_with_scales_outside(a, b, dims):
    """Float GEMMs whose values are all exact in float16 / bfloat16 (codes with per_tensor or
    per_channel scales, float16 / bfloat16 operands) multiply codes and scale rows and columns
    in the epilogue (CUDA runs them on 16-bit tensor cores); the others (a float32 operand,
    scales inside the K sum, float16 x bfloat16) multiply dequantized float32 values. Both
    match the reference (test above)."""
    m, n, k = dims
    kernel = lrqc.compile(scheme(a, b), M=m, N=n, K=k, target=HOST_RULE_TARGET)
    half = HALF_OF.get((a, b))
    assert kernel.plan.half == half
    A, B = data(m, n, k, seed=m + k)
    packed = kernel.pack(B)
    assert (packed.arrays.sbf is not None) == (half is not None or kernel.plan.float_codes)
    if half is not None:  # A's and B's GEMM values: finite and exact in the 16-bit type
        assert packed.arrays.bf.dtype == np.dtype(half)  # B stored in it: half the memory
        bk, _ = kernel._quantize(A)
        for vals in (packed.arrays.bf, bk.af.numpy()):
            assert np.all(np.isfinite(vals)) and np.abs(vals).max() < 65504
            assert np.array_equal(round_float(vals.astype(np.float64), half), vals)


@pytest.mark.parametrize("a,b,bits,dims", [
    ("float32", "int3 per_channel", 3, (16, 40, 300)),
    ("float32", "int4 per_tensor", 4, (9, 33, 100)),
    ("float64", "int1 per_channel", 2, (5, 20, 64)),
    ("float32", "int6 per_channel pack=byte", 8, (7, 17, 50)),
    ("float32", "int7 per_channel", 7, (1, 48, 1000)),
    ("float16", "int3 per_channel pack=dense", 3, (4, 20, 64)),  # not the 16-bit path
    ("float32", "int4 per_vector(32)", 4, (5, 40, 100)),  # scales inside the K sum
    ("bfloat16", "uint4 per_vector(16, scale=uint6 per_channel)", 4, (3, 33, 70)),
    ("float32", "int4 per_channel calibrate=minmax", 4, (4, 20, 64)),  # zero points
    ("float32", "uint8 per_channel", 8, (3, 17, 50)),
    ("float16", "fixed(5, max=2.0) pack=dense", 5, (3, 17, 50)),
    ("float16", "uint3 per_channel", 3, (3, 17, 50)),  # zero points: no 16-bit path
    ("float32", "int1 per_vector(1) pad=false", 2, (8, 8, 9)),  # K chunks of one k row
    ("float32", "int3 per_channel", 3, (70, 16, 3)),  # fewer k rows than a packed group
])
def test_weight_only_products_keep_the_codes(a, b, bits, dims):
    """A float A times integer weights (any granularity but MX, zero points included): the
    float32 GEMM dequantizes B's codes (packed densely below 8 bits, pack=byte a byte each)
    once per 16-column panel or k chunk; B's float values are never stored."""
    m, n, k = dims
    s = scheme(a, b)
    kernel = lrqc.compile(s, M=m, N=n, K=k, target=HOST_RULE_TARGET)
    assert kernel.plan.float_codes and kernel.plan.pack_bits == bits
    A, B = data(m, n, k, seed=k)
    packed = kernel.pack(B)
    assert packed.arrays.bf is None and packed.arrays.bp.nbytes <= kernel.plan.np_ * (
        -(-kernel.plan.kp // 16) * 16) * bits / 8
    C, R = kernel(A, packed), matmul(s, A, B)
    bound = (np.abs(A) @ np.abs(B)).max() * 2
    assert np.abs(C - R).max() <= 2.0**-22 * k**0.5 * bound


@pytest.mark.parametrize("a,b", [("int8 per_channel calibrate=minmax", "bfloat16"),
                                 ("float16", "uint8 per_channel"),
                                 ("uint8 per_tensor", "float16")])
def test_minmax_zero_points_keep_the_float32_gemm(a, b):
    """Zero points of min-max calibration are not clamped to the code range, so on data of one
    sign code - zero exceeds any 16-bit type: such products multiply dequantized float32
    values, and match the reference there."""
    kernel = lrqc.compile(scheme(a, b), M=8, N=16, K=64, target=HOST_RULE_TARGET)
    assert kernel.plan.half is None
    rng = np.random.default_rng(4)
    A, B = 100 + rng.random((8, 64)), 1 + rng.random((64, 16))
    ref = matmul(scheme(a, b), A.astype(np.float32).astype(np.float64), B)
    assert rel_error(kernel.run(A, B), ref) < 1e-6


def test_16_bit_values_with_tiny_scales_stay_accurate():
    """The epilogue scales (acc saf) sbf: with e5m2's 2^-16 code unit folded into tiny scales,
    saf sbf alone would be a float32 subnormal."""
    s = scheme("e5m2 per_tensor", "int8 per_channel")
    kernel = lrqc.compile(s, M=8, N=16, K=64, target=HOST_RULE_TARGET)
    assert kernel.plan.half == "float16"
    A, B = data(8, 16, 64, seed=3)
    A, B = A * np.float32(1e-19), B * 1e-19
    ref = matmul(s, A.astype(np.float64), B)
    assert rel_error(kernel.run(A, B), ref) < 1e-6


@pytest.mark.parametrize("kb", [10, 7, 1, 100])
def test_zero_point_outside_the_code_range_with_k_padded(kb):
    """B's min-max zero point outside its codes (columns of one sign) cannot be stored in K's
    padding. Where A's padding codes are A's own zero (no zero points from A's data) and
    nothing but the GEMM reads B's codes, any code there adds 0 (the nearest is stored): the
    kernel computes it. Where A's zero points come from the data, or residual terms read B's
    codes, it is refused with the reason, never wrong."""
    A, _ = data(4, 16, kb, seed=2)
    B = np.random.default_rng(0).random((kb, 16)) + 1.0  # positive columns: zero point < -8
    for a in ("int8 per_channel", "int8 per_vector(16)", "int4 per_tensor round=floor"):
        s = scheme(a, "int4 per_channel calibrate=minmax")
        check(lrqc.compile(s, M=4, N=16, K=kb), s, A, B)
        check(lrqc.compile(s, M=4, N=16, K=kb), s, A, -B)
    s = scheme("uint8 per_channel", "int4 per_channel calibrate=minmax")  # A's zeros: data
    kernel = lrqc.compile(s, M=4, N=16, K=kb)
    if kernel.plan.kp == kb:  # no padding: exact
        check(kernel, s, A, B)
        return
    with pytest.raises(lrqc.InputError, match=rf"zero point lies outside.*K's padding \({kb} "
                       rf"to {kernel.plan.kp}\)"):
        kernel.pack(B)
    s = scheme("int8 per_channel", "int4 per_channel calibrate=minmax + lowrank(rank=1)")
    with pytest.raises(lrqc.InputError, match="zero point lies outside"):
        lrqc.compile(s, M=4, N=16, K=kb).pack(B)


def test_shape_and_input_errors():
    s = scheme("int8 per_channel", "int8 per_channel")
    kernel = lrqc.compile(s, M=4, N=16, K=8)
    A, B = data(4, 16, 8)
    with pytest.raises(lrqc.InputError, match=r"B: expected shape 8x16 \(K x N\).*got 8x15"):
        kernel.pack(B[:, :15])
    packed = kernel.pack(B)
    with pytest.raises(lrqc.InputError, match=r"A: expected shape 4x8 \(M x K\).*got 5x8"):
        kernel(np.ones((5, 8)), packed)
    with pytest.raises(lrqc.InputError, match="non-finite"):
        kernel(np.full((4, 8), np.inf), packed)
    with pytest.raises(lrqc.InputError, match="pack"):
        kernel(A, B)


@pytest.mark.parametrize("a,b,msg", [
    ("int8 per_block(32, scale=e8m0) round=stochastic", "int8 per_block(32, scale=e8m0)",
     "stochastic rounding of MX"),
])
def test_unsupported_schemes_say_so(a, b, msg):
    from lrqc.errors import UnsupportedScheme

    with pytest.raises(UnsupportedScheme, match=msg):
        lrqc.compile(scheme(a, b), M=4, N=16, K=64)


def _asm(s, dims, target) -> str:
    """The assembly of a scheme compiled for target, as `lrqc build --emit asm` prints it."""
    from lrqc.pipeline.compile import compile

    texts = {}
    compile(s, *dims, target, emit=("asm",), on_text=texts.__setitem__)
    return texts["asm"]


@pytest.mark.parametrize("spec,dims", [("int8 per_channel", (64, 64, 256)),
                                       ("int8 per_vector(64)", (8, 64, 256)),
                                       ("int4 per_channel", (7, 33, 100)),
                                       ("int4 per_vector(32)", (8, 64, 256)),
                                       ("int2 per_channel", (16, 64, 128)),
                                       ("uint4 per_channel", (16, 64, 128)),
                                       ("e2m1 per_block(32, scale=e8m0)", (8, 64, 256)),
                                       ("int8 per_channel + lowrank(rank=4)", (64, 64, 256)),
                                       ("int4 per_channel + lowrank(rank=3)", (16, 64, 128)),
                                       ("int8 per_vector(64) + lowrank(rank=1)", (8, 64, 256))])
def test_vnni_rule_emits_vpdpbusd(spec, dims):
    from lrqc.backend.schedule.rules import choose
    from lrqc.backend.target import resolve
    from lrqc.plan.support import make_plan

    t = resolve("x86-avx512-vnni")
    plan = make_plan(scheme(spec, spec), *dims)
    rule, _ = choose("x86", plan, t)
    assert rule.name == "x86_vnni"
    asm = _asm(scheme(spec, spec), dims, t)
    assert asm.count("vpdpbusd") >= 16


def test_rule_choice_follows_the_target():
    from lrqc.backend.schedule.rules import choose
    from lrqc.backend.target import resolve
    from lrqc.plan.support import make_plan

    plan = make_plan(scheme("int8 per_channel", "int8 per_channel"), 4, 16, 64)
    want = {"x86-amx": "x86_amx", "x86-avx512-vnni": "x86_vnni", "x86-avxvnni": "x86_avxvnni",
            "x86-avx2": "x86_avx2_signed", "aarch64": "generic"}
    for t, name in want.items():
        rule, skipped = choose("x86", plan, resolve(t))
        assert rule.name == name
        if name != "x86_amx":
            assert ("x86_amx", "target lacks amx-int8") in skipped
        if name not in ("x86_amx", "x86_vnni"):
            assert ("x86_vnni", "target lacks avx512vnni") in skipped


@pytest.mark.parametrize("spec,dims", [("int8 per_channel", (64, 64, 256)),
                                       ("int4 per_vector(32)", (8, 64, 256))])
def test_avx2_rule_emits_vpmaddwd(spec, dims):
    from lrqc.backend.target import resolve

    asm = _asm(scheme(spec, spec), dims, resolve("x86-avx2"))
    assert asm.count("vpmaddwd") >= 16


BASELINE_X86 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64"}


@pytest.mark.parametrize("i", [0, 2, 3, 8, 11, 13, 18])
def test_generic_rule_runs_exactly(i):
    """The portable rule (here on baseline x86-64, SSE2 only) against the reference."""
    a, b, dims = CASES[i]
    s = scheme(a, b)
    kernel = lrqc.compile(s, *dims, target=BASELINE_X86)
    assert kernel.rule == "generic"
    check(kernel, s, *data(*dims, seed=4, dist="uniform" if a.startswith("uint") else "normal"))


@pytest.mark.skipif(not HAS_VNNI, reason="this CPU has no AVX-512 VNNI to run the fast path")
def test_vnni_kernels_run_exactly():
    for a, b, dims in CASES:
        s = scheme(a, b)
        kernel = lrqc.compile(s, *dims, target="x86-avx512-vnni")  # the host may take AMX
        assert kernel.rule == "x86_vnni"
        check(kernel, s, *data(*dims, seed=3, dist="uniform" if a.startswith("uint") else "normal"))


@pytest.mark.skipif(not HAS_AVX_VNNI, reason="this CPU has no AVX-VNNI to run the 256-bit form")
def test_avx_vnni_kernels_run_exactly():
    """The 256-bit VEX vpdpbusd rule, compiled for a CPU with AVX-VNNI and no AVX-512 (Intel
    Alder Lake), run here: every case's integer sums bit for bit."""
    for a, b, dims in CASES:
        s = scheme(a, b)
        kernel = lrqc.compile(s, *dims, target="x86-avxvnni")
        assert kernel.rule == "x86_avxvnni"
        check(kernel, s, *data(*dims, seed=5, dist="uniform" if a.startswith("uint") else "normal"))


@pytest.mark.parametrize("spec,dims", [("int8 per_channel", (64, 64, 256)),
                                       ("int4 per_vector(32)", (8, 64, 256)),
                                       ("int8 per_channel + lowrank(rank=4)", (64, 64, 256))])
def test_avx_vnni_rule_emits_vex_vpdpbusd(spec, dims):
    """A target with AVX-VNNI and no AVX-512: the 256-bit vpdpbusd, no 512-bit register."""
    from lrqc.backend.target import resolve

    t = resolve("x86-avxvnni")
    assert "avxvnni" in t.features and "avx512vnni" not in t.features
    asm = _asm(scheme(spec, spec), dims, t)
    assert re.search(r"vpdpbusd\s+%ymm", asm) and "zmm" not in asm


def test_artifact_round_trip_in_a_new_process(tmp_path):
    src = tmp_path / "s.lrq"
    src.write_text("scheme w4 {\n a: int8 per_channel\n b: int4 per_vector(32)\n}\n")
    out = tmp_path / "art"
    from lrqc.cli import main

    assert main(["build", str(src), "--dims", "M=2..9,N=33,K=100", "-o", str(out)]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["dims"] == {"M": "2..9", "N": 33, "K": 100} and man["lib"] == "lib.so"
    assert man["m_buckets"] == [4, 8, 9] and man["weights"]["code_bits"] == 4
    assert {"lrqc", "tvm", "llvm"} <= set(man["versions"]) and "Bp" in man["layouts"]
    A, B = data(7, 33, 100, seed=9)
    np.save(tmp_path / "A.npy", A)
    np.save(tmp_path / "B.npy", B)
    code = (
        "import sys, numpy as np, lrqc\n"
        f"k = lrqc.load_kernel({str(out)!r})\n"
        f"A, B = np.load({str(tmp_path / 'A.npy')!r}), np.load({str(tmp_path / 'B.npy')!r})\n"
        "C = k(A, k.pack(B))\n"
        "assert k(A[:2], k.pack(B)).shape == (2, 33)\n"
        f"s = lrqc.load_schemes({str(src)!r})['w4']\n"
        "R = lrqc.reference.matmul(s, A, B)\n"
        "assert np.abs(C - R).max() <= 1e-5 * np.abs(R).max(), np.abs(C - R).max()\n"
        "print('ok', k.rule)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr
    assert main(["run", str(out), "--a", str(tmp_path / "A.npy"), "--b", str(tmp_path / "B.npy"),
                 "-o", str(tmp_path / "C.npy")]) == 0
    C = np.load(tmp_path / "C.npy")
    R = matmul(lrqc.load_schemes(src)["w4"], A, B)
    assert np.abs(C - R).max() <= 1e-5 * np.abs(R).max()


def test_foreign_artifacts_are_refused(tmp_path):
    from lrqc.pipeline.export import build_artifact

    s = scheme("int8 per_channel", "int8 per_channel")
    other = "aarch64" if HAS_VNNI else "x86-avx512-vnni"
    build_artifact(s, 4, 16, 64, tmp_path / "cpu", target=other)
    with pytest.raises(lrqc.LrqcError, match="but this CPU lacks"):
        lrqc.load_kernel(tmp_path / "cpu")
    build_artifact(s, 4, 16, 64, tmp_path / "ver")
    man = json.loads((tmp_path / "ver" / "manifest.json").read_text())
    man["versions"]["tvm"] = "0.26.0"
    (tmp_path / "ver" / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(lrqc.LrqcError, match=r"built with other versions: tvm 0.26.0"):
        lrqc.load_kernel(tmp_path / "ver")
    with pytest.raises(lrqc.LrqcError, match="no manifest.json"):
        lrqc.load_kernel(tmp_path)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="an x86 host")
def test_kernels_for_a_cpu_this_one_is_not_refuse_to_run(monkeypatch):
    """lrqc.compile for another CPU (cross-compiling, or features this CPU lacks) gives a
    kernel whose pack and calls are LrqcErrors saying so, before any of its code runs (an
    instruction this CPU lacks would kill the process); its stage texts are still there."""
    s = scheme("int8 per_channel", "int8 per_channel")
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((4, 64)).astype(np.float32), rng.standard_normal((64, 16))
    arm = lrqc.compile(s, 4, 16, 64, target="aarch64")
    for call in (lambda: arm.pack(B), lambda: arm.run(A, B)):
        with pytest.raises(lrqc.LrqcError, match="this kernel is aarch64-linux-gnu code, which "
                           r"this CPU cannot run: compile it for this machine \(target=None\)"):
            call()
    from lrqc.backend.target import Target

    monkeypatch.setattr(Target, "host_lacks", lambda self: ["amx-int8"])  # as on a CPU without
    k = lrqc.compile(s, 4, 16, 64, target="x86-avx512-vnni")
    with pytest.raises(lrqc.LrqcError, match="compiled for a CPU with amx-int8, which this CPU "
                       "lacks"):
        k.pack(B)


def test_numpy_integer_sizes_compile_as_python_ints(tmp_path):
    """Sizes given as numpy's fixed-width integers (an array's shape arithmetic, a config read
    as int16) compile the same kernel as Python ints: no overflow in the plan's arithmetic."""
    s = scheme("int8 per_channel", "int4 per_channel")
    for M, N, K in ((np.int8(7), np.uint8(250), np.uint8(129)), (np.int16(3), np.int16(40),
                                                                  np.uint16(300))):
        k = lrqc.compile(s, M, N, K)
        assert k.dims == (str(int(M)), int(N), int(K)) and type(k.plan.kp) is int
        check(k, s, *data(int(M), int(N), int(K), seed=int(N)))
    with pytest.raises(lrqc.LrqcError):
        lrqc.compile(s, 4, np.float32(16), 64)
    man = lrqc.door.build_artifact(s, np.int16(5), np.uint8(200), np.int8(100), tmp_path / "a")
    assert man["dims"] == {"M": 5, "N": 200, "K": 100}
    check(lrqc.load_kernel(tmp_path / "a"), s, *data(5, 200, 100, seed=2))


@pytest.mark.parametrize("a,b", [
    ("int8 per_channel + sparse(threshold=0.9)", "int8 per_channel + sparse(threshold=0.9)"),
    ("int8 per_tensor + lowrank(rank=4)", "int4 per_channel + lowrank(rank=4)"),
    ("int8 per_channel + dense(int8)", "int4 per_channel + dense(int4)"),
    ("e2m1 per_block(32, scale=e8m0)", "e2m1 per_block(32, scale=e8m0)"),
    ("float16", "int4 per_channel"),
    ("e4m3 per_channel", "float16"),
    ("int8 per_channel", "int8 per_channel + lowrank(rank=2, method=svd)"),
])
def test_adopt_takes_the_arrays_its_own_pack_made(a, b):
    """adopt takes the arrays the kernel's own pack made, in every layout: residual terms, MX
    blocks, float operands and the 16-bit path included."""
    s = scheme(a, b)
    k = lrqc.compile(s, 16, 48, 64)
    A, B = data(16, 48, 64, seed=4)
    P = k.pack(B)
    np.testing.assert_array_equal(k(A, k.adopt(P.arrays)), k(A, P))


def test_misused_kernel_methods_are_lrqc_errors():
    s = scheme("int8 per_channel", "int8 per_channel")
    k = lrqc.compile(s, 4, 16, 64)
    A = np.ones((4, 64), np.float32)
    P = k.pack(np.ones((64, 16)))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(lrqc.LrqcError, match="repeat must be a positive int"):
            k.stage_times(A, P, repeat=bad)
    assert set(k.stage_times(A, P, repeat=1)) >= {"quantize_a"}
    assert set(k.stage_times(A, P, repeat=np.int64(2))) >= {"quantize_a"}
    bias = np.arange(16.0)  # pack(B, bias) as the API documents it: bias second
    np.testing.assert_allclose(k(A, k.pack(np.ones((64, 16)), bias)), k(A, P) + bias, rtol=1e-6)


def test_adopt_takes_only_arrays_that_pack_made_for_its_fingerprint():
    """adopt: arrays pack() made, of this kernel or one with the same fingerprint (another
    bucket range, other threads); never arrays of another scheme, even laid out alike (an
    int4 kernel that ran int8 codes gave C off by 4x), nor arrays built by hand (a new
    object). It trusts what the arrays hold: changed in place after pack, they are not
    detected (docs/api.md)."""
    from dataclasses import replace

    s = scheme("int8 per_channel", "int8 per_channel")
    k, twin = lrqc.compile(s, 4, 16, 64), lrqc.compile(s, 4, 16, 64, threads="tvm")
    A, B = data(4, 16, 64, seed=4)
    P = k.pack(B)
    np.testing.assert_array_equal(k(A, k.adopt(P.arrays)), k(A, P))
    np.testing.assert_array_equal(twin(A, twin.adopt(P.arrays)), k(A, P))
    floor = lrqc.compile(scheme("int8 per_channel", "int8 per_channel round=floor"), 4, 16, 64)
    with pytest.raises(lrqc.LrqcError, match="packed: made for another kernel: .*round=floor"):
        k.adopt(floor.pack(B).arrays)  # the same layout, other codes
    for arrays in ({}, replace(P.arrays, sb=P.arrays.sb * 2)):
        with pytest.raises(lrqc.LrqcError, match="adopt: expected packed.arrays of a packed "
                           "operand that pack\\(\\) made"):
            k.adopt(arrays)


def test_chains_refuse_adopt_and_past_float32_warn_nothing():
    """LRAMM's chain: adopt is an LrqcError, schedules a dict, and a row of A near float32's
    largest value is refused with no numpy warning on the way (its U leaves float32); the same
    for LPLR's glue (A times a nearly constant left factor) and a static: a kernel's bias."""
    import warnings

    from ..conftest import ROOT

    s = lrqc.load_schemes(ROOT / "examples/lramm.lrq")["lramm_r64"]
    chain = lrqc.compile(s, 64, 64, 128)
    A, B = data(64, 64, 128, seed=6)
    P = chain.pack(B)
    with pytest.raises(lrqc.LrqcError, match="adopt: a chain's packed operand"):
        chain.adopt(P.parts[0].arrays)
    assert isinstance(chain.schedules, dict)
    A[3] = 3e38
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(lrqc.LrqcError):
            chain(A, P)
    # LPLR with an integer left factor: A L past float32 in the chain's glue
    import math

    s = lrqc.load_schemes(ROOT / "examples/lplr.lrq")["lplr_w_a8"]
    lplr = lrqc.compile(s, 4, 128, 128)
    S = np.random.default_rng(s.b.seed).standard_normal((128, s.b.rank)) / math.sqrt(s.b.rank)
    v = S @ np.linalg.solve(S.T @ S, np.ones(s.b.rank))  # vᵀ S = 1: a nearly constant L
    P = lplr.pack((100.0 * np.outer(np.ones(128), v)).astype(np.float32))
    A = np.zeros((4, 128), np.float32)
    A[0] = 1e35
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(lrqc.LrqcError, match="its product with LPLR's left factor L leaves"):
            lplr(A, P)
        # static: a with a bias: C + bias past float32
        t = lrqc.parse_schemes("scheme t {\n a: int8 per_channel\n b: int8 per_channel\n "
                               "static: a\n}")["t"]
        k = lrqc.compile(t, 4, 16, 32)
        A, B = np.zeros((4, 32), np.float32), np.zeros((32, 16), np.float32)
        A[0, 0], B[0, 0] = 1e19, 3e19
        with pytest.raises(lrqc.LrqcError):
            k.run(A, B, bias=np.full(16, 3e38))


def test_cross_compile_writes_a_tar(tmp_path):
    from lrqc.pipeline.export import build_artifact

    man = build_artifact(scheme("int8 per_channel", "int4 per_channel"), 4, 16, 64,
                         tmp_path / "arm", target="aarch64")
    assert man["lib"] == "lib.tar" and man["cross_compiled"]
    assert (tmp_path / "arm/lib.tar").stat().st_size


@pytest.mark.parametrize("a,b,steps", [
    ("int8 per_tensor round=floor + lowrank(rank=2, method=rsvd, oversample=2)",
     "int8 per_channel", ["copy_a", "quantize_a", "compensate", "gemm"]),
    ("int8 per_channel round=trunc + sparse(threshold=0.9)",  # no compensation step
     "int8 per_channel round=trunc + sparse(threshold=0.9)",
     ["copy_a", "quantize_a", "gemm", "sparse"])])
def test_cli_bench_stages_times_each_step_of_a_call(capsys, tmp_path, a, b, steps):
    """lrqc bench --stages: each step the scheme's call runs, with what it does."""
    from lrqc.cli import main

    src = tmp_path / "s.lrq"
    src.write_text(f"scheme s {{\n a: {a}\n b: {b}\n}}\n")
    assert main(["bench", str(src), "--dims", "M=32,N=64,K=64", "--repeat", "2",
                 "--stages"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("steps of a call, each timed on its own (median of 2 runs, ms):"):]
    rows = [line.split() for line in table.splitlines()[1:] if line.startswith("  ")]
    assert [r[0] for r in rows] == steps and all(float(r[1]) >= 0 for r in rows)
    assert ("A's low-rank factors" in table) == ("compensate" in steps)


def test_cli_build_warns_off_the_fast_path_and_bench_prints(capsys, tmp_path):
    from lrqc.cli import main

    src = tmp_path / "s.lrq"
    src.write_text("scheme p {\n a: int8 per_channel\n b: uint8 per_channel\n}\n")  # B's
    #   codes stored -128..127: vpmaddwd on widened bytes
    assert main(["build", str(src), "--dims", "M=4,N=16,K=64", "--target", "x86-avx2",
                 "-o", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "schedule rule: x86_avx2" in out and "WARNING: not the fast path" in out
    assert main(["bench", str(src), "--dims", "M=32,N=32,K=64", "--repeat", "3"]) == 0
    out = capsys.readouterr().out
    assert "numpy float32" in out and "lrqc p [" in out and "GOPS" in out
    assert "steps of a call" not in out
    assert main(["build", str(src), "--dims", "M=4,N=16,K=64", "--target", "sparc",
                 "-o", str(tmp_path / "x")]) == 1
    assert "unknown target 'sparc'" in capsys.readouterr().err
    assert main(["build", str(src), "--dims", "M=9..2,N=16,K=64", "-o", str(tmp_path / "y")]) == 1
    assert "need 1 <= lo <= hi" in capsys.readouterr().err
    assert main(["explain", str(src), "--dims", "M=1..8,N=16,K=64", "--emit", "plan"]) == 0
    assert "plan p @ M=4:" in capsys.readouterr().out  # explain takes M ranges, like build
    assert main(["explain", str(src), "--dims", "M=x,N=16,K=64"]) == 1
    assert "M must be a positive integer or lo..hi, got 'x'" in capsys.readouterr().err
