"""The AMX int8 tile rule (x86_amx): its kernels against lrqc.reference where the host has AMX
(integer sums bit for bit, including codes at the ends of their ranges), its tile instructions
in the assembly everywhere, and the plans it leaves to the VNNI rule, with reasons."""

from __future__ import annotations

import re

import numpy as np
import pytest

import lrqc
from lrqc.reference import int_accumulate, matmul, quantize
from lrqc.resources import enable_amx, host_cpu_flags

pytest.importorskip("tvm")

from .test_backend_cpu import _asm, check, data, scheme  # noqa: E402

HAS_AMX = "amx_int8" in host_cpu_flags() and enable_amx() is None
needs_amx = pytest.mark.skipif(not HAS_AMX, reason="this CPU (or its OS) has no AMX tiles to run")

CASES = [  # a, b, (M, N, K): every K a multiple of 64 (whole tile rows)
    ("int8 per_channel", "int8 per_channel", (7, 33, 128)),
    ("int8 per_tensor", "int8 per_tensor", (1, 16, 1024)),
    ("int8 per_tensor round=floor", "int4 per_channel", (100, 7, 64)),
    ("int8 per_channel round=trunc", "int3 per_channel", (16, 100, 192)),
    ("int8 per_channel", "int5 per_channel", (9, 33, 128)),  # codes packed densely
    ("int8 per_channel", "uint3 per_channel", (5, 20, 128)),  # zero points
    ("uint8 per_channel", "int8 per_channel", (9, 20, 64)),
    ("int4 per_channel", "int4 per_channel", (1000, 24, 64)),
    ("int8 per_channel", "int8 per_channel", (70, 96, 320)),  # 16-row tiles, 2 x 2 blocks
    ("int8 per_channel + lowrank(rank=4)", "int8 per_channel + lowrank(rank=4)", (40, 64, 256)),
    ("int8 per_channel round=trunc + sparse(threshold=0.5, max_density=0.35)",
     "int8 per_channel round=trunc + sparse(threshold=0.5, max_density=0.35)", (40, 64, 256)),
    # several scale groups: a tile block per group, dequantized into the output tile
    ("int8 per_vector(128)", "int8 per_vector(128)", (40, 64, 256)),
    ("int8 per_vector(128)", "int4 per_vector(128)", (33, 48, 384)),  # nibbles, odd rows
    ("int8 per_vector(192)", "uint4 per_vector(192)", (20, 32, 384)),  # zero points per group
    ("int8 per_vector(128) + lowrank(rank=4)", "int8 per_vector(128) + lowrank(rank=4)",
     (40, 64, 256)),
]


@needs_amx
@pytest.mark.parametrize("a,b,dims", CASES)
def test_amx_kernels_run_exactly(a, b, dims):
    s = scheme(a, b)
    kernel = lrqc.compile(s, *dims, target="x86-amx")
    assert kernel.rule == "x86_amx"
    check(kernel, s, *data(*dims, seed=6, dist="uniform" if a.startswith("uint") else "normal"))


def _codes(x, q, role, residual_of=None):
    """The reference's QArray of x (or of x's residual after residual_of's codes)."""
    return quantize(x if residual_of is None else x - residual_of.dequantize(), q, role)


@needs_amx
@pytest.mark.parametrize("dims", [(40, 64, 256), (33, 48, 384)])
def test_amx_runs_dense_terms_as_k_segments_exactly(dims):
    """Dense residual terms on both operands: three K segments (Q(A) Q(B), Q(R_A) Q(B),
    Q(A) Q(R_B)), one scale group each, on AMX tile blocks per segment. Every segment's
    integer sums equal the reference's bit for bit; C matches the reference's product."""
    q = "int8 per_channel round=trunc + dense(int8 per_tensor round=trunc)"
    s = scheme(q, q)
    kernel = lrqc.compile(s, *dims, target="x86-amx")
    assert kernel.rule == "x86_amx" and kernel.plan.nseg == 3
    A, B = data(*dims, seed=9)
    qa, qb = _codes(A, s.a.quant, "a"), _codes(B, s.b.quant, "b")
    segs = kernel.plan.segments
    ra = next(_codes(A, sg.qa, "a", qa) for sg in segs if sg.a == "res:0")
    rb = next(_codes(B, sg.qb, "b", qb) for sg in segs if sg.b == "res:0")
    codes = {("a", "base"): qa, ("b", "base"): qb, ("a", "res:0"): ra, ("b", "res:0"): rb}
    want = np.stack([part for sg in segs for _, part in int_accumulate(
        codes["a", sg.a], codes["b", sg.b])])
    packed = kernel.pack(B)
    np.testing.assert_array_equal(kernel.int_accumulate(A, packed), want)
    C, R = kernel(A, packed), matmul(s, A.astype(np.float64), B)
    assert np.abs(C - R).max() <= 1e-5 * np.abs(R).max()


@needs_amx
@pytest.mark.parametrize("a,b", [("int8 per_tensor", "int8 per_channel"),
                                 ("int8 per_vector(1024)", "int8 per_vector(1024)")])
