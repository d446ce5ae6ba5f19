"""What a kernel call hands back and how the per-call pass over A is laid out: C is a new array
per call (written by the GEMM in place, never a view of a buffer the next call reuses), of the
call's rows and columns, C-contiguous and writable, equal to the reference; the scale bound that
skips C's entry-by-entry finiteness check never lets a non-finite C through; the quantization
pass runs as one parallel loop over A's rows where every step of it is row-local."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

import lrqc
from lrqc.plan.buckets import m_buckets

pytest.importorskip("tvm")


def scheme(a: str, b: str) -> lrqc.Scheme:
    return lrqc.parse_schemes(f"scheme t {{\n a: {a}\n b: {b}\n}}")["t"]


@pytest.mark.parametrize("m,n", [(32, 48), (23, 48), (32, 40), (5, 20)])
def test_each_call_returns_its_own_contiguous_C(m, n):
    """Rows below the bucket's and columns below the padded N: the array is the call's own,
    a later call does not change it, and it is the reference's C."""
    s = scheme("int8 per_channel", "int4 per_channel")
    k = 64
    kernel = lrqc.compile(s, "1..32", n, k)
    rng = np.random.default_rng(3)
    B = rng.standard_normal((k, n))
    packed = kernel.pack(B)
    A1, A2 = rng.standard_normal((m, k)), rng.standard_normal((m, k))
    C1 = kernel(A1, packed)
    kept = C1.copy()
    C2 = kernel(A2, packed)
    assert C1.shape == (m, n) and C1.flags.c_contiguous and C1.flags.writeable
    assert not np.shares_memory(C1, C2)
    np.testing.assert_array_equal(C1, kept)  # the second call wrote elsewhere
    ref = lrqc.reference.matmul(s, A1.astype(np.float32).astype(np.float64), B)
    np.testing.assert_allclose(C1, ref, rtol=2e-5, atol=2e-5 * np.abs(ref).max())
    C1[:] = 0  # the caller's to change: the next call is unaffected
    np.testing.assert_array_equal(kernel(A2, packed), C2)


