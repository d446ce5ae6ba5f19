"""The compilation pipeline: its stages run in order, each stage's text is printable (one
section per M bucket), `lrqc.compile(..., dump_dir=)` writes them, `lrqc build --emit` prints
them, and the kernel it returns gives the reference's numbers."""

from __future__ import annotations

import importlib
import re

import numpy as np
import pytest

import lrqc
from lrqc.cli import main
from lrqc.errors import LrqcError
from lrqc.pipeline.compile import compile as pipeline_compile
from lrqc.pipeline.stages import EMITS, FILE_NAMES, STAGES
from lrqc.plan import names
from lrqc.plan import signature as sig
from lrqc.plan.verify import PlanError
from lrqc.runtime import buckets

from ..conftest import ROOT
from ..unit.test_signatures import INT8, plan_of

LRQMM = ROOT / "examples" / "lrqmm.lrq"


@pytest.fixture(scope="module")
def lrqmm():
    return lrqc.load_schemes(LRQMM)["lrqmm_int8"]


def test_the_stages_are_an_ordered_table():
    assert list(STAGES) == ["ir", "plan", "records", "te", "tir", "build"]
    assert set(EMITS) == {"ir", "plan", "te", "tir", "llvm", "asm", "cuda", "ptx"}
    assert set(FILE_NAMES) == set(EMITS)
    order = list(STAGES)
    assert all(EMITS[e][0] in order for e in EMITS)


def test_every_cpu_stage_prints_one_section_per_bucket_and_the_kernel_is_right(lrqmm):
    texts = {}
    kernel = pipeline_compile(lrqmm, "1..16", 64, 128, emit=("ir", "plan", "te", "tir", "llvm",
                                                            "asm"), on_text=texts.__setitem__)
    assert list(texts) == ["ir", "plan", "te", "tir", "llvm", "asm"]  # in stage order
    assert texts["ir"].startswith("program lrqmm_int8")
    for name in ("plan", "te", "tir", "llvm", "asm"):
        heads = re.findall(r"(?m)^== M bucket (\d+) ==$", texts[name])
        assert heads == ["4", "8", "16"], name
    assert "gemm_m8" in texts["tir"] and "T.prim_func" in texts["tir"]
    asm16 = texts["asm"].split("== M bucket 16 ==")[1].split("== ")[0]
    assert re.search(r"vpmaddwd|vpdpbusd|tdpbusd", asm16)  # the GEMM's loop is in its bucket
    rng = np.random.default_rng(0)
    A, B = rng.random((11, 128)).astype(np.float32), rng.random((128, 64)).astype(np.float32)
    want = lrqc.reference.matmul(lrqmm, A, B)
    np.testing.assert_allclose(kernel(A, kernel.pack(B)), want, rtol=1e-5, atol=1e-4)


def test_compile_writes_every_stage_to_dump_dir(lrqmm, tmp_path):
    lrqc.compile(lrqmm, 8, 64, 128, dump_dir=tmp_path / "stages")
    written = sorted(p.name for p in (tmp_path / "stages").iterdir())
    assert written == sorted(FILE_NAMES[e] for e in ("ir", "plan", "te", "tir", "llvm", "asm"))
    assert "== M bucket 8 ==" in (tmp_path / "stages" / "plan.txt").read_text()


def test_chains_print_each_product(tmp_path):
    s = lrqc.load_schemes(ROOT / "examples" / "lplr.lrq")["lplr_w_a8"]
    texts = {}
    pipeline_compile(s, 16, 128, 128, emit=("plan",), on_text=texts.__setitem__)
    assert "== product p1, M bucket 16 ==" in texts["plan"]
    assert "== product p2, M bucket 16 ==" in texts["plan"]


def test_cuda_stages_print_cuda_and_ptx(lrqmm):
    pytest.importorskip("tvm")
    from lrqc.backend.cuda import toolchain

    try:
        toolchain.nvcc_path()
    except LrqcError:
        pytest.skip("no nvcc")
    texts = {}
    pipeline_compile(lrqmm, 64, 256, 256, "cuda-sm80", emit=("cuda", "ptx"),
                     on_text=texts.__setitem__)
    assert "__global__" in texts["cuda"] and ".entry" in texts["ptx"]
    for name in ("cuda", "ptx"):  # each kernel's whole text in its bucket's section
        bucket = texts[name].split("== M bucket 64 ==")[1].split("\n== ")[0]
        assert "gemm_m64" in bucket and "quantize_a_m64" in bucket, name
        assert len(bucket.splitlines()) > 100, name
    with pytest.raises(LrqcError, match="asm not available for a CUDA target"):
        pipeline_compile(lrqmm, 64, 64, 128, "cuda-sm80", emit=("asm",))


