"""The short call path of an integer kernel in host memory whose calls are compiled functions
only: what Kernel's general call does, for the plans where most of it has nothing to do, with
everything a call can look up made once.

It serves kernels that quantize A to integer codes by max |x| (no MX blocks, zero points or
float path: signature.stats_see_non_finite), or by min and max where A's codes are stored
centred on their zero points (te centre: a call with a group that is not runs the general
path, whose checks of zero points it needs), with any scale granularity and dense terms (K
segments), and whose residual terms need no work between the compiled functions: B's
low-rank term (lowrank_u makes U_B = A' L_B before the GEMM); A's low-rank and sparse terms
take the general path (a sparse copy's statistics count the call's rows, which it sets). A call
checks A's type and shape, runs quantize_a on A where it lies (else on a copy), checks A's
scales with one minimum and one maximum (finite and normal in float32: all of them are then;
anything else goes through the general checks and their errors), runs lowrank_u where there is
one and the GEMM into a new C (the one Bucket.gemm chooses), and proves C finite by the bound
of Kernel._bounded computed from those two numbers and the packed operand's own, found once
per packed operand (max |U_B| too is bounded from them: limits, not read back from U_B, whose
rows the other core wrote).
The numbers are the general path's: the same functions on the same buffers."""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np

from ..backend.compat import lend
from ..plan import names, ranges
from ..plan import signature as sig
from ..plan.model import KernelPlan
from ..plan.support import b_deviation
from .buckets import Bucket, Packed, call_args
from .checks import F32_TINY, finite, sum_bound
from .glue import on_cpu, view

Kernel = Any  # lrqc.runtime.kernel.Kernel, which imports this module

LIMIT = 1e38 / 1.01  # Kernel._bounded's margin below float32's largest value


def serves(kernel: Kernel) -> bool:
    """Whether the short path computes this kernel's calls."""
    p = kernel.plan
    return (not kernel.transposed and not kernel.no_device and kernel.finite_later
            and (not p.zero_points or centred(p)) and not p.rank_a and not p.sparse
            and all(on_cpu(b.sa) and b.lends_a for b in kernel._buckets))


def centred(p: KernelPlan) -> bool:
    """Whether quantize_a stores A's codes centred on their zero points (te centre): a call
    whose groups all are has A's codes within a byte of them, as the bounds take them."""
    return sig.zero_pairs(p) and p.a_zero_static is None