def test_amx_sums_at_the_ends_of_the_code_ranges(a, b):
    """Every product at its extreme (A's codes 255 against B's -127 and +127 by column) over
    K = 4096 (one group, or four of 1024): sums of ±132 million, the int32 tiles exact."""
    s = scheme(a, b)
    M, N, K = 48, 64, 4096
    kernel = lrqc.compile(s, M, N, K, target="x86-amx")
    assert kernel.rule == "x86_amx"
    A = np.ones((M, K), np.float32)
    A[1::2] = -1.0  # codes at both ends of A's range
    B = np.where(np.arange(N) % 2 == 0, 1.0, -1.0)[None, :] * np.ones((K, 1))
    check(kernel, s, A, B)


@needs_amx
def test_amx_buckets_from_one_row():
    """An M range: buckets of 4 rows and up take tiles of fewer than 16 rows; each size runs
    against the reference."""
    s = scheme("int8 per_channel", "int8 per_channel")
    kernel = lrqc.compile(s, "1..100", 48, 256, target="x86-amx")
    assert kernel.rule == "x86_amx"
    for m in (1, 5, 13, 17, 64, 100):
        check(kernel, s, *data(m, 48, 256, seed=m))


def test_amx_rule_emits_tile_instructions():
    """Compiled for Sapphire Rapids on any host: the tile block's configuration, zeroed
    accumulators, loads, tdpbusd and stores; no vpdpbusd in the GEMM; C written with
    non-temporal stores and fenced once per parallel task (a conditional sfence)."""
    from lrqc.backend.target import resolve

    asm = _asm(scheme("int8 per_channel", "int8 per_channel"), (64, 64, 256), resolve("x86-amx"))
    for instr in ("ldtilecfg", "tilezero", "tileloadd", "tdpbusd", "tilestored", "vmovntps",
                  "sfence"):
        assert re.search(rf"\b{instr}\b", asm), instr
    assert asm.count("tdpbusd") >= 4 and "vpdpbusd" not in asm


def test_sized_intrinsics_register_from_a_trace():
    """A tuning record replayed in a fresh process names the AMX and streamed-tile intrinsics
    by their sizes: replay registers each from its name."""
    from lrqc.backend.compat import TensorIntrin
    from lrqc.backend.intrin import amx, stream
    from lrqc.backend.schedule.trace import register_intrinsics

    names = [amx.tiles(8, 2, 1, 192)[0], amx.zero(8, 2, 1)[0], stream.tile(16, 16, 48)[0]]
    register_intrinsics({"insts": [["Tensorize", [], [n]] for n in names]})
    for n in names:
        assert TensorIntrin.get(n) is not None


@pytest.mark.parametrize("body,reason", [
    ("a: int8 per_vector(32)\nb: int8 per_vector(32)", "per-group vectors of 32"),
    ("a: int8 per_vector(64)\nb: int8 per_vector(64)", "per-group vectors of 64"),
    ("a: int8 per_channel\nb: int8 per_channel", "not whole 64-byte tile rows"),
])
def test_amx_rule_leaves_other_plans_to_vnni(body, reason):
    from lrqc.backend.schedule.rules import choose
    from lrqc.backend.target import resolve
    from lrqc.plan.support import make_plan

    s = lrqc.parse_schemes(f"scheme s {{\n{body}\n}}")["s"]
    k = 100 if "tile rows" in reason else 256
    rule, skipped = choose("x86", make_plan(s, 8, 64, k), resolve("x86-amx"))
    assert rule.name == "x86_vnni"
    assert any(name == "x86_amx" and reason in why for name, why in skipped), skipped


def test_the_host_target_takes_amx_only_where_the_os_grants_it():
    from lrqc.backend.target import host_target

    assert ("amx-int8" in host_target().features) == HAS_AMX
    if "amx_int8" not in host_cpu_flags():
        assert "no AMX" in (enable_amx() or "") or "x86-64" in (enable_amx() or "")


def test_a_refused_tile_state_turns_amx_off_even_where_the_cpu_name_implies_it(monkeypatch):
    """LLVM names a Sapphire Rapids host 'sapphirerapids', which implies AMX: where Linux
    refuses the tile state the host target must switch the features off, not just leave them
    out, so its kernels take the VNNI rule."""
    import lrqc.backend.target as target
    from lrqc.backend.schedule.rules import choose
    from lrqc.plan.support import make_plan

    monkeypatch.setattr(target.codegen, "llvm_get_system_cpu", lambda: "sapphirerapids")
    monkeypatch.setattr(target, "host_cpu_flags",
                        lambda: {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq",
                                 "avx512_vnni", "amx_tile", "amx_int8"})
    monkeypatch.setattr(target, "enable_amx", lambda: "refused here")
    t = target.host_target()
    assert "amx-int8" not in t.features and "avx512vnni" in t.features
    plan = make_plan(scheme("int8 per_channel", "int8 per_channel"), 64, 64, 256)
    assert choose("x86", plan, t)[0].name == "x86_vnni"
    monkeypatch.setattr(target, "enable_amx", lambda: None)
    assert "amx-int8" in target.host_target().features


@needs_amx
def test_a_refused_tile_state_refuses_an_amx_kernel(monkeypatch):
    """An explicit x86-amx kernel where the OS refuses the tile state: LrqcError before any
    tile instruction runs, naming the VNNI target."""
    monkeypatch.setattr("lrqc.backend.target.enable_amx", lambda: "refused here")
    s = scheme("int8 per_channel", "int8 per_channel")
    with pytest.raises(lrqc.LrqcError, match="uses AMX tiles, but refused here.*x86-avx512-vnni"):
        lrqc.compile(s, 16, 32, 64, target="x86-amx")
