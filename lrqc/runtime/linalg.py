"""The host's dense linear algebra for per-call glue (the low-rank factors of A's residual and
their products): float32 products spread over the cores as single-threaded BLAS calls, the
SVD of a wide matrix through a QR of its transpose, and the one-step bases and SVD of the
per-call factorizations where their inputs are well conditioned. numpy only.

Why not OpenBLAS's own threads: they spin-wait after each call and would steal the cores from
the TVM GEMM that follows (glue.one_blas_thread limits them to one); two single-threaded calls
from a small pool use both cores and leave nothing spinning. For a kernel whose loops run on
OpenMP threads, the calls run on those threads instead (each, parts_on): they spin between
the kernel's loops and would otherwise hold a core from the pool."""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from functools import partial
from typing import Any

import numpy as np
import threadpoolctl

# below this many multiply-adds a product runs as one call (the pool's overhead is ~50 us)
PARALLEL_WORK = 1 << 21

_POOL: dict[str, ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _pool() -> ThreadPoolExecutor:
    local = blas_local()  # (takes _LOCK itself)
    with _LOCK:
        if "pool" not in _POOL:
            _POOL["pool"] = ThreadPoolExecutor(
                max(1, cores()), thread_name_prefix="lrqc-blas",
                initializer=None if local is None else partial(local, 1))
        return _POOL["pool"]


Runner = Callable[[Callable[[int], Any], int], list]
# where each() runs its parts in this thread's context: None for the pool, else a runner
# (runner(fn, parts) -> [fn(0), ...]: the OpenMP threads of a kernel whose loops run there)
_RUNNER: ContextVar[Runner | None] = ContextVar("lrqc_parts_runner", default=None)


def each(fn: Callable[[int], Any], parts: int) -> list:
    """[fn(0), ..., fn(parts - 1)], one call per thread (the first exception raised): on
    the runner of the enclosing parts_on, else on this module's pool."""
    runner = _RUNNER.get()
    if runner is not None:
        return runner(fn, parts)
    return [f.result() for f in [_pool().submit(fn, i) for i in range(parts)]]


@contextmanager
def parts_on(runner: Runner | None) -> Iterator[None]:
    """Run each()'s parts on `runner` inside (None: the pool). Per thread: two threads may
    call kernels on different threads at once."""
    token = _RUNNER.set(runner)
    try:
        yield
    finally:
        _RUNNER.reset(token)


_LOCAL: dict[str, Callable[[int], int] | None] = {}


def blas_local() -> Callable[[int], int] | None:
    """numpy's OpenBLAS's openblas_set_num_threads_local (a thread count that takes
    precedence over the process-wide one; returns the previous one), or None where numpy's
    BLAS has none. Despite its name, the OpenBLAS numpy ships keeps it once for the process
    (a value set in one thread is what another reads back), so glue.one_blas_thread sets and
    restores it with the process-wide limit, under one lock; the pool's threads set it as
    well when they start, for a BLAS that keeps it per thread. A product split over 2
    threads rounds differently from one on 1 (measured: 700 x 1024 times a vector, 1 ulp)."""
    with _LOCK:
        if "set" not in _LOCAL:
            _LOCAL["set"] = None
            for lib in threadpoolctl.ThreadpoolController().lib_controllers:
                fn = getattr(lib.dynlib, "openblas_set_num_threads_local", None) \
                    if lib.internal_api == "openblas" and "numpy" in lib.filepath else None
                if fn is not None:
                    fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_int]
                    _LOCAL["set"] = fn
                    break
        return _LOCAL["set"]


def pmatmul(a: np.ndarray, b: np.ndarray, overflow: bool = False) -> np.ndarray:
    """a @ b, the larger output dimension cut into one block per core, each block one BLAS
    call on a pool thread (numpy releases the GIL): the products of one call, summed as BLAS
    sums them (equal within float32 rounding). overflow: the caller expects sums past float32
    and checks for them (numpy's warning silenced, in every thread)."""
    m, n = a.shape[0], b.shape[1]
    parts = cores()
    def quiet() -> AbstractContextManager:
        return np.errstate(over="ignore") if overflow else nullcontext()

    if parts < 2 or m * n * a.shape[1] < PARALLEL_WORK or max(m, n) < 2 * parts:
        with quiet():
            return a @ b
    out = np.empty((m, n), np.result_type(a, b))
    along_n = n >= m
    cuts = np.linspace(0, n if along_n else m, parts + 1).astype(int)

    def block(i: int) -> None:
        s = slice(cuts[i], cuts[i + 1])
        with quiet():  # per thread
            if along_n:
                out[:, s] = a @ b[:, s]
            else:
                out[s] = a[s] @ b

    each(block, parts)
    return out


