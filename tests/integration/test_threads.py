"""Kernels called from several Python threads at once give, bit for bit, the C of the same call
made alone: a plain integer kernel (over M buckets), a compensated one (lowrank terms on both
operands, the shipped lrqmm_int8), an LPLR chain; pack(), int_accumulate() and stage_times()
in threads too; and the same kernels with their parallel loops on OpenMP threads."""

from __future__ import annotations

import threading
from dataclasses import asdict

import numpy as np
import pytest

import lrqc

pytest.importorskip("tvm")

THREADS, CALLS = 6, 12


def example(file: str, name: str):
    return lrqc.load_schemes(f"examples/{file}")[name]


def in_threads(work, n: int = THREADS) -> list:
    """work(i) for i < n, each in its own thread, all started together; the results in order
    (an exception in a thread is raised here)."""
    out: list = [None] * n
    errors: list = []
    start = threading.Barrier(n)

    def run(i):
        try:
            start.wait()
            out[i] = work(i)
        except BaseException as exc:  # noqa: BLE001  (re-raised in the caller)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def check_concurrent_calls(kernel, B, inputs, calls: int = CALLS):
    """Every thread calls kernel `calls` times on a rotation of `inputs` (different A at the
    same moment); each C must equal, bit for bit, the same call made alone."""
    packed = kernel.pack(B)
    alone = [kernel(A, packed) for A in inputs]

    def work(i):
        return [(j, kernel(inputs[j], packed))
                for j in ((i * 5 + r) % len(inputs) for r in range(calls))]

    for results in in_threads(work):
        for j, C in results:
            np.testing.assert_array_equal(C, alone[j])
    return packed


def test_integer_kernel_with_m_buckets():
    s = lrqc.parse_schemes("scheme s {\n a: int8 per_channel\n b: int4 per_vector(16)\n}")["s"]
    kernel = lrqc.compile(s, M="1..16", N=32, K=64)
    rng = np.random.default_rng(0)
    B = rng.standard_normal((64, 32))
    # several A of the same bucket, and of every bucket (rows 1..16), in flight together
    inputs = [rng.standard_normal((m, 64)).astype(np.float32) for m in (16, 16, 13, 8, 3, 1, 16)]
    packed = check_concurrent_calls(kernel, B, inputs)
    alone = [kernel.int_accumulate(A, packed) for A in inputs]
    for acc in in_threads(lambda i: [kernel.int_accumulate(A, packed) for A in inputs]):
        for got, want in zip(acc, alone, strict=True):
            np.testing.assert_array_equal(got, want)
    # pack in threads: every copy equals the one made alone
    for p in in_threads(lambda i: kernel.pack(B)):
        np.testing.assert_equal(asdict(p.arrays), asdict(packed.arrays))
    # stage_times while other threads call: the calls stay exact, the timings are numbers
    def mixed(i):
        if i % 2:
            return kernel.stage_times(inputs[0], packed, repeat=2)
        return [kernel(A, packed) for A in inputs]

    ref = [kernel(A, packed) for A in inputs]
    for i, res in enumerate(in_threads(mixed)):
        if i % 2:
            assert set(res) >= {"copy_a", "quantize_a", "gemm"}
            assert all(t >= 0 for t in res.values())
        else:
            for got, want in zip(res, ref, strict=True):
                np.testing.assert_array_equal(got, want)


def test_compensated_kernel_lowrank_on_both_operands():
    s = example("lrqmm.lrq", "lrqmm_int8")
    kernel = lrqc.compile(s, M="4..16", N=32, K=48)
    rng = np.random.default_rng(1)
    B = rng.random((48, 32))
    inputs = [rng.random((m, 48)).astype(np.float32) for m in (16, 16, 5, 9, 4, 12)]
    check_concurrent_calls(kernel, B, inputs)


@pytest.mark.parametrize("term", ["lowrank(rank=1, method=sketch, power_iters=1)",
                                  "lowrank(rank=4, method=rsvd, oversample=4)"])
def test_compensated_kernel_whose_host_passes_use_both_cores(term):
    """A's residual large enough (1100 x 1024) that its factorization's passes run in row
    blocks on the host pool (lrqc.runtime.linalg) while other threads call the same kernel:
    bit for bit the calls made alone, and the reference's numbers."""
    s = lrqc.parse_schemes("scheme s {\n a: int8 per_tensor round=floor + " + term +
                           "\n b: int8 per_tensor round=floor\n}")["s"]
    kernel = lrqc.compile(s, M="600..1100", N=32, K=1024)
    rng = np.random.default_rng(2)
    B = rng.random((1024, 32))
    inputs = [rng.random((m, 1024)).astype(np.float32) for m in (1100, 700, 1100)]
    packed = check_concurrent_calls(kernel, B, inputs, calls=2)
    want = lrqc.reference.matmul(s, inputs[1].astype(np.float64), B)
    got = kernel(inputs[1], packed)
    assert np.abs(got - want).max() <= 2e-5 * np.abs(want).max()


