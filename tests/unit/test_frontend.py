"""The language: the shipped examples parse; every kind of bad input is a located, clear error."""

from __future__ import annotations

import re

import pytest

import lrqc
from lrqc.frontend.bind import bind_dims
from lrqc.frontend.model import FloatOperand, LowRank, LplrOperand, QuantOperand, Sparse
from lrqc.frontend.unparse import unparse

from ..conftest import EXAMPLES, ROOT


def test_examples_parse_with_expected_meaning(all_examples):
    assert set(all_examples) == {"lrqmm_int8", "lrqmm_w4a8_r16", "vsquant_w4a4", "full_int8",
                                 "sparse_int8", "mxfp4", "lplr_w", "lplr_w_a8", "lramm_r64",
                                 "w3a8", "w5_float", "fixed_a", "e2m4", "mx_e2m2"}
    fx = all_examples["fixed_a"].a.quant
    assert (fx.fmt, fx.is_fixed, fx.fixed_scale, fx.round) == ("int8", True, 4.0 / 128,
                                                               "nearest_away")
    assert (all_examples["w3a8"].b.quant.bits, all_examples["w3a8"].b.quant.pack) == (3, "auto")
    assert all_examples["mx_e2m2"].a.quant.fmt == "e2m2"
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
                                  "sparse_int8", "mxfp4", "lplr_w", "lplr_w_a8", "lramm_r64",
                                  "w3a8", "w5_float", "fixed_a", "e2m4", "mx_e2m2"])
def test_unparse_round_trips(all_examples, name):
    s = all_examples[name]
    assert lrqc.parse_schemes(unparse(s))[name] == s


def test_lowrank_other_parses_defaults_and_round_trips():
    exact = lrqc.parse_schemes(_wrap("int8 + lowrank(rank=2)", "int4 + lowrank(rank=2)"))["s"]
    packed = lrqc.parse_schemes(_wrap("int8 + lowrank(rank=2, other=packed)",
                                      "int4 + lowrank(rank=2)"))["s"]
    assert exact.a.residuals[0].other == "exact" and exact.b.residuals[0].other == "exact"
    assert packed.a.residuals[0] == LowRank(rank=2, other="packed")
    assert packed != exact
    for s in (exact, packed):
        assert lrqc.parse_schemes(unparse(s))["s"] == s
    # the default is not written: canonical texts of schemes without the option are unchanged
    assert "other=" not in unparse(exact)
    assert "seed=0, other=packed)" in unparse(packed).splitlines()[1]
    explicit = lrqc.parse_schemes(_wrap("int8 + lowrank(rank=2, other=exact)",
                                        "int4 + lowrank(rank=2)"))["s"]
    assert explicit == exact and unparse(explicit) == unparse(exact)


@pytest.mark.parametrize("term,written", [
    ("dense(e2m1)", "dense(e2m1 calibrate=maxabs)"),
    ("dense(int8 per_block(32))", "dense(int8 per_block(32) calibrate=maxabs)"),
    ("sparse(e4m3, threshold=1)", "sparse(e4m3 calibrate=maxabs, threshold=1)")])
