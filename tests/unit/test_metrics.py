"""Error metrics and operand statistics against hand-computed values; evaluate's table explains
its Frobenius figures exactly when a few columns dominate the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lrqc
from lrqc.reference import (
    ErrorMetrics,
    OperandStats,
    Report,
    error_metrics,
    evaluate,
    matmul,
    operand_stats,
)
from lrqc.reference.data import pair
from lrqc.reference.metrics import cosine, dominated, top_columns

NOTE = "of ||ref||^2 (>= 50%): the Frobenius errors are relative to"


def test_error_metrics_by_hand():
    ref = np.array([[3.0, 0.0], [4.0, 1.0]])  # column norms 5 and 1
    C = np.array([[3.0, 0.0], [4.0, 2.0]])  # column 1 is off by 1
    m = error_metrics(C, ref)
    assert m.rel_frobenius == pytest.approx(1 / math.sqrt(26), rel=1e-15)
    assert m.col_worst == 1.0 and m.worst_column == 1 and m.zero_columns == 0
    assert m.col_p99 == pytest.approx(0.99, rel=1e-15)  # linear interpolation between 0 and 1
    assert m.cosine == pytest.approx(27 / math.sqrt(29 * 26), rel=1e-15)
    assert error_metrics(ref, ref) == ErrorMetrics(0.0, 0.0, 0.0, 1.0, 0, 0)
    # float16 C and an integer reference: computed in float64
    assert error_metrics(C.astype(np.float16), ref.astype(np.int64)) == m


def test_columns_with_an_all_zero_reference_are_left_out():
    ref = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    C = np.array([[1.5, 7.0, 2.0], [0.0, 0.0, 0.0]])
    m = error_metrics(C, ref)
    assert m.zero_columns == 1 and m.worst_column == 0 and m.col_worst == 0.5
    assert m.rel_frobenius == pytest.approx(math.sqrt(0.25 + 49) / math.sqrt(5), rel=1e-15)
    none = error_metrics(np.ones((2, 2)), np.zeros((2, 2)))
    assert math.isnan(none.col_worst) and math.isnan(none.col_p99)
    assert none.worst_column == -1 and none.zero_columns == 2
    assert none.rel_frobenius == 2.0 and none.cosine == 0.0  # ||C||, and one side is zero
    assert cosine(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    assert cosine(-ref, ref) == pytest.approx(-1.0, rel=1e-15)


def test_p99_is_the_99th_percentile_of_the_columns():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((8, 500)) + 3.0
    C = ref * (1 + 0.01 * rng.standard_normal(ref.shape))
    errs = np.linalg.norm(C - ref, axis=0) / np.linalg.norm(ref, axis=0)
    m = error_metrics(C, ref)
    assert m.col_p99 == np.percentile(errs, 99) and m.col_worst == errs.max()
    assert np.sort(errs)[-6] <= m.col_p99 <= np.sort(errs)[-5]  # between the 6th and 5th largest
    assert m.worst_column == int(np.argmax(errs))


def test_error_metrics_refuses_mismatched_shapes():
    with pytest.raises(lrqc.InputError, match=r"one shape, got \(2, 3\) and \(3, 2\)"):
        error_metrics(np.ones((2, 3)), np.ones((3, 2)))


def test_operand_stats_by_hand():
    X = np.array([[1.0, 2.0], [0.0, 2.0]])  # rms 1.5; columns hold 1 and 8, rows 5 and 4
    assert operand_stats(X, axis=1) == OperandStats(pytest.approx(4 / 3, rel=1e-15),
                                                    pytest.approx(8 / 9, rel=1e-15), 1)
    assert operand_stats(X, axis=0) == OperandStats(pytest.approx(4 / 3, rel=1e-15),
                                                    pytest.approx(5 / 9, rel=1e-15), 0)
    big = operand_stats(X * 2.0**600, axis=1)  # no overflow in the squares
    assert big.max_over_rms == pytest.approx(4 / 3, rel=1e-15) and big.top_channel == 1
    assert operand_stats(np.zeros((3, 3)), 0) == OperandStats(0.0, 0.0, 0)
    assert operand_stats(np.full((4, 4), -2.0), 0).max_over_rms == 1.0
    with pytest.raises(lrqc.InputError, match="axis must be 0 .rows. or 1"):
        operand_stats(X, 2)
    with pytest.raises(lrqc.InputError, match="expected a 2-D matrix"):
        operand_stats(np.ones(3), 0)


def test_an_outlier_channel_of_activations_shows():
    A = np.random.default_rng(2).standard_normal((32, 64))
    A[:, 9] *= 50.0
    st = operand_stats(A, axis=1)
    assert st.top_channel == 9 and st.top_channel_share > 0.9 and st.max_over_rms > 10


def test_top_columns_by_hand():
    ref = np.ones((2, 150))
    ref[:, 7] = 10.0  # 1% of 150 columns rounds up to 2: column 7 and one of the others
    count, share = top_columns(ref)
    assert count == 2 and share == pytest.approx(202 / 498, rel=1e-15)
    assert top_columns(np.ones((3, 10))) == (1, pytest.approx(0.1, rel=1e-15))
    assert top_columns(np.zeros((3, 10))) == (1, 0.0)
    assert dominated(0.5) and not dominated(0.4999)


LRQMM = "scheme s { a: int8 per_tensor\n b: int8 per_tensor }"


def test_one_dominant_column_hides_the_others_and_the_table_says_so():
    s = lrqc.parse_schemes(LRQMM)["s"]
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((64, 256)), rng.standard_normal((256, 256))
    B[:, 17] *= 100.0
    r = evaluate(s, A, B)
    m = r.metrics["compensated"]
    assert m.col_worst > 5 * m.rel_frobenius and m.col_p99 > 5 * m.rel_frobenius
    C, ref = matmul(s, A, B).astype(np.float64), A @ B
    assert m == error_metrics(C, ref) and r.compensated == m.rel_frobenius
    assert r.reference.top_channel == 17 and r.reference.top_channel_share > 0.9
    assert r.operands["B"] == operand_stats(B, 0) and r.operands["A"] == operand_stats(A, 1)
    table = r.table()
    assert table.count(NOTE) == 1
    assert f"note: column 17 holds {r.reference.top_channel_share:.1%} {NOTE} its size" in table
    assert f"p99 column error is {m.col_p99:.2e} against {m.rel_frobenius:.2e}" in table


def test_balanced_data_gets_no_explanatory_line(all_examples):
    for dist in ("uniform", "normal"):
        A, B = pair(dist, 64, 96, 128, seed=3)
        for name, s in all_examples.items():
            r = evaluate(s, A, B)
            assert NOTE not in r.table(), name
            assert r.top_columns[1] < 0.05
            for m in r.metrics.values():  # worst <= 5x and p99 <= 3x the Frobenius figure
                assert m.col_worst <= 5 * m.rel_frobenius and m.col_p99 <= 3 * m.rel_frobenius


def test_the_table_columns_and_operand_lines():
    s = lrqc.parse_schemes(LRQMM)["s"]
    A, B = pair("uniform", 16, 32, 48, seed=0)
    r = evaluate(s, A, B)
    lines = r.table().splitlines()
    assert lines[0] == "M=16 N=32 K=48: errors against A @ B in float64"
    assert lines[1].split() == ["method", "rel.", "Frob.", "col.", "worst", "col.", "p99",
                                "cosine"]
    m = r.metrics["direct"]
    assert lines[2].split()[2:] == [f"{m.rel_frobenius:.4e}", f"{m.col_worst:.4e}",
                                    f"{m.col_p99:.4e}", f"{m.cosine:.10f}"]
    st = r.operands["A"]
    assert (f"operand A: max|x|/rms {st.max_over_rms:.3g}; its largest channel (column "
            f"{st.top_channel} of 48) holds {st.top_channel_share:.1%} of ||A||^2") in lines
    assert any(line.startswith("operand B: ") and "(row " in line for line in lines)


def test_a_report_made_the_old_way_still_prints():
    r = Report("s", (4, 5, 6), 0.2, 0.1, 1e-7, ["a note"])
    assert r.gain == 2.0
    table = r.table()
    assert "scheme s" in table and "note: a note" in table and "operand" not in table


@pytest.mark.parametrize("scale", [1e30, 1e-29, 3e-39, 1.0])
def test_rel_error_of_float32_arrays_at_their_range_ends(scale):
    """The relative error does not depend on the arrays' scale: float32 arrays near float32's
    largest or smallest values neither overflow nor underflow in the sums of squares."""
    from lrqc.reference import rel_error
    C = np.full((4, 4), scale, np.float32)
    ref = (np.float64(scale) * 1.001 * np.ones((4, 4))).astype(np.float32)
    c64, r64 = C.astype(np.float64), ref.astype(np.float64)
    want = float(np.linalg.norm(c64 - r64) / np.linalg.norm(r64))
    assert rel_error(C, ref) == pytest.approx(want, rel=1e-12)
    assert rel_error(C, np.zeros_like(C)) == pytest.approx(4 * float(C[0, 0]), rel=1e-7)