def test_sparse_terms_keep_their_notes_per_call():
    """A kernel whose per-call notes depend on A (a sparse copy of A, sparse or dense as the
    data says): after threaded calls, last_notes is the whole list of one of those calls."""
    s = lrqc.parse_schemes("scheme s {\n a: int8 per_channel + sparse(threshold=0.5)\n"
                           " b: int8 per_channel\n}")["s"]
    kernel = lrqc.compile(s, M=8, N=16, K=32)
    rng = np.random.default_rng(2)
    B = rng.standard_normal((32, 16))
    inputs = [rng.standard_normal((8, 32)).astype(np.float32) * (1 + j) for j in range(4)]
    packed = kernel.pack(B)
    notes = []
    for A in inputs:
        kernel(A, packed)
        notes.append(kernel.last_notes)
    check_concurrent_calls(kernel, B, inputs)
    assert kernel.last_notes in notes


def test_lplr_chain():
    s = example("lplr.lrq", "lplr_w_a8")
    s = lrqc.parse_schemes(lrqc_text(s).replace("rank=83", "rank=12"))[s.name]
    kernel = lrqc.compile(s, M="1..8", N=32, K=48)
    rng = np.random.default_rng(3)
    B = rng.standard_normal((48, 32))
    inputs = [rng.standard_normal((m, 48)).astype(np.float32) for m in (8, 8, 8, 3, 1, 8)]
    packed = check_concurrent_calls(kernel, B, inputs, calls=40)  # numpy glue between calls
    for p in in_threads(lambda i: kernel.pack(B), n=3):  # the factors, identical per thread
        np.testing.assert_array_equal(kernel(inputs[0], p), kernel(inputs[0], packed))


def lrqc_text(s) -> str:
    from lrqc.frontend.unparse import unparse

    return unparse(s)


@pytest.mark.parametrize("case", ["buckets", "lowrank", "lplr"])
def test_kernels_on_openmp_threads(case):
    """threads="openmp": the parallel loops run on the process's OpenMP threads (the launcher
    counts them), C equals the TVM thread pool's bit for bit, and concurrent calls stay exact."""
    from lrqc.backend import openmp

    rng = np.random.default_rng(3)
    if case == "buckets":
        s = lrqc.parse_schemes("scheme s {\n a: int8 per_channel\n b: int8 per_channel\n}")["s"]
        dims, K, N = "1..64", 96, 80
    elif case == "lowrank":
        s, dims, K, N = example("lrqmm.lrq", "lrqmm_int8"), "4..32", 48, 32
    else:
        s = example("lplr.lrq", "lplr_w_a8")
        s = lrqc.parse_schemes(lrqc_text(s).replace("rank=83", "rank=12"))[s.name]
        dims, K, N = "1..32", 64, 40
    omp = lrqc.compile(s, M=dims, N=N, K=K, threads="openmp")
    tvm = lrqc.compile(s, M=dims, N=N, K=K, threads="tvm")
    assert (omp.threads, tvm.threads) == ("openmp", "tvm")
    for kernel in (omp, tvm):  # a chain's parts share its library, so its threads
        assert all(part.threads == kernel.threads for part in getattr(kernel, "kernels", []))
    B = rng.standard_normal((K, N))
    inputs = [rng.standard_normal((m, K)).astype(np.float32) for m in (32, 17, 4, 9, 32)]
    packed_omp, packed_tvm = omp.pack(B), tvm.pack(B)
    before = openmp.launches()
    for A in inputs:
        np.testing.assert_array_equal(omp(A, packed_omp), tvm(A, packed_tvm))
    assert openmp.launches() > before  # the loops ran on OpenMP, not on TVM's pool
    check_concurrent_calls(omp, B, inputs)
    check_concurrent_calls(tvm, B, inputs)


@pytest.mark.parametrize("term,host", [
    ("lowrank(rank=1, method=sketch, power_iters=1)", True),  # R scaled: numpy's passes
    ("lowrank(rank=1, method=sketch, power_iters=1)", False),  # quantize_a's, sketch_ab's
    ("lowrank(rank=4, method=rsvd, oversample=4)", True),  # R scaled: numpy's products
    ("lowrank(rank=4, method=rsvd, oversample=4)", False)])  # resid_tq and resid_z
