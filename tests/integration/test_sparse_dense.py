"""Both formulations of the sparse products (lrqc/backend/te/sparse.py): the sparse one (zero
codes skipped) and the dense one (sparse{j}_dense, the integer GEMM's machinery), chosen per call
for B's terms by the density of A's copy and at pack for A's terms by B's copy's
(segments.crossover). Both give the reference's numbers and each other's within float32
rounding; kernel.last_notes says which ran and why."""

from __future__ import annotations

import re

import numpy as np
import pytest

import lrqc
from lrqc.plan import segments
from lrqc.plan.layout import SparseCsr, SparseDense
from lrqc.plan.signature import dense_functions, params
from lrqc.reference import matmul
from lrqc.reference.scheme import rel_error

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TOL = 2e-6  # as test_compensation_cpu.py: float32 accumulation vs the float64 reference
SPARSE = "int8 per_channel round=trunc + sparse(threshold={th}, max_density=0.35)"


def _scheme(a: str, b: str):
    return lrqc.parse_schemes(f"scheme t {{\n a: {a}\n b: {b}\n}}")["t"]


def _set_crossover(monkeypatch, crossover: float) -> None:
    """Both sides' crossover density, whatever instruction the dense formulations run on."""
    for table in ("DENSE_ABOVE", "DENSE_ABOVE_VNNI", "DENSE_ABOVE_VNNI4", "DENSE_ABOVE_AMX",
                  "DENSE_ABOVE_AVX2Q"):
        monkeypatch.setattr(segments, table, {"a": crossover, "b": crossover})


def _run(kernel, A, B, crossover, monkeypatch):
    """C and last_notes with the crossover set to `crossover` (B packed under it)."""
    _set_crossover(monkeypatch, crossover)
    packed = kernel.pack(B)
    return kernel(A, packed), list(kernel.last_notes), packed


@pytest.fixture(scope="module", params=[(40, 48, 72), (32, 48, 80)])  # the second: rows and
def both_sides(request):  # K of whole 16 x 16 tiles (A's residual codes copied back in tiles)
    s = _scheme(SPARSE.format(th=0.5), SPARSE.format(th=0.8))
    m, n, k = request.param
    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    return s, lrqc.compile(s, M=m, N=n, K=k), A, B


def test_both_formulations_match_the_reference_and_each_other(both_sides, monkeypatch):
    s, kernel, A, B = both_sides
    assert {fn for fn in dense_functions(kernel.plan)} == {"sparse0_dense", "sparse1_dense"}
    ref = matmul(s, np.asarray(A, np.float32).astype(np.float64), B)
    c_sparse, notes_s, packed_s = _run(kernel, A, B, 1.0, monkeypatch)
    c_dense, notes_d, packed_d = _run(kernel, A, B, 0.0, monkeypatch)
    assert rel_error(c_sparse, ref) < TOL and rel_error(c_dense, ref) < TOL
    # the same integer sums: only the float32 epilogue's rounding differs
    assert np.allclose(c_sparse, c_dense, rtol=1e-5, atol=1e-5 * np.abs(c_sparse).max())
    assert sum("ran sparse" in t for t in notes_s) == 2, notes_s
    assert sum("ran dense" in t for t in notes_d) == 2, notes_d
    assert any("B's term 0 ran sparse: A's copy density" in t and "<= crossover 1" in t
               for t in notes_s)
    assert any("B's term 0 ran dense: A's copy density" in t and "> crossover 0" in t
               for t in notes_d)
    # A's term: chosen at pack, from B's copy
    assert isinstance(packed_s.arrays.sparse[1], SparseCsr)
    assert isinstance(packed_d.arrays.sparse[1], SparseDense)
    assert any("A's term 0 ran dense" in t and "(chosen at pack)" in t for t in packed_d.notes)


@pytest.mark.parametrize("bits", [5, 6, 7, 8])
def test_narrow_terms_dense_on_avx2_keep_their_int16_sums_exact(bits, monkeypatch):
    """A term of 5 to 7 bits runs its dense formulation on AVX2 with vpmaddubsw and int16 sums
    over several k steps, proven by the ranges of A's side as that formulation stores it:
    codes + 128, not the quantizer's own offset (with which int6 sums overflowed int16 at
    K = 512: 2.6e-2 relative error). Both sides' terms, forced dense, against the reference."""
    from lrqc.backend.target import host_cpu_flags
    from lrqc.plan import ranges, signature
    if "avx2" not in host_cpu_flags():
        pytest.skip("the host lacks AVX2")
    term = f"sparse(int{bits}, threshold=0.05, max_density=0.35)"
    s = _scheme(f"int8 + {term}", f"int8 + {term}")
    kernel = lrqc.compile(s, M=17, N=128, K=512, target="x86-avx2")
    for j in (0, 1):
        dense = signature.dense_plan(kernel.plan, j)
        half = 2 ** (bits - 1) - 1
        assert ranges.ranges(dense).a == ranges.Interval(128 - half, 128 + half)
    rng = np.random.default_rng(0)
    B = rng.standard_normal((512, 128)).astype(np.float32)
    A = rng.standard_normal((17, 512)).astype(np.float32)
    C, notes, _ = _run(kernel, A, B, 0.0, monkeypatch)
    assert sum("ran dense" in t for t in notes) == 2, notes  # both terms
    assert rel_error(C, matmul(s, A, B)) < TOL