class Direct:
    """Per bucket: its rows, its scales' host view, the GEMM and its arguments (C's slot
    left to fill per call)."""

    def __init__(self, kernel: Kernel):
        self.kernel = kernel
        self.buckets: list[Bucket] = kernel._buckets
        self.rows = [b.plan.m for b in self.buckets]
        self.scales = [view(b.sa) for b in self.buckets]
        self.gemm = [b.fn(names.FN_GEMM) for b in self.buckets]
        self.bound = [b.bound[names.FN_GEMM] for b in self.buckets]
        self.out_at = [[n for n, _ in bound].index(names.OUT) for bound in self.bound]
        p = kernel.plan
        self.k, self.n, self.np_ = p.k, p.n, p.np_
        self.acc = sum_bound(p)  # the largest |integer sum| (Kernel._bounded)
        self.rank_b = p.rank_b  # B's low-rank term: lowrank_u's U_B before the GEMM
        self.ub = [view(b.comp.Ub) if b.comp is not None and b.comp.Ub is not None else None
                   for b in self.buckets]
        self.comp = p.compensated
        self.zc = [view(b.zc) for b in self.buckets] if centred(p) else None
        self.centre = ranges.pairs_of(p).offset if centred(p) else 0  # a centred group's zc

    def __call__(self, A: Any, packed: Packed) -> np.ndarray:
        kernel = self.kernel
        if not (type(A) is np.ndarray and A.dtype == np.float32 and A.ndim == 2 and A.size):
            return kernel._call(A, packed)  # converted and checked there
        m = A.shape[0]
        if A.shape[1] != self.k or not kernel.m_min <= m <= kernel.m_max:
            return kernel._call(A, packed)  # its error
        i = bisect.bisect_left(self.rows, m)
        bk = self.buckets[i]
        args = call_args(self.bound[i], packed.tensors, m)  # the row tiles past m are skipped
        with bk.lock:
            lent = lend(A) if A.flags.c_contiguous else None
            if lent is not None:
                bk.quantize(lent, m)
            else:
                kernel._fill(bk, A)  # a copy into the bucket's buffer, checked there
            lo, hi = extremes(self.scales[i][:m])
            if not (lo >= F32_TINY and hi < np.inf):  # NaN fails too: the general checks
                kernel._check_scales(bk, A, m, packed)
                hi = float(np.abs(self.scales[i][:m]).max())
            ub = self.ub[i]
            if ub is not None:  # B's low-rank term
                bk.run(names.FN_LOWRANK_U, packed)
            out = bk.new_c()
            if self.zc is not None and not (self.zc[i][:m] == self.centre).all():
                out = None  # a group not centred: the general path's checks of zero points
            elif bk.pairs is not None and bk.gemm(m, packed) != names.FN_GEMM:
                bk.run(names.FN_GEMM_GROUPS, packed, out)  # numbers the int16 pairs cannot hold
            else:
                args[self.out_at[i]] = out
                self.gemm[i](*args)
        if out is None:
            return kernel._call(A, packed)
        if self.comp:
            kernel.last_notes = list(packed.notes)
        c = np.from_dlpack(out)[:m]
        if self.n != self.np_:
            c = np.ascontiguousarray(c[:, : self.n])
        sb, bias, top_w, u_per_scale, dev_b = limits(packed, self.kernel.plan)
        acc = self.acc if dev_b <= 255 else sum_bound(self.kernel.plan, 255, dev_b)
        top = acc * hi * sb + bias
        if ub is not None:
            top += self.rank_b * hi * u_per_scale * top_w
        if max(acc * hi, acc * sb, hi * sb) < LIMIT and top < LIMIT:
            return c
        return finite(c)


FEW = 32  # scales (rows x groups) that Python's min and max scan faster than numpy's reductions


def extremes(sa: np.ndarray) -> tuple[float, float]:
    """(min, max) of a call's scales; the max is NaN or infinite where a scale is. Up to FEW
    scales through a list (0.4 µs for one, 1.5 for 32, against 2.2 for numpy's two
    reductions). Python's min and max can skip a NaN, so there the sum, which is then NaN or
    infinite, stands in for the maximum."""
    if sa.size > FEW:
        return float(sa.min()), float(sa.max())
    vals = sa.ravel().tolist()
    top, total = max(vals), sum(vals)
    return min(vals), top if total == total else total


def limits(packed: Packed, p: KernelPlan) -> tuple[float, float, float, float, int]:
    """(max |sb|, max |bias|, max |W_B|, U_B's bound per unit of A's scale, B's largest
    |code - zero point|) of a packed operand of plan p, found on its first call (W_B: F_Bᵀ of
    B's low-rank term, 0 without one; the last at least 255: support.b_deviation). U_B = A' L_B
    sums A's codes less their zero points (at most 255 apart where the zero points lie within
    the codes' range; else Kernel._bounded scales this bound by how far they lie) times A's
    scales times L_B, so |U_B[i, c]| <= 255 max sa Σ_k |L_B[k, c]|, and lowrank_u's float32
    rounding adds at most (Kq + 2) 2^-24 of it (doubled here for room): the fourth number
    times max sa bounds max |U_B| without reading U_B."""
    if packed.limits is None:
        arr = packed.arrays
        if arr.sb is None:  # no bound: C is checked entry by entry
            packed.limits = (np.inf, 0.0, 0.0, np.inf, 255)
            return packed.limits
        bias = 0.0 if arr.bias is None else float(np.abs(arr.bias).max())
        wb = 0.0 if arr.wb is None else float(np.abs(arr.wb).max())
        per_scale = 0.0
        if arr.lbt is not None:
            lbt = np.asarray(arr.lbt, np.float64)
            room = 1.0 + (lbt.shape[1] + 2) * 2.0**-23
            per_scale = 255.0 * float(np.abs(lbt).sum(axis=1).max(initial=0.0)) * room
        packed.limits = (float(np.abs(arr.sb).max()), bias, wb, per_scale,
                         b_deviation(p, arr.zb))
    return packed.limits