def test_a_lowrank_factors_run_on_the_kernels_openmp_threads(term, host, monkeypatch):
    """A kernel on OpenMP threads runs the host's per-call factorization of A's residual (its
    products and row-block passes, lrqc.runtime.linalg, split over the cores from a lowered
    amount of work here) on those threads too: the parts counter moves, C equals TVM's
    pool's (whose kernel runs them on a Python pool) bit for bit, concurrent calls stay exact,
    and the numbers are the reference's. The products with R run as the kernel's compiled
    functions instead (host False: the randomized SVD's resid_tq and resid_z, the sketch's
    quantize_a and sketch_ab), unless R is scaled first (forced here for host True)."""
    from lrqc.backend import openmp
    from lrqc.runtime import factors, linalg

    if host:
        monkeypatch.setattr(factors, "UNSCALED_EXPONENT", -1)  # every R scaled: numpy's
    monkeypatch.setattr(linalg, "PARALLEL_WORK", 1 << 10)
    monkeypatch.setattr(linalg, "BLOCK_BYTES", 1 << 12)  # several blocks per part
    s = scheme_of("a: int8 per_tensor round=floor + " + term +
                  "\n b: int8 per_tensor round=floor")
    rng = np.random.default_rng(5)
    B = rng.random((256, 32))
    inputs = [rng.random((m, 256)).astype(np.float32) for m in (96, 70, 96)]
    omp = lrqc.compile(s, M="64..96", N=32, K=256, threads="openmp")
    tvm = lrqc.compile(s, M="64..96", N=32, K=256, threads="tvm")
    packed_omp, packed_tvm = omp.pack(B), tvm.pack(B)
    assert all(bk.r_products for bk in omp._buckets) == ("rsvd" in term)
    assert all((bk.comp.Sb is not None) == ("sketch" in term) for bk in omp._buckets)
    before, launched = openmp.part_runs(), openmp.launches()
    for A in inputs:
        np.testing.assert_array_equal(omp(A, packed_omp), tvm(A, packed_tvm))
    assert (openmp.part_runs() > before) == host
    assert openmp.launches() > launched
    pool_before = openmp.part_runs()
    tvm(inputs[0], packed_tvm)
    assert openmp.part_runs() == pool_before  # TVM's pool: the glue is not on OpenMP
    check_concurrent_calls(omp, B, inputs, calls=2)
    want = lrqc.reference.matmul(s, inputs[1].astype(np.float64), B)
    got = omp(inputs[1], packed_omp)
    assert np.abs(got - want).max() <= 2e-5 * np.abs(want).max()


def test_openmp_each_runs_every_part_in_order_and_raises_a_parts_error():
    """backend.openmp.each: parts beyond the team's threads run too, the results come back in
    order, and an exception raised in a part (on an OpenMP thread) is raised to the caller,
    an interruption (KeyboardInterrupt) before an ordinary error of another part."""
    from lrqc.backend import openmp

    seen = []

    def part(i):
        seen.append(threading.get_ident())
        return np.full(3, i) @ np.ones(3)

    assert openmp.each(part, 7) == [3.0 * i for i in range(7)]
    assert len(seen) == 7

    def fails(i):
        if i == 1:
            raise lrqc.LrqcError("part 1 failed")
        return i

    with pytest.raises(lrqc.LrqcError, match="part 1 failed"):
        openmp.each(fails, 2)

    def interrupted(i):
        if i == 0:
            raise ValueError("an ordinary error")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # an interruption before any other error
        openmp.each(interrupted, 2)
    assert openmp.each(part, 1) == [0.0] and openmp.each(part, 0) == []


def test_openmp_threads_refused_with_reasons(tmp_path, monkeypatch):
    from lrqc.backend import openmp

    s = lrqc.parse_schemes("scheme s {\n a: int8 per_channel\n b: int8 per_channel\n}")["s"]
    with pytest.raises(lrqc.LrqcError, match="threads: expected one of"):
        lrqc.compile(s, M=8, N=16, K=32, threads="omp")
    with pytest.raises(lrqc.LrqcError, match="needs a target this CPU runs"):
        lrqc.compile(s, M=8, N=16, K=32, target="cuda-sm90", threads="openmp")
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(lrqc.LrqcError, match="needs a C compiler with OpenMP"):
        openmp._compile(tmp_path / "lib.so")
    monkeypatch.setenv("CC", "false")
    with pytest.raises(lrqc.LrqcError, match="-fopenmp failed"):
        openmp._compile(tmp_path / "lib.so")


B_ONLY_TERMS = (  # compensated kernels whose per-call work is all compiled functions
    "a: int8 per_tensor round=floor\n b: int8 per_tensor round=floor"
    " + lowrank(rank=2, method=rsvd, seed=1)",
    "a: int8 per_channel round=trunc + sparse(threshold=0.6, max_density=0.5)\n"
    " b: int8 per_channel round=trunc + sparse(threshold=0.6, max_density=0.5)",
    "a: int8 per_channel + dense(int8 per_tensor)\n b: int8 per_channel",
)