def test_choice_per_call_follows_a_density(monkeypatch):
    """B's term alone: with the crossover between two A's densities, each call picks its own."""
    s = _scheme("int8 per_channel round=trunc", SPARSE.format(th=0.5))
    m, n, k = 16, 32, 64
    kernel = lrqc.compile(s, M=m, N=n, K=k)
    rng = np.random.default_rng(5)
    B = rng.standard_normal((k, n))
    _set_crossover(monkeypatch, 0.2)
    packed = kernel.pack(B)
    for d, form in ((0.1, "sparse"), (0.3, "dense")):
        big = rng.random((m, k)) < d  # |A| 4 on a fraction d, 1 elsewhere: density d exactly
        A = np.where(big, 4.0, 1.0) * rng.choice([-1.0, 1.0], (m, k)) * (1 + 0.01 * rng.random(
            (m, k)))
        C = kernel(A, packed)
        ref = matmul(s, np.asarray(A, np.float32).astype(np.float64), B)
        assert rel_error(C, ref) < TOL
        note = kernel.last_notes[-1]
        assert f"ran {form}: A's copy density" in note, note


def test_signature_declares_the_dense_functions(both_sides):
    _, kernel, _, _ = both_sides
    p = kernel.plan
    assert params(p, "sparse0_dense") == ("S", "ss", "Dv", "dcs", "sd", "Cin", "C")
    assert params(p, "sparse1_dense") == ("Rt", "sr", "Sv", "scs", "ss", "Cin", "C")


@pytest.mark.parametrize("a,b", [
    ("int8 per_channel round=trunc", "int8 per_channel round=trunc + sparse(int4, threshold=0.5)"),
    ("int8 per_channel", "int4 per_channel + sparse(fixed(8, max=0.5), threshold=0.1)"),
    ("int4 per_channel + sparse(fixed(8, max=0.5), threshold=0.1)", "int8 per_channel")])
def test_codes_without_a_dense_form_run_sparse(monkeypatch, a, b):
    """A term in int4 (codes the dense GEMM would read as nibbles), with zero points (int16
    centered codes) or in signed 8-bit fixed point (codes down to -128, held in int16) has no
    dense formulation: it runs sparse, and the notes say so."""
    s = _scheme(a, b)
    m, n, k = 8, 16, 32
    kernel = lrqc.compile(s, M=m, N=n, K=k)
    assert dense_functions(kernel.plan) == ()
    rng = np.random.default_rng(7)
    A, B = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    C, notes, _ = _run(kernel, A, B, 0.0, monkeypatch)
    assert rel_error(C, matmul(s, np.asarray(A, np.float32).astype(np.float64), B)) < TOL
    assert any("ran sparse (no dense formulation compiled" in t for t in notes), notes


@pytest.mark.parametrize("crossover", [0.0, 1.0])
def test_buckets_static_a_and_artifacts(tmp_path, monkeypatch, crossover):
    """M buckets (padded rows), static: a (the transposed product) and a saved artifact run
    either formulation with the reference's numbers; the manifest lists the dense symbols."""
    from lrqc.pipeline.export import build_artifact
    from lrqc.runtime.artifact import load_kernel

    _set_crossover(monkeypatch, crossover)
    form = "dense" if crossover == 0.0 else "sparse"
    rng = np.random.default_rng(11)
    # the per-call operand is taken as float32, the static one as given (float64 here)
    cases = (("a", 24, SPARSE.format(th=0.7)), ("b", "8..32", SPARSE.format(th=0.7)))
    for static, M, b in cases:
        A, B = rng.standard_normal((24, 64)), rng.standard_normal((64, 20))
        a = SPARSE.format(th=0.5)
        s = lrqc.parse_schemes(f"scheme t {{\n a: {a}\n b: {b}\n static: {static}\n}}")["t"]
        if static == "a":
            ref = matmul(s, A, np.asarray(B, np.float32).astype(np.float64))
        else:
            ref = matmul(s, np.asarray(A, np.float32).astype(np.float64), B)
        kernel = lrqc.compile(s, M=M, N=20, K=64)
        assert rel_error(kernel.run(A, B), ref) < TOL
        assert sum(f"ran {form}" in t for t in kernel.last_notes) == 2, kernel.last_notes
    man = build_artifact(s, 24, 20, 64, tmp_path / "k")
    assert any("sparse0_dense" in f for f in man["functions"])
    loaded = load_kernel(tmp_path / "k")
    assert rel_error(loaded.run(A, B), ref) < TOL


