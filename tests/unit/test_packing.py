"""Dense bit packing of weight codes (lrqc.plan.packing), the plan's choice of code width and
what pack() keeps per weight (lrqc.plan.layout.storage). No TVM."""

from __future__ import annotations

import numpy as np
import pytest

import lrqc
from lrqc.errors import LrqcError
from lrqc.passes.cost import stored_bytes
from lrqc.plan import layout, packing
from lrqc.plan.storage import storage
from lrqc.plan.support import make_plan


def scheme(a: str, b: str) -> lrqc.Scheme:
    return lrqc.parse_schemes(f"scheme s {{\n a: {a}\n b: {b}\n}}")["s"]


@pytest.mark.parametrize("w", range(1, 8))
def test_every_width_round_trips_and_takes_w_eighths_of_a_byte(w):
    lo, hi = packing.code_range(w)
    rng = np.random.default_rng(w)
    codes = rng.integers(lo, hi + 1, (3, 1000))
    codes[0, :2] = lo, hi
    packed = packing.pack_stream(codes, w)
    assert packed.dtype == np.uint8 and packed.shape == (3, 4, 32 * w)  # 4 groups of 256
    np.testing.assert_array_equal(packing.unpack_stream(packed, w, 1000), codes)
    assert sum(p for p, _, _ in packing.planes(w)) == w


def test_the_documented_bit_positions():
    """w = 3: a 2-bit plane (bits 1..2 of u, 64 bytes) then a 1-bit plane (bit 0, 32 bytes);
    code E of a group in byte E mod 32p at bits p·(E div 32p)."""
    assert packing.planes(3) == ((2, 0, 1), (1, 64, 0))
    assert packing.planes(7) == ((4, 0, 3), (2, 128, 1), (1, 192, 0))
    codes = np.zeros((1, 256), np.int64)
    codes[0, 100] = -3  # u = 0b101: plane 2 holds 0b10, plane 1 holds 1
    group = packing.pack_stream(codes, 3)[0, 0]
    assert group[100 % 64] == 0b10 << (2 * (100 // 64))
    assert group[64 + 100 % 32] == 1 << (100 // 32)
    assert np.count_nonzero(group) == 2
    four = packing.pack_stream(np.arange(256)[None] % 16 - 8, 4)[0, 0]  # w = 4: nibbles
    np.testing.assert_array_equal((four.astype(np.int8) << 4) >> 4, np.arange(128) % 16 - 8)
    np.testing.assert_array_equal(four.astype(np.int8) >> 4, np.arange(128, 256) % 16 - 8)


def test_out_of_range_codes_and_widths_are_refused():
    with pytest.raises(ValueError, match="do not fit 3 bits"):
        packing.pack_stream(np.array([[4]]), 3)
    with pytest.raises(ValueError, match="1..7-bit"):
        packing.planes(8)


def test_the_vnni_order_round_trips_through_layout():
    rng = np.random.default_rng(0)
    bp = rng.integers(-16, 16, (3, 7, 16, 4)).astype(np.int8)
    np.testing.assert_array_equal(layout.unpack_dense(layout.pack_dense(bp, 5), 5, 7), bp)


@pytest.mark.parametrize("a,b,bits", [
    ("int8 per_channel", "int3 per_channel", 3),
    ("int8 per_channel", "int4 per_vector(32)", 4),
    ("int8 per_channel", "uint5 per_channel", 5),
    ("int8 per_channel", "int1 per_channel", 2),  # sign codes +-1
    ("int8 per_channel", "uint1 per_channel", 1),
    ("int8 per_channel", "int8 per_channel", 8),
    ("int8 per_tensor + dense()", "int3 per_channel + dense()", 3),  # K segments, one width
    ("e2m1 per_block(32, scale=e8m0)", "e2m1 per_block(32, scale=e8m0)", 5),  # codes -12..12
    ("int8", "e2m3 per_channel", 7),  # element values x 8: codes -60..60
    ("float32", "int5 per_channel", 5),  # weight-only: the float GEMM widens the codes
    ("float32", "int5 per_vector(32)", 5),  # scales inside the K sum: dequantized per tile
    ("float16", "int3 per_channel pack=dense", 3),  # the codes, not 16-bit values
    ("float16", "int3 per_channel", 8),  # by default the 16-bit path: float16 codes
    ("float32", "e2m3 per_channel", 8),  # minifloat weights: float32 values
])
def test_the_plan_packs_integer_weights_densely(a, b, bits):
    p = make_plan(scheme(a, b), 16, 64, 256)
    assert p.pack_bits == bits and p.packed == (bits < 8)
    st = storage(p)
    if p.float_path and not p.float_codes:
        assert st["code_bits"] == (16 if p.half else 32)
    else:
        assert st["code_bits"] == bits
        assert st["codes"] == 64 * p.kp * bits // 8
        assert stored_bytes(p.qb) * 8 == bits


def test_three_bit_weights_take_a_quarter_less_than_four_bit_ones():
    per = {b: storage(make_plan(scheme("int8 per_channel", f"int{b} per_channel"),
                                       16, 4096, 4096))["bytes_per_weight"] for b in (3, 4, 8)}
    assert per[3] / per[4] <= 0.76 and per[4] < per[8] / 1.9
    assert 0.375 <= per[3] < 0.38  # 3/8 of a byte plus scales, column sums and bias


def test_packing_needs_integer_codes():
    with pytest.raises(LrqcError):
        scheme("int8 per_channel", "e2m1 per_channel pack=dense")