def scheme_of(body: str):
    return lrqc.parse_schemes(f"scheme s {{\n {body}\n}}")["s"]


@pytest.mark.parametrize("body", B_ONLY_TERMS)
def test_compensated_kernels_give_the_same_numbers_on_both_pools(body):
    """Kernels with B-side low-rank, sparse or dense terms run on OpenMP threads under "auto"
    where a libgomp is loaded: bit for bit the numbers of TVM's pool, and the reference's."""
    s = scheme_of(body)
    rng = np.random.default_rng(3)
    A = rng.random((37, 96)).astype(np.float32)
    B = rng.random((96, 48)).astype(np.float32)
    got = {}
    for threads in ("openmp", "tvm"):
        kernel = lrqc.compile(s, M="1..64", N=48, K=96, threads=threads)
        assert kernel.threads == threads
        got[threads] = kernel(A, kernel.pack(B))
    np.testing.assert_array_equal(got["openmp"], got["tvm"])
    want = lrqc.reference.matmul(s, A, B)
    np.testing.assert_allclose(got["openmp"], want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_auto_joins_an_openmp_pool_already_in_the_process(monkeypatch):
    """threads="auto" (the default): single-product kernels (direct, or with low-rank terms
    on either operand) join a loaded libgomp's threads; chains (numpy products between their
    parts), and processes without an OpenMP runtime, keep TVM's pool; a library that cannot
    be made falls back to TVM's pool."""
    from lrqc.backend import openmp
    from lrqc.pipeline import compile as pc

    s = lrqc.parse_schemes("scheme s {\n a: int8 per_channel\n b: int8 per_channel\n}")["s"]
    comp = example("lrqmm.lrq", "lrqmm_int8")
    monkeypatch.setattr(openmp, "loaded_libgomp", lambda: "/lib/libgomp.so.1")
    assert lrqc.compile(s, M=8, N=16, K=32).threads == "openmp"
    assert lrqc.compile(comp, M=8, N=16, K=32).threads == "openmp"
    lplr = example("lplr.lrq", "lplr_w_a8")
    lplr = lrqc.parse_schemes(lrqc_text(lplr).replace("rank=83", "rank=4"))[lplr.name]
    assert lrqc.compile(lplr, M=8, N=16, K=32).threads == "tvm"
    for body in B_ONLY_TERMS:  # no numpy between the functions: OpenMP threads
        assert lrqc.compile(scheme_of(body), M=8, N=16, K=32).threads == "openmp"
    monkeypatch.setattr(openmp, "loaded_libgomp", lambda: None)
    assert lrqc.compile(s, M=8, N=16, K=32).threads == "tvm"
    assert lrqc.compile(s, M=8, N=16, K=32, threads="openmp").threads == "openmp"

    def no_compiler(executable):
        raise lrqc.LrqcError("threads='openmp' needs a C compiler with OpenMP")

    monkeypatch.setattr(openmp, "loaded_libgomp", lambda: "/lib/libgomp.so.1")
    monkeypatch.setattr(pc.openmp, "load", no_compiler)
    kernel = lrqc.compile(s, M=8, N=16, K=32)
    assert kernel.threads == "tvm"
    A, B = np.ones((8, 32), np.float32), np.ones((32, 16))
    np.testing.assert_array_equal(kernel(A, kernel.pack(B)), np.full((8, 16), 32, np.float32))
    with pytest.raises(lrqc.LrqcError, match="needs a C compiler"):
        lrqc.compile(s, M=8, N=16, K=32, threads="openmp")


def test_loaded_artifacts_choose_their_threads_too(tmp_path, monkeypatch):
    """An artifact is built from TVM's executable and loaded as a library: under "auto" its
    parallel loops join a loaded libgomp's threads as a compiled kernel's do (the same C)."""
    from lrqc import door
    from lrqc.backend import openmp

    s = lrqc.parse_schemes("scheme s {\n a: int8 per_channel\n b: int8 per_channel\n}")["s"]
    door.build_artifact(s, "1..16", 24, 40, tmp_path / "k")
    rng = np.random.default_rng(4)
    A, B = rng.standard_normal((13, 40)).astype(np.float32), rng.standard_normal((40, 24))
    want = lrqc.compile(s, "1..16", 24, 40, threads="tvm").run(A, B)
    monkeypatch.setattr(openmp, "loaded_libgomp", lambda: "/lib/libgomp.so.1")
    kernel = lrqc.load_kernel(tmp_path / "k")
    before = openmp.launches()
    assert kernel.threads == "openmp"
    np.testing.assert_array_equal(kernel.run(A, B), want)
    assert openmp.launches() > before
