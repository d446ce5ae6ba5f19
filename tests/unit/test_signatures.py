"""The parameters of the compiled functions (lrqc.plan.signature), without TVM: their names for
representative plans, the packed operand's arrays under the names the signatures use, the
manifest's documented layouts; and, where TVM is installed, that the te stage refuses a
function whose parameters differ from its signature and the runtime one it cannot bind."""

from __future__ import annotations

import numpy as np
import pytest

import lrqc
from lrqc.ir import lower_ast
from lrqc.passes import run_passes
from lrqc.plan import layout, names
from lrqc.plan import signature as sig
from lrqc.plan.lower import lower_program
from lrqc.plan.model import KernelPlan
from lrqc.plan.verify import PlanError
from lrqc.runtime.manifest import LAYOUTS

from ..conftest import EXAMPLES

EXAMPLE_SCHEMES = {name: s for path in EXAMPLES for name, s in lrqc.load_schemes(path).items()}


def plan_of(text: str, M: int = 16, N: int = 32, K: int = 64) -> KernelPlan:
    """The largest bucket's plan of the scheme `text` (its operand lines)."""
    (s,) = lrqc.parse_schemes("scheme t {\n" + text + "\n}\n").values()
    return lower_program(run_passes(lower_ast(s)), M, N, K)[0].plans[-1]


def example_plan(name: str) -> KernelPlan:
    return lower_program(run_passes(lower_ast(EXAMPLE_SCHEMES[name])), 64, 128, 256)[0].plans[-1]


INT8 = "a: int8 per_channel\n b: int8 per_channel"
ZERO_B = "a: int8 per_vector(32)\n b: uint4 per_vector(32)"
STOCHASTIC = "a: int8 per_channel round=stochastic\n b: int8 per_channel"
HALF = "a: float16\n b: e4m3 per_channel"
FLOAT32 = "a: float32\n b: int4 per_vector(32)"
FLOAT_ZERO = "a: float32\n b: uint4 per_channel"
FLOAT_F32 = "a: float32\n b: e3m4 per_channel"
FLOAT_LOWRANK = "a: float16\n b: int4 per_channel + lowrank(rank=4)"
SVD_A = "a: int8 per_channel + lowrank(rank=2, method=svd)\n b: int8 per_channel"
RSVD_A = "a: int8 per_channel + lowrank(rank=2, method=rsvd)\n b: int8 per_channel"

GEMM = ("Aq", "Bp", "sa", "zc", "sb", "cs")


@pytest.mark.parametrize("text,fn,want", [
    (INT8, "quantize_a", ("A", "a_codes", "sa", "zc")),
    (INT8, "gemm", GEMM + ("bias", "C", "m_rows")),
    (INT8, "int_acc", ("Aq", "Bp", "zc", "cs", "C", "m_rows")),
    (ZERO_B, "quantize_a", ("A", "a_codes", "sa", "zc", "a_rowsum")),
    # two K groups: the sum starts from it
    (ZERO_B, "gemm", GEMM + ("ra", "zb", "bias", "C", "m_rows")),
    (ZERO_B, "int_acc", ("Aq", "Bp", "zc", "cs", "ra", "zb", "C", "m_rows")),
    (STOCHASTIC, "quantize_a", ("A", "U", "a_codes", "sa", "zc")),
    (HALF, "quantize_a", ("A", "a_float", "a_row_scale")),
    (HALF, "gemm", ("Af", "Bf", "saf", "sbf", "bias", "C", "m_rows")),
    (FLOAT32, "quantize_a", ("A", "a_float")),
    (FLOAT32, "gemm", ("Af", "Bp", "sbf", "bias", "C", "m_rows")),  # weight-only: B's codes
    (FLOAT_ZERO, "gemm", ("Af", "Bp", "sbf", "zbf", "bias", "C", "m_rows")),
    (FLOAT_F32, "gemm", ("Af", "Bf", "bias", "C", "m_rows")),
    (FLOAT_LOWRANK, "gemm", ("Af", "Bf", "saf", "sbf", "Ub", "Wb", "bias", "C",
                             "m_rows")),
    (FLOAT_LOWRANK, "lowrank_u", ("Af", "saf", "LBt", "lowrank_u")),
    (SVD_A, "quantize_a", ("A", "a_codes", "sa_all", "zc_all", "a_resid", "a_resid_top")),
    (SVD_A, "gemm", GEMM + ("Ua", "Wa", "bias", "C", "m_rows")),
    (RSVD_A, "resid_tq", ("Qt", "a_resid", "resid_tq")),
    (RSVD_A, "resid_z", ("a_resid", "Zt", "resid_z")),
])
def test_parameters_of_representative_plans(text, fn, want):
    assert sig.params(plan_of(text), fn) == want