# rows of R per block of the sketch passes: about 4 MiB of float32 (2048 x 2048 on 2 cores,
# measured when the first pass also took max |R|: Rᵀ t with it 1.05 ms, R u with Rᵀ R u 1.38
# ms; in 1 MiB blocks 1.9 and 1.6 ms)
BLOCK_BYTES = 1 << 22


def _row_parts(R: np.ndarray, fn):
    """fn(R[rows]) for one contiguous part of R's rows per core (on the pool; one part for a
    small R), each part walked in blocks of about BLOCK_BYTES: [fn's results per block]."""
    m, k = R.shape
    rows = max(8, BLOCK_BYTES // (4 * max(k, 1)))
    parts = cores() if m * k >= PARALLEL_WORK and m >= 2 * cores() else 1
    cuts = np.linspace(0, m, parts + 1).astype(int)

    def part(i: int) -> list:
        return [fn(slice(r0, min(r0 + rows, cuts[i + 1])))
                for r0 in range(cuts[i], cuts[i + 1], rows)]

    if parts == 1:
        return part(0)
    return [x for got in each(part, parts) for x in got]


def rt_vec(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Rᵀ t (float32 R and t) in one pass over R, a part of the rows per core, each part's
    blocks summed in order (2048 x 2048: 0.8 ms; with max |R| of each block while in cache,
    which the quantization pass now gives, 1.1)."""
    got = _row_parts(R, lambda s: R[s].T @ t[s])
    return np.asarray(np.sum(got, axis=0, dtype=np.float32))


def rt_mul(R: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Rᵀ X (K x w) for a tall float32 R (M x K) and thin float32 X (M x w), as (Xᵀ R)ᵀ: Xᵀ
    times R in its row-major order, R's columns cut into one block per core (pmatmul), each
    block's sums over the rows taken by BLAS itself (one call per block; measured, 24 columns
    on 2 cores: 256 x 4096 0.59 ms against 0.91 as the sum of each row block's
    R_blockᵀ X_block, 2048 x 2048 1.65 against 1.75)."""
    return pmatmul(np.ascontiguousarray(X.T), R).T


def orth(X: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the columns of a tall float64 X (M x w, full column rank):
    the Q of np.linalg.qr(X) up to the signs of its columns (thin_qr). The factorizations use
    Q only through the subspace it spans (QᵀR, Q Ũ), so the signs do not matter; at
    2048 x 24 this costs ~0.05 ms against LAPACK's 0.6-0.9 ms."""
    return thin_qr(X)[0]


def thin_qr(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q, R) with X = Q R, Q orthonormal (M x w) and R upper triangular (w x w), for a tall
    float64 X of full column rank: np.linalg.qr(X) up to the signs of Q's columns and R's
    rows, by Cholesky QR twice (the Gram matrix of X, a w x w Cholesky factor L, X L⁻ᵀ and
    R = Lᵀ; then once more on the result, which restores orthogonality to float64 rounding
    while X's condition number is below ~1e7: checked by the first factor's diagonal, then
    the second factor against I). Ill-conditioned or rank-deficient X: Householder QR."""
    q, r, L = X, None, None
    for step in range(2):
        try:
            L = np.linalg.cholesky(q.T @ q)
        except np.linalg.LinAlgError:
            return _householder(X)
        d = np.abs(np.diag(L))
        if step == 0 and not (d.min() > 1e-7 * d.max()):  # cond(X) past ~1e7, or NaN
            return _householder(X)
        q = q @ np.linalg.inv(L).T
        r = L.T if r is None else L.T @ r
    # the second factor L is the first step's q's: q = Q L (L Lᵀ = qᵀq). With E = L - I,
    # ||E||_2 <= w max |E| < GRAM_SLACK bounds q's condition number by (1 + s) / (1 - s) = 3,
    # and Cholesky QR of a matrix that well conditioned is orthonormal to float64 rounding
    # (its loss of orthogonality grows with the square of the condition number): no QᵀQ to
    # form. A NaN fails the comparison.
    if r is None or L is None or \
            not np.abs(L - np.eye(L.shape[0])).max() * L.shape[0] < GRAM_SLACK:
        return _householder(X)
    return q, r


# the bound on ||L - I||_2 of thin_qr's second Cholesky factor (see there)
GRAM_SLACK = 0.5


def _householder(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q, r = np.linalg.qr(X)
    return q, r


# the largest condition number for which span_basis and top_svd take their one-step forms:
# their errors grow as float64's rounding times its square (1e-16 x 1e6), far below the
# float32 rounding of the products they feed
SPAN_COND = 1e3


def span_basis(X: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the columns of a tall float64 X for the per-call factorizations,
    whose products with it are float32: one Cholesky QR step (X L⁻ᵀ, L the Cholesky factor of
    XᵀX), orthonormal to about 1e-10 where X's condition number, which is L's, is at most
    SPAN_COND; otherwise orth(X), to float64 rounding. The condition number is at most
    ||L||_F ||L⁻¹||_F (and at least that over w), which the inverse the step needs gives
    cheaply: where that bound passes, no SVD of L (0.05 ms a basis inside a call, 3 bases per
    call of a randomized SVD with one power iteration); where it does not, L's singular
    values decide, as they always did. Half of orth's work on the well-conditioned bases of
    a randomized SVD (4096 x 24: 0.2 ms against 0.5)."""
    try:
        L = np.linalg.cholesky(X.T @ X)
        Li = np.linalg.inv(L)
        with np.errstate(over="ignore"):  # an infinite bound: the SVD decides
            bound = np.linalg.norm(L) * np.linalg.norm(Li)
        if not bound <= SPAN_COND:
            s = np.linalg.svd(L, compute_uv=False)
            if not s[-1] * SPAN_COND >= s[0]:  # ill-conditioned, or NaN
                return orth(X)
    except np.linalg.LinAlgError:  # singular, or not finite
        return orth(X)
    return X @ Li.T


def top_svd(x: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U, S, Vt) of x's `rank` largest singular triplets, x a wide float64 matrix (w x n, w
    <= n): from the eigendecomposition of the w x w x xᵀ = U S² Uᵀ, Vt = S⁻¹ Uᵀ x, where the
    rank-th singular value is at least the first / SPAN_COND (errors about float64's rounding
    times SPAN_COND²: 1e-10 relative); otherwise wide_svd's, truncated. One product of x's size
    and one of Vt's instead of wide_svd's QR (24 x 4096: 0.25 ms against 0.7)."""
    if rank <= x.shape[0] and np.all(np.isfinite(x)):
        lam, V = np.linalg.eigh(x @ x.T)
        s = np.sqrt(np.maximum(lam[::-1][:rank], 0.0))
        if s[0] > 0 and s[-1] * SPAN_COND >= s[0]:
            U = V[:, ::-1][:, :rank]
            return U, s, (U.T @ x) / s[:, None]
    u, sv, vt = wide_svd(x)
    return u[:, :rank], sv[:rank], vt[:rank]


def r_rt(R: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) = (R u, Rᵀ R u) in one pass over R: each block's part of a and its product with
    the block while the block is in cache."""
    a = np.empty(R.shape[0], np.float32)

    def block(s: slice) -> np.ndarray:
        r = R[s]
        a[s] = r @ u
        return r.T @ a[s]

    return a, np.asarray(np.sum(_row_parts(R, block), axis=0, dtype=np.float32))


def wide_svd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """np.linalg.svd(x, full_matrices=False) of a wide matrix (rows << columns) through the
    QR of its transpose (thin_qr): xᵀ = Q R, R = V S Uᵀ's transpose, so x = U S (Q V)ᵀ.
    LAPACK's SVD of the wide matrix itself costs several times the QR at thousands of
    columns, and its QR several times thin_qr's (24 x 4096: 1.5 ms against 0.3)."""
    if x.shape[0] * 4 > x.shape[1]:
        u, s, vt = np.linalg.svd(x, full_matrices=False)
        return u, s, vt
    q, r = thin_qr(x.T)
    v2, s, ut = np.linalg.svd(r, full_matrices=False)  # r = v2 diag(s) ut, x = ut.T s (q v2).T
    return ut.T, s, (q @ v2).T
