"""The CPU sparse products (lrqc/backend/te/sparse.py) against numpy's integer products: with
unit scales and C = 0 the output is the int32 sum itself, so the comparison is exact. Shapes
cover every register tile (64, 32, 16 columns; a row count that is not a multiple of 16),
scale groups, odd and even counts of nonzeros (pairs padded with a zero code), int8 codes
(pairs summed in int16) and int16 codes (int32 products). End-to-end tests of sparse terms
against lrqc.reference are in test_compensation_cpu.py."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from lrqc.backend.compat import compile_module, tensor, tvm
from lrqc.backend.target import host_cpu_flags, resolve
from lrqc.backend.te import sparse as te_sparse
from lrqc.plan.layout import csr_columns
from lrqc.runtime.buckets import sparse_tensors

TARGET = tvm.target.Target("llvm")


def _codes(rng, shape, density, limit):
    x = rng.integers(-limit, limit + 1, shape)
    x[rng.random(shape) >= density] = 0
    return x


def _run(f, args, target=TARGET):
    ex = compile_module(tvm.IRModule({"main": f}), target)
    ex["main"](*args)
    return args[-1].numpy()


CASES = [  # mp, kq, np_, groups, code dtype, density
    (8, 64, 64, 1, "int8", 0.3),
    (20, 96, 48, 3, "int8", 0.5),
    (16, 128, 96, 2, "int16", 0.2),
    (4, 32, 16, 1, "int8", 1.0),
    (12, 64, 32, 4, "int16", 0.05),
    (6, 256, 32, 2, "int8", 0.1),
    (3, 128, 16, 1, "int8", 0.98),
]


@pytest.mark.parametrize("mp,kq,np_,groups,dt,density", CASES)
@pytest.mark.parametrize("avx2", [False, True])
def test_sparse_a_exact(mp, kq, np_, groups, dt, density, avx2):
    """B's terms pair by pair give numpy's integer sums exactly; avx2: A's copy listed 64
    codes at a time by masks (sparse_csr.masked: int8 groups of a multiple of 64 codes)."""
    if avx2 and "avx2" not in host_cpu_flags():
        pytest.skip("the host lacks AVX2")
    rng = np.random.default_rng(mp * kq + groups)
    limit = 127 if dt == "int8" else 256
    S = _codes(rng, (mp, kq), density, limit)
    D = rng.integers(-127, 128, (kq, np_))
    v = kq // groups
    want = np.einsum("mgv,gvn->mgn", S.reshape(mp, groups, v), D.reshape(groups, v, np_))
    ones_s, ones_d = np.ones((mp, groups), np.float32), np.ones((groups, np_), np.float32)
    static = te_sparse_codes(D, groups)
    args = [tensor(S.astype(dt)), tensor(ones_s), static["D"], tensor(ones_d),
            tensor(np.zeros((mp, np_), np.float32))]
    f = te_sparse.sparse_a(mp, kq, np_, groups, dt, avx2)
    got = _run(f, args, resolve("x86-avx2").tvm() if avx2 else TARGET)
    assert np.array_equal(got, want.sum(axis=1).astype(np.float32))


def te_sparse_codes(D, groups):
    """D as the runtime hands it to sparse_a: 64/32/16-column panels (buckets.sparse_tensors)."""
    class Codes:
        def params(self):
            return iter([("D", D.astype(np.int8)), ("sd", np.ones((groups, D.shape[1]),
                                                                   np.float32))])
    return sparse_tensors(Codes(), tvm.cpu(), panels=True)


@pytest.mark.parametrize("mp,kq,np_,groups,dt,density", CASES)
def test_sparse_b_exact(mp, kq, np_, groups, dt, density):
    rng = np.random.default_rng(mp + kq * groups)
    limit = 127 if dt == "int8" else 256
    Bs = _codes(rng, (np_, kq), density, limit)  # B's copy as rows n of K codes
    R = _codes(rng, (mp, kq), 1.0, 127 if dt == "int8" else 255)  # A's residual codes
    ptr, idx, val = csr_columns(Bs, groups)
    v = kq // groups
    want = np.einsum("mgv,ngv->mn", R.reshape(mp, groups, v), Bs.reshape(np_, groups, v))
    args = [tensor(np.ascontiguousarray(R.T).astype(dt)), tensor(np.ones((mp, groups),
            np.float32)), tensor(ptr), tensor(idx), tensor(val),
            tensor(np.ones((groups, np_), np.float32)), tensor(np.zeros((mp, np_), np.float32))]
    got = _run(te_sparse.sparse_b(mp, kq, np_, groups, dt), args)
    assert np.array_equal(got, want.astype(np.float32))


QUAD_CASES = [  # mp, kq, np_, groups, density: lists of every length mod 4, empty rows
    (8, 64, 64, 1, 0.3),
    (21, 96, 128, 3, 0.5),
    (5, 128, 64, 2, 1.0),
    (16, 256, 192, 4, 0.03),
    (6, 512, 64, 2, 0.1),  # groups of 256 codes: four 64-code masks each (sparse_csr.masked)
    (4, 128, 64, 1, 0.97),
    (7, 64, 96, 1, 0.4),  # three panels of 32 columns (AVX2's form; VNNI's needs 64)
]
FORMS = {"vnni": ("avx512_vnni", "x86-avx512-vnni"), "avx2": ("avx2", "x86-avx2")}


def _form(form: str, width: int) -> str:
    """The target of a quad form, the test skipped where the host lacks its instructions or
    the width does not make whole lines of it."""
    from lrqc.backend.te import sparse_quads

    flag, target = FORMS[form]
    if flag not in host_cpu_flags():
        pytest.skip(f"the host lacks {flag}")
    if width % sparse_quads.width(form):
        pytest.skip(f"{width} is not a whole number of {form} lines")
    return target


def _ends(x: np.ndarray, form: str) -> np.ndarray:
    """Every code of x at the end of its range: -128 or 127 for VNNI's unsigned lines (u8 0 or
    255), -127 or 127 for AVX2's signed ones (vpsignb cannot negate -128: quads() refuses it)."""
    return np.where(x < 0, -128 if form == "vnni" else -127, 127)