def test_parameters_of_the_compensated_examples():
    p = example_plan("lrqmm_int8")  # sketches of both residuals
    assert sig.params(p, "quantize_a") == ("A", "rows", "Omega_t", "a_codes", "sa_all",
                                           "zc_all", "a_resid", "a_resid_top", "a_sketch",
                                           "a_sketch_rt")
    assert sig.params(p, "sketch_ab") == ("a_resid", "sketch_u", "rows", "sketch_a",
                                          "sketch_b")
    assert "sketch_ab" in sig.cpu_functions(p) and "sketch_ab" not in sig.functions(p)
    assert sig.params(p, "gemm") == GEMM + ("Ua", "Wa", "Ub", "Wb", "bias", "C", "m_rows")
    assert sig.params(p, "lowrank_u") == ("Aq", "sa", "zc", "LBt", "lowrank_u")
    p = example_plan("sparse_int8")  # B's sparse term (side a) first, then A's (side b)
    assert [sp.side for sp in p.sparse] == ["a", "b"]
    assert sig.params(p, "quantize_a") == ("A", "rows", "a_codes", "sa_all", "zc_all", "dens",
                                           "a_sparse_codes0", "sa_s0", "a_res_t1", "sa_r0")
    assert sig.params(p, "sparse0") == ("S", "ss", "D", "sd", "C")
    assert sig.params(p, "sparse1") == ("Rt", "sr", "ptr", "idx", "val", "ss", "C")


def test_functions_of_a_plan_and_unknown_functions():
    assert sig.functions(plan_of(INT8)) == ("quantize_a", "gemm", "int_acc")
    assert sig.functions(plan_of(FLOAT_LOWRANK)) == ("quantize_a", "gemm", "lowrank_u")
    assert sig.functions(example_plan("sparse_int8")) == ("quantize_a", "gemm", "int_acc",
                                                          "sparse0", "sparse1")
    exact_w = ("exact_w", "exact_w_bf16", "exact_w_f16")  # B in float32, or 16 bits
    assert sig.cpu_functions(plan_of(RSVD_A)) == (*exact_w, "resid_tq", "resid_z")
    assert sig.cpu_functions(plan_of(SVD_A)) == exact_w  # no products with a basis
    for text, fn in [(HALF, "int_acc"), (INT8, "lowrank_u"), (INT8, "sparse0"), (INT8, "x"),
                     (SVD_A, "resid_tq"), (FLOAT_LOWRANK, "resid_z")]:
        with pytest.raises(PlanError, match=f"no function '{fn}'"):
            sig.params(plan_of(text), fn)


def test_check_params_names_the_function_and_both_lists():
    p = plan_of(INT8)
    sig.check_params(p, "gemm", list(GEMM + ("bias", "C", "m_rows")))
    sig.check_params(p, "gemm", list(GEMM + ("bias", "C")), te=True)  # before m_rows is added
    with pytest.raises(PlanError, match=r"its signature says \[.*'C', 'm_rows'\]"):
        sig.check_params(p, "gemm", list(GEMM + ("bias", "C")))
    have = ["Aq", "Bp", "sa", "zc", "cs", "sb", "bias", "C"]
    with pytest.raises(PlanError, match=r"function 'gemm' has parameters \['Aq', 'Bp', 'sa', "
                       r"'zc', 'cs', 'sb', 'bias', 'C'\], its signature says \['Aq', 'Bp', "
                       r"'sa', 'zc', 'sb', 'cs', 'bias', 'C'\]"):
        sig.check_params(p, "gemm", have, te=True)


PACKED_PLANS = [INT8, ZERO_B, HALF, FLOAT32, FLOAT_LOWRANK, SVD_A, "lrqmm_int8", "sparse_int8",
                "full_int8", "vsquant_w4a4", "mxfp4"]


@pytest.mark.parametrize("which", PACKED_PLANS)
def test_pack_gives_every_static_parameter_by_name(which):
    """Each packed parameter of each function is an array of pack()'s result under that name
    (the runtime binds the rest to the bucket's own buffers)."""
    p = example_plan(which) if which in EXAMPLE_SCHEMES else plan_of(which)
    B = np.random.default_rng(0).standard_normal((p.k, p.n))
    packed = layout.pack(p, B)
    have = dict(packed.params())
    assert layout.PARAM_NAMES >= have.keys()
    for fn in sig.functions(p):
        j = sig.sparse_index(fn)
        if j is None:
            need = {n for n in sig.params(p, fn) if n in layout.PARAM_NAMES}
            assert need <= have.keys(), (fn, need - have.keys())
        else:  # B's residual codes serve both formulations; B's copy, the one pack chose
            side_a = p.sparse[j].side == "a"
            static = sig.SPARSE_A_STATIC if side_a else sig.SPARSE_B_STATIC
            dense = sig.DENSE_A_STATIC if side_a else sig.DENSE_B_STATIC
            has_dense = sig.dense_name(j) in sig.dense_functions(p)
            got = set(dict(packed.sparse[j].params()))
            if side_a:
                assert got == set(static) | (set(dense) if has_dense else set())
            else:
                assert got in ({*static}, {*dense} if has_dense else {*static})
            assert set(static) <= set(sig.params(p, fn))
            if has_dense:
                assert set(dense) <= set(sig.params(p, sig.dense_name(j)))
    assert (packed.b32t is not None) == bool(p.rank_a)
    if sig.w_exact(p):  # Bᵀ: the parameter of exact_w (CPU targets)
        assert set(sig.params(p, "exact_w")) & layout.PARAM_NAMES == {"Bt"} <= have.keys()
    assert len(packed.sparse) == len(p.sparse)


def test_the_manifest_documents_parameter_names():
    """LAYOUTS (manifest.json's "layouts") names the packed arrays and A's buffers as the
    compiled functions' parameters."""
    packed = {k for k in LAYOUTS if k not in ("A", "Aq")}
    assert packed <= layout.PARAM_NAMES
    p = plan_of(ZERO_B)
    assert "A" in sig.params(p, names.FN_QUANTIZE) and "Aq" in sig.params(p, names.FN_GEMM)
