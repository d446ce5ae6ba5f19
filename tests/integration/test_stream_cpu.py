"""Large outputs written with non-temporal stores: the x86 rules' GEMMs whose bucket's C has at
least tiles.STREAM_BYTES stream each row tile to C and fence after their loop of row tiles
(rowbound.fence_after), which a call of fewer rows ends early. Every call's C against
lrqc.reference (calls of many and few rows in turn, several threads at once), the rows past a
call's last tile untouched, and the scheduled code: streamed stores exactly where C is large,
one fence after each bounded loop of row tiles."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest

import lrqc
from lrqc.plan import names

pytest.importorskip("tvm")

from lrqc.backend import rowbound  # noqa: E402
from lrqc.backend.compat import T, tensor  # noqa: E402
from lrqc.backend.intrin import stream  # noqa: E402
from lrqc.backend.schedule import tiles  # noqa: E402
from lrqc.backend.target import host_target, resolve  # noqa: E402
from lrqc.pipeline.compile import compile as compile_kernel  # noqa: E402

N, K = 1024, 64  # 512 rows x 1024 columns of float32: 2 MiB, the smallest C that is streamed
ROWS = (512, 3, 450, 511, 1, 385, 300, 512)  # buckets 512 (streamed) and 384 (not) in turn

# single-group integer products (int8 and packed int4 weights), B's low-rank epilogue (its
# tile summed in registers, then streamed), the float32 GEMM of a float operand
SCHEMES = [
    ("int8 per_channel", "int8 per_channel"),
    ("int8 per_channel", "int4 per_channel"),
    ("int8 per_channel", "int4 per_channel + lowrank(rank=2)"),
    ("float32", "int4 per_channel"),
]
TARGETS = ["host", "x86-avx2"]


def scheme(a: str, b: str) -> lrqc.Scheme:
    return lrqc.parse_schemes(f"scheme t {{\n a: {a}\n b: {b}\n}}")["t"]


def _target(name: str):
    return None if name == "host" else resolve(name)


def _check(s, A, B, C) -> None:
    ref = lrqc.reference.matmul(s, A.astype(np.float64), B)
    assert C.shape == ref.shape
    np.testing.assert_allclose(C, ref, rtol=2e-5, atol=2e-5 * np.abs(ref).max())


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("a,b", SCHEMES)
def test_streamed_outputs_of_any_rows_match_the_reference(a, b, target):
    if target != "host" and "avx2" not in host_target().features:
        pytest.skip("this CPU lacks AVX2")
    s = scheme(a, b)
    kernel = lrqc.compile(s, "1..512", N, K, target=_target(target))
    rng = np.random.default_rng(11)
    B = rng.standard_normal((K, N))
    packed = kernel.pack(B)
    for m in ROWS:
        A = rng.standard_normal((m, K)).astype(np.float32)
        _check(s, A, B, kernel(A, packed))


def test_streamed_rows_past_the_calls_last_tile_are_not_written():
    """A call of m rows on the streamed bucket leaves C's rows from m rounded up to 8 (the
    rules' largest row tile) as they were: its fence follows the tiles it ran."""
    s = scheme(*SCHEMES[0])
    kernel = lrqc.compile(s, "385..512", N, K)  # one bucket, of 512 rows
    rng = np.random.default_rng(3)
    B = rng.standard_normal((K, N))
    packed = kernel.pack(B)
    for m in (512, 450, 389):
        A = rng.standard_normal((m, K)).astype(np.float32)
        bk, _ = kernel._quantize(A)
        out = tensor(np.full((bk.plan.mp, bk.plan.np_), -7.25, np.float32))
        bk.run(names.FN_GEMM, packed, out)
        C = out.numpy()
        _check(s, A, B, C[:m, :N])
        assert (C[-(-m // 8) * 8:] == -7.25).all()


def test_streamed_kernel_shared_by_threads():
    s = scheme(*SCHEMES[1])
    kernel = lrqc.compile(s, "1..512", N, K)
    rng = np.random.default_rng(8)
    B = rng.standard_normal((K, N))
    packed = kernel.pack(B)
    inputs = [rng.standard_normal((m, K)).astype(np.float32) for m in (512, 400, 7, 511)]
    results: dict[int, list] = {i: [] for i in range(len(inputs))}

    def work(i: int) -> None:
        for _ in range(6):
            results[i].append(kernel(inputs[i], packed))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, A in enumerate(inputs):
        assert len(results[i]) == 6
        for C in results[i]:
            _check(s, A, B, C)


def _functions(s: lrqc.Scheme, m: int, target: str) -> dict[str, str]:
    texts: dict[str, str] = {}
    compile_kernel(s, m, N, K, target=resolve(target), emit=("tir",),
                   on_text=texts.__setitem__)
    parts = re.split(r"\n@T.prim_func[^\n]*\ndef ", texts["tir"])
    return {p.split("(", 1)[0]: p for p in parts[1:]}


@pytest.mark.parametrize("target", ["x86-avx512-vnni", "x86-avx2", "x86-avxvnni"])
@pytest.mark.parametrize("a,b", SCHEMES)
def test_large_outputs_stream_with_one_fence_after_the_bounded_row_tiles(a, b, target):
    """Compiled, not run (the target need not be this CPU's): at 512 rows the GEMM stores C
    with non-temporal stores and an sfence follows its loop of row tiles, bounded by m_rows,
    inside the parallel loop over column panels; at 256 rows (1 MiB) it stores C plainly; the
    integer sums of int_acc are never streamed."""
    fns = _functions(scheme(a, b), 512, target)
    gemm = fns["gemm_m512"]
    assert stream.STORE in gemm
    lines = gemm.splitlines()
    fences = [n for n, line in enumerate(lines) if rowbound.SFENCE in line]
    assert len(fences) == 1, gemm[:4000]
    indent = len(lines[fences[0]]) - len(lines[fences[0]].lstrip())
    loop = next(line for line in reversed(lines[:fences[0]])
                if len(line) - len(line.lstrip()) == indent and line.lstrip().startswith("for"))
    assert "m_rows" in loop, loop  # the fence follows the loop a call ends early
    outer = next(line for line in reversed(lines[:fences[0]])
                 if len(line) - len(line.lstrip()) < indent and "for " in line)
    assert "T.parallel" in outer, outer
    assert not any(stream.STORE in f for name, f in fns.items() if not name.startswith("gemm"))
    small = _functions(scheme(a, b), 256, target)["gemm_m256"]
    assert stream.STORE not in small and rowbound.SFENCE not in small


def test_other_llvm_targets_store_plainly():
    fns = _functions(scheme(*SCHEMES[0]), 512, "aarch64")
    assert not any(stream.STORE in f or rowbound.SFENCE in f for f in fns.values())


def test_stream_threshold_is_two_mebibytes():
    assert tiles.STREAM_BYTES == 512 * N * 4  # the shapes above straddle it


def _marked(wrap: bool):
    @T.prim_func(s_tir=True)
    def plain(C: T.Buffer((8,), "float32"), n: T.int32):
        for i in T.serial(8, annotations={rowbound.FENCE_AFTER: 1}):
            with T.sblock("c"):
                vi = T.axis.spatial(8, i)
                C[vi] = T.float32(1)

    @T.prim_func(s_tir=True)
    def guarded(C: T.Buffer((8,), "float32"), n: T.int32):
        if n > 0:
            for i in T.serial(8, annotations={rowbound.FENCE_AFTER: 1}):
                with T.sblock("c"):
                    vi = T.axis.spatial(8, i)
                    C[vi] = T.float32(1)

    return guarded if wrap else plain


def test_fence_follows_the_marked_loop_and_a_mark_out_of_reach_is_refused():
    done = rowbound.bound(_marked(False), takes_rows=False)
    text = done.script()
    assert rowbound.FENCE_AFTER not in text
    assert text.index(rowbound.SFENCE) > text.index("C[vi] = T.float32(1.0)")
    with pytest.raises(RuntimeError, match=rowbound.FENCE_AFTER):
        rowbound.bound(_marked(True), takes_rows=False)