def test_a_term_takes_max_abs_where_the_operands_min_max_does_not_apply(term, written):
    """A dense or sparse term inherits its operand's calibration, except min-max where its own
    quantizer cannot take it (a minifloat, per_block): there max-abs, the only one those take;
    written out, calibrate=minmax stays an error."""
    s = lrqc.parse_schemes(_wrap("int8 per_channel", f"uint4 per_channel + {term}"))["s"]
    assert s.b.quant.calibrate == "minmax" and s.b.residuals[0].quant.calibrate == "maxabs"
    assert lrqc.parse_schemes(unparse(s))["s"] == s
    assert lrqc.parse_schemes(_wrap("int8 per_channel", f"uint4 per_channel + {written}"))["s"] \
        == s
    kept = lrqc.parse_schemes(_wrap("int8 per_channel", "uint4 per_channel + dense(uint2)"))["s"]
    assert kept.b.residuals[0].quant.calibrate == "minmax"  # where it applies: inherited
    with pytest.raises(lrqc.SchemeError, match="calibrate=minmax needs an integer format"):
        lrqc.parse_schemes(_wrap("int8", "uint4 per_channel + dense(e2m1 calibrate=minmax)"))


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
    (_wrap("float32 + lowrank(rank=2)"), 2, "lowrank", r"residual terms need a quantized operand",
     None),
    (_wrap("int8 lowrank(rank=2)"), 2, "lowrank", r"added with '\+'", None),
    (_wrap("int8 per_vector"), 2, "per_vector", r"needs a vector length", None),
    (_wrap("int8 per_vector(0)"), 2, "0)", r"vector must be >= 1", None),
    (_wrap("int8 per_vector(16, scale=uint6 per_chanel)"), 2, "per_chanel", r"per_channel",
     "per_channel"),
    (_wrap("int4 per_block(32)"), 2, "int4", r"per_block .* must be int8 or", None),
    (_wrap("e2m1 per_vector(16)"), 2, "e2m1", r"per_vector needs an integer", None),
    (_wrap("e4m3 calibrate=minmax"), 2, "e4m3", r"calibrate=minmax needs an integer format, "
     r"found 'e4m3'$", None),
    (_wrap("int8 per_block(32) calibrate=minmax"), 2, "int8", r"calibrate=minmax is not "
     r"defined for per_block", None),
    (_wrap("e2m1 per_block(32, scale=e8m1)"), 2, "e8m1", r"e8m0", "e8m0"),
    (_wrap("int8 per_tensor per_channel"), 2, "per_channel", r"granularity given twice", None),
    (_wrap("int8 round=floor round=trunc"), 2, "round=trunc", r"duplicate option 'round='", None),
    (_wrap("int8 + lowrank(rank=1, rank=2)"), 2, "rank=2", r"duplicate parameter 'rank'", None),
    (_wrap("int8 + lowrank(other=pack)"), 2, "pack)", r"unknown other 'pack'; expected one of "
     r"exact, packed", "packed"),
    (_wrap("int8 + lowrank(other=2)"), 2, "2)", r"other must be one of exact, packed", None),
    (_wrap("int8", "int8 + lowrank(rank=2, other=packed)"), 3, "other=",
     r"other= applies to a's lowrank term", None),
    (_wrap("int8", "int8 + lowrank(other=exact)"), 3, "other=",
     r"other= applies to a's lowrank term", None),
    (_wrap("int8", "lplr(rank=8, left=int12)"), 3, "int12", r"bit width 12", None),
    (_wrap("lplr(rank=8)"), 2, "lplr", r"not static", None),
    (_wrap("int8", "lplr(left=int4)"), 3, "lplr", r"needs rank=", None),
    (_wrap("itn8"), 2, "itn8", r"expected an element format", "int8"),
    ("scheme s {\n    a: int8\n    a: int4\n    b: int8\n}\n", 3, "a:", r"duplicate entry 'a:'",
     None),
    ("scheme s {\n    a: int8\n    c: int8\n}\n", 3, "c:", r"unknown entry 'c:'", None),
    ("scheme s {\n    a: int8\n    stattic: a\n    b: int8\n}\n", 3, "stattic", r"unknown entry",
     "static"),
    ("scheme s {\n    a: int8\n}\n", 1, "s {", r"no 'b:' entry", None),
    ("scheme s {\n    product: lowrank(rank=4)\n    a: int8\n}\n", 3, "a:",
     r"replaces the operands: 'a:' must be a float operand or absent", None),
    ("scheme s {\n    a: int8\n    b: int8\n    static: nope\n}\n", 4, "nope", r"unknown static",
     "none"),
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
    s = _scheme("int8 + sparse(threshold=0.3) + lowrank(rank=2, method=svd) "
                "+ dense(int4 per_channel)")
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


# ---- limits, decoding, line breaks, long tokens (docs/language-limits.md) -----------------------

