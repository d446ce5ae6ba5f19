"""The language: the shipped examples parse; every kind of bad input is a located, clear error."""

from __future__ import annotations

import re

import pytest

import lrqc
from lrqc.frontend.bind import bind_dims
from lrqc.frontend.model import FloatOperand, LowRank, LplrOperand, QuantOperand, Sparse
from lrqc.frontend.unparse import unparse

from .conftest import EXAMPLES, ROOT


def test_examples_parse_with_expected_meaning(all_examples):
    assert set(all_examples) == {"lrqmm_int8", "lrqmm_w4a8_r16", "vsquant_w4a4", "full_int8",
                                 "sparse_int8", "mxfp4", "lplr_w", "lplr_w_a8", "lramm_r64"}
    s = all_examples["lrqmm_int8"]
    assert s.a.quant.round == "floor" and s.a.quant.granularity == "per_tensor"
    assert s.b.residuals == (LowRank(rank=1, method="sketch", power_iters=1, seed=0),)
    v = all_examples["vsquant_w4a4"]
    assert (v.a.quant.fmt, v.a.quant.vector, v.a.quant.scale) == ("uint4", 16, "uint6")
    assert v.a.quant.calibrate == "minmax" and v.b.quant.calibrate == "maxabs"
    sp = all_examples["sparse_int8"].a.residuals[0]
    assert isinstance(sp, Sparse) and (sp.threshold, sp.max_density) == (0.5, 0.35)
    assert sp.quant.granularity == "per_tensor" and sp.quant.round == "trunc"
    mx = all_examples["mxfp4"].b.quant
    assert (mx.fmt, mx.granularity, mx.vector, mx.scale) == ("e2m1", "per_block", 32, "e8m0")
    lp = all_examples["lplr_w"]
    assert isinstance(lp.a, FloatOperand) and isinstance(lp.b, LplrOperand)
    assert (lp.b.rank, lp.b.left_bits, lp.b.right_bits) == (83, 4, 8)
    assert all_examples["lramm_r64"].product.bits == (8, 8, 8)
    assert isinstance(all_examples["full_int8"].a, QuantOperand)


def test_every_example_file_names_its_paper():
    for path in EXAMPLES:
        first = path.read_text().splitlines()[0]
        assert first.startswith("#") and len(first) > 10, path


@pytest.mark.parametrize("name", ["lrqmm_int8", "lrqmm_w4a8_r16", "vsquant_w4a4", "full_int8",
                                  "sparse_int8", "mxfp4", "lplr_w", "lplr_w_a8", "lramm_r64"])
def test_unparse_round_trips(all_examples, name):
    s = all_examples[name]
    assert lrqc.parse_schemes(unparse(s))[name] == s


def test_file_order_is_kept():
    text = "scheme z { a: int8\n b: int8 }\nscheme a { a: int4\n b: int4 }\n"
    assert list(lrqc.parse_schemes(text)) == ["z", "a"]


def _error(text: str) -> lrqc.SchemeError:
    with pytest.raises(lrqc.SchemeError) as info:
        lrqc.parse_schemes(text, "bad.lrq")
    return info.value


def _wrap(a: str, b: str = "int8") -> str:
    return f"scheme s {{\n    a: {a}\n    b: {b}\n}}\n"


