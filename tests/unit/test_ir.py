"""IR: every op kind in every rule table, verify catches broken programs, the pack/run split,
the cost model, and golden text of `explain` for every example (LRQC_UPDATE_GOLDEN=1 rewrites)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sympy

import lrqc
from lrqc.explain import explain
from lrqc.ir import OP_KINDS, IRError, lower_ast, verify
from lrqc.ir import nodes as ir
from lrqc.passes import estimate_cost, run_passes
from lrqc.passes.cost import COST_RULES
from lrqc.passes.shapes import SHAPE_RULES, K, M, N
from lrqc.reference.interp import EVAL_RULES

GOLDEN = Path(__file__).parent.parent / "golden"


def test_every_op_kind_has_every_rule():
    kinds = {k.kind for k in OP_KINDS}
    assert len(kinds) == len(OP_KINDS) == 10
    for table in (SHAPE_RULES, COST_RULES, EVAL_RULES):
        assert set(table) == kinds


def test_verify_rejects_broken_programs():
    ok = ir.Program("p", (("A", "f64"), ("B", "f64")), (ir.MatMul(("%0",), ("A", "B")),), "%0")
    verify(ok)
    cases = [
        ((ir.MatMul(("%0",), ("A", "%9")),), "%0", "before it is defined"),
        ((ir.MatMul(("%0",), ("A", "B")), ir.Add(("%0",), ("%0", "%0"))), "%0", "assigned twice"),
        ((ir.MatMul(("%0",), ("A",)),), "%0", "expects 2 args"),
        ((ir.MatMul(("%0",), ("A", "B")),), "%5", "output %5 is not defined"),
    ]
    for ops, out, msg in cases:
        with pytest.raises(IRError, match=msg):
            verify(ir.Program("p", ok.inputs, ops, out))
    from lrqc.passes import infer_shapes

    bad = infer_shapes(ir.Program("p", ok.inputs, (ir.MatMul(("%0",), ("B", "B")),), "%0"))
    with pytest.raises(IRError, match="inner dims differ"):
        verify(bad)


def _program(text):
    return run_passes(lower_ast(lrqc.parse_schemes(text)["s"]))


def test_pack_run_split_follows_static():
    text = ("scheme s {{ a: int8 + lowrank(rank=2)\n b: int4 per_channel + lowrank(rank=2)\n "
            "static: {} }}")
    p = _program(text.format("b"))
    pack = [op for op in p.ops if op.stage == "pack"]
    run = [op for op in p.ops if op.stage == "run"]
    assert [op.kind for op in pack if op.kind != "pack"] == ["quantize", "residual", "lowrank"]
    assert all("B" not in op.args for op in run)  # B reaches the run stage only packed
    assert all(op.args[0] != "A" for op in pack)
    p = _program(text.format("a"))
    assert [op.args for op in p.ops if op.stage == "pack" and op.kind == "quantize"] == [("A",)]
    p = _program(text.format("none"))
    assert all(op.stage == "run" for op in p.ops)


def test_cost_of_a_plain_int_gemm():
    p = _program("scheme s { a: int8 per_channel\n b: int4 per_channel }")
    table = estimate_cost(p)
    gemm = [r for r in table.rows if r.kind == "int_matmul"][0]
    assert sympy.simplify(gemm.flops - 2 * M * N * K) == 0
    assert sympy.simplify(gemm.bytes_read - (M * K + K * N / 2 + 4 * M + 4 * N)) == 0
    flops, _, _ = table.total("run")
    assert sympy.Poly(flops, M, N, K).total_degree() == 3


def test_lowrank_cost_is_linear_in_each_dim():
    p = _program("scheme s { a: int8 + lowrank(rank=16)\n b: int8 + lowrank(rank=16) }")
    extra = [r for r in estimate_cost(p).rows if r.kind in ("matmul", "lowrank")]
    for r in extra:  # O(r (MK + KN + MN)), never O(MNK)
        assert sympy.Poly(r.flops, M, N, K).total_degree() <= 2, r


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[2].glob("examples/*.lrq")),
                         ids=lambda p: p.stem)
def test_explain_golden(path):
    schemes = lrqc.load_schemes(path)
    text = "\n\n".join(explain(s) + "\n\n" + explain(s, (256, 4096, 4096))
                       for s in schemes.values())
    golden = GOLDEN / f"{path.stem}.txt"
    if os.environ.get("LRQC_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text + "\n")
    assert golden.exists(), "run with LRQC_UPDATE_GOLDEN=1 to create the golden files"
    assert text + "\n" == golden.read_text()