LIMIT_ERRORS = [  # (operand spec, the text the caret must point at, a regex of the message)
    ("int8 per_vector(2147483648)", "2147483648", r"vector must be <= 65536, found 2147483648"),
    ("int8 per_block(65537)", "65537", r"vector must be <= 65536"),
    ("int8 per_vector(-4)", "-4", r"vector must be >= 1, found -4"),
    ("int8 + lowrank(rank=0)", "0)", r"rank must be >= 1"),
    ("int8 + lowrank(rank=2.5)", "2.5", r"rank must be an integer, found the number 2.5"),
    ("int8 + lowrank(rank=2.0)", "2.0", r"rank must be an integer"),
    ("int8 + lowrank(rank=1e3)", "1e3", r"rank must be an integer"),
    ("int8 + lowrank(rank=1048577)", "1048577", r"rank must be <= 1048576"),
    ("int8 + lowrank(oversample=1048577)", "1048577", r"oversample must be <= 1048576"),
    ("int8 + lowrank(power_iters=1000)", "1000", r"power_iters must be <= 64"),
    ("int8 + lowrank(seed=4294967296)", "4294967296", r"seed must be <= 4294967295"),
    ("int8 + lowrank(seed=-1)", "-1", r"seed must be >= 0"),
    ("int8 round=stochastic seed=99999999999", "99999999999", r"seed must be <= 4294967295"),
    ("int8 + sparse(threshold=1e999)", "1e999", r"number 1e999 is out of range: .*finite"),
    ("int8 + sparse(threshold=-1e999)", "-1e999", r"finite"),
    ("int8 + sparse(threshold=1e7)", "1e7", r"threshold must be <= 1e\+06"),
    ("int8 + sparse(threshold=nan)", "nan", r"threshold must be a number, found 'nan'"),
    ("int8 + sparse(max_density=inf)", "inf", r"must be a number, found 'inf'"),
    ("int8 + sparse(max_density=NaN)", "NaN", r"must be a number, found 'NaN'"),
    ("int8 + dense(int8 per_vector(0))", "0)", r"vector must be >= 1"),
    ("lplr(rank=8, power_iters=65)", "65", r"power_iters must be <= 64"),
    ("int8 " + "per_vector(" * 17 + "1" + ")" * 17, "(1)", r"nested more than 16 deep"),
]


@pytest.mark.parametrize("spec,marker,pattern", LIMIT_ERRORS, ids=[c[0][:40] for c in LIMIT_ERRORS])
def test_numbers_and_nesting_beyond_the_limits_are_located_errors(spec, marker, pattern):
    text = _wrap(spec)
    err = _error(text)
    line = err.span.line
    src = text.split("\n")[line - 1]
    assert marker in src
    col = src.rindex(marker) + 1
    head = str(err).splitlines()[0]
    assert head.startswith(f"bad.lrq:{line}:{col}: error: "), str(err)
    assert re.search(pattern, head), str(err)


def test_calls_nested_a_thousand_deep_are_an_error_not_a_recursion_error():
    for depth in (100, 1000, 50_000):
        text = "scheme s {\n a: int8 " + "per_vector(" * depth + "1" + ")" * depth + "\n b: int8 }"
        err = _error(text)
        assert (err.span.line, err.span.column) == (2, len(" a: int8 ") + 11 * 16 + 11)
        assert "nested more than 16 deep" in str(err) and len(str(err)) < 400
    # tuples nest no deeper than the grammar allows; parentheses in comments do not count
    err = _error("scheme s { product: lowrank(rank=2, bits=" + "(" * 40 + "8" + ")" * 40 + ") }")
    assert "nested more than 16 deep" in str(err)
    assert lrqc.parse_schemes(_wrap("int8 # " + "(" * 100))["s"].a.quant.fmt == "int8"