# (scheme text, line, the text the caret must point at, a regex of the message, suggested word)
BAD = [
    (_wrap("int9 per_tensor"), 2, "int9", r"bit width 9 .* out of range", None),
    (_wrap("int0"), 2, "int0", r"bit width 0 .* out of range", None),
    (_wrap("int8 per_tensr"), 2, "per_tensr", r"expected a granularity", "per_tensor"),
    (_wrap("int8 per_tensor round=flor"), 2, "flor", r"unknown round 'flor'", "floor"),
    (_wrap("int8 + lowrank(rank=0)"), 2, "0)", r"rank must be >= 1, found 0", None),
    (_wrap("int8 + lowrank(rnk=2)"), 2, "rnk", r"no parameter 'rnk'", "rank"),
    (_wrap("int8 + lowrank(rank=2, method=sketch)"), 2, "lowrank", r"rank-1", None),
    (_wrap("int8 + sparse(threshold=-0.5)"), 2, "-0.5", r"threshold must be >= 0", None),
    (_wrap("int8 + sparse(max_density=1.5)"), 2, "1.5", r"max_density must be <= 1", None),
    (_wrap("float32 + lowrank(rank=2)"), 2, "lowrank", r"residual terms need a quantized operand", None),
    (_wrap("int8 lowrank(rank=2)"), 2, "lowrank", r"added with '\+'", None),
    (_wrap("int8 per_vector"), 2, "per_vector", r"needs a vector length", None),
    (_wrap("int8 per_vector(0)"), 2, "0)", r"vector must be >= 1", None),
    (_wrap("int8 per_vector(16, scale=uint6 per_chanel)"), 2, "per_chanel", r"per_channel",
     "per_channel"),
    (_wrap("int4 per_block(32)"), 2, "int4", r"per_block .* must be int8 or", None),
    (_wrap("e2m1 per_vector(16)"), 2, "e2m1", r"per_vector needs an integer", None),
    (_wrap("e2m1 per_block(32, scale=e8m1)"), 2, "e8m1", r"e8m0", "e8m0"),
    (_wrap("int8 per_tensor per_channel"), 2, "per_channel", r"granularity given twice", None),
    (_wrap("int8 round=floor round=trunc"), 2, "round=trunc", r"duplicate option 'round='", None),
    (_wrap("int8 + lowrank(rank=1, rank=2)"), 2, "rank=2", r"duplicate parameter 'rank'", None),
    (_wrap("int8", "lplr(rank=8, left=int12)"), 3, "int12", r"bit width 12", None),
    (_wrap("lplr(rank=8)"), 2, "lplr", r"not static", None),
    (_wrap("int8", "lplr(left=int4)"), 3, "lplr", r"needs rank=", None),
    (_wrap("itn8"), 2, "itn8", r"expected an element format", "int8"),
    ("scheme s {\n    a: int8\n    a: int4\n    b: int8\n}\n", 3, "a:", r"duplicate entry 'a:'", None),
    ("scheme s {\n    a: int8\n    c: int8\n}\n", 3, "c:", r"unknown entry 'c:'", None),
    ("scheme s {\n    a: int8\n    stattic: a\n    b: int8\n}\n", 3, "stattic", r"unknown entry",
     "static"),
    ("scheme s {\n    a: int8\n}\n", 1, "s {", r"no 'b:' entry", None),
    ("scheme s {\n    product: lowrank(rank=4)\n    a: int8\n}\n", 3, "a:", r"replaces the operands",
     None),
    ("scheme s {\n    a: int8\n    b: int8\n    static: nope\n}\n", 4, "nope", r"unknown static", "none"),
    ("scheme s {\n    a: int8 $\n}\n", 2, "$", r"unexpected character '\$'", None),
    ("scheme s {\n    a: int8 +\n}\n", 3, "}", r"unexpected '\}'", None),
    ("scheme s {\n    a: int8\n", 2, "", r"unexpected end of file", None),
    ("scheme s { a: int8\n b: int8 }\nscheme s { a: int8\n b: int8 }\n", 3, "s {",
     r"duplicate scheme name 's'", None),
]