def test_build_emit_prints_the_stages(capsys, tmp_path):
    argv = ["build", str(LRQMM), "--scheme", "lrqmm_int8", "--dims", "M=1..8,N=64,K=128",
            "--emit", "plan,tir,asm", "-o", str(tmp_path / "q")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert [m for m in re.findall(r"(?m)^==== (\w+) ====$", out)] == ["plan", "tir", "asm"]
    assert out.index("==== asm ====") < out.index("built lrqmm_int8")
    assert main([*argv[:-4], "--emit", "ptx", "-o", str(tmp_path / "r")]) == 1
    assert "--emit: ptx is for CUDA targets; this target has ir, plan, te, tir, llvm, asm" \
        in capsys.readouterr().err


def test_a_renamed_parameter_fails_the_te_stage(monkeypatch):
    """A TE placeholder renamed (here gemm's sb) is a PlanError at the te stage, naming the
    function and both lists, before anything is scheduled or built."""
    te_gemm = importlib.import_module("lrqc.backend.te.gemm")  # a module named like a variable
    real = te_gemm.te

    class Renamed:
        def __getattr__(self, attr):
            return getattr(real, attr)

        def placeholder(self, shape, dtype, name):
            return real.placeholder(shape, dtype, name="scales_b" if name == "sb" else name)

    monkeypatch.setattr(te_gemm, "te", Renamed())
    (s,) = lrqc.parse_schemes("scheme t {\n" + INT8 + "\n}\n").values()
    with pytest.raises(PlanError, match=r"function 'gemm' has parameters \['Aq', 'Bp', 'sa', "
                       r"'zc', 'scales_b', 'cs', 'bias', 'C'\], its signature says .*'sb'"):
        lrqc.compile(s, 4, 16, 64)


def test_the_runtime_refuses_a_parameter_it_cannot_bind(monkeypatch):
    """A signature naming a buffer that neither the bucket nor the packed operand holds is a
    PlanError when the kernel's buckets are made, not a wrong argument at a call."""
    real = sig.params

    def params(p, fn):
        return real(p, fn) + (("nowhere",) if fn == names.FN_GEMM else ())

    monkeypatch.setattr(sig, "params", params)
    with pytest.raises(PlanError, match="no buffer for parameter 'nowhere' of function 'gemm'"):
        buckets.Bucket(plan_of(INT8), module=None)


def test_the_compiler_refuses_the_sizes_bind_dims_refuses():
    s = lrqc.parse_schemes("scheme s {\n a: int8\n b: int8\n}\n")["s"]
    with pytest.raises(LrqcError, match="too large"):
        lrqc.compile(s, M=65536, N=65536, K=8)


def test_a_chains_m_range_starts_at_its_rank(tmp_path):
    """LRAMM's product (and LPLR activations) factor A's rows at rank r: an M range below r
    builds buckets from r, as A's lowrank terms do (it was refused: 'rank 8 exceeds min(M, N,
    K) = 1'); calls of r..hi rows give the reference's numbers, fewer rows are refused, and
    its artifact loads back (the manifest's buckets are checked against the same start)."""
    from lrqc.pipeline.export import build_artifact

    s = lrqc.parse_schemes("scheme l {\n product: lowrank(rank=8, method=rsvd, power_iters=1,"
                           " bits=(8, 8, 8))\n}\n")["l"]
    texts = {}
    kernel = pipeline_compile(s, (1, 24), 32, 32, emit=("plan",), on_text=texts.__setitem__)
    assert "M bucket 8 ==" in texts["plan"] and "M bucket 4 ==" not in texts["plan"]
    rng = np.random.default_rng(0)
    B = rng.standard_normal((32, 32)).astype(np.float32)
    packed = kernel.pack(B)
    for m in (8, 13, 24):
        A = rng.standard_normal((m, 32)).astype(np.float32)
        ref = lrqc.reference.matmul(s, A, B)
        assert np.abs(kernel(A, packed) - ref).max() <= 1e-4 * np.abs(ref).max(), m
    with pytest.raises(LrqcError, match="rank 8"):
        kernel(rng.standard_normal((5, 32)).astype(np.float32), packed)
    build_artifact(s, "1..24", 32, 32, tmp_path / "art")
    loaded = lrqc.load_kernel(tmp_path / "art")
    assert [p.m for p in loaded.plans] == [p.m for p in kernel.plans] == [8, 16, 24]
    A = rng.standard_normal((13, 32)).astype(np.float32)
    assert np.array_equal(loaded(A, loaded.pack(B)), kernel(A, packed))


def test_machine_code_is_generated_once(monkeypatch, tmp_path):
    """A module written to a library (threads="openmp", an artifact) is not also linked in
    memory, which would generate its machine code a second time; a kernel on TVM's pool is
    linked when compiled. Each kernel gives the reference's numbers."""
    from lrqc.pipeline import compile as compile_module
    from lrqc.pipeline.export import build_artifact
    from lrqc.reference import matmul
    from lrqc.runtime.artifact import load_kernel

    real, linked = compile_module.link_now, []

    def counted(c):
        linked.append(c.target.kind)
        real(c)

    monkeypatch.setattr(compile_module, "link_now", counted)
    from tvm.runtime.executable import Executable  # any function lookup JIT-links the module

    real_lookup, lookups = Executable.__getitem__, []
    monkeypatch.setattr(Executable, "__getitem__",
                        lambda ex, name: lookups.append(name) or real_lookup(ex, name))
    s = lrqc.parse_schemes("scheme t {\n a: int8 per_channel\n b: int4 per_channel\n}")["t"]
    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((8, 64)), rng.standard_normal((64, 32))
    want = matmul(s, A.astype(np.float32).astype(np.float64), B)
    kernels = [lrqc.compile(s, 8, 32, 64, threads="openmp")]
    build_artifact(s, 8, 32, 64, tmp_path / "k")
    assert linked == [] and lookups == []
    kernels += [load_kernel(tmp_path / "k"), lrqc.compile(s, 8, 32, 64, threads="tvm")]
    assert linked == ["llvm"] and len(lookups) == 1
    for k in kernels:
        np.testing.assert_allclose(k.run(A, B), want, rtol=2e-6, atol=1e-6 * np.abs(want).max())