def test_huge_tokens_are_cut_in_messages():
    cases = [  # (text, message regex)
        (_wrap("int" + "9" * 5000),
         r"name too long: 5003 characters, at most 64 \('int9{37}\.\.\.'\)"),
        (_wrap("int8 per_vector(" + "9" * 5000 + ")"), r"number too long: 5000 characters"),
        (_wrap("x" * 100_000), r"name too long"),
        (_wrap("int8 " + "y" * 100_000 + " $"), r"unexpected character '\$'"),
        (_wrap("int8 per_tensor(" + "z" * 100_000), r"unexpected"),
        ("scheme " + "s" * 65 + " { a: int8\n b: int8 }", r"name too long: 65 characters"),
    ]
    for text, pattern in cases:
        rendered = str(_error(text))
        assert re.search(pattern, rendered), rendered[:500]
        assert len(rendered) < 600 and all(len(line) < 240 for line in rendered.splitlines())
        src, caret = rendered.splitlines()[1:3]
        assert src[caret.index("^")] != " " or "unexpected end" in rendered, rendered
    # a long token quoted in any message is cut to 40 characters and "..."
    err = lrqc.SchemeError("unknown entry '" + "k" * 500 + ":'")
    assert str(err) == "error: unknown entry '" + "k" * 40 + "...'"
    # the caret stays under the column in a window of a long line
    text = _wrap("int8 per_tensor" + " " * 300 + "round=flor")
    rendered = str(_error(text))
    src, caret = rendered.splitlines()[1:3]
    assert src.startswith("    ...") and src[caret.index("^"):] == "flor"


