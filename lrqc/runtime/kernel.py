"""Kernel: a compiled base product. pack(B) once, then kernel(A, packed) per call -> float32 C.

Inputs of any order, alignment and real dtype are copied into aligned TVM tensors (compiled
functions check that their buffers are 64-byte aligned), except a 64-byte aligned, C-contiguous,
writeable float32 A of any rows up to the bucket's, which quantize_a reads where it lies
(Bucket.lends_a: where no later function reads A); shapes are checked against the build.
A kernel built for a range of M holds one code path per bucket; a call with m rows runs the
smallest bucket >= m on A padded with copies of its last row, which leaves every statistic of
A's quantization (per-tensor max/min, per-row, per-vector, per-block) unchanged.

Kernels may be called from several threads at once: each bucket's scratch buffers are used
under that bucket's lock (calls on one bucket run one after another, calls on different
buckets in parallel), and pack() only allocates new arrays. A packed operand carries the
fingerprint of the kernel that made it (layout.fingerprint): another kernel refuses it."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt

from ..backend import openmp
from ..backend.compat import empty, lend
from ..backend.target import Target
from ..errors import InputError
from ..frontend.model import FloatOperand, Scheme
from ..plan import fingerprint, layout, segments
from ..plan import signature as sig
from ..plan.model import KernelPlan
from ..plan.support import code_deviations, zero_point_problem
from ..reference.inputs import FLOAT_MAX, as_bias, as_matrix, round_float
from ..reference.quant import QArray
from .buckets import MADE, Bucket, Packed, dense_kinds, held_codes, sparse_operands, static_tensors
from .checks import finite, finite_scales, kernel_output, normal_scales, sparse_top, sum_bound
from .device import device_of
from .direct import Direct, limits, serves
from .glue import host_array, store, view, writable
from .protocol import NotPickled
from .timing import median_times


class Kernel(NotPickled):
    """pack(static operand) once, kernel(per-call operand, packed) -> C (M x N float32).

    With `static: b` (the default) that is pack(B), kernel(A, packed); with `static: a`,
    pack(A), kernel(B, packed), run as Cᵀ = Bᵀ Aᵀ (transposed=True); with `static: none`
    pack(B) is simply called on every new B (numpy quantization, as the reference)."""

    def __init__(self, plans: KernelPlan | tuple[KernelPlan, ...] | list[KernelPlan],
                 module: Any, target: Target, rule: str, fast: bool, m_min: int | None = None,
                 transposed: bool = False, prefix: str = ""):
        self.transposed = transposed
        plans = tuple(plans) if isinstance(plans, (tuple, list)) else (plans,)
        self.plans, self.module, self.target = plans, module, target
        self.rule, self.fast = rule, fast
        self.plan = plans[-1]  # the largest bucket
        self.m_min = plans[0].m if m_min is None else m_min
        self.m_max = self.plan.m
        self.prefix = prefix
        self.output = self.plan.scheme.output  # the type of C (parts of chains: float32)
        # quantize_a itself finds a NaN or infinity in A (its scales): no pass over A before
        self.finite_later = sig.stats_see_non_finite(self.plan)
        self.dev, self.no_device = device_of(target)
        self._kinds = dense_kinds(self.plan, target)  # dense formulations' instructions (pack's)
        self._bk = None if self.no_device else [
            Bucket(p, module, prefix, self.dev, dense=not target.is_cuda,
                   kinds=dense_kinds(p, target)) for p in plans]
        # A's lowrank sketch R Ω is finite only where A is: A's check waits for it (_fill)
        #   where A's scales do not see a NaN or an infinity
        self._witness = not self.finite_later and self._bk is not None and all(
            b.comp is not None and b.comp.witness for b in self._bk)
        self.last_notes: list[str] = []  # of the last call (sparse terms: which copy was used,
        #   which formulation ran)
        self.schedules: dict[str, str] = {}  # symbol -> where its schedule came from
        self._threads = "tvm"  # where its parallel loops run (compile(threads=...) says)
        self._fingerprint: dict[str, str] | None = None
        self._direct: Direct | bool | None = None  # the short call path, made on first call

    @property
    def _buckets(self) -> list[Bucket]:
        """The compiled row counts with their device buffers (a CUDA kernel built on a
        machine without a GPU has none: calling it says so)."""
        if self._bk is None:
            raise InputError(self.no_device)
        return self._bk

    @property
    def scheme(self) -> Scheme:
        """The scheme this kernel computes (static: a kernels compile its transpose)."""
        s = self.plan.scheme
        return replace(s, a=s.b, b=s.a, static="a") if self.transposed else s

    @property
    def fingerprint(self) -> dict[str, str]:
        """What its packed operands must have been made for (layout.fingerprint)."""
        if self._fingerprint is None:
            p = self.plan
            sizes = f"A: {p.n}x{p.k} (M x K)" if self.transposed else f"B: {p.k}x{p.n} (K x N)"
            self._fingerprint = fingerprint.fingerprint(self.scheme, sizes, str(self.dev), p,
                                                        held_codes(p, self.target))
        return self._fingerprint

    @property
    def m_text(self) -> str:
        return str(self.m_max) if self.m_min == self.m_max else f"{self.m_min}..{self.m_max}"

    @property
    def dims(self) -> tuple[str, int, int]:
        """(M as text, N, K) of the product C = A @ B this kernel computes."""
        p = self.plan
        return (str(p.n), p.m, p.k) if self.transposed else (self.m_text, p.n, p.k)

    def pack(self, X: npt.ArrayLike, bias: npt.ArrayLike | None = None, *,
             q: QArray | None = None) -> Packed:
        """Prepare the static operand (B, or A for static: a); bias: N values that the GEMM's
        epilogue adds to every row of C (in float32, before C is rounded to the output type),
        packed with B; q (internal: LPLR's chain): B's exact quantized copy (layout.pack)."""
        if bias is not None:
            if self.transposed:
                raise InputError("bias: with static: a, C's columns come with the per-call B; "
                                 "add the bias to the result")
            bias = as_bias(bias, self.plan.n)
        if self.transposed:
            A = as_matrix(X, "A", float32=True)
            m, _, k = self.dims
            if A.shape != (int(m), k):
                raise InputError(f"A: expected shape {m}x{k} (M x K) for this kernel, got "
                                 f"{A.shape[0]}x{A.shape[1]}")
            X = A.T
        try:
            arrays = layout.pack(self.plan, X, q, dense=not self.target.is_cuda, bias=bias,
                                 kinds=self._kinds)
        except InputError as exc:  # the transposed product's B is the user's A
            if self.transposed and str(exc).startswith("B"):
                raise InputError("A" + str(exc)[1:]) from None
            raise
        for sb in (arrays.sb, arrays.sbf):  # (G, Np), one per column: integer, float paths
            if sb is not None and not self.plan.mx:
                normal_scales(sb, "row" if self.transposed else "column",
                              "A" if self.transposed else "B", axis=1)
        return self._adopt(arrays)

    def adopt(self, arrays: layout.PackedOperand) -> Packed:
        """The Packed operand of arrays that pack() of this kernel, or of one with the same
        fingerprint, made in this process (MADE), on this kernel's device."""
        _ = self._buckets  # a kernel that cannot run here says so before anything else
        made = MADE.get(arrays) if isinstance(arrays, layout.PackedOperand) else None
        if made is None:
            raise InputError("adopt: expected packed.arrays of a packed operand that pack() made; "
                             "saved ones load through lrqc.torch.load, which checks their kernel")
        fingerprint.check_fingerprint(SimpleNamespace(fingerprint=made), self.fingerprint,
                                      "A" if self.transposed else "B")
        return self._adopt(arrays)

    def _adopt(self, arrays: layout.PackedOperand) -> Packed:
        """adopt() of arrays known to be made for this kernel (its pack's, or a saved state
        whose fingerprint matched: packstate.restore); the result's arrays join MADE."""
        arrays, tensors = static_tensors(arrays, self.dev, self._buckets[0].exact_w)
        MADE[arrays] = self.fingerprint
        return Packed(arrays, tensors, self.fingerprint, arrays.notes,
                      sparse_operands(self.plan, arrays.sparse, self.dev, self.target))

    def split(self, A: npt.ArrayLike,
              B: npt.ArrayLike) -> tuple[npt.ArrayLike, npt.ArrayLike]:
        """(per-call operand, static operand) of the product A @ B."""
        return (B, A) if self.transposed else (A, B)

    def run(self, A: npt.ArrayLike, B: npt.ArrayLike,
            bias: npt.ArrayLike | None = None) -> np.ndarray:
        """C = A @ B (+ bias) in one go: pack the static operand, then call (for scripts and
        the CLI)."""
        per_call, static = self.split(A, B)
        if bias is not None and self.transposed:  # the bias belongs to the per-call B
            row = as_bias(bias, self.dims[1]).astype(np.float32)
            with np.errstate(over="ignore"):  # past float32: finite() refuses it
                c = self._c32(per_call, self.pack(static)) + row
            return kernel_output(finite(c), self.output)
        return self(per_call, self.pack(static, bias=bias))

    def _per_call(self, Y: npt.ArrayLike) -> npt.ArrayLike:
        """The per-call operand in the kernel's own orientation (Bᵀ for static: a)."""
        if not self.transposed:
            return Y
        B = as_matrix(Y, "B", np.float32)
        _, n, k = self.dims
        if B.shape != (k, n):
            raise InputError(f"B: expected shape {k}x{n} (K x N) for this kernel, got "
                             f"{B.shape[0]}x{B.shape[1]}")
        return B.T

    def _bucket(self, A: npt.ArrayLike) -> tuple[Bucket, np.ndarray]:
        """(the bucket that runs A, A as float32) after A's checks."""
        p = self.plan
        A = as_matrix(A, "A", np.float32, finite_later=self.finite_later or self._witness)
        m = A.shape[0]
        if A.shape[1] != p.k or not self.m_min <= m <= self.m_max:
            raise InputError(f"A: expected shape {self.m_text}x{p.k} (M x K) for this kernel, "
                             f"got {A.shape[0]}x{A.shape[1]}")
        a = p.scheme.a
        if isinstance(a, FloatOperand) and a.dtype in ("float16", "bfloat16"):  # quantize_a
            dt, top = a.dtype, np.abs(A).max(axis=1)  # rounds A to it
            try:
                round_float(top, dt)
            except InputError:
                what = f"column {np.argmax(top)} of B" if self.transposed else \
                    f"row {np.argmax(top)} of A"
                raise InputError(f"{what} holds {top.max():.6g}, beyond {dt}'s range (largest "
                                 f"finite {FLOAT_MAX[dt]:.6g}); scale it down or declare a "
                                 "wider type") from None
        return next(b for b in self._buckets if b.plan.m >= m), A

    def _quantize(self, A: npt.ArrayLike) -> tuple[Bucket, int]:
        """(bucket, m) after A's checks, its copy into the bucket's buffer and quantize_a (for
        tests that read the buffers; calls hold the bucket's lock throughout instead)."""
        bk, A = self._bucket(A)
        with bk.lock:
            return bk, self._fill(bk, A, in_place=False)

    def _fill(self, bk: Bucket, A: np.ndarray, in_place: bool = True) -> int:
        """Copy A into the bucket's buffer and run quantize_a (holding bk.lock); returns m.
        A C-contiguous A is read where it lies instead (unless in_place is False), where only
        quantize_a reads A: quantize_a takes it from the 64-byte aligned
        address before it (compat.lend; A's start at most K - 1 elements past it) and pads the
        rows up to the bucket's as the copy would."""
        m = A.shape[0]
        if bk.comp is not None:
            bk.comp.set_rows(m)
        lent = lend(A) if in_place and bk.lends_a and A.flags.c_contiguous else None
        if lent is not None:
            bk.quantize(lent, m)
        else:
            buf = writable(bk.a)  # the kernel's aligned buffer (in host memory: itself)
            buf[:m] = A
            buf[m:] = A[-1]
            store(bk.a, buf)
            bk.quantize(rows=m)
        if self.finite_later and not np.isfinite(view(bk.sa)[:m]).all():
            self._non_finite_scales(bk, A, m)
        if self._witness and bk.comp is not None and not bk.comp.sketch_finite(m):
            as_matrix(A, "A", np.float32)  # a NaN or infinity in A: its error (else R Ω
            #   overflowed: the factors rescale R)
        return m

    def _check_scales(self, bk: Bucket, A: np.ndarray, m: int, packed: Packed) -> None:
        """_fill's and _sums_fit's checks of this call's scales (the errors of the short
        path's calls, lrqc.runtime.direct)."""
        if self.finite_later and not np.isfinite(view(bk.sa)[:m]).all():
            self._non_finite_scales(bk, A, m)
        self._sums_fit(bk, m, packed)

    def _non_finite_scales(self, bk: Bucket, A: np.ndarray, m: int) -> None:
        """The error of a call whose scales are not finite: a NaN or infinity in A (its
        error), else a finite A whose range leaves float32 in a scale (checks.finite_scales)."""
        as_matrix(A, "A", np.float32)
        finite_scales(view(bk.sa)[:m], "column" if self.transposed else "row",
                      "B" if self.transposed else "A")
        raise InputError("A: contains non-finite values")

    def _sums_fit(self, bk: Bucket, m: int, packed: Packed) -> None:
        """InputError when this call's scales or zero points do not fit the integer GEMM's
        float32 epilogue (or the 16-bit float path's) or int32 sums."""
        p = bk.plan
        if (not p.float_path or p.half) and not p.mx:
            normal_scales(view(bk.saf if p.float_path else bk.sa)[:m],
                          "column" if self.transposed else "row", "B" if self.transposed else "A")
        if bk.plan.zero_points:
            why = zero_point_problem(bk.plan, view(bk.zc)[:m], packed.arrays.zb)
            if why:
                raise InputError(f"{'B' if self.transposed else 'A'} x packed "
                                 f"{'A' if self.transposed else 'B'}: {why}")

    @property
    def threads(self) -> str:  # where its parallel loops run: "tvm" (TVM's pool) or "openmp"
        return self._threads

    @threads.setter
    def threads(self, value: str) -> None:
        """On "openmp" the numpy work between its functions (A's low-rank factors) runs on the
        same OpenMP threads too (backend.openmp.each), which spin between the loops."""
        self._threads = value
        for bk in self._bk or []:
            bk.runner = openmp.each if value == "openmp" else None

    def _check(self, packed: Packed) -> None:
        fingerprint.check_fingerprint(packed, self.fingerprint, "A" if self.transposed else "B")

    def __call__(self, A: npt.ArrayLike, packed: Packed) -> np.ndarray:
        """C = A @ B: A per call and packed = pack(B); for static: a, kernel(B, pack(A))."""
        return kernel_output(self._c32(A, packed), self.output)

    def _c32(self, A: npt.ArrayLike, packed: Packed) -> np.ndarray:
        """C in float32, as the kernel computes it (before the output type), finite (else
        InputError)."""
        self._check(packed)
        if self.transposed:
            return np.ascontiguousarray(self._call(self._per_call(A), packed).T)
        direct = self.short_path()
        return direct(A, packed) if direct is not None else self._call(A, packed)

    def short_path(self) -> Direct | None:
        """The short call path (lrqc.runtime.direct) where it serves this kernel, else None:
        short(A, packed) is C in float32 for a packed operand this kernel made (before the
        output type; the fingerprint is not checked)."""
        direct = self._direct
        if direct is None:  # two threads may both make it: either one serves
            direct = self._direct = Direct(self) if serves(self) else False
        return direct if isinstance(direct, Direct) else None

    def _call(self, A: npt.ArrayLike, packed: Packed) -> np.ndarray:
        bk, A = self._bucket(A)
        with bk.lock:
            m = self._fill(bk, A)
            self._sums_fit(bk, m, packed)
            if bk.comp is not None:
                bk.compensate(m, packed)
                self.last_notes = list(packed.notes) + bk.comp.notes()
            fresh = bk.fresh_output()
            bk.run(bk.gemm(m, packed), packed, fresh)
            if bk.plan.sparse:  # which formulation ran for each sparse term, and why
                self.last_notes += bk.sparse(packed, fresh)
            if self.transposed and bk.comp is not None:  # name the operands as the user does
                self.last_notes = [segments.swap_operands(n) for n in self.last_notes]
            # this call's own C: its rows (contiguous), its columns (a copy if padded)
            c = np.ascontiguousarray(view(fresh)[:m, : self.plan.n])
            bounded = self._bounded(bk, m, packed)  # this call's scales: before another's
        return c if bounded else finite(c)

    def _bounded(self, bk: Bucket, m: int, packed: Packed) -> bool:
        """Whether this call's C is finite by a bound, without reading C. An integer product
        without sparse terms computes C = Σ_g acc_g sa_g sb_g (+ bias) (+ Σ_c U[i, c] W[c, j]
        per low-rank term) with |acc| <= Kp dev_a dev_b over its groups and segments (the
        largest |code - zero point| of each side: 255 within the codes' range, more for
        min-max zero points outside it; checks.sum_bound), so max |sa| max |sb| acc's bound +
        max |bias| + Σ_terms rank max |U| max |W| (with room for float32's rounding; B's
        max |U_B| by its bound, direct.limits, times dev_a / 255) below 1e38, and each product
        of two of acc's bound, max |sa|, max |sb| too, leaves C finite; a NaN fails the test.
        Sparse products add at most checks.sparse_top. Others are checked entry by entry."""
        p = bk.plan
        arr = packed.arrays
        if p.float_path or p.mx or arr.sb is None:
            return False
        dev_a, dev_b = code_deviations(p, view(bk.zc)[:m], arr.zb) if p.zero_points else (255, 255)
        acc = sum_bound(p, dev_a, dev_b)
        sb, bias, top_wb, u_per_scale, _ = limits(packed, p)  # the packed operand's, found once
        sa = float(np.abs(view(bk.sa)[:m]).max())
        if max(acc * sa, acc * sb, sa * sb) * 1.01 >= 1e38:  # an intermediate product of the
            return False  # epilogue (acc sa first, or the scales' product) could overflow
        top = acc * sa * sb + bias
        comp = bk.comp
        if p.sparse:
            static = [host_array(t[sig.sparse_static_scale(sp)])
                      for sp, t in zip(p.sparse, packed.sparse, strict=True)]
            extra = None if comp is None else sparse_top(
                p, [view(s)[:m] for _, s in comp.sparse], static)
            if extra is None:
                return False
            top += extra
        if p.rank_a:  # L_A, made on the host: its rows are in this core's cache
            if comp is None or comp.Ua is None or comp.Wa is None:
                return False
            top += p.rank_a * float(np.abs(view(comp.Ua)[:m]).max()) * \
                float(np.abs(host_array(comp.Wa)).max())
        if p.rank_b:  # U_B by its bound (direct.limits), W_B's maximum found once (none: inf)
            top += p.rank_b * sa * u_per_scale * dev_a / 255 * (top_wb if arr.wb is not None
                                                                  else np.inf)
        return top * 1.01 < 1e38

    def int_accumulate(self, A: npt.ArrayLike, packed: Packed) -> np.ndarray:
        """Σ_k (qA - zA) qB per K-group, exactly as the kernel accumulates it: (G, M, N) int32."""
        self._check(packed)
        if self.transposed:
            return self._int_acc(self._per_call(A), packed).transpose(0, 2, 1)
        return self._int_acc(A, packed)

    def _int_acc(self, A: npt.ArrayLike, packed: Packed) -> np.ndarray:
        if self.plan.float_path:
            raise InputError("this kernel multiplies in float32 (a float operand): it has no "
                             "integer accumulation")
        bk, A = self._bucket(A)
        p = bk.plan
        shape = (p.mp, p.np_) if p.groups == 1 else (p.mp, p.groups, p.np_)
        out = empty(shape, "int32", self.dev)
        with bk.lock:
            m = self._fill(bk, A)
            self._sums_fit(bk, m, packed)
            bk.int_acc(packed, out)
        res = out.numpy()
        res = res[None] if p.groups == 1 else res.transpose(1, 0, 2)
        if p.chunked:  # K chunks of one scale: their int32 partial sums, added in int64
            res = res.sum(axis=0, dtype=np.int64, keepdims=True)
        return res[:, :m, : p.n]

    def stage_times(self, A: npt.ArrayLike, packed: Packed,
                    repeat: int = 5) -> dict[str, float]:
        """Median seconds of the per-call stages on A: the copy of A into the kernel's buffer
        ("copy_a"), quantize_a, the GEMM with its epilogue, for kernels with low-rank terms
        their factors and U, W in between ("compensate"), and for sparse terms the products
        after it ("sparse") (for benchmarks; other calls on the same bucket wait meanwhile)."""
        self._check(packed)
        bk, A = self._bucket(self._per_call(A))
        with bk.lock:
            return self._stage_times(bk, A, packed, repeat)

    def _stage_times(self, bk: Bucket, A: np.ndarray, packed: Packed,
                     repeat: object) -> dict[str, float]:
        m = self._fill(bk, A, in_place=False)  # stages as for a copied A (aligned A skips copy_a)
        buf = bk.a.numpy()
        stages = {
            "copy_a": lambda: bk.a.copyfrom(buf),
            "quantize_a": lambda: bk.quantize(rows=m),
            "gemm": lambda: bk.run(bk.gemm(m, packed), packed),
        }
        if bk.plan.rank_a or bk.plan.rank_b:  # between quantize_a and the GEMM: U and W
            stages = dict(stages, compensate=lambda: bk.compensate(m, packed))
        if bk.plan.sparse:  # after the GEMM: C += the sparse products
            stages = dict(stages, sparse=lambda: bk.sparse(packed))
        return median_times(stages, repeat, self.dev.sync)
