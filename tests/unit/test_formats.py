"""Element formats with numpy as the oracle: the general eXmY rule, bit patterns (encode /
decode / value_table) of every format of at most 8 bits, rounding onto the grid, saturation,
subnormals, fixed point, the language's eXmY / fixed(...) / pack= and `lrqc explain --format`."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import lrqc
from lrqc.cli import main
from lrqc.frontend.model import Quant, fp_format
from lrqc.frontend.unparse import quant_text, unparse
from lrqc.plan.buckets import bucket_plans
from lrqc.plan.support import code_limit
from lrqc.reference import decode, encode, quantize, value_table
from lrqc.reference import minifloat as mf
from lrqc.reference.formats import integer_units
from lrqc.reference.quant import int_range

FP = mf.all_fp_formats()
INTS = [f"int{b}" for b in range(1, 9)] + [f"uint{b}" for b in range(1, 9)]
FIXED = ["fixed(4, max=1)", "fixed(8, max=4.0)", "fixed(1, max=0.5)",
         "fixed(3, max=0.75, signed=false)", "fixed(8, max=3e-5, signed=false)"]


def _oracle_values(name: str) -> np.ndarray:
    """Every finite value of eXmY from its fields, by the textbook definition."""
    x, y = fp_format(name)
    bias = 2 ** (x - 1) - 1
    out = []
    for s, e, m in itertools.product((1, -1), range(2**x), range(2**y)):
        if name == "e5m2" and e == 31 or name == "e4m3" and (e, m) == (15, 7):
            continue
        v = m / 2**y * 2.0 ** (1 - bias) if e == 0 else (1 + m / 2**y) * 2.0 ** (e - bias)
        out.append(s * v)
    return np.array(sorted(set(out)))


def scheme(a: str, b: str, static: str = "b") -> lrqc.Scheme:
    return lrqc.parse_schemes(f"scheme s {{\n a: {a}\n b: {b}\n static: {static}\n}}")["s"]


# ---- the general rule ---------------------------------------------------------------------------

def test_there_are_28_minifloats_of_at_most_8_bits():
    assert len(FP) == len(set(FP)) == 28
    assert all(fp_format(n) for n in FP)
    assert [fp_format(n) for n in ("e0m3", "e8m0", "e4m4", "e3m", "int8")] == [None] * 5


@pytest.mark.parametrize("name,emax,top,bias,emin,sub", [
    ("e5m2", 15, 57344.0, 15, -14, 2.0**-16), ("e4m3", 8, 448.0, 7, -6, 2.0**-9),
    ("e3m2", 4, 28.0, 3, -2, 2.0**-4), ("e2m3", 2, 7.5, 1, 0, 2.0**-3),
    ("e2m1", 2, 6.0, 1, 0, 0.5)])
def test_the_rule_gives_the_named_formats(name, emax, top, bias, emin, sub):
    p = mf.fp_params(name)
    assert (p.emax, p.max_normal, p.bias, p.emin, p.min_subnormal) == (emax, top, bias, emin, sub)
    assert mf.elem_emax(name) == emax and mf.elem_max(name) == top


@pytest.mark.parametrize("name", FP)
def test_max_normal_and_grid_match_the_fields(name):
    grid = _oracle_values(name)
    assert grid[-1] == mf.elem_max(name) == -grid[0]
    assert np.all(grid * 2.0 ** mf.frac_bits(name) == np.rint(grid * 2.0 ** mf.frac_bits(name)))
    assert mf.code_max(name) == grid[-1] * 2 ** mf.frac_bits(name)


def test_integer_units_take_the_formats_whose_codes_fit_a_byte():
    fits = {n for n in FP if mf.fits_int8(n)}
    assert fits == {f"e1m{y}" for y in range(7)} | {f"e2m{y}" for y in range(5)} | {"e3m0"}
    assert mf.fits_int8("int8") and integer_units("int4") and integer_units("fixed(8, max=1)")
    assert code_limit(Quant("e2m4")) == 124 and code_limit(Quant("e1m6")) == 127


@pytest.mark.parametrize("name", FP + ("int8",))
def test_exact_in_16_bit_floats(name):
    vals = _oracle_values(name) if name != "int8" else np.arange(-127, 128) / 64
    for t, cast in (("float16", lambda v: v.astype(np.float16).astype(np.float64)),
                    ("bfloat16", _bf16)):
        with np.errstate(over="ignore"):
            assert mf.exact_in(name, t) == bool(np.all(cast(vals) == vals)), (name, t)


def _bf16(v: np.ndarray) -> np.ndarray:
    """float64 -> bfloat16 (round to nearest even through float32) -> float64."""
    u = v.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


def test_exact_in_examples():
    assert mf.exact_in("e5m2", "float16") and mf.exact_in("e4m3", "float16")
    assert all(mf.exact_in(n, "bfloat16") for n in FP)  # at most 6 mantissa bits, wide range
    assert not mf.exact_in("e6m1", "float16")  # subnormals down to 2^-31, below float16's
    assert not mf.exact_in("e7m0", "float16") and mf.exact_in("e7m0", "bfloat16")
    with pytest.raises(ValueError):
        mf.exact_in("e4m3", "float32")


# ---- bit patterns -------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FP + tuple(INTS) + tuple(FIXED))
def test_encode_decode_round_trip_exhaustively(fmt):
    rows = value_table(fmt)
    bits = len(rows[0][1])
    codes = np.arange(2**bits)
    assert [r[0] for r in rows] == list(codes)
    assert all(r[1] == format(r[0], f"0{bits}b") for r in rows)
    values = decode(codes, fmt)
    finite = np.isfinite(values)
    back = encode(values[finite], fmt)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, codes[finite])
    np.testing.assert_array_equal(decode(back, fmt), values[finite])


@pytest.mark.parametrize("name", FP)
def test_decoded_values_are_the_oracle_grid(name):
    values = decode(np.arange(2 ** (1 + sum(fp_format(name)))), name)
    np.testing.assert_array_equal(np.unique(values[np.isfinite(values)]), _oracle_values(name))


def test_special_encodings():
    assert np.isnan(decode(np.array([0x7F, 0xFF]), "e4m3")).all()
    np.testing.assert_array_equal(decode(np.array([0x7C, 0xFC]), "e5m2"), [np.inf, -np.inf])
    assert np.isnan(decode(np.array([0x7D, 0x7F]), "e5m2")).all()
    assert decode(np.array([0x7E]), "e4m3")[0] == 448 and decode(np.array([0x7B]), "e5m2")[0] \
        == 57344
    assert decode(np.array([0x7F]), "e3m4")[0] == 31.0  # finite only: the top code is a number
    classes = {r[3] for r in value_table("e5m2")}
    assert classes == {"zero", "subnormal", "normal", "nan", "inf"}
    assert {r[3] for r in value_table("e2m1")} == {"zero", "subnormal", "normal"}


def test_signed_zero_and_twos_complement():
    assert encode(np.array([-0.0, 0.0]), "e2m1").tolist() == [0b1000, 0]
    assert encode(np.array([-1.0, -8.0, 7.0]), "int4").tolist() == [0b1111, 0b1000, 0b0111]
    assert encode(np.array([-1.0, 0.875]), "fixed(4, max=1)").tolist() == [0b1000, 0b0111]
    assert encode(np.array([15.0]), "uint4").tolist() == [15]
    assert decode(np.array([0b1000]), "int4")[0] == -8


@pytest.mark.parametrize("fmt,values", [
    ("e2m1", [0.25]), ("e2m1", [7.0]), ("e4m3", [np.nan]), ("int4", [8.0]), ("int4", [0.5]),
    ("uint2", [-1.0]), ("fixed(4, max=1)", [1.0]), ("fixed(4, max=1)", [0.1])])
def test_encode_refuses_values_off_the_grid(fmt, values):
    with pytest.raises(ValueError):
        encode(np.array(values), fmt)


@pytest.mark.parametrize("fmt", ["e9m0", "e0m1", "int9", "float8", "fixed(9, max=1)",
                                 "fixed(4, max=0)", "fixed(4, max=-1)", "fixed(4, max=inf)"])
def test_unknown_formats(fmt):
    with pytest.raises(ValueError):
        value_table(fmt)
    with pytest.raises(ValueError):
        decode(np.array([0, 300]), "e2m1")


# ---- rounding onto the grid ---------------------------------------------------------------------

@pytest.mark.parametrize("name", FP)
def test_nearest_rounding_is_the_nearest_table_value(name):
    grid = np.array(sorted({v for _, _, v, k in value_table(name) if k not in ("nan", "inf")}))
    top = grid[-1]
    rng = np.random.default_rng(len(name) + sum(fp_format(name)))
    x = np.concatenate([rng.uniform(-1.3 * top, 1.3 * top, 3000),
                        rng.standard_normal(1000) * mf.fp_params(name).min_subnormal * 4])
    q = mf.round_to_format(x, name)
    assert np.all(np.isin(q, grid))
    np.testing.assert_array_equal(np.abs(x - q), np.abs(x[:, None] - grid).min(axis=1))
    big = np.abs(x) >= top
    np.testing.assert_array_equal(q[big], np.sign(x[big]) * top)  # saturation, never Inf
    encode(q, name)  # on the grid


def test_subnormals_and_saturation():
    # e3m2: emin -2, subnormal step 2^-4; max 28
    x = np.array([2.0**-4, 1.5 * 2.0**-4, 3 * 2.0**-4, 2.0**-5, 1e9, -29.0])
    np.testing.assert_array_equal(mf.round_to_format(x, "e3m2"),
                                  [2.0**-4, 2 * 2.0**-4, 3 * 2.0**-4, 0.0, 28.0, -28.0])
    assert value_table("e3m2")[1][3] == "subnormal" and value_table("e3m2")[4][3] == "normal"
    # e1m2: bias 0, emin 1: values 0, .5, 1, 1.5 (subnormal), 2, 2.5, 3, 3.5
    assert sorted({abs(v) for _, _, v, _ in value_table("e1m2")}) == [
        0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5]


def test_mx_blocks_with_any_minifloat():
    x = np.random.default_rng(7).standard_normal((4, 64))
    values, exps = mf.mx_quantize(x, "e2m2", block=32)
    assert np.abs(values).max() <= 7.0 and exps.shape == (4, 2)
    encode(values, "e2m2")


# ---- fixed point --------------------------------------------------------------------------------

def test_fixed_quantizes_with_its_static_scale():
    q = scheme("fixed(4, max=1)", "int8").a.quant
    assert q.is_fixed and q.fixed_scale == 0.125 and int_range(q) == (-8, 7)
    assert q.round == "nearest_away" and code_limit(q) == 8
    x = np.array([[0.0625, -0.0625, 0.99, -5.0, 0.3, 1e300]])
    qa = quantize(x, q, "a")
    np.testing.assert_array_equal(qa.codes, [[1, -1, 7, -8, 2, 7]])
    np.testing.assert_array_equal(qa.scale, [[0.125]])
    u = scheme("fixed(3, max=0.5, signed=false) round=floor", "int8").a.quant
    assert int_range(u) == (0, 7) and u.fixed_scale == 0.0625
    np.testing.assert_array_equal(quantize(np.array([[-1.0, 0.07, 0.13, 9.0]]), u, "a").codes,
                                  [[0, 1, 2, 7]])
    one = scheme("fixed(1, max=2)", "int8").a.quant  # not the sign binarization of int1
    np.testing.assert_array_equal(quantize(np.array([[5.0, -5.0, 0.4]]), one, "a").codes,
                                  [[0, -1, 0]])


@pytest.mark.parametrize("a,codes,pair_exact", [
    ("fixed(8, max=4.0)", (0, 255), False), ("fixed(7, max=4.0)", (0, 127), True),
    ("fixed(4, max=1, signed=false)", (0, 15), True), ("e2m4", (4, 252), False)])
def test_ranges_see_the_full_fixed_point_codes(a, codes, pair_exact):
    from lrqc.plan.ranges import ranges
    from lrqc.plan.support import make_plan

    r = ranges(make_plan(scheme(a, "int8 per_channel"), 4, 16, 32))
    assert (r.a.lo, r.a.hi) == codes and r.pair_exact == pair_exact


def test_fixed_is_not_scale_equivariant():
    q = scheme("fixed(8, max=4.0)", "int8").a.quant
    x = np.random.default_rng(0).standard_normal((4, 8))
    big = quantize(x * 1024, q, "a").dequantize()
    assert np.abs(big).max() <= 4.0  # the static range clips, whatever the data


# ---- the language -------------------------------------------------------------------------------

@pytest.mark.parametrize("a,b,static", [
    ("e3m4 per_tensor", "e1m5 per_channel", "b"),
    ("e2m2 per_block(32, scale=e8m0)", "e2m2 per_block(32, scale=e8m0)", "b"),
    ("fixed(8, max=4.0)", "int4 per_channel pack=dense", "b"),
    ("fixed(8, max=0.1) round=floor", "fixed(4, max=0.5, signed=false) pack=byte", "b"),
    ("int4 pack=byte", "int8", "a"),
    ("e7m0 round=stochastic seed=3", "fixed(2, max=1e-3, signed=true) round=trunc", "b"),
])
def test_parse_unparse_round_trip(a, b, static):
    s = scheme(a, b, static)
    assert lrqc.parse_schemes(unparse(s))["s"] == s


def test_canonical_text_of_fixed_and_pack():
    s = scheme("fixed(8, max=4.0)", "fixed(4, max=0.5, signed=false) round=floor pack=dense")
    assert quant_text(s.a.quant) == "fixed(8, max=4, signed=true) round=nearest_away"
    assert quant_text(s.b.quant) == ("fixed(4, max=0.5, signed=false) round=floor pack=dense")
    assert "pack=" not in quant_text(scheme("int8", "int4").b.quant)
    assert scheme("int8", "int8 pack=dense").b.quant.pack == "auto"  # no effect on bytes


@pytest.mark.parametrize("a,b,static,msg", [
    ("int8", "e5m3", "b", "out of range"),
    ("int8", "e0m2", "b", "out of range"),
    ("int8", "fixed(8, max=4.0) per_channel", "b", "one static scale"),
    ("int8", "fixed(8, max=4.0) per_block(32)", "b", "one static scale"),
    ("int8", "fixed(8, max=1) calibrate=maxabs", "b", "calibrate= does not apply"),
    ("int8", "fixed(8, max=0)", "b", "max=0 must be positive"),
    ("int8", "fixed(8, max=-1)", "b", "max=-1 must be positive"),
    ("int8", "fixed(4, max=1e-38)", "b", "step must be at least 2\\^-126"),
    ("int8", "fixed(4, max=1e300)", "b", "at most 3.403e\\+38"),
    ("int8", "fixed(9, max=1)", "b", "bits must be <= 8"),
    ("int8", "fixed(max=1)", "b", "needs its bits"),
    ("int8", "fixed(8)", "b", "needs max="),
    ("int8", "e2m1 pack=dense", "b", "pack= stores integer codes"),
    ("int8", "int8 per_block(32) pack=dense", "b", "pack= stores integer codes"),
    ("int4 pack=dense", "int8", "b", "quantized per call"),
    ("int8", "int4 pack=dense", "none", "static: none"),
    ("int8", "int4 pack=dense", "a", "quantized per call"),
    ("int8", "int4 + dense(int4 pack=dense)", "b", "residual quantizers"),
    ("int8", "int4 pack=nibble", "b", "unknown pack"),
])
def test_refusals(a, b, static, msg):
    with pytest.raises(lrqc.LrqcError, match=msg):
        scheme(a, b, static)


def test_any_minifloat_is_an_element_format():
    s = scheme("e2m5 per_channel round=floor", "e1m0 per_block(16, scale=e8m0)")
    assert s.a.quant.fmt == "e2m5" and s.a.quant.bits == 8 and s.b.quant.bits == 2
    with pytest.raises(lrqc.LrqcError, match="per_vector needs an integer"):
        scheme("e3m3 per_vector(16)", "int8")


# ---- lrqc explain --format ----------------------------------------------------------------------

def test_explain_format(capsys):
    assert main(["explain", "--format", "e3m4"]) == 0
    out = capsys.readouterr().out
    for line in ("bias           3", "emin           -2", "emax           4",
                 "max normal     31.0", "min subnormal  0.015625", "integer units  no"):
        assert line in out
    assert len([ln for ln in out.splitlines() if ln.strip().startswith(("0 ", "255 "))]) == 2
    assert main(["explain", "--format", "fixed(4, max=1)"]) == 0
    out = capsys.readouterr().out
    assert "codes          -8..7" in out and "1000" in out and "-1.0" in out
    assert main(["explain", "--format", "uint3"]) == 0
    assert "integer units  yes" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["e9m9", "fixed(4, max=0)", "int0", "bogus"])
def test_explain_format_errors_are_one_line(capsys, fmt):
    assert main(["explain", "--format", fmt]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lrqc: error: --format")


def test_format_helpers_refuse_bad_input_with_format_errors():
    """What the reference's format helpers cannot take is a FormatError (an lrqc.InputError and
    a ValueError), naming the format."""
    from lrqc.reference import encode, minifloat

    for call, msg in ((lambda: encode("a", "e2m1"), "e2m1: the values cannot be read"),
                      (lambda: minifloat.round_to_format(np.ones(2), "int4"),
                       "unknown element format 'int4'"),
                      (lambda: minifloat.round_to_format(np.ones(2), "e9m9"),
                       "unknown element format 'e9m9'"),
                      (lambda: minifloat.round_to_format(np.array([np.nan]), "e2m1"),
                       "Inf or NaN")):
        with pytest.raises(lrqc.InputError, match=msg):
            call()


@pytest.mark.parametrize("a,b,msg", [
    ("int8 per_channel + sparse(e2m1, threshold=0.1)", "int8 per_channel",
     "sparse term of a: e2m1"),
    ("int8 per_channel", "int8 per_channel + sparse(e2m1, threshold=0.1)",
     "sparse term of b: e2m1"),
    ("int8 per_channel + dense(uint4)", "int8 per_channel",
     "residual segment res:0 x base: A-side residual codes with zero points"),
])
def test_static_a_refusals_name_the_users_operands(a, b, msg):
    """static: a plans the transposed product (its a is the user's b): a refusal of that plan
    names the operands, their terms and a segment's sources as the scheme does."""
    with pytest.raises(lrqc.LrqcError, match=msg):
        bucket_plans(scheme(a, b, "a"), 8, 16, 32)