@pytest.mark.parametrize("ch", ["\f", "\v", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"],
                         ids=lambda c: f"U+{ord(c):04X}")
def test_caret_line_is_the_reported_line_with_odd_line_breaks(ch):
    # in a comment: not a line break for the parser, so not for the message either
    text = f"scheme s {{  # one{ch}two\n    a: int9\n    b: int8\n}}\n"
    rendered = str(_error(text))
    head, src, caret = rendered.splitlines()[:3] if ch not in "\x1c\x1d\x1e\x85\u2028\u2029" \
        else rendered.split("\n")[:3]
    assert head.startswith("bad.lrq:2:8: error: bit width 9"), rendered
    assert src == "    " + "    a: int9" and caret == "    " + " " * 7 + "^~~~"
    # in the scheme text: an error at its own column, on its line, shown as a space
    text = f"scheme s {{\n    a: int8{ch}per_channel\n    b: int8\n}}\n"
    if ch == "\f":  # white space in the grammar, like a blank
        assert lrqc.parse_schemes(text)["s"].a.quant.granularity == "per_channel"
    else:
        head, src, caret = str(_error(text)).split("\n")[:3]
        assert head.startswith(f"bad.lrq:2:12: error: unexpected character U+{ord(ch):04X}"), head
        assert src == "        a: int8 per_channel" and caret.index("^") == 4 + 11
    # before a line break: the error after it is on the line lark counts
    text = f"scheme s {{ # {ch}\n    a: int8\n    b: int9\n}}\n"
    assert str(_error(text)).split("\n")[:2] == [
        ("bad.lrq:3:8: error: bit width 9 of 'int9' is out of range: integer formats are "
        "int1..int8 and uint1..uint8"), "        b: int9"]


def test_crlf_and_tab_keep_the_caret_under_the_column():
    text = "scheme s {\r\n    a: int8\r\n\tb: int9\r\n}\r\n"
    rendered = str(_error(text))
    head, src, caret = rendered.split("\n")[:3]
    assert head.startswith("bad.lrq:3:5: error:") and src == "     b: int9"
    assert caret.index("^") == src.index("int9")


def test_end_of_file_error_is_after_the_last_character():
    for tail in ("", "\n", "\n\n   \n", "\r\n", "\u2028"):
        err = _error("scheme s {\n    a: int8" + tail)
        assert (err.span.line, err.span.column) == (2, 12), tail


def test_byte_order_mark_is_accepted(tmp_path):
    text = "\ufeffscheme s {\n    a: int8\n    b: int9\n}\n"
    err = _error(text)  # columns and lines as if the mark were not there
    assert str(err).startswith("bad.lrq:3:8: error: bit width 9")
    assert str(err).split("\n")[1] == "        b: int9"
    path = tmp_path / "bom.lrq"
    path.write_bytes(b"\xef\xbb\xbf" + b"scheme s {\n    a: int8\n    b: int4\n}\n")
    assert lrqc.load_schemes(path)["s"].b.quant.bits == 4
    assert lrqc.parse_schemes(path.read_bytes(), str(path))["s"].b.quant.bits == 4
    err = _error("scheme s { a: int8\n \ufeff b: int8 }")  # not at the start: an odd character
    assert "U+FEFF" in str(err)


def test_files_that_are_not_utf8_are_a_clear_error(tmp_path):
    path = tmp_path / "latin1.lrq"
    path.write_bytes("scheme s {\n    a: int8  # café\n    b: int8\n}\n".encode("latin-1"))
    with pytest.raises(lrqc.SchemeError) as info:
        lrqc.load_schemes(path)
    head = str(info.value).splitlines()[0]
    assert head == (f"{path}:2:19: error: scheme file is not UTF-8 text (byte 0xe9 at offset 29); "
                    "save it as UTF-8")
    assert str(info.value).splitlines()[2].index("^") == 4 + 18
    with pytest.raises(lrqc.SchemeError, match="not UTF-8"):
        lrqc.parse_schemes(b"\xff\xfe" + "scheme".encode("utf-16-le"), "u16.lrq")
    (tmp_path / "dir.lrq").mkdir()
    with pytest.raises(lrqc.LrqcError, match="it is a directory"):
        lrqc.load_schemes(tmp_path / "dir.lrq")
    big = tmp_path / "big.lrq"
    big.write_bytes(b"#" * (5 << 20))
    with pytest.raises(lrqc.LrqcError, match=r"too large \(5242880 bytes\)"):
        lrqc.load_schemes(big)
    with pytest.raises(lrqc.LrqcError, match="must be a str"):
        lrqc.parse_schemes(12)


def test_cli_explain_syntax_reads_the_file_as_load_schemes_does(tmp_path, capsys):
    from lrqc.cli import main

    path = tmp_path / "bom.lrq"
    path.write_bytes(b"\xef\xbb\xbfscheme s {\n    a: int8\n    b: int8\n}\n")
    assert main(["explain", "--emit", "syntax", str(path)]) == 0
    assert "== syntax ==\nscheme s" in capsys.readouterr().out
    path.write_bytes(b"scheme s {\n    a: int8\n    b: int8 # \xff\n}\n")
    assert main(["explain", "--emit", "syntax", str(path)]) == 1
    assert "not UTF-8" in capsys.readouterr().err


def test_long_files_and_many_schemes():
    one = "scheme s{i} {{\n    a: int8 per_channel + lowrank(rank=2)\n    b: int4 per_channel\n}}\n"
    text = "".join(one.format(i=i) for i in range(2000))
    assert len(lrqc.parse_schemes(text)) == 2000
    with pytest.raises(lrqc.LrqcError, match=r"too long; at most 1048576 characters"):
        lrqc.parse_schemes("#" * (1 << 20) + "\n" + _wrap("int8"))
    entries = "scheme s {\n" + "    a: int8\n" * 3000 + "}\n"
    assert "duplicate entry 'a:' (first given at line 2)" in str(_error(entries))


def test_sizes_beyond_the_limits_are_errors_in_bind_dims():
    s = _scheme("int8 per_vector(64) pad=false")
    with pytest.raises(lrqc.SchemeError, match=r"per_vector\(64\) of 'a' is longer than K=32; "
                                               r"allow zero-padding with pad=true"):
        bind_dims(s, 8, 16, 32)
    assert bind_dims(_scheme("int8 per_vector(64)"), 8, 16, 32) == [
        "a: K=32 is zero-padded to 64 for per_vector(64)"]
    # V <= K: padding is below V; V > K: K becomes V, and the padded operand must fit
    s = _scheme("int8 per_vector(65536)")
    with pytest.raises(lrqc.SchemeError, match=r"A of 40000 x 65536 = .* too large") as info:
        bind_dims(s, 40000, 16, 32)
    assert info.value.span.line == 2
    with pytest.raises(lrqc.InputError, match=r"C of 65536 x 65536 = 4294967296 values is too"):
        bind_dims(_scheme("int8"), 65536, 65536, 8)
    with pytest.raises(lrqc.InputError, match="positive integer"):
        bind_dims(_scheme("int8"), True, 8, 8)
    import numpy as np

    assert bind_dims(_scheme("int8"), np.int64(8), 8, 8) == []
    s = _scheme("int8 + dense(int8 per_vector(64) pad=false)")
    with pytest.raises(lrqc.SchemeError, match="a residual term of 'a' is longer than K=32"):
        bind_dims(s, 8, 16, 32)


def test_reference_and_compiler_refuse_the_sizes_bind_dims_refuses():
    import numpy as np

    s = _scheme("int8 per_vector(65536)")
    with pytest.raises(lrqc.SchemeError, match="too large"):
        lrqc.reference.matmul(s, np.ones((40000, 4)), np.ones((4, 4)))
    # the compiler's refusal of the same sizes: tests/integration/test_pipeline.py


def test_explain_is_fast_for_a_thousand_terms():
    import time

    from lrqc.explain import explain
    from lrqc.passes.cost import tidy

    s = _scheme("int8" + " + dense()" * 1000)
    tidy.cache_clear()
    t0 = time.perf_counter()
    text = explain(s)
    assert time.perf_counter() - t0 < 5, "explain of 1,000 terms took more than 5 s (was 94 s)"
    assert text.count("\n") < 20_000
    # each distinct cost expression is simplified once: 1,000 equal terms cost what 3 do
    misses = tidy.cache_info().misses
    tidy.cache_clear()
    explain(_scheme("int8" + " + dense()" * 3))
    assert misses == tidy.cache_info().misses
    # many distinct terms: the cost table stays linear in size (long totals run over)
    s = _scheme("int8" + "".join(f" + dense(int8 per_vector({v}))" for v in range(1, 101)))
    text = explain(s)
    assert len(text) < 400_000


def test_language_limits_doc_states_the_limits_in_force():
    from lrqc.frontend import parser
    from lrqc.frontend import schema as S
    from lrqc.frontend.bind import MAX_ELEMENTS

    doc = (ROOT / "docs" / "language-limits.md").read_text()
    for value in (parser.MAX_NESTING, parser.MAX_NAME_CHARS, parser.MAX_NUMBER_CHARS,
                  parser.MAX_SOURCE_CHARS, S.MAX_VECTOR, S.MAX_RANK, S.MAX_POWER_ITERS,
                  S.MAX_SEED, MAX_ELEMENTS):
        assert f"{value:,}" in doc, value
    assert "1e6" in doc and S.MAX_THRESHOLD == 1e6


def test_scheme_choice_messages_stay_short():
    from lrqc.api import pick_scheme

    schemes = lrqc.parse_schemes("".join(f"scheme s{i} {{ a: int8\n b: int8 }}\n"
                                         for i in range(500)))
    with pytest.raises(lrqc.LrqcError) as info:
        pick_scheme(schemes, None, "many.lrq")
    assert str(info.value) == ("many.lrq has 500 schemes (s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, "
                               "... (490 more)); choose one with --scheme")
    with pytest.raises(lrqc.LrqcError) as info:
        pick_scheme(schemes, "x" * 100_000, "many.lrq")
    assert len(str(info.value)) < 200 and "'" + "x" * 40 + "...'" in str(info.value)
    assert "(did you mean 's10'?)" in str(pytest.raises(lrqc.LrqcError, pick_scheme, schemes,
                                                          "s10x", "f").value)
