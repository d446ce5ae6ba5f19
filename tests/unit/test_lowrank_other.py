"""lowrank(other=exact|packed) on a's term without compiling: the reference's two forms against
the formulas written out by hand, the IR and its interpreter, the cost notes of explain, and
the kernel plan's functions, parameters and packed arrays (no float copy of B for packed)."""

from __future__ import annotations

import numpy as np
import pytest

import lrqc
from lrqc.explain import explain
from lrqc.ir import lower_ast
from lrqc.passes import run_passes
from lrqc.plan import fingerprint, layout, names
from lrqc.plan import signature as sig
from lrqc.plan.lower import lower_program
from lrqc.plan.printer import print_plan
from lrqc.reference import matmul
from lrqc.reference.interp import interpret
from lrqc.reference.lowrank import factorize
from lrqc.reference.quant import quantize


def scheme(a: str, b: str, static: str = "b") -> lrqc.Scheme:
    return lrqc.parse_schemes(f"scheme t {{\n a: {a}\n b: {b}\n static: {static}\n}}")["t"]


def pair(b: str, rank: int = 3) -> tuple[lrqc.Scheme, lrqc.Scheme]:
    """(exact, packed) schemes with a's lowrank term of `rank`, weights b."""
    a = f"int8 per_channel + lowrank(rank={rank}"
    return scheme(a + ")", b), scheme(a + ", other=packed)", b)


def data(m: int = 24, n: int = 40, k: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, k)), rng.standard_normal((k, n))


def by_hand(s: lrqc.Scheme, A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, ...]:
    """(C0 + (A' L_B) F_Bᵀ, L_A, F_Aᵀ, B̂) of a scheme whose a is `int8 ... + lowrank` and b is a
    quantizer with at most a lowrank term and a dense term, in float64 from the definitions."""
    qa = quantize(A, s.a.quant, "a")
    Ad = qa.dequantize()
    ta = s.a.residuals[0]
    La, Fa = factorize(A - Ad, ta.method, ta.rank, oversample=ta.oversample,
                       power_iters=ta.power_iters, seed=ta.seed)
    Bd = quantize(B, s.b.quant, "b").dequantize()
    held, base, rest = Bd.copy(), Ad @ Bd, B - Bd
    for t in s.b.residuals:
        if isinstance(t, lrqc.frontend.model.LowRank):
            Lb, Fb = factorize(rest, t.method, t.rank, oversample=t.oversample,
                               power_iters=t.power_iters, seed=t.seed)
            approx = Lb @ Fb
            base = base + (Ad @ Lb) @ Fb
        else:
            approx = quantize(rest, t.quant, "b").dequantize()
            base = base + Ad @ approx
        held, rest = held + approx, rest - approx
    return base, La, Fa, held


@pytest.mark.parametrize("b", ["int4 per_channel", "int4 per_channel + lowrank(rank=2)",
                               "int8 per_vector(16) + dense(int4 per_channel) + lowrank(rank=2)"])