def test_notes_of_a_transposed_kernel_name_the_users_operands(monkeypatch):
    """static: a runs B^T A^T; its notes still call the user's A "A" and B "B"."""
    _set_crossover(monkeypatch, 1.0)  # every product sparse, on any CPU
    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((24, 64)), rng.standard_normal((64, 48))
    notes = {}
    for static in ("a", "b"):
        s = lrqc.parse_schemes(f"scheme t {{\n a: {SPARSE.format(th=0.8)}\n"
                               f" b: {SPARSE.format(th=1.0)}\n static: {static}\n}}")["t"]
        kernel = lrqc.compile(s, 24, 48, 64)
        kernel.run(A, B)
        notes[static] = sorted(kernel.last_notes)
    # the densities are the same; which copy is per call (and so its crossover) differs
    density = {k: [n for n in v if "max_density" in n] for k, v in notes.items()}
    assert density["a"] == density["b"] and len(density["a"]) == 2
    assert any(n.startswith("sparse: B density 0.2") for n in notes["a"])  # a's term thresholds B
    assert any(n.startswith("sparse: A's term 0 ran sparse: B's copy") for n in notes["a"])


def test_crossover_follows_the_instruction_of_the_dense_formulation():
    """A dense formulation runs at the rate of the rule that schedules its GEMM, and the sparse
    one at the rate of its form, so the crossover density is that pair's: AMX tiles' (far
    below the others'), AVX-512 VNNI's (sparse products in pairs, or four at a time), or AVX2's
    (the rest; measured on an AVX2 CPU: above VNNI's in pairs, and higher again where the
    sparse product takes AVX2's quads). Cross-compiled: nothing runs."""
    from lrqc.backend.target import resolve
    from lrqc.runtime.buckets import dense_kinds

    s = _scheme(SPARSE.format(th=0.5), SPARSE.format(th=0.8))
    plan = lrqc.compile(s, M=32, N=64, K=128, target="x86-avx2").plan
    assert dense_kinds(plan, resolve("x86-amx")) == {0: "amx", 1: "amx"}
    # B's term (product 0) over 64 columns takes four nonzeros at a time, A's over 32 rows pairs
    assert dense_kinds(plan, resolve("x86-avx512-vnni")) == {0: "vnni4", 1: "vnni"}
    # AVX2's quads: panels of 32 columns, tiles of 32 rows
    for name in ("x86-avx2", "x86-avxvnni"):
        assert dense_kinds(plan, resolve(name)) == {0: "avx2q", 1: "avx2q"}
    plan16 = lrqc.compile(s, M=16, N=48, K=128, target="x86-avx2").plan
    assert dense_kinds(plan16, resolve("x86-avx2")) == {}  # in pairs: AVX2's own crossovers
    assert dense_kinds(plan, resolve("cuda-sm80")) == {}
    for side in "ab":
        assert (segments.crossover(side, "amx") < segments.crossover(side, "vnni")
                < segments.crossover(side, "vnni4"))
        assert segments.crossover(side, "vnni") < segments.crossover(side) \
            < segments.crossover(side, "avx2q")
    note = segments.formulation_note("a", 0, 0.05, True, "amx")
    assert note.endswith("density 0.050 > crossover 0.01 (AMX)"), note
    note = segments.formulation_note("b", 0, 0.05, False, "vnni4")
    assert note.endswith("density 0.050 <= crossover 0.18 (VNNI, four at a time) (chosen at "
                         "pack)"), note


@pytest.mark.parametrize("target,early", [(None, True), ("x86-avx2", True),
                                           ("x86-amx", False)])
def test_dense_formulation_reads_C_at_the_start_of_each_row_tile(target, early):
    """The dense formulation's Cin (C as the GEMM left it) is read into a local tile first in
    each row tile that holds its sums, before them, so its lines arrive while they run
    (pipeline.functions._cin_first); AMX's schedule, whose epilogue follows a panel's sums,
    reads it there as before. The numbers are those of the test above."""
    from lrqc.pipeline.compile import compile as compile_kernel

    s = _scheme(SPARSE.format(th=0.5), SPARSE.format(th=0.8))
    texts: dict[str, str] = {}
    compile_kernel(s, 32, 64, 128, target, emit=("tir",), on_text=texts.__setitem__)
    for j in (0, 1):
        body = re.search(rf"# sparse{j}_dense_m32\n(.*?)(?=\n# \w+_m\d+\n|\Z)", texts["tir"],
                         re.S).group(1)
        tile = body[body.index("T.parallel", body.index('sblock("dense_a")')):]
        assert ('sblock("Cin_local")' in tile) == early, tile
        if early:
            assert tile.index('sblock("Cin_local")') < tile.index('sblock("acc'), tile
