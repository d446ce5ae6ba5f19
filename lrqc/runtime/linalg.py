"""The host's dense linear algebra for per-call glue (the low-rank factors of A's residual and
their products): float32 products spread over the cores as single-threaded BLAS calls, and the
SVD of a wide matrix through a QR of its transpose. numpy only.

Why not OpenBLAS's own threads: they spin-wait after each call and would steal the cores from
the TVM GEMM that follows (glue.one_blas_thread limits them to one); two single-threaded calls
from a small pool use both cores and leave nothing spinning."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

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
    with _LOCK:
        if "pool" not in _POOL:
            _POOL["pool"] = ThreadPoolExecutor(max(1, cores()), thread_name_prefix="lrqc-blas")
        return _POOL["pool"]


def pmatmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b, the larger output dimension cut into one block per core, each block one BLAS
    call on a pool thread (numpy releases the GIL): the products of one call, summed as BLAS
    sums them (equal within float32 rounding)."""
    m, n = a.shape[0], b.shape[1]
    parts = cores()
    if parts < 2 or m * n * a.shape[1] < PARALLEL_WORK or max(m, n) < 2 * parts:
        return a @ b
    out = np.empty((m, n), np.result_type(a, b))
    along_n = n >= m
    cuts = np.linspace(0, n if along_n else m, parts + 1).astype(int)

    def block(i: int) -> None:
        s = slice(cuts[i], cuts[i + 1])
        if along_n:
            out[:, s] = a @ b[:, s]
        else:
            out[s] = a[s] @ b

    for f in [_pool().submit(block, i) for i in range(parts)]:
        f.result()
    return out


# rows of R per block of the sketch passes: about 1 MiB of float32, so a block read for one
# product is still in L2 for the next
BLOCK_BYTES = 1 << 20


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
    out = []
    for f in [_pool().submit(part, i) for i in range(parts)]:
        out += f.result()
    return out


def rt_top(R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, float]:
    """(Rᵀ t, max |R|) in one pass over R (float32 R and t)."""
    def block(s: slice) -> tuple[np.ndarray, float]:
        r = R[s]
        return r.T @ t[s], max(float(r.max()), -float(r.min()))

    got = _row_parts(R, block)
    return np.sum([u for u, _ in got], axis=0, dtype=np.float32), max(top for _, top in got)


def r_rt(R: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) = (R u, Rᵀ R u) in one pass over R: each block's part of a and its product with
    the block while the block is in cache."""
    a = np.empty(R.shape[0], np.float32)

    def block(s: slice) -> np.ndarray:
        r = R[s]
        a[s] = r @ u
        return r.T @ a[s]

    return a, np.sum(_row_parts(R, block), axis=0, dtype=np.float32)


def wide_svd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """np.linalg.svd(x, full_matrices=False) of a wide matrix (rows << columns) through the
    QR of its transpose: xᵀ = Q R, R = V S Uᵀ's transpose, so x = U S (Q V)ᵀ. LAPACK's SVD
    of the wide matrix itself costs several times the QR at thousands of columns."""
    if x.shape[0] * 4 > x.shape[1]:
        u, s, vt = np.linalg.svd(x, full_matrices=False)
        return u, s, vt
    q, r = np.linalg.qr(x.T)
    v2, s, ut = np.linalg.svd(r, full_matrices=False)  # r = v2 diag(s) ut, x = ut.T s (q v2).T
    return ut.T, s, (q @ v2).T