@pytest.mark.parametrize("m,n,k", [(8, 16, 32), (600, 600, 600)])  # one BLAS call; parts
def test_a_lowrank_W_past_float32_is_refused_without_a_numpy_warning(m, n, k):
    """A's low-rank term times a B near float32's largest values: W = F_Aᵀ B leaves float32,
    C's check refuses the call, and numpy's overflow warning does not reach the caller."""
    import warnings

    s = scheme("int8 per_tensor round=floor + lowrank(rank=2, method=rsvd, oversample=2)",
               "int8 per_tensor")
    kernel = lrqc.compile(s, m, n, k)
    rng = np.random.default_rng(2)
    packed = kernel.pack((rng.random((k, n)) * 3e38).astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(lrqc.InputError, match="float32's range"):
            kernel(rng.random((m, k)).astype(np.float32), packed)


def test_huge_scales_still_meet_the_finiteness_check():
    """Data near float32's largest values: the bound cannot prove C finite, the entries are
    checked and the call is refused (the product leaves float32's range)."""
    s = scheme("int8 per_channel", "int8 per_channel")
    kernel = lrqc.compile(s, 8, 16, 64)
    A = np.full((8, 64), 1e30, np.float32)
    B = np.full((64, 16), 1e30, np.float32)
    with pytest.raises(lrqc.InputError, match="float32's range"):
        kernel(A, kernel.pack(B))


def test_moderate_data_is_proven_finite_without_reading_C():
    """The bound holds for ordinary data: _bounded says so (no pass over C)."""
    s = scheme("int8 per_tensor", "int4 per_vector(16)")
    kernel = lrqc.compile(s, 16, 32, 64)
    rng = np.random.default_rng(5)
    A, B = rng.standard_normal((16, 64)) * 1e6, rng.standard_normal((64, 32))
    packed = kernel.pack(B)
    bk, A32 = kernel._bucket(A)
    with bk.lock:
        m = kernel._fill(bk, A32)
        assert kernel._bounded(bk, m, packed)


@pytest.mark.parametrize("a", ["int8 per_tensor", "uint4 per_vector(16) calibrate=minmax",
                               "int8 per_channel + dense(int8)"])
def test_b_lowrank_u_stays_within_the_bound_the_calls_use(a):
    """B's low-rank term: the call proves C finite with max |U_B| bounded by A's largest scale
    times a number of the packed operand (direct.limits), never read from U_B. On codes at
    their extremes (every row of A at its range's ends, L_B of one sign per column, where the
    bound is tightest) lowrank_u's U_B stays within it, and a call near float32's largest
    values is refused or equals the reference."""
    from lrqc.runtime.direct import limits
    from lrqc.runtime.glue import view

    s = scheme(a, "int8 per_channel + lowrank(rank=2)")
    m, n, k = 16, 32, 64
    kernel = lrqc.compile(s, m, n, k)
    rng = np.random.default_rng(21)
    B = np.abs(rng.standard_normal((k, n))) + 1.0  # a residual of one sign per column mostly
    packed = kernel.pack(B)
    A = np.where(rng.random((m, k)) < 0.5, -3.0, 5.0) * rng.choice([1.0, 100.0], (m, 1))
    C = kernel(A, packed)
    bk, _ = kernel._bucket(A)
    per_scale = limits(packed, kernel.plan)[3]
    sa = view(bk.sa)[:m]
    top_u = np.abs(view(bk.comp.Ub)[:m]).max()
    assert 0.0 < top_u <= sa.max() * per_scale
    assert top_u > sa.max() * per_scale / (255.0 * k)  # a bound, not a guess far above
    ref = lrqc.reference.matmul(s, A.astype(np.float32).astype(np.float64), B)
    assert np.abs(C - ref).max() <= 1e-4 * np.abs(ref).max()
    big = np.full((m, k), 3e37, np.float32)
    big[:, ::2] = -1e37
    with pytest.raises(lrqc.InputError, match="range"):
        kernel(big, kernel.pack(np.full((k, n), 3e37, np.float32)))


@pytest.mark.parametrize("a,b,low", [
    ("uint8 per_tensor calibrate=minmax", "int8 per_tensor + lowrank(rank=1)", True),
    ("uint8 per_tensor calibrate=minmax", "int8 per_channel", False),
    ("int8 per_channel", "uint8 per_channel calibrate=minmax", False)])
def test_zero_points_outside_the_codes_widen_the_bound(a, b, low):
    """Min-max zero points far outside the codes (data of one sign far from zero) put codes
    up to thousands from their zero points, so the integer sums and U_B pass Kp 255² and
    255 max sa |L_B|: the bound takes the call's real deviations (support.code_deviations),
    and a product past float32's range is refused, never returned with infinities."""
    m, n, k = 16, 32, 16
    kernel = lrqc.compile(scheme(a, b), m, n, k)
    rng = np.random.default_rng(1)
    one_sign = 1e19 * (1 + 3e-4 * rng.random((m, k)))
    for scale in (4e20, 6e20, 8e20) if low else (1e19,):
        if low:
            B = np.full((k, n), 0.45 * scale / 127)
            B[0, 0] = scale
        else:
            B = 1e19 * (np.abs(rng.standard_normal((k, n))) + 0.5)
        A = one_sign if "minmax" in a else 1e19 * (np.abs(rng.standard_normal((m, k))) + 0.5)
        if "minmax" in b:
            B = 1e19 * (1 + 1e-3 * rng.random((k, n)))
        try:
            C = kernel(A.astype(np.float32), kernel.pack(B.astype(np.float32)))
        except lrqc.InputError as exc:
            assert "range" in str(exc), exc
            continue
        assert np.isfinite(C).all()


def quantize_tir(s: lrqc.Scheme, m: int, n: int, k: int) -> str:
    from lrqc.pipeline.compile import compile as compile_kernel

    texts: dict[str, str] = {}
    compile_kernel(s, m, n, k, emit=("tir",), on_text=texts.__setitem__)
    text = texts["tir"]
    return re.search(r"# quantize_a_m\d+\n(.*?)(?=\n# \w+_m\d+\n|\Z)", text, re.S).group(1)


@pytest.mark.parametrize("a,merged", [
    ("int8 per_channel", True),
    ("uint4 per_vector(16, scale=uint6 per_channel)", True),
    ("int8 per_tensor", False),  # the tensor's maximum first, then the rows
])
def test_quantize_pass_is_one_row_loop_where_rows_are_independent(a, merged):
    text = quantize_tir(scheme(a, "int8 per_channel"), 64, 32, 256)
    loops = text.count("T.parallel(")
    assert (loops == 1) == merged, text
    assert "T.vectorized(" in text  # the max |x| statistics in vector lanes


SPARSE = "int8 per_channel round=trunc + sparse(threshold=0.9)"


@pytest.mark.parametrize("a,b,loops", [
    # A's statistics and codes, the copy's partial sums and the residual's maximum; the count
    # above the threshold; the copy's codes; the residual's transposed codes (by k tiles)
    (SPARSE, SPARSE, 4),
    # A's statistics and codes and the residual's maximum; its codes (transposed)
    (SPARSE, "int8 per_channel", 2),
    # A's statistics and codes; the residual's codes (its per-tensor maximum between)
    ("int8 per_channel + dense(int8)", "int8 per_channel", 2),
])
def test_compensated_pass_reads_a_once_per_run_of_row_local_steps(a, b, loops):
    """The compensated pass of sparse and dense residual terms merges each run of row-local
    steps into one parallel loop over the rows (passes.row_runs): one loop between every two
    per-tensor steps, not one per step; the numbers stay the reference's (the compensation
    tests)."""
    text = quantize_tir(scheme(a, b), 64, 32, 256)
    assert text.count("T.parallel(") == loops, text


def test_buckets_above_64_rows_waste_at_most_a_third():
    b = m_buckets(1, 5000)
    assert b[:5] == (4, 8, 16, 32, 64) and b[-1] == 5000
    for lo, hi in zip(b[4:], b[5:-1], strict=False):
        assert hi / lo <= 1.5 and hi % 32 == 0
    for m in range(65, 5001, 7):
        assert next(x for x in b if x >= m) <= max(1.5 * m, 64)


def test_lowrank_terms_enter_the_bound():
    """LRQMM: U and W of both sides are part of the bound; ordinary data is proven finite,
    data near float32's largest values is checked and refused."""
    s = scheme("int8 per_tensor + lowrank(rank=2)", "int8 per_channel + lowrank(rank=2)")
    kernel = lrqc.compile(s, 16, 32, 64)
    rng = np.random.default_rng(9)
    A, B = rng.standard_normal((16, 64)), rng.standard_normal((64, 32))
    packed = kernel.pack(B)
    C = kernel(A, packed)
    bk, _ = kernel._bucket(A)
    assert kernel._bounded(bk, 16, packed)
    ref = lrqc.reference.matmul(s, A.astype(np.float32).astype(np.float64), B)
    assert np.abs(C - ref).max() <= 1e-4 * np.abs(ref).max()
    big = np.full((64, 32), 3e37, np.float32)
    with pytest.raises(lrqc.InputError, match="range"):
        kernel(np.full((16, 64), 3e37, np.float32), kernel.pack(big))


@pytest.mark.parametrize("dims", [(16, 32, 64), (40, 64, 256)])
def test_sparse_terms_enter_the_bound(dims):
    """Sparse residual terms on both operands: their products' scales and code limits are part
    of the bound, so ordinary data is proven finite without a pass over C (either formulation
    of the products), and data near float32's largest values is checked and refused."""
    t = "int8 per_channel round=trunc + sparse(threshold=0.3, max_density=0.35)"
    s = scheme(t, t)
    m, n, k = dims
    kernel = lrqc.compile(s, m, n, k)
    rng = np.random.default_rng(11)
    A, B = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    packed = kernel.pack(B)
    C = kernel(A, packed)
    bk, _ = kernel._bucket(A)
    assert kernel._bounded(bk, m, packed)
    ref = lrqc.reference.matmul(s, A.astype(np.float32).astype(np.float64), B)
    assert np.abs(C - ref).max() <= 1e-4 * np.abs(ref).max()
    big = rng.standard_normal((k, n)).astype(np.float32) * 3e37
    with pytest.raises(lrqc.InputError, match="range"):
        kernel(rng.standard_normal((m, k)).astype(np.float32) * 3e37, kernel.pack(big))


def test_an_overflowing_intermediate_is_not_proven_finite():
    """acc · sa overflows float32 although C itself would fit (huge A, tiny B): the bound must
    not pass it, and the call is refused rather than returning infinities."""
    s = scheme("int8 per_channel", "int8 per_channel")
    kernel = lrqc.compile(s, 8, 16, 64)
    A = np.full((8, 64), 3e36, np.float32)
    B = np.full((64, 16), 1e-6, np.float32)
    packed = kernel.pack(B)
    bk, A32 = kernel._bucket(A)
    with bk.lock:
        assert not kernel._bounded(bk, kernel._fill(bk, A32), packed)
    try:
        C = kernel(A, packed)
    except lrqc.InputError as exc:
        assert "range" in str(exc)
    else:
        assert np.isfinite(C).all()


def _aligned(rows: int, cols: int, offset: int = 0) -> np.ndarray:
    """A float32 C-contiguous array whose data starts `offset` floats past a 64-byte boundary."""
    raw = np.empty(rows * cols + 32, np.float32)
    start = (-raw.ctypes.data % 64) // 4 + offset
    return raw[start:start + rows * cols].reshape(rows, cols)


@pytest.mark.parametrize("a,b,lends", [("int8 per_channel", "int8 per_channel", True),
                                       ("int8 per_tensor", "int4 per_vector(32)", True),
                                       ("float32", "int4 per_channel", True),
                                       ("int8 per_channel + lowrank(rank=2)", "int8 per_channel",
                                        True),
                                       ("int8 per_channel round=trunc + sparse(threshold=0.5)",
                                        "int8 per_channel round=trunc + sparse(threshold=0.5)",
                                        True)])
def test_A_is_read_in_place_at_any_alignment(a, b, lends):
    """A C-contiguous A is quantized where it lies (the bucket's buffer for A is not written),
    whatever its alignment (numpy's 16 bytes, torch's 64, any 4), read-only too, with fewer
    rows than the bucket's too, compensated kernels too (no function after quantize_a reads
    A: the residual, its sketch and A's sparse copies come out of that pass); every path
    gives the copy's numbers, and kernel.stage_times times the copy's stages on the data of
    the call."""
    s = scheme(a, b)
    m, n, k = 32, 48, 128
    kernel = lrqc.compile(s, "1..32", n, k)
    bk = kernel._buckets[-1]
    assert bk.plan.m == m and bk.lends_a is lends
    rng = np.random.default_rng(8)
    packed = kernel.pack(rng.standard_normal((k, n)))
    A = _aligned(m, k)
    A[:] = rng.standard_normal((m, k))
    buf = np.from_dlpack(bk.a)
    buf[:] = -7.0
    copied = np.asfortranarray(A)  # not C-contiguous: always copied
    C = kernel(copied, packed)
    np.testing.assert_array_equal(buf, A)
    for offset in (0, 1, 4, 15):
        shifted = _aligned(m, k, offset=offset)
        shifted[:] = A
        buf[:] = -7.0
        np.testing.assert_array_equal(kernel(shifted, packed), C)
        assert bool((buf == -7.0).all()) is lends, offset  # lent: the bucket's copy untouched
    shifted.flags.writeable = False  # read-only: lent as well
    buf[:] = -7.0
    np.testing.assert_array_equal(kernel(shifted, packed), C)
    assert bool((buf == -7.0).all()) is lends
    fewer = _aligned(20, k, offset=3)  # fewer rows than the bucket's: lent too
    fewer[:] = A[:20]
    buf[:] = -7.0
    C20 = kernel(fewer, packed)
    assert bool((buf == -7.0).all()) is lends
    np.testing.assert_array_equal(C20, kernel(np.asfortranarray(A[:20]), packed))
    st = kernel.stage_times(A, packed, repeat=1)  # copies A: the buffer holds this call's A
    assert set(st) >= {"copy_a", "quantize_a", "gemm"}
    np.testing.assert_array_equal(buf, A)
    bad = A.copy()
    bad[3, 5] = np.nan
    lent_bad = _aligned(m, k, offset=2)
    lent_bad[:] = bad
    with pytest.raises(lrqc.LrqcError, match="non-finite"):
        kernel(lent_bad, packed)


def test_A_of_few_columns_past_the_alignment_is_copied():
    """quantize_a finds A's start as the flat length modulo K: an A starting K or more floats
    past the aligned address before it (K < 16) is copied instead, with the same numbers."""
    s = scheme("int8 per_channel", "int8 per_channel")
    m, n, k = 8, 16, 4
    kernel = lrqc.compile(s, M=m, N=n, K=k)
    bk = kernel._buckets[-1]
    rng = np.random.default_rng(2)
    packed = kernel.pack(rng.standard_normal((k, n)))
    want = kernel(np.asfortranarray(rng.standard_normal((m, k)).astype(np.float32)), packed)
    A = np.from_dlpack(bk.a).copy()
    buf = np.from_dlpack(bk.a)
    for offset in range(16):
        shifted = _aligned(m, k, offset=offset)
        shifted[:] = A
        buf[:] = -7.0
        np.testing.assert_array_equal(kernel(shifted, packed), want)
        assert bool((buf == -7.0).all()) is (offset % 16 < k), offset


@pytest.mark.parametrize("a, b", [
    *((a, "int8 per_channel") for a in (
        "int8 per_channel", "int8 per_tensor", "int4 per_vector(16)",
        "uint4 per_vector(16, scale=uint6 per_channel)", "e2m1 per_channel",
        "int8 per_channel calibrate=minmax", "int8 per_tensor round=floor + lowrank(rank=2)",
        "int8 per_channel + dense(int8 per_tensor)",
        "int8 per_channel round=trunc + sparse(threshold=0.5)")),
    ("int8 per_channel", "int8 per_channel + lowrank(rank=2)"),
    ("int4 per_vector(16)", "int4 per_vector(16) + dense(int8 per_tensor)")])
def test_non_finite_A_is_refused_by_the_quantization_pass(a, b):
    """Where quantize_a takes max |x| (or max and min) on float32 bit patterns (no separate
    pass over A for its finiteness; with residual terms, those of A's own codes), a NaN or
    infinity anywhere, lent
    or copied, in a call of fewer rows than the bucket's too, is refused with the error of the
    separate check; float32's largest finite values are not, and give the reference's
    numbers."""
    s = scheme(a, b)
    m, n, k = 24, 32, 64
    kernel = lrqc.compile(s, "1..24", n, k)
    rng = np.random.default_rng(5)
    B = rng.standard_normal((k, n)).astype(np.float32)
    packed = kernel.pack(B)
    for rows, (i, j), v in [(24, (0, 0), np.nan), (24, (23, 63), np.inf),
                            (7, (6, 31), -np.inf), (7, (3, 17), np.float32(np.nan) * -1)]:
        for offset in (0, 1):  # lent as it lies, or from the aligned address before it
            A = _aligned(rows, k, offset=offset)
            A[:] = rng.standard_normal((rows, k))
            A[i, j] = v
            where = rf"non-finite values \(first at \[{i}, {j}\]"
            for arr in (A, np.asfortranarray(A)):
                with pytest.raises(lrqc.InputError, match=where):
                    kernel(arr, packed)
    big = rng.standard_normal((m, k)).astype(np.float32)
    big[2, 5], big[9, 1] = np.finfo(np.float32).max, -np.finfo(np.float32).max
    with pytest.raises(lrqc.InputError, match="leaves float32's range"):  # finite: C's check
        kernel(big, packed)
    big[2, 5], big[9, 1] = 1e30, -3e29
    small = B * np.float32(1e-30)  # C within float32's range
    C = kernel(big, kernel.pack(small))
    R = lrqc.reference.matmul(s, big.astype(np.float64), small)
    assert np.abs(C - R).max() <= 2e-6 * kernel.plan.groups ** 0.5 * np.abs(R).max()


def _before_guard_page(rows: int, cols: int):
    """A float32 (rows, cols) array whose last element ends where an inaccessible page begins
    (a read past its end faults), and the mapping that holds it (keep it alive)."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page, nbytes = mmap.PAGESIZE, rows * cols * 4
    npages = nbytes // page + 2
    base = libc.mmap(None, npages * page, mmap.PROT_READ | mmap.PROT_WRITE,
                     mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    assert base not in (None, ctypes.c_void_p(-1).value)
    guard = base + (npages - 1) * page
    assert libc.mprotect(guard, page, 0) == 0  # PROT_NONE
    buf = (ctypes.c_char * nbytes).from_address(guard - nbytes)
    return np.frombuffer(buf, dtype=np.float32).reshape(rows, cols), buf


@pytest.mark.skipif(sys.platform != "linux", reason="maps an inaccessible page with Linux's mmap")
@pytest.mark.parametrize("a", ["uint4 per_vector(16, scale=uint6 per_channel)",
                               "int4 per_vector(16)", "int8 per_channel", "float16",
                               "int1 per_channel", "int8 per_tensor + lowrank(rank=2)",
                               "int8 per_channel round=trunc + sparse(threshold=0.5)"])
def test_a_read_where_it_lies_is_not_read_past_its_end(a):
    """The quantization pass reads a caller's A where it lies; with K padded (50 -> 64) no
    element past A's end is loaded, even where A ends right before an inaccessible page, in a
    call of the bucket's rows and of fewer: C equals that of a copy of A."""
    s = scheme(a, "int8 per_channel")
    k, n = 50, 16
    kernel = lrqc.compile(s, "1..24", n, k)
    rng = np.random.default_rng(9)
    packed = kernel.pack(rng.standard_normal((k, n)).astype(np.float32))
    for rows in (24, 5):
        A, keep = _before_guard_page(rows, k)
        A[:] = rng.standard_normal((rows, k))
        np.testing.assert_array_equal(kernel(A, packed), kernel(A.copy(), packed))
        del keep


@pytest.mark.parametrize("a", ["uint4 per_vector(16, scale=uint6 per_channel)",
                               "int8 per_channel calibrate=minmax",
                               "int8 per_tensor calibrate=minmax"])
def test_min_max_statistics_on_bit_patterns_are_the_references(a):
    """Min-max calibrated A takes its max and min on float32 bit patterns mapped to the order
    of the values: for finite A (signed zeros, subnormals, float32's largest values, rows of
    one sign) the integer sums equal the reference's bit for bit, and the pass itself refuses
    a NaN (either sign) or an infinity, with no check of A before it."""
    s = scheme(a, "int8 per_channel")
    m, n, k = 12, 16, 64
    kernel = lrqc.compile(s, m, n, k)
    assert kernel.finite_later
    rng = np.random.default_rng(8)
    A = rng.standard_normal((m, k)).astype(np.float32)
    A[0] = -0.0
    A[1, ::2], A[1, 1::2] = -0.0, 0.0
    A[2] = -np.abs(A[2])
    A[3, :4] = [1e-40, -1e-40, 1e-45, -1e-45]  # subnormal values among normal ones
    A[4, :3] = [np.finfo(np.float32).max, -np.finfo(np.float32).max, np.float32(-1e-45)]
    A[5, 16:32] = -0.0
    B = rng.standard_normal((k, n)).astype(np.float32)
    packed = kernel.pack(B)
    qa, qb = (lrqc.reference.quantize(x, q, r) for x, q, r in ((A, s.a.quant, "a"),
                                                                (B, s.b.quant, "b")))
    want = np.stack([part for _, part in lrqc.reference.int_accumulate(qa, qb)])
    np.testing.assert_array_equal(kernel.int_accumulate(A, packed), want)
    for v in (np.nan, np.float32(np.nan) * -1, np.inf, -np.inf):
        bad = A.copy()
        bad[7, 33] = v
        with pytest.raises(lrqc.InputError, match=r"non-finite values \(first at \[7, 33\]"):
            kernel(bad, packed)


def test_a_finite_A_whose_scale_leaves_float32_is_told_so():
    """Min-max over one step (uint1) of a row spanning float32's largest values has a scale
    past float32: the call says that scale leaves float32's range (A is finite), and a NaN
    still gets the non-finite error."""
    s = scheme("uint1 per_channel", "int8 per_channel")
    kernel = lrqc.compile(s, 4, 8, 16)
    rng = np.random.default_rng(10)
    packed = kernel.pack(rng.standard_normal((16, 8)).astype(np.float32))
    A = rng.standard_normal((4, 16)).astype(np.float32)
    A[1, 3], A[1, 4] = np.finfo(np.float32).max, -np.finfo(np.float32).max
    with pytest.raises(lrqc.InputError, match=r"A: row 1: a quantization scale leaves float32"):
        kernel(A, packed)
    A[2, 2] = np.nan
    with pytest.raises(lrqc.InputError, match=r"non-finite values \(first at \[2, 2\]"):
        kernel(A, packed)


@pytest.mark.parametrize("term", ["lowrank(rank=1, method=sketch)",
                                  "lowrank(rank=3, method=rsvd, oversample=2)"])
def test_non_finite_A_is_refused_through_the_sketch(term, monkeypatch):
    """A's low-rank sketch R Ω is finite only where A is, so a kernel with one checks A's
    finiteness from it (no pass over A before): a NaN or infinity anywhere, in a call of fewer
    rows than the bucket's too, is refused with the error of the separate check; a finite A
    whose sketch overflows float32 is not called non-finite (its C leaves float32's range
    there: the error says so; where the sketch alone overflowed, A's own check passes)."""
    from lrqc.runtime.glue import CompBuffers

    s = scheme(f"fixed(8, max=4.0) + {term}", "int8 per_channel")
    k, n = 64, 32
    kernel = lrqc.compile(s, "1..24", n, k)
    assert kernel._witness and not kernel.finite_later  # fixed point: no statistics
    rng = np.random.default_rng(6)
    B = rng.standard_normal((k, n)).astype(np.float32)
    packed = kernel.pack(B)
    for rows, (i, j), v in [(24, (0, 0), np.nan), (24, (23, 63), np.inf),
                            (7, (6, 31), -np.inf), (9, (3, 17), np.nan)]:
        A = rng.standard_normal((rows, k)).astype(np.float32)
        A[i, j] = v
        with pytest.raises(lrqc.InputError, match=rf"non-finite values \(first at \[{i}, {j}\]"):
            kernel(A, packed)
    big = rng.standard_normal((24, k)).astype(np.float32) * np.float32(1e38)
    with pytest.raises(lrqc.InputError, match="leaves float32's range"):  # finite: C's check
        kernel(big, packed)
    ok = rng.standard_normal((24, k)).astype(np.float32) * np.float32(1e30)
    monkeypatch.setattr(CompBuffers, "sketch_finite", lambda self, m: False)  # as if R Ω
    C = kernel(ok, packed)  # overflowed: A's own check finds A finite, and the call goes on
    R = lrqc.reference.matmul(s, ok.astype(np.float64), B)
    assert np.abs(C - R).max() <= 1e-5 * np.abs(R).max()


VSQ = "per_vector(16, scale=uint6 per_channel)"  # VS-Quant's two-level scales


def _outcome(call, A, packed):
    try:
        return call(A, packed)
    except lrqc.InputError as exc:
        return str(exc)


@pytest.mark.parametrize("a,b", [("int8 per_channel", "int8 per_channel"),
                                 ("int8 per_channel", "int8 per_channel + lowrank(rank=3)"),
                                 ("int8 per_vector(16)", "int4 per_vector(16)"),
                                 ("int8 per_channel + dense(int8)",
                                  "int8 per_channel + lowrank(rank=2)"),
                                 (f"uint4 {VSQ}", f"int4 {VSQ}")])
def test_the_short_call_path_gives_the_general_paths_results_and_errors(a, b):
    """Integer kernels whose calls are compiled functions only (direct ones, per-vector scales
    and dense terms included, B's low-rank term: lowrank_u before the GEMM, and min-max A
    stored centred on its zero points) take the short call path (lrqc.runtime.direct): for
    every kind of A (its buckets' rows, lent at any alignment or copied, other dtypes and
    layouts, NaN, subnormal scales, wrong shapes, data past the bound, data of one sign whose
    zero points are not centred or overflow) it returns the general path's C bit for bit, or
    its error word for word."""
    from lrqc.runtime.direct import serves

    s = scheme(a, b)
    n, k = 40, 64
    kernel = lrqc.compile(s, "1..24", n, k)
    for other in ("int8 per_channel + lowrank(rank=2)", "e2m1 per_block(32)",
                  "int8 per_channel calibrate=minmax",
                  "int8 per_channel round=trunc + sparse(threshold=0.5)"):
        assert not serves(lrqc.compile(scheme(other, "int8 per_channel"), 8, 16, 64))
    rng = np.random.default_rng(11)
    B = rng.standard_normal((k, n)).astype(np.float32)
    packed = kernel.pack(B, bias=rng.standard_normal(n))
    cases = []
    for rows in (24, 17, 16, 5, 1):
        for offset in (0, 1, 15):
            A = _aligned(rows, k, offset)
            A[:] = rng.standard_normal((rows, k))
            cases.append(A)
    A = cases[0]
    nan = A.copy()
    nan[3, 9] = np.nan
    tiny = A.copy()
    tiny[2] = 1e-40
    cases += [np.asfortranarray(A), A.astype(np.float64), A[:, ::-1], A[::2], A.tolist(),
              nan, tiny, A[:, :-1], np.zeros((25, k), np.float32), np.full((8, k), 3e36,
                                                                           np.float32)]
    if "uint4" in a:  # min-max: zero points not centred (gemm_groups), or overflowing sums
        cases += [A + np.float32(3.0), 1e7 + rng.random((6, k), np.float32)]
        assert _outcome(kernel, cases[-1], packed).startswith("A x packed B: min-max zero")
    assert serves(kernel)
    for A in cases:
        got = _outcome(kernel, A, packed)
        want = _outcome(kernel._call, A, packed)
        if isinstance(want, str):
            assert got == want
        else:
            np.testing.assert_array_equal(got, want)
            assert got.flags.c_contiguous and got.shape == want.shape
    assert kernel._direct  # the calls above went the short way


def test_the_short_paths_scale_extremes_see_every_nan_and_infinity():
    """The short call path's min and max of a call's scales (Python's over a few, numpy's
    over more: rows times groups) fail its check wherever a scale is NaN, of either sign,
    infinite or zero."""
    from lrqc.runtime.checks import F32_TINY
    from lrqc.runtime.direct import FEW, extremes

    for n, groups in ((1, 1), (2, 1), (7, 1), (FEW, 1), (FEW + 1, 1), (200, 1), (4, 8),
                      (FEW // 2, 3), (3, FEW)):
        base = np.linspace(0.5, 2.0, n * groups, dtype=np.float32).reshape(n, groups)
        assert extremes(base) == (float(base.min()), float(base.max()))
        for at in {0, n // 2, n - 1}:
            for v in (np.nan, np.float32(np.nan) * -1, np.inf, 0.0):
                bad = base.copy()
                bad[at, groups // 2] = v
                lo, hi = extremes(bad)
                assert not (lo >= F32_TINY and hi < np.inf), (n, at, v)


def test_a_float64_A_is_quantized_as_its_float32_values():
    """A kernel rounds a float64 A (the per-call operand) to float32 before quantizing it, and
    pack quantizes B's own values (docs/api.md): C is, to the bit, the C of A rounded to
    float32, and the reference's on that A and the float64 B. The data put values of A within
    float32's rounding of a code's boundary, where A's float64 values quantize differently
    (the reference on them differs)."""
    s = scheme("int8 per_tensor round=floor", "int8 per_channel")
    k = lrqc.compile(s, M=16, N=32, K=64)
    rng = np.random.default_rng(5)
    B = rng.standard_normal((64, 32))
    A = rng.random((16, 64))
    A[0, 0] = 1.0  # max |A|: the scale is 1/127, so codes c start at c/127
    near = np.concatenate([[1.0], ((np.arange(2, 120) / 127)[:, None]
                                   - np.geomspace(1e-11, 1e-8, 40)).ravel()])[None]
    codes = [lrqc.reference.quantize(x, s.a.quant, "a").codes[0] for x in
             (near, near.astype(np.float32))]  # the same scale as A's (max 1)
    up = near[0][codes[0] != codes[1]]
    A[1:, :8] = up[: 15 * 8].reshape(15, 8)  # float32 rounds them across a boundary
    A32 = A.astype(np.float32)
    q = [lrqc.reference.quantize(x, s.a.quant, "a").codes for x in (A, A32)]
    assert (q[0] != q[1]).sum() >= 60
    packed = k.pack(B)
    C = k(A, packed)
    assert np.array_equal(C, k(A32, packed))
    want = lrqc.reference.matmul(s, A32, B)
    assert lrqc.reference.rel_error(C, want) < 2e-6
    assert lrqc.reference.rel_error(C, lrqc.reference.matmul(s, A, B)) > 1e-5