@pytest.mark.parametrize("text,line,marker,pattern,hint", BAD, ids=[b[3][:30] for b in BAD])
def test_bad_scheme_is_a_located_error(text, line, marker, pattern, hint):
    err = _error(text)
    rendered = str(err)
    head = rendered.splitlines()[0]
    src = text.splitlines()[line - 1]
    col = src.index(marker) + 1 if marker else len(src) + 1
    assert head.startswith(f"bad.lrq:{line}:{col}: error: "), rendered
    assert re.search(pattern, head), rendered
    assert err.hint == hint
    if hint:
        assert f"did you mean '{hint}'?" in head
    src_line, caret_line = rendered.splitlines()[1:3]
    assert src_line == "    " + src
    assert caret_line.index("^") - 4 == col - 1  # caret under the column (4 spaces of indent)


def _scheme(a: str, b: str = "int8") -> lrqc.Scheme:
    return lrqc.parse_schemes(_wrap(a, b), "dims.lrq")["s"]


def test_rank_above_min_dims_is_an_error():
    s = _scheme("int8 + lowrank(rank=20)")
    with pytest.raises(lrqc.SchemeError, match=r"rank 20 of 'a' exceeds min\(M, K\) = 16") as info:
        bind_dims(s, 16, 64, 64)
    assert info.value.span.line == 2 and info.value.span.column == 15
    s = _scheme("int8", "int8 + lowrank(rank=20)")
    with pytest.raises(lrqc.SchemeError, match=r"min\(K, N\) = 8"):
        bind_dims(s, 64, 8, 64)
    assert bind_dims(s, 64, 20, 64) == []


def test_vector_not_dividing_k_pads_or_errors():
    notes = bind_dims(_scheme("int8 per_vector(16)"), 4, 4, 100)
    assert notes == ["a: K=100 is zero-padded to 112 for per_vector(16)"]
    with pytest.raises(lrqc.SchemeError, match=r"needs K divisible by 16, K=100.*pad=true"):
        bind_dims(_scheme("int8 per_vector(16) pad=false"), 4, 4, 100)
    assert bind_dims(_scheme("int8 per_vector(16) pad=false"), 4, 4, 96) == []


def test_errors_reach_the_reference_api_too():
    import numpy as np

    s = _scheme("int8 + lowrank(rank=9)")
    with pytest.raises(lrqc.SchemeError, match="exceeds"):
        lrqc.reference.matmul(s, np.ones((8, 8)), np.ones((8, 8)))


def test_every_bit_width_and_format_is_expressible():
    for signed in ("", "u"):
        for bits in range(1, 9):
            s = _scheme(f"{signed}int{bits} per_channel")
            assert s.a.quant.bits == bits and s.a.quant.signed == (signed == "")
    for fmt in ("e5m2", "e4m3", "e3m2", "e2m3", "e2m1"):
        assert _scheme(f"{fmt} per_block(32, scale=e8m0)").a.quant.fmt == fmt
        assert _scheme(f"{fmt} per_tensor").a.quant.granularity == "per_tensor"
    for r in ("nearest", "nearest_away", "floor", "trunc", "stochastic"):
        assert _scheme(f"int8 round={r}").a.quant.round == r
    s = _scheme("int8 + sparse(threshold=0.3) + lowrank(rank=2, method=svd) + dense(int4 per_channel)")
    assert [type(t).__name__ for t in s.a.residuals] == ["Sparse", "LowRank", "Dense"]
    s = lrqc.parse_schemes("scheme s { a: int8\n b: int8\n static: none }")["s"]
    assert s.static == "none"
    s = lrqc.parse_schemes("scheme s { a: lplr(rank=4, method=dsvd, power_iters=1, "
                           "normalize_shift=true)\n b: int8\n static: a }")["s"]
    assert s.a.method == "dsvd" and s.a.normalize_shift


def test_load_schemes_missing_file_is_clear(tmp_path):
    with pytest.raises(lrqc.LrqcError, match="cannot read scheme file"):
        lrqc.load_schemes(tmp_path / "nope.lrq")


def test_grammar_is_the_only_syntax_source():
    py = "\n".join(p.read_text() for p in (ROOT / "lrqc").rglob("*.py"))
    assert "Lark(grammar_path()" in py and "%import" not in py
