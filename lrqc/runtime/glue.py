"""Per-call work of compensated kernels between the compiled functions: A's low-rank factors
(factors.py) from the residual R and sketch product T that quantize_a wrote, with R's products
by the kernel's resid_tq and resid_z (randomized SVD) or sketch_ab and quantize_a's Rᵀ (R s)
(rank-1 sketch) where it has them, else numpy's; then U and W of the epilogue (W = F_Aᵀ B
from the exact B that pack keeps, or with other=packed F_Aᵀ B̂ from lowrank_w's product with
B's codes plus B's own terms), and the compensated functions' scratch buffers under their
parameter names (lrqc.plan.signature). numpy only; TVM buffers are viewed through DLPack,
never copied."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np
import threadpoolctl

from ..backend.compat import empty as _empty
from ..backend.compat import tensor as _tensor
from ..backend.te.compensated import sketch_width
from ..backend.te.sparse import code_dtype
from ..errors import InputError
from ..plan import names
from ..plan import signature as sig
from ..plan.layout import PackedOperand, SparseCodes
from ..plan.model import KernelPlan
from ..reference.residual import density_note
from .factors import Products, RsvdProducts, SketchProducts, a_factors, test_matrix
from .linalg import blas_local, r_rt

F32, F64 = np.float32, np.float64
_BLAS: dict[str, Any] = {"libs": None, "saved": [], "local": None, "depth": 0}  # shared
_BLAS_LOCK = threading.Lock()
Tensor = Any  # a TVM tensor (tvm.runtime.Tensor; TVM has no type information)


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run numpy's BLAS/LAPACK on one thread inside: OpenBLAS threads spin-wait after each
    call and would steal both cores from the TVM GEMM that follows (measured: 2x slower
    end to end at 256x4096x4096 with multithreaded glue). Both of OpenBLAS's counts are set:
    the process-wide one and the "local" one (linalg.blas_local), which takes precedence and
    which numpy's OpenBLAS keeps once for the process, not per thread (measured: a count
    set in one thread is what another reads back). The first of overlapping callers (kernels
    called from several threads) sets them, the last restores them, so no caller undoes
    another's limit (a restore while another call's products ran split them over 2 threads,
    which rounds them differently) and none leaves it behind. The libraries are found once
    and set directly: threadpoolctl's limit, which queries every library's information each
    time, took 0.09-0.13 ms of each low-rank call at 256 x 4096 x 4096, against 0.05-0.07 set
    directly (a 2-core Zen 4; alone, between calls of nothing else, both take microseconds)."""
    local = blas_local()
    with _BLAS_LOCK:
        if _BLAS["depth"] == 0:
            if _BLAS["libs"] is None:  # the BLAS libraries loaded now, found once
                _BLAS["libs"] = threadpoolctl.ThreadpoolController().select(
                    user_api="blas").lib_controllers
            # the local count first: setting the process-wide one may set it too
            _BLAS["local"] = local(1) if local is not None else None
            _BLAS["saved"] = [(lib, lib.get_num_threads()) for lib in _BLAS["libs"]]
            for lib, _ in _BLAS["saved"]:
                lib.set_num_threads(1)
        _BLAS["depth"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS["depth"] -= 1
            if _BLAS["depth"] == 0:
                for lib, n in _BLAS["saved"]:
                    if n is not None:
                        lib.set_num_threads(n)
                if local is not None and _BLAS["local"] is not None:
                    local(_BLAS["local"])


def on_cpu(t: Tensor) -> bool:
    return int(t.device.dlpack_device_type()) == 1  # kDLCPU


def _rows_view(t: Tensor | None, rows: tuple[int, int]) -> Tensor | None:
    """t (rows first) with its rows seen as (chunks, rows per chunk)."""
    return None if t is None else t._create_view((*rows, *t.shape[1:]))


def view(t: Tensor) -> np.ndarray:
    """A numpy view of a TVM tensor in host memory (no copy), else a copy of a device tensor
    (read only: write with store)."""
    return np.from_dlpack(t) if on_cpu(t) else t.numpy()


def host_array(t: Any) -> np.ndarray:
    """A numpy array of t: itself, or a view (a copy from a device) of a TVM tensor."""
    return t if isinstance(t, np.ndarray) else view(t)


def writable(t: Tensor) -> np.ndarray:
    """An array to fill for a whole TVM tensor: its view in host memory, else a host buffer
    that store() copies to the device."""
    return np.from_dlpack(t) if on_cpu(t) else np.empty(t.shape, str(t.dtype))


def store(t: Tensor, arr: np.ndarray) -> None:
    """Finish writing a tensor through writable(t): nothing to do in host memory."""
    if not on_cpu(t):
        t.copyfrom(np.ascontiguousarray(arr, dtype=str(t.dtype)))


class CompBuffers:
    """Scratch tensors of one bucket's compensated functions."""

    def __init__(self, p: KernelPlan, dev: Any = None, exact_w: bool = False,
                 r_products: bool = False, sketch_ab: bool = False):
        """exact_w: the bucket runs exact_w (CPU targets, signature.w_exact): Fa and its
        output; r_products: it runs resid_tq and resid_z (signature.r_products): their bases
        and outputs; sketch_ab: it runs sketch_ab (signature.sketch_rt): its u and outputs."""
        self.p = p
        empty = partial(_empty, dev=dev)
        tensor = partial(_tensor, dev=dev)
        self.a_copies = [sp for sp in p.sparse if sp.side == "a"]  # A's thresholded copies
        self.rows = empty((1,), "int32") if self.a_copies or sig.sketch_rt(p) else None
        self.dens = empty((len(self.a_copies),), "float64") if self.a_copies else None
        self.sparse = []  # per sparse product: (codes, scales) of its per-call operand
        for sp in p.sparse:
            shape = (p.mp, p.kq) if sp.side == "a" else (p.kq, p.mp)
            self.sparse.append((empty(shape, code_dtype(sp.q)), empty((p.mp, p.gq), "float32")))
        self.R: Tensor | None = None  # A's final residual (A's lowrank term)
        self.Rtop: Tensor | None = None  # max |R| of each row
        self.T: Tensor | None = None  # its sketch product R Ω (sketch, rsvd)
        self.omega: Tensor | None = None  # Ωᵀ
        self.witness = False  # T is finite only where A is (sketch_finite)
        self.Ua: Tensor | None = None  # the epilogue's U and W of A's lowrank term
        self.Wa: Tensor | None = None
        if p.lowrank_a is not None:
            self.R = empty((p.mp, p.kq), "float32")
            self.Rtop = empty((p.mp,), "float32")
            w = sketch_width(p)
            if w:
                om = np.zeros((w, p.kq), F32)
                om[:, : p.k] = test_matrix(p.lowrank_a, p.k, w).T
                self.omega = tensor(om)
                self.witness = bool(np.all(np.any(om[:, : p.k] != 0, axis=0)))
                self.T = empty((p.mp, w), "float32")
            self.Ua = empty((p.mp, p.rank_a), "float32")
            self.Wa = empty((p.rank_a, p.np_), "float32")
        self.Fa: Tensor | None = None  # F_Aᵀ for lowrank_w (other=packed) or exact_w
        self.Wc: Tensor | None = None  # lowrank_w's F_Aᵀ B̂ from codes
        self.Wx: Tensor | None = None  # exact_w's (F_Aᵀ B)ᵀ, N x r
        if sig.w_from_codes(p):
            self.Wc = empty((p.rank_a, p.np_), "float32")
        elif exact_w:
            self.Wx = empty((p.n, p.rank_a), "float32")
        if self.Wc is not None or self.Wx is not None:
            self.Fa = empty((p.rank_a, p.kq), "float32")
        self.Ub = empty((p.mp, p.rank_b), "float32") if p.rank_b else None
        chunks = sig.sketch_chunks(p)  # the rank-1 sketch's Rᵀ (R s) per chunk of rows, and
        #   sketch_ab's u, R u and Rᵀ R u per chunk (te.sketch)
        self.Trt = empty((chunks, p.kq), "float32") if sig.sketch_rt(p) else None
        self.Su = self.Sa = self.Sb = None
        if sketch_ab and self.Trt is not None:
            self.Su, self.Sb = empty((1, p.kq), "float32"), empty((chunks, p.kq), "float32")
            self.Sa = empty((p.mp, 1), "float32")
        self.Qt = self.Zt = self.RtQ = self.RZ = None  # resid_tq's and resid_z's
        if r_products and p.lowrank_a is not None:
            w = sketch_width(p)
            self.Qt, self.RtQ = empty((w, p.mp), "float32"), empty((w, p.kq), "float32")
            self.Zt, self.RZ = tensor(np.zeros((w, p.kq), F32)), empty((p.mp, w), "float32")

    def buffers(self) -> dict[str, Tensor]:
        """Its tensors by parameter name (the compensated quantize_a's outputs, the epilogue's
        U and W of A's term and U of B's, lowrank_u's output): those the plan has."""
        out = {sig.ROWS: self.rows, sig.OMEGA: self.omega, sig.DENS: self.dens,
               names.RESID: self.R, names.RESID_TOP: self.Rtop, names.SKETCH: self.T,
               sig.UA: self.Ua, sig.WA: self.Wa, sig.UB: self.Ub, names.LOWRANK_U: self.Ub,
               sig.FA: self.Fa, names.LOWRANK_W: self.Wc, names.EXACT_W: self.Wx,
               sig.QT: self.Qt, sig.ZT: self.Zt, names.RESID_TQ: self.RtQ,
               names.RESID_Z: self.RZ, names.SKETCH_RT: self.Trt, sig.SKETCH_U: self.Su,
               names.SKETCH_B: self.Sb}
        if self.Trt is not None:  # R, max |R|, R s and sketch_ab's R u in chunks of rows
            c = sig.sketch_chunks(self.p)
            rows = (c, self.p.mp // c)
            out.update({names.RESID: _rows_view(self.R, rows),
                        names.RESID_TOP: _rows_view(self.Rtop, rows),
                        names.SKETCH: _rows_view(self.T, rows),
                        names.SKETCH_A: _rows_view(self.Sa, rows)})
        for j, pair in enumerate(self.sparse):
            out.update(zip(sig.sparse_outputs(self.p, j), pair, strict=True))
        return {name: t for name, t in out.items() if t is not None}

    def sparse_buffers(self, j: int) -> dict[str, Tensor]:
        """The per-call operand of sparse product j (codes, scales) under the parameter names
        of its function (te/sparse.py)."""
        per_call = sig.SPARSE_A[:2] if self.p.sparse[j].side == "a" else sig.SPARSE_B[:2]
        return dict(zip(per_call, self.sparse[j], strict=True))

    def sketch_finite(self, m: int) -> bool:
        """Whether the sketch product of this call's m rows is finite. Where it is (witness:
        every column of A meets a nonzero of Ω), so is A: a NaN or an infinity in A makes its
        residual's entry (or its row's scale, and so the whole row) NaN or infinite, and that
        row of T = R Ω with it; the converse fails only where R Ω overflows float32."""
        return bool(np.isfinite(view(self.T)[:m]).all()) if self.T is not None else False

    def set_rows(self, m: int) -> None:
        if self.rows is not None:
            rows = writable(self.rows)
            rows[0] = m
            store(self.rows, rows)

    def notes(self) -> list[str]:
        if self.dens is None:
            return []
        d = view(self.dens)
        return [density_note("A", float(d[j]), sp.term.max_density)
                for j, sp in enumerate(self.a_copies)]

    def a_epilogue(self, m: int, w_of: Callable[[np.ndarray], np.ndarray],
                   run: Callable[[str], None] | None = None) -> None:
        """Ua = L_A, Wa = F_Aᵀ B (or B̂) for a call with m rows; w_of(Ft) gives F_Aᵀ B (r x N)
        from F_Aᵀ (r x K): the exact B's product (other=exact), or held_w's (other=packed).
        run(fn): runs the bucket's compiled function fn (resid_tq, resid_z where it has
        them)."""
        p, t = self.p, self.p.lowrank_a
        if t is None:
            raise TypeError(f"plan of '{p.scheme.name}': A has no lowrank term")
        R = view(self.R)[:m, : p.k]
        if t.rank > min(m, p.k):
            raise InputError(f"A: lowrank(rank={t.rank}) needs at least {t.rank} rows, got {m}")
        w = sketch_width(p, m)
        with one_blas_thread():
            if w == sketch_width(p):  # the sketch product the quantize pass wrote (or none)
                T = view(self.T)[:m] if w else None
            else:  # fewer rows than rank + oversample: the reference draws a narrower Ω
                T = R @ test_matrix(t, p.k, w).astype(F32)
            top = float(view(self.Rtop)[:m].max())  # max |R| (the quantize pass's rows)
            products: Products | None = None  # numpy's BLAS, else the kernel's resid_tq and
            #   resid_z, or the sketch's Rᵀ (R s) and (where it runs) sketch_ab
            if run is not None and self.RtQ is not None:
                products = self._products(m, run)
            elif self.Trt is not None:
                products = self._sketch(R, run if self.Sb is not None else None)
            L, Ft = a_factors(t, R, T, top, products)
            ua = writable(self.Ua)
            with np.errstate(over="ignore"):  # past float32: C's finiteness check says so
                ua[:m] = L
            ua[m:] = 0.0
            store(self.Ua, ua)
            wa = writable(self.Wa)
            wa[:, : p.n] = w_of(Ft)
            wa[:, p.n:] = 0.0
            store(self.Wa, wa)


    def _products(self, m: int, run: Callable[[str], None]) -> RsvdProducts:
        """(Rᵀ Q, R Z) of this call's m rows of R by resid_tq and resid_z: Q (m x w) and Z (K x
        w) float32, w at most the compiled width; the bases zero past them."""
        k = self.p.k

        def given(buf: Tensor, X: np.ndarray, n: int, fn: str) -> int:
            """Run fn on X (n x w) as buf holds it (transposed, zero past it); returns w."""
            w = X.shape[1]
            xt = writable(buf)
            xt[:] = 0.0
            xt[:w, :n] = X.T
            store(buf, xt)
            run(fn)
            return w

        def rt(R: np.ndarray, Q: np.ndarray) -> np.ndarray:
            w = given(self.Qt, Q, m, names.FN_RESID_TQ)
            return np.array(view(self.RtQ)[:w, :k].T)

        def rz(R: np.ndarray, Z: np.ndarray) -> np.ndarray:
            w = given(self.Zt, Z, k, names.FN_RESID_Z)
            return np.array(view(self.RZ)[:m, :w])

        return rt, rz

    def _sketch(self, R: np.ndarray, run: Callable[[str], None] | None) -> SketchProducts:
        """(u, ab) of the rank-1 sketch on this call's R (m x K, read from the kernel's): u()
        = Rᵀ (R s) from quantize_a's chunks, added in order, and ab(u') = (R u', Rᵀ R u') by
        sketch_ab (without it: numpy's, linalg.r_rt)."""
        m, k = R.shape
        trt = self.Trt

        def u() -> np.ndarray:  # (only where R needs no scaling: else its sums may overflow)
            return np.asarray(np.sum(view(trt)[:, :k], axis=0, dtype=F32))

        if run is None or self.Su is None or self.Sa is None or self.Sb is None:
            return u, partial(r_rt, R)
        su, sa, sb = self.Su, self.Sa, self.Sb

        def ab(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            x = writable(su)
            x[0, :k] = v
            x[0, k:] = 0.0
            store(su, x)
            run(names.FN_SKETCH_AB)
            return (np.array(view(sa)[:m, 0]),
                    np.asarray(np.sum(view(sb)[:, :k], axis=0, dtype=F32)))

        return u, ab

    def set_fa(self, Ft: np.ndarray) -> None:
        """Fa = F_Aᵀ (r x K), zero padded to Kq: the input of lowrank_w (other=packed) or
        exact_w (other=exact)."""
        if self.Fa is None:
            raise TypeError(f"plan of '{self.p.scheme.name}': neither lowrank_w nor exact_w "
                            "computes A's W")
        fa = writable(self.Fa)
        fa[:, : self.p.k] = Ft
        fa[:, self.p.k:] = 0.0
        store(self.Fa, fa)

    def held_w(self, Ft: np.ndarray, arrays: PackedOperand) -> np.ndarray:
        """F_Aᵀ B̂ (r x N) after lowrank_w ran on set_fa's Fa: its product with B's codes (the
        base and dense segments) plus B's lowrank term, (F_Aᵀ L_B) F_Bᵀ, and B's sparse terms,
        F_Aᵀ deq(Q(R_B)), from their codes a block of columns at a time."""
        p = self.p
        if self.Wc is None:
            raise TypeError(f"plan of '{p.scheme.name}': no lowrank_w output")
        w = np.array(view(self.Wc)[:, : p.n], dtype=F32)
        ft = Ft.astype(F32)
        if p.rank_b and arrays.lbt is not None and arrays.wb is not None:
            w += (ft @ arrays.lbt[:, : p.k].T) @ arrays.wb[:, : p.n]
        for sp, codes in zip(p.sparse, arrays.sparse, strict=True):
            if sp.side == "a" and isinstance(codes, SparseCodes):
                w += sparse_w(ft, codes, p.vector, p.n)
        return w


def sparse_w(ft: np.ndarray, codes: SparseCodes, vector: int, n: int,
             block: int = 256) -> np.ndarray:
    """F_Aᵀ deq(Q(R_B)) (r x n) of one of B's sparse terms from its codes d[Kq, Np] and scales
    s[G, Np] (groups of `vector` along K), `block` columns at a time: no float copy of the
    whole term. ft: F_Aᵀ (r x K), K <= Kq."""
    r, k = ft.shape
    g = codes.s.shape[0]
    out = np.empty((r, n), F32)
    for c0 in range(0, n, block):
        c1 = min(n, c0 + block)
        d = codes.d[:, c0:c1].astype(F32).reshape(g, vector, c1 - c0) * codes.s[:, None, c0:c1]
        out[:, c0:c1] = ft @ d.reshape(g * vector, c1 - c0)[:k]
    return out