@pytest.mark.parametrize("form", ["vnni", "avx2"])
@pytest.mark.parametrize("mp,kq,np_,groups,density", QUAD_CASES)
@pytest.mark.parametrize("ends", [False, True])
def test_sparse_a_quads_exact(mp, kq, np_, groups, density, ends, form):
    """Quads of nonzeros (te/sparse_quads.py: vpdpbusd, or AVX2's vpsignb + vpmaddubsw +
    vpmaddwd) give numpy's integer sums exactly; ends: every code at the end of its range (S =
    +-127, D at _ends: the largest pair sums, and for VNNI the offset's correction at its
    extremes)."""
    from lrqc.backend.building import compile_for
    from lrqc.backend.te import sparse_quads

    target = _form(form, np_)
    rng = np.random.default_rng(mp * kq + groups)
    S = _codes(rng, (mp, kq), density, 127)
    D = rng.integers(-128 if form == "vnni" else -127, 128, (kq, np_))
    if ends:
        S = np.sign(S) * 127
        D = _ends(D, form)
    S[mp // 2] = 0  # a row without nonzeros
    v = kq // groups
    want = np.einsum("mgv,gvn->mgn", S.reshape(mp, groups, v), D.reshape(groups, v, np_))
    args = [tensor(S.astype(np.int8)), tensor(np.ones((mp, groups), np.float32)),
            tensor(sparse_quads.panel_codes(D.astype(np.int8), form)),
            tensor(np.ones((groups, np_), np.float32)), tensor(np.zeros((mp, np_), np.float32))]
    ex = compile_for(tvm.IRModule(
        {"main": sparse_quads.sparse_a_quads(mp, kq, np_, groups, form)}), resolve(target))
    ex["main"](*args)
    assert np.array_equal(args[-1].numpy(), want.sum(axis=1).astype(np.float32))


def test_quads_take_the_products_whose_sums_they_keep_exact():
    """sparse_quads.quads: B's terms with codes of at most 8 bits, panels of 64 columns (VNNI) or
    32 (AVX2), a target with AVX-512 VNNI or AVX2 and room in int32 for the offset sums; the
    function compiled and pack's layout follow the same answer."""
    import lrqc
    from lrqc.backend.te import sparse_quads

    def plan(b, n):
        s = lrqc.parse_schemes(f"scheme t {{\n a: int8 per_channel\n b: {b}\n}}")["t"]
        return lrqc.compile(s, M=8, N=n, K=128, target="x86-avx2").plan

    int8 = "int8 per_channel + sparse(threshold=0.9)"
    assert sparse_quads.quads(plan(int8, 128), 0, "vnni")
    assert sparse_quads.quads(plan(int8, 128), 0, "avx2")
    assert not sparse_quads.quads(plan(int8, 128), 0, "")  # neither
    assert not sparse_quads.quads(plan(int8, 96), 0, "vnni")  # panels of 32 columns
    assert sparse_quads.quads(plan(int8, 96), 0, "avx2")  # three of them
    assert not sparse_quads.quads(plan(int8, 80), 0, "avx2")
    wide = dataclasses.replace(plan(int8, 128), kseg=2**17)  # (the plan's own checks refuse
    assert not sparse_quads.quads(wide, 0, "vnni")  # such K first): 255 127 V >= 2^31
    a_side = lrqc.parse_schemes("scheme t {\n a: int8 per_channel + sparse(threshold=0.9)\n"
                                " b: int8 per_channel\n}")["t"]
    p = lrqc.compile(a_side, M=8, N=128, K=128, target="x86-avx2").plan
    assert not sparse_quads.quads(p, 0, "avx2")  # A's terms over 8 rows: sparse_b
    p = lrqc.compile(a_side, M=64, N=48, K=128, target="x86-avx2").plan
    assert sparse_quads.quads(p, 0, "vnni")  # over tiles of 64 rows
    p = lrqc.compile(a_side, M=32, N=48, K=128, target="x86-avx2").plan
    assert sparse_quads.quads(p, 0, "avx2") and not sparse_quads.quads(p, 0, "vnni")
    assert sparse_quads.form(resolve("x86-avx512-vnni")) == "vnni"
    assert sparse_quads.form(resolve("x86-avx2")) == "avx2"
    assert sparse_quads.form(resolve("cuda-sm80")) == sparse_quads.form(resolve("aarch64")) == ""
    texts: dict[str, str] = {}
    from lrqc.pipeline.compile import compile as pipeline_compile

    s = lrqc.parse_schemes(f"scheme t {{\n a: int8 per_channel\n b: {int8}\n}}")["t"]
    pipeline_compile(s, 8, 128, 128, "x86-avx512-vnni", emit=("tir",), on_text=texts.__setitem__)
    sparse0 = texts["tir"].split("# sparse0_m8")[1]
    assert "vpdpbusd" in sparse0 and '"uint8"' in sparse0
    pipeline_compile(s, 8, 128, 128, "x86-avx2", emit=("tir",), on_text=texts.__setitem__)
    sparse0 = texts["tir"].split("# sparse0_m8")[1]
    assert "vpdpbusd" not in sparse0 and "psign" in sparse0 and "pmadd.ub.sw" in sparse0


@pytest.mark.skipif("avx512_vnni" not in host_cpu_flags(), reason="the host lacks AVX-512 VNNI")
def test_terms_run_as_quads_with_the_references_numbers(tmp_path, monkeypatch):
    """On a host with AVX-512 VNNI, B's sparse terms over 64-column panels run sparse_a_quads
    and A's over 64 rows sparse_b_quads (smaller buckets sparse_b): the numbers of
    lrqc.reference in every M bucket, with scale groups (A's terms in passes of one, three and
    four tiles of 64 rows: 64, 192 and 256 rows), and from a saved artifact (pack's layout
    follows the function the artifact holds)."""
    import lrqc
    from lrqc.pipeline.compile import compile as pipeline_compile
    from lrqc.pipeline.export import build_artifact
    from lrqc.plan import segments
    from lrqc.reference import matmul
    from lrqc.reference.scheme import rel_error
    from lrqc.runtime.artifact import load_kernel

    term = "int8 per_vector(32) + sparse(int8 per_vector(32), threshold=0.6)"  # (no dense form)
    s = lrqc.parse_schemes(f"scheme t {{\n a: {term}\n b: {term}\n}}")["t"]
    kernel = lrqc.compile(s, M="4..256", N=128, K=256)
    texts: dict[str, str] = {}
    pipeline_compile(s, "8..64", 128, 256, emit=("tir",), on_text=texts.__setitem__)
    tir = texts["tir"]
    parts = re.split(r"(?m)^# (\w+_m\d+)$", tir)  # [head, name, text, name, text, ..]
    quad = {name for name, text in zip(parts[1::2], parts[2::2], strict=True)
            if name.startswith("sparse") and "vpdpbusd" in text}
    names_ = set(parts[1::2])
    assert {"sparse0_m8", "sparse1_m8", "sparse1_m64"} <= names_, names_
    # B's term (sparse0) over 128 columns in every bucket, A's (sparse1) at 64 rows only
    assert quad == {n for n in names_ if n.startswith("sparse0")} | {"sparse1_m64"}, quad
    rng = np.random.default_rng(5)
    B = rng.standard_normal((256, 128))
    for m in (4, 17, 40, 64, 150, 256):
        A = rng.standard_normal((m, 256)).astype(np.float32)
        C = kernel.run(A, B)
        assert rel_error(C, matmul(s, A.astype(np.float64), B)) < 2e-6
        assert sum(" ran sparse" in n for n in kernel.last_notes) == 2, kernel.last_notes
    A = A[:64]
    build_artifact(s, 64, 128, 256, tmp_path / "k")
    assert rel_error(load_kernel(tmp_path / "k").run(A, B), matmul(s, A.astype(np.float64), B)) \
        < 2e-6
    # static: a (the transposed product, B's codes per call) with per-channel terms, which
    # also compile dense forms: crossovers at 1, so the sparse forms run
    for table in ("DENSE_ABOVE_VNNI", "DENSE_ABOVE_VNNI4"):
        monkeypatch.setattr(segments, table, {"a": 1.0, "b": 1.0})
    term = "int8 per_channel round=trunc + sparse(threshold=0.7)"
    s = lrqc.parse_schemes(f"scheme t {{\n a: {term}\n b: {term}\n static: a\n}}")["t"]
    A, B = rng.standard_normal((64, 128)), rng.standard_normal((128, 192)).astype(np.float32)
    kernel = lrqc.compile(s, M=64, N=192, K=128)
    C = kernel.run(A, B)
    assert rel_error(C, matmul(s, A, B.astype(np.float64))) < 2e-6
    assert sum(" ran sparse" in n for n in kernel.last_notes) == 2, kernel.last_notes


@pytest.mark.parametrize("form", ["vnni", "avx2"])
@pytest.mark.parametrize("mp,kq,np_,groups,density", [(64, 64, 16, 1, 0.3), (128, 96, 48, 3, 0.5),
                                                      (32, 64, 16, 1, 0.3),
                                                      (96, 128, 32, 2, 0.7),
                                                      (64, 128, 32, 2, 1.0),
                                                      (192, 256, 16, 4, 0.03),
                                                      (256, 64, 32, 1, 0.2),
                                                      (384, 64, 16, 2, 0.4),
                                                      (512, 32, 16, 2, 0.6)])
@pytest.mark.parametrize("ends", [False, True])
def test_sparse_b_quads_exact(mp, kq, np_, groups, density, ends, form):
    """A's terms four entries at a time (sparse_b_quads): numpy's integer sums exactly, with
    columns of every length mod 4 (the last quad padded) and empty ones, in passes of one to
    four tiles of 64 (AVX2: 32) rows (several passes at 384 and 512 rows; three tiles at 96
    AVX2 rows), each row and column scaled by its own power of two (exact, so each group's
    scaled sum is too and float32 adds them in order); ends: every code at the end of its
    range (B's copy +-127, A's residual codes at _ends)."""
    from lrqc.backend.building import compile_for
    from lrqc.backend.te import sparse_quads

    target = _form(form, mp)
    rng = np.random.default_rng(mp + kq * groups)
    Bs = _codes(rng, (np_, kq), density, 127)
    R = rng.integers(-128 if form == "vnni" else -127, 128, (mp, kq))
    if ends:
        Bs, R = np.sign(Bs) * 127, _ends(R, form)
    Bs[np_ // 2] = 0  # a column without entries
    ptr, idx, val = csr_columns(Bs, groups)
    v = kq // groups
    sr = np.ldexp(1.0, rng.integers(-3, 4, (mp, groups))).astype(np.float32)
    ss = np.ldexp(1.0, rng.integers(-3, 4, (groups, np_))).astype(np.float32)
    sums = np.einsum("mgv,ngv->gmn", R.reshape(mp, groups, v), Bs.reshape(np_, groups, v))
    want = np.zeros((mp, np_), np.float32)
    for g in range(groups):
        want += (sr[:, g, None] * ss[None, g]) * sums[g].astype(np.float32)
    args = [tensor(np.ascontiguousarray(R.T).astype(np.int8)), tensor(sr), tensor(ptr),
            tensor(idx), tensor(val), tensor(ss), tensor(np.zeros((mp, np_), np.float32))]
    ex = compile_for(tvm.IRModule(
        {"main": sparse_quads.sparse_b_quads(mp, kq, np_, groups, form)}), resolve(target))
    ex["main"](*args)
    assert np.array_equal(args[-1].numpy(), want)


@pytest.mark.skipif("avx512_vnni" not in host_cpu_flags(), reason="the host lacks AVX-512 VNNI")
def test_packed_operands_say_how_their_sparse_codes_are_held():
    """A kernel for this host holds B's sparse term's codes in VNNI quad panels, one built for
    x86-avx2 as int8 panels: each refuses the other's packed operand with an error that says
    so, while the saved state of either (layout-level arrays) restores into the other."""
    import lrqc
    from lrqc.errors import InputError
    from lrqc.reference import matmul
    from lrqc.reference.scheme import rel_error
    from lrqc.runtime import packstate

    s = lrqc.parse_schemes("scheme t {\n a: int8 per_channel\n b: int8 per_channel + "
                           "sparse(threshold=0.8)\n}")["t"]
    vnni, avx2 = lrqc.compile(s, 16, 128, 128), lrqc.compile(s, 16, 128, 128, target="x86-avx2")
    rng = np.random.default_rng(2)
    A, B = rng.standard_normal((16, 128)).astype(np.float32), rng.standard_normal((128, 128))
    ref = matmul(s, A.astype(np.float64), B)
    for mine, other in ((vnni, avx2), (avx2, vnni)):
        packed = mine.pack(B)
        with pytest.raises(InputError, match="held"):
            other(A, packed)
        restored = packstate.restore(other, *packstate.save(packed))
        assert rel_error(other(A, restored), ref) < 2e-6
