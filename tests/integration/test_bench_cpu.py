"""bench/cpu.py keeps running: its smallest paths in-process (tiny shapes, one round, short
peak runs), every section, the JSON record, and the torch-less install. Speed is not checked
here (docs/performance.md records measurements)."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

import lrqc
from tests.conftest import ROOT

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TINY = ["--shapes", "64,64,64", "--rounds", "1", "--gap", "0"]


@pytest.fixture
def cpu(monkeypatch):
    """bench/cpu.py as a module (it puts bench/ on sys.path for bench/common.py: undone after)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location("lrqc_bench_cpu", ROOT / "bench" / "cpu.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_section_at_tiny_shapes(cpu, capsys, tmp_path):
    out_json = tmp_path / "run.json"
    assert cpu.main([*TINY, "--comp-shapes", "32,64,64", "--packing-shapes", "16,64,64",
                     "--rows-shape", "64,64,64", "--rows", "5,33", "--layer-shapes", "64,32",
                     "--layer-rows", "1,3", "--peak-runs", "1", "--peak-iters", "100000",
                     "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    for text in ("instruction sets: avx2", "peaks, all threads", "numpy float32",
                 "torch dynamic-quant Linear", "lrqc w8a8 per_channel", "lrqc w4a8 per_channel",
                 "lrqc VS-Quant w4a4", "lrqc LRQMM rank 16, B only", "lrqc sparse 35 %",
                 "targets:", "w8a8 per_channel / torch dynamic-quant Linear at 64,64,64"):
        assert text in out, text
    record = json.loads(out_json.read_text())
    assert set(record["peaks"]) == set(cpu.common.PEAK_MODES)
    rows = {r["m"]: r for r in record["rows"]}  # calls of m rows on a kernel for M = 1..64
    assert set(rows) == {5, 33} and rows[5]["bucket"] == 8 and rows[33]["bucket"] == 64
    for r in rows.values():
        assert r["range_ms"] > 0 and r["padded_ms"] > 0 and r["exact_ms"] > 0, r
    assert "compiled for M = 1..64, called with m rows" in out
    layers = {r["rows"]: r for r in record["layers"]}  # lrqc.torch Linear(64 -> 32), 1 and 3 rows
    assert set(layers) == {1, 3} and layers[3]["shape"] == "3,32,64"
    for r in layers.values():
        assert r["lrqc_us"] > 0 and r["torch_dq_us"] > 0 and r["torch_dq_vs_lrqc"] > 0, r
    assert "Linear layers on a few rows" in out
    gemm = {r["method"]: r for r in record["gemm"]}
    assert list(gemm) == [cpu.NUMPY, cpu.TORCH_DQ, cpu.INT_MM, cpu.W8A8, cpu.W8A7, cpu.W4A8,
                          cpu.W4A4, cpu.VSQ]
    for name in (cpu.NUMPY, cpu.W8A8, cpu.W8A7, cpu.W4A8, cpu.W4A4, cpu.VSQ):  # lrqc, numpy
        assert (gemm[name]["ms"] or 0) > 0 and (gemm[name]["vs_numpy"] or 0) > 0, gemm[name]
    assert gemm[cpu.W8A8]["rule"] and gemm[cpu.NUMPY]["roof"] == cpu.common.numpy_roof()
    # the least time of a w8a8 call: its GEMM at its instruction's measured peak after the
    # pass over A (64 x 64 float32 read, codes written) at the measured bandwidth
    w8 = gemm[cpu.W8A8]
    peak = record["peaks"][w8["roof"]]["value"]
    pass_ms = 5 * 64 * 64 / cpu.bandwidth() * 1e3
    assert w8["least_ms"] == pytest.approx(2 * 64**3 / (peak * 1e9) * 1e3 + pass_ms)
    assert "at the" in w8["least_why"] and "after A's pass" in w8["least_why"]
    comp = {r["case"]: r for r in record["compensation"]}
    assert set(comp) == {cpu.NUMPY, *cpu.COMP}
    for name, (_, direct) in cpu.COMP.items():
        assert (comp[name]["ms"] or 0) > 0 and comp[name]["rel_error"] < 0.05, comp[name]
        assert ((comp[name]["vs_direct"] or 0) > 0) if direct else comp[name]["vs_direct"] is None
    assert comp[cpu.R16]["rel_error"] < comp[cpu.FLOOR_D]["rel_error"]  # compensation helps
    # the least time the low-rank work adds
    for name in (cpu.R1, cpu.R1P, cpu.R16, cpu.R16P, cpu.R16B):
        assert comp[name]["floor_ms"] > 0 and comp[name]["floor_ratio"] > 1, comp[name]
        assert f"lrqc {name}: low-rank work: at least" in out
    assert "floor_ms" not in comp[cpu.SP5]
    # B only, rank 16 at 32,64,64: U_B = A' L_B and the epilogue, 2 M K 16 + 2 M N 16 flops
    flops, nbytes = cpu.comp_bounds.lowrank_work(_plan(cpu, cpu.R16B), 32, 64, 64)
    assert (flops, nbytes) == (2 * 32 * 64 * 16 * 2, 0)
    # rank 1 sketch on both: 8 M K (t, Rᵀ t, R u, Rᵀ a) + 2 K N (W) + 2 M K (U_B) + 4 M N;
    # R written and read twice, the float32 B read once
    flops, nbytes = cpu.comp_bounds.lowrank_work(_plan(cpu, cpu.R1), 32, 64, 64)
    assert flops == 8 * 32 * 64 + 2 * 64 * 64 + 2 * 32 * 64 + 4 * 32 * 64
    assert nbytes == 4 * 32 * 64 * 3 + 4 * 64 * 64
    # other=packed: the same work, without the float32 B
    assert cpu.comp_bounds.lowrank_work(_plan(cpu, cpu.R1P), 32, 64, 64) == (flops,
                                                                              4 * 32 * 64 * 3)
    # B in 16 bits: 2 bytes per value of B to read
    assert cpu.comp_bounds.lowrank_work(_plan(cpu, cpu.R1), 32, 64, 64, 2)[1] == \
        nbytes - 2 * 64 * 64
    # the floor's bytes: each touch of an array counts past the last-level cache only. Rank 1
    # with the float32 B at 32,64,64: R (8 KiB) written and read twice, B (16 KiB) read once
    plan = _plan(cpu, cpu.R1)
    assert cpu.comp_bounds.lowrank_traffic(plan, 32, 64, 64) == [(4 * 32 * 64, 3),
                                                                 (4 * 64 * 64, 1)]
    flops, nbytes = cpu.comp_bounds.lowrank_work(plan, 32, 64, 64)
    slow = 1e6  # bytes/s: the bytes dominate the floor
    full = cpu.comp_bounds.least_extra_ms(plan, 32, 64, 64, 100.0, slow)
    assert full["floor_ms"] == pytest.approx(nbytes / slow * 1e3)
    for cache, past in ((4096, 3 * 4096 + 3 * 4096), (8192, 8192), (16384, 0), (1 << 25, 0)):
        got = cpu.comp_bounds.least_extra_ms(plan, 32, 64, 64, 100.0, slow, 4, cache)
        assert got["floor_ms"] == pytest.approx(max(past / slow * 1e3, flops / 100e9 * 1e3))
        assert "past the" in got["floor_why"] and "last-level cache" in got["floor_why"]
    assert cpu.common.cache_bytes() >= 0
    assert comp[cpu.R16H]["rel_error"] < comp[cpu.FLOOR_D]["rel_error"]
    packed = {r["method"]: r for r in record["packing"]}
    for mode in ("weight-only", "w·a8"):
        bits = {b: packed[f"{mode} int{b}"] for b in (8, 4, 3, 5, 6)}
        assert [bits[b]["bits"] for b in (8, 4, 3, 5, 6)] == [8, 4, 3, 5, 6]
        assert bits[3]["bpw"] < bits[4]["bpw"] < bits[5]["bpw"] < bits[6]["bpw"] < bits[8]["bpw"]
        assert all((r["ms"] or 0) > 0 and r["vs_int4"] for r in bits.values()), bits
    assert "weight-only int3 time / int4 at 16,64,64" in out
    assert "w·a8 int3 weight codes / int4's at 16,64,64" in out
    assert all(t["met"] in (True, False, None) for t in record["targets"])
    groups = {t["target"]: t for t in record["targets"]}[
        "VS-Quant w4a4 time / w4a4 per_channel's at 64,64,64"]  # per-vector scales' cost
    assert groups["value"] == pytest.approx(gemm[cpu.VSQ]["ms"] / gemm[cpu.W4A4]["ms"])
    assert groups["goal"] == 1.3 and not groups["at_least"]


def test_like_for_like_row_in_the_torch_targets_reason(cpu):
    """The w8a8 / torch target's reason quotes lrqc on torch's own formats (7-bit activations
    per tensor, weights per channel), where that row was measured."""
    s = cpu.gemm_schemes()[cpu.W8A7]
    a, b = s.a.quant, s.b.quant  # torch: uint8 reduced to 7 bits, min-max; qint8, symmetric
    assert (a.fmt, a.granularity.value, a.calibrate.value) == ("uint7", "per_tensor", "minmax")
    assert (b.fmt, b.granularity.value, b.calibrate.value) == ("int8", "per_tensor", "maxabs")
    assert cpu.like_for_like(None) == "" and cpu.like_for_like({"vs_torch_dq": None}) == ""
    assert cpu.like_for_like({"vs_torch_dq": 1.234}) == (
        "on torch's own formats (7-bit activations per tensor, int8 weights per tensor) lrqc "
        "runs at 1.23x torch's speed")


def test_cache_size_from_sysfs_or_zero(cpu, monkeypatch, tmp_path):
    """common.cache_bytes: the largest of cpu0's caches from sysfs ("32768K" -> 32 MiB), sizes
    it cannot read or parse skipped, 0 where the folder is missing or unreadable."""
    common = cpu.common
    base = tmp_path / "cache"
    for name, size in (("index0", "48K"), ("index2", "1024K"), ("index3", "32768K"),
                       ("index9", "lots")):
        (base / name).mkdir(parents=True)
        (base / name / "size").write_text(size + "\n")
    (base / "uevent").write_text("")
    real = common.os.path.join
    monkeypatch.setattr(common.os.path, "join", lambda a, *b: real(
        str(base) if a == "/sys/devices/system/cpu/cpu0/cache" else a, *b))
    real_list = common.os.listdir
    monkeypatch.setattr(common.os, "listdir", lambda p: real_list(
        base if p == "/sys/devices/system/cpu/cpu0/cache" else p))
    assert common.cache_bytes() == 32 << 20

    def denied(path):
        raise PermissionError(13, "denied", path)

    monkeypatch.setattr(common.os, "listdir", denied)
    assert common.cache_bytes() == 0


def test_per_vector_reason_gives_the_inner_loops_measured_roofs(cpu):
    """A missed per-vector target names the least ratios the inner loops alone allow, from
    bench/peak.c's modes, and only the instruction count where they were not measured."""
    why = cpu.groups_why({"vnni_blocks": 1800.0, "vnni_groups": 1350.0, "vnni_pairs": 1560.0,
                          "vnni_pairs_offset": 1500.0})
    assert why.startswith(cpu.GROUPS_WHY)
    assert ">= 1.33 with float scales per group" in why and ">= 1.15 with int16 pairs" in why
    assert ">= 1.20 less A's zero correction" in why
    lacks = "this CPU lacks avx512_vnni"
    modes = ("vnni_blocks", "vnni_groups", "vnni_pairs", "vnni_pairs_offset")
    assert cpu.groups_why({m: lacks for m in modes}) == cpu.GROUPS_WHY
    assert cpu.groups_why({}) == cpu.GROUPS_WHY


def _plan(cpu, case: str):
    """The kernel plan of one of the compensation section's cases (32 rows)."""
    s = cpu.common.scheme(cpu.COMP[case][0])
    return lrqc.compile(s, 32, 64, 64).plan


def test_every_section_times_with_the_warm_calls_asked_for(cpu, capsys, monkeypatch):
    """--warm reaches every section's rounds: without the untimed calls right before it, a
    small call after the pause timed its sleeping threads' wake-up (w8a8 at 16,4096,4096:
    7.7 ms in the packing section against 0.44 in the GEMM section)."""
    import common

    warms = []
    real = common.interleaved

    def spy(*args, **kwargs):
        warms.append(kwargs.get("warm", args[6] if len(args) > 6 else 0))
        return real(*args, **kwargs)

    monkeypatch.setattr(common, "interleaved", spy)
    assert cpu.main([*TINY, "--sections", "gemm,compensation,packing", "--comp-shapes",
                     "32,64,64", "--packing-shapes", "16,64,64", "--warm", "2"]) == 0
    capsys.readouterr()
    assert len(warms) >= 3 and set(warms) == {2}, warms


def test_without_torch_its_rows_say_so(cpu, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    assert cpu.main([*TINY, "--sections", "gemm,layers"]) == 0
    out = capsys.readouterr().out
    assert "skipped: " in out.split("Linear layers on a few rows")[1]  # no lrqc.torch either
    assert out.count("torch not installed") >= 3  # the machine line and both torch rows
    assert "lrqc w8a8 per_channel" in out
    assert "w8a8 per_channel / torch dynamic-quant Linear at 64,64,64" in out


def test_sections_and_shapes_are_checked(cpu):
    with pytest.raises(SystemExit):
        cpu.main(["--sections", "gemm,speed"])
    with pytest.raises(SystemExit, match="M,N,K"):
        cpu.main(["--sections", "gemm", "--shapes", "64,64"])


def test_the_torch_int8_peer_is_quantized(cpu):
    """The dynamic-quant peer runs torch's quantized Linear: quantize_dynamic does not replace
    a bare Linear handed to it (only children), which would time a float32 Linear instead."""
    torch = pytest.importorskip("torch")
    import numpy as np

    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((8, 32)), rng.standard_normal((32, 16))
    calls = cpu.common.torch_calls(A, B, int_mm=False)
    fn = calls["torch dynamic-quant Linear"]
    assert callable(fn), fn
    C = fn().numpy()
    assert C.shape == (8, 16)
    exact = A.astype(np.float32) @ B.astype(np.float32)
    err = np.abs(C - exact).max() / np.abs(exact).max()
    assert 1e-5 < err < 0.1, err  # int8 rounding shows; a float32 Linear would be ~1e-7
    del torch


def test_each_rule_is_measured_against_its_own_instruction(cpu):
    """The /peak column's roof follows the rule's declared instruction: AMX's tdpbusd, the
    VNNI rules' vpdpbusd (256-bit for AVX-VNNI), AVX2's vpmaddwd, vpsignb + vpmaddubsw, or
    vpmaddubsw; the float tile's FMA."""
    roof = cpu.common.roof_mode
    flags = {"avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"}

    class K:
        def __init__(self, rule):
            self.rule = rule

    assert roof(K("x86_amx"), flags)[0] == "amx"
    assert roof(K("x86_vnni"), flags)[0] == "vnni"
    assert roof(K("x86_avxvnni"), flags)[0] == "avxvnni"
    assert roof(K("x86_avx2"), flags)[0] == "avx2"
    assert roof(K("x86_avx2_signed"), flags)[0] == "avx2_s8"
    assert roof(K("x86_avx2_bytes"), flags)[0] == "avx2_u8"
    assert roof(K("float32_tile"), flags)[0] == "fma"


def test_sparse_quads_count_the_lists_each_product_ran(cpu):
    """common.sparse_quads: the quads of nonzeros a call's sparse products ran four at a time,
    counted from the lists they ran on (each padded to a multiple of four, once per 64 (AVX2:
    32) columns or rows), where every product ran so, with their form; None where one ran
    dense, or on a CPU without AVX2 (no quads there), and the instruction bound printed from
    it."""
    import numpy as np

    from lrqc.backend.te import sparse_quads

    common = cpu.common
    n, k = 128, 256
    rng = np.random.default_rng(1)
    B = rng.random((k, n), dtype=np.float32)
    for base, m in ((common.TRUNC_PC, 64), ("int8 per_vector(64) round=trunc", 50)):
        # per_vector(64): four lists a row or column, one per scale group; 50 rows run in the
        # bucket of 64 (its last 14 rows copies of the 50th)
        s = common.scheme(common.both(base, common.sparse(5)))
        kernel = lrqc.compile(s, (1, 64), n, k)
        A = rng.random((m, k), dtype=np.float32)
        packed = kernel.pack(B)
        kernel(A, packed)
        ran = common.sparse_quads(kernel, packed)
        form = sparse_quads.form(kernel.target)
        if not form:
            assert ran is None
            return
        quads, got_form = ran
        assert got_form == form
        w = sparse_quads.width(form)
        bk = kernel._buckets[-1]
        groups = 1 if base == common.TRUNC_PC else k // 64
        expected = 0
        for j, sp in enumerate(bk.plan.sparse):
            if sp.side == "a":  # A's copy by rows and groups, once per w columns of C
                S = bk.comp.sparse[j][0].numpy()
                assert S.shape[0] == 64 and np.array_equal(S[m:], np.repeat(S[m - 1:m], 64 - m, 0))
                expected += sum(-(-len(np.flatnonzero(part)) // 4) for row in S
                                for part in np.split(row, groups)) * (n // w)
            else:  # B's copy by columns and groups, once per w rows
                Bs = packed.arrays.sparse[j]
                assert len(Bs.ptr) == n * groups + 1
                expected += sum(-(-int(Bs.ptr[c + 1] - Bs.ptr[c]) // 4)
                                for c in range(len(Bs.ptr) - 1)) * (64 // w)
        assert quads == expected and quads > 0, (base, quads, expected)
    row = cpu.sparse_bound(kernel, A, packed, {f"{form}_quads": 8.0 * w})
    assert row["sparse_quads"] == quads and row["quads_mode"] == f"{form}_quads"
    assert row["quads_ms"] == pytest.approx(quads / 1e9 * 1e3)  # 8 w ops a quad at 8 w GOPS
    why = cpu.sparse_why({**row, "sparse_ms": 9.0, "sparse_bound_ms": 0.0}, {"ms": 1.0})
    assert why.startswith("sparse products 9.0 ms against an instruction bound of ")
    assert why.endswith(f"they allow >= {1 + row['quads_ms']:.2f}")
    dense = lrqc.compile(common.scheme(common.both(common.TRUNC_PC, common.sparse(60))), m, n, k)
    pd = dense.pack(B)
    dense(A, pd)
    assert any(" ran dense" in note for note in dense.last_notes), dense.last_notes
    assert common.sparse_quads(dense, pd) is None