def test_packed_form_is_the_formula_with_b_as_held(b):
    exact, packed = pair(b)
    A, B = data()
    base, La, Fa, held = by_hand(packed, A, B)
    got = matmul(packed, A, B, exact=True)
    np.testing.assert_allclose(got, base + La @ (Fa @ held), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(matmul(exact, A, B, exact=True), base + La @ (Fa @ B),
                               rtol=1e-10, atol=1e-10)
    # the forms differ by L_A F_Aᵀ (B - B̂) ≈ R_A (B - B̂), a product of two residuals
    diff = matmul(exact, A, B, exact=True) - got
    np.testing.assert_allclose(diff, La @ Fa @ (B - held), rtol=1e-8, atol=1e-10)
    RA = A - quantize(A, packed.a.quant, "a").dequantize()
    assert 0 < np.linalg.norm(diff) <= np.linalg.norm(RA) * np.linalg.norm(B - held)
    assert np.linalg.norm(diff) < 0.05 * np.linalg.norm(A @ B)  # second order: small


def test_b_held_is_what_compress_reconstructs():
    _, packed = pair("int4 per_channel + lowrank(rank=2)")
    A, B = data(seed=1)
    _, _, _, held = by_hand(packed, A, B)
    np.testing.assert_allclose(lrqc.reference.compress(packed, B, "b"), held, rtol=1e-12)


@pytest.mark.parametrize("b", ["float32", "float16"])
def test_float_weights_are_held_as_they_are(b):
    exact, packed = pair(b)
    A, B = data(seed=2)
    np.testing.assert_array_equal(matmul(exact, A, B, exact=True),
                                  matmul(packed, A, B, exact=True))


@pytest.mark.parametrize("b", ["int4 per_channel + lowrank(rank=2)",
                               "uint4 per_vector(16) + sparse(int8) + lowrank(rank=2)",
                               "int8 per_channel + dense(int8)", "lplr(rank=8)"])
def test_ir_interpreter_agrees_with_reference(b):
    _, packed = pair(b, rank=4)
    A, B = data(seed=3)
    program = run_passes(lower_ast(packed))
    np.testing.assert_allclose(interpret(program, A, B), matmul(packed, A, B), rtol=2e-6,
                               atol=2e-5)


def test_ir_multiplies_b_codes_and_hands_no_float_b_to_the_run_stage():
    exact, packed = pair("int4 per_channel + lowrank(rank=2)")
    handed = {}
    for s in (exact, packed):
        p = run_passes(lower_ast(s))
        handed[s.a.residuals[0].other] = [op.args[0] for op in p.ops if op.kind == "pack"]
        types = dict(p.types)
        reads_codes = [op for op in p.ops if op.kind == "matmul" and op.stage == "run"
                       and any(types[x].quant is not None for x in op.args)]
        assert len(reads_codes) == (s.a.residuals[0].other == "packed")
    assert "B" in handed["exact"] and "B" not in handed["packed"]


def test_explain_says_what_each_form_reads_of_b():
    exact, packed = pair("int4 per_channel + lowrank(rank=2)")
    dims = (64, 256, 512)
    text = explain(exact, dims, emit=("cost",))
    assert "lowrank(other=exact): F_Aᵀ B reads the float32 B (4 bytes per weight: 524k" in text
    text = explain(packed, dims, emit=("cost", "formula"))
    assert "L_A·(F_Aᵀ·B̂)" in text
    assert ("lowrank(other=packed): F_Aᵀ B̂ reads B's codes as the kernel stores them (half a "
            "byte per weight: 65.5k per call, not 524k of float32 B)") in text
    assert "pack keeps no float copy of B" in text
    int8 = pair("int8 per_channel")[1]
    assert "(1 byte per weight: 131k per call" in explain(int8, dims, emit=("cost",))
    # symbolic sizes
    assert "(half a byte per weight: K*N/2 per call" in explain(packed, None, emit=("cost",))


def plan_of(s: lrqc.Scheme, M: int = 16, N: int = 32, K: int = 64):
    return lower_program(run_passes(lower_ast(s)), M, N, K)[0].plans[-1]


@pytest.mark.parametrize("b,want", [
    ("int8 per_channel", ("Fa", "Bp", "sb", "lowrank_w")),
    ("int4 per_channel + lowrank(rank=2)", ("Fa", "Bp", "sb", "lowrank_w")),
    ("uint4 per_vector(16) calibrate=minmax", ("Fa", "Bp", "sb", "zb", "lowrank_w")),
])
def test_packed_plans_compile_lowrank_w(b, want):
    exact, packed = pair(b)
    assert names.FN_LOWRANK_W not in sig.functions(plan_of(exact))
    p = plan_of(packed)
    assert p.lowrank_a is not None and p.lowrank_a.other == "packed" and sig.w_from_codes(p)
    assert names.FN_LOWRANK_W in sig.functions(p)
    assert sig.params(p, names.FN_LOWRANK_W) == want
    assert {"Ua", "Wa"} <= set(sig.params(p, names.FN_GEMM))  # the epilogue is unchanged
    assert "other=packed: B̂ from B's codes" in print_plan(p)
    assert "epilogue L_A (F_Aᵀ B)" in print_plan(plan_of(exact))


@pytest.mark.parametrize("b", ["int8 per_channel", "int4 per_vector(32) + lowrank(rank=2)",
                               "int8 per_channel + sparse(threshold=0.3)",
                               "int4 per_vector(32) + dense(int8 per_tensor)"])
def test_pack_keeps_no_float_copy_of_b_for_packed(b):
    exact, packed = pair(b)
    B = data(seed=4)[1]
    pe, pp = plan_of(exact, N=40), plan_of(packed, N=40)
    ae, ap = layout.pack(pe, B), layout.pack(pp, B)
    assert ae.b32t is not None and ap.b32t is None
    for name, arr in ap.params():  # every other array as the exact form packs it
        np.testing.assert_array_equal(arr, dict(ae.params())[name])
    assert dict(ap.params()).keys() == dict(ae.params()).keys() - {"Bt"}  # the float B
    need = {n for n in sig.params(pp, names.FN_LOWRANK_W) if n in layout.PARAM_NAMES}
    assert need <= dict(ap.params()).keys()


def test_canonical_text_and_fingerprint_tell_the_forms_apart():
    exact, packed = pair("int4 per_channel")
    fe, fp = (fingerprint.fingerprint(s, "64x40", "cpu") for s in (exact, packed))
    assert fe != fp
    assert "other=packed" in fingerprint.text_difference(fe["scheme"], fp["scheme"])
