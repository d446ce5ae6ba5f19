"""KernelPlan: the backend's IR. One frozen value per compiled M bucket saying everything code
generation needs about a base product at concrete sizes: padded dims, scale groups, zero
points, residual terms as K segments, sparse products and low-rank epilogues. It is lowered
from the verified IR Program (plan/lower.py), checked by verify_plan (plan/verify.py) and
printed by print_plan (plan/printer.py). No TVM here."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..frontend.model import (
    Calibration,
    Dense,
    FloatOperand,
    Granularity,
    LowRank,
    Operand,
    Quant,
    QuantOperand,
    Rounding,
    Scheme,
)
from ..passes.cost import stored_width
from ..reference.minifloat import exact_in
from ..reference.quant import padded_k
from .segments import Segment, SparseProduct


@dataclass(frozen=True)
class KernelPlan:
    # (frozen: each derived property is computed once, on first use, and kept; calls read
    # several of them between the compiled functions)
    scheme: Scheme
    m: int
    n: int
    k: int
    mp: int  # M padded to the row tile
    np_: int  # N padded to 16 lanes
    kp: int  # K padded to the group size and to 4
    groups: int  # G: scale groups along K (1 for per_tensor / per_channel)
    vector: int  # V (kp // groups)
    a_offset: int  # added to A's codes to make them unsigned (128 for signed, 0 for unsigned)
    notes: tuple[str, ...] = ()
    float_gemm: bool = False  # quantized operands the integer path cannot hold: float fallback
    segments: tuple[Segment, ...] = ()  # dense/sparse terms as extra K segments (segments.py)
    kseg: int = 0  # A's quantized K per segment (0: kp, no segments)
    lowrank_a: LowRank | None = None  # the LowRank term ending A's residuals: epilogue
    #   L_A (F_Aᵀ B)
    lowrank_b: LowRank | None = None  # the LowRank term ending B's residuals: epilogue
    #   (A' L_B) F_Bᵀ
    dense_b: tuple[Dense, ...] = ()  # float path: B's dense terms, folded into the float weights
    sparse: tuple[SparseProduct, ...] = ()  # sparse terms: products added after the GEMM
    chunked: bool = False  # accumulate: int64 past int32's reach: the groups are K chunks of
    #   one scale whose int32 partial sums are added in int64 (te_base.gemm)

    @cached_property
    def nseg(self) -> int:
        return max(1, len(self.segments))

    @cached_property
    def kq(self) -> int:
        """K as A is quantized (one segment): the GEMM's K is nseg * kq."""
        return self.kseg or self.kp

    @cached_property
    def gq(self) -> int:
        """Scale groups per segment."""
        return self.groups // self.nseg

    @cached_property
    def rank_a(self) -> int:
        return self.lowrank_a.rank if self.lowrank_a is not None else 0

    @cached_property
    def rank_b(self) -> int:
        return self.lowrank_b.rank if self.lowrank_b is not None else 0

    @cached_property
    def compensated(self) -> bool:
        return bool(self.segments or self.sparse or self.rank_a or self.rank_b or self.dense_b)

    @cached_property
    def b_quants(self) -> tuple[Quant | None, ...]:
        return tuple(sg.qb for sg in self.segments) or (self.qb,)

    @cached_property
    def qa(self) -> Quant | None:
        """A's quantizer; None for a float A."""
        return _quant(self.scheme.a)

    @cached_property
    def qb(self) -> Quant | None:
        """B's quantizer; None for a float B."""
        return _quant(self.scheme.b)

    @cached_property
    def a_float(self) -> bool:
        return isinstance(self.scheme.a, FloatOperand)

    @cached_property
    def b_float(self) -> bool:
        return isinstance(self.scheme.b, FloatOperand)

    @cached_property
    def float_path(self) -> bool:
        """A float operand (or the float fallback): the product runs as a float32 GEMM."""
        return self.a_float or self.b_float or self.float_gemm

    @cached_property
    def pack_bits(self) -> int:
        """Bits of each stored weight code: 8 (one int8 code per byte, in VNNI blocks), or w of
        1..7 for integer weights packed densely (plan/packing.py; the quantizer's pack=byte
        keeps bytes): the width of the widest code over B's segments."""
        if self.float_codes:
            qb = self.qb
            return 8 if qb is None or qb.pack == "byte" else stored_width(qb)
        if self.float_path:
            return 8
        widths = [stored_width(q) for q in self.b_quants]
        qb = self.qb
        if qb is None or qb.pack == "byte":
            return 8
        return min(8, max(widths))

    @cached_property
    def float_codes(self) -> bool:
        """Weight-only products a float32 GEMM runs from B's integer codes: A a float operand
        times integer weights of any granularity but MX blocks (per_tensor, per_channel,
        per_vector, two-level scales; symmetric, min-max or fixed point), without residual
        terms, unless the 16-bit path holds the product (KernelPlan.half: a float16 / bfloat16
        A times per_tensor / per_channel codes) and B's quantizer does not ask for pack=dense.
        The codes are stored packed (pack=byte: a byte each) in 16-column panels and
        dequantized to float32, (code - zero) x scale of their K group, once per panel or k
        chunk by the GEMM (te.floating); B takes w/8 bytes per weight plus its scales instead
        of four bytes."""
        qb = self.qb
        return (self.a_float and qb is not None and not self.compensated and qb.is_int
                and qb.granularity != Granularity.PER_BLOCK
                and (self._fits_half() is None or qb.pack == "dense"))

    @cached_property
    def float_zero(self) -> bool:
        """Weight-only codes with zero points (unsigned or min-max weights): zbf holds them."""
        qb = self.qb
        return self.float_codes and qb is not None and (
            not qb.signed or qb.calibrate == Calibration.MINMAX)

    @cached_property
    def b_group(self) -> int:
        """K per scale group of B's quantizer (its V, or K for per_tensor / per_channel)."""
        qb = self.qb
        return qb.vector if qb is not None and qb.grouped else self.k

    @cached_property
    def packed(self) -> bool:
        """Whether B's codes are stored below a byte each (unpacked per tile by the kernels)."""
        return self.pack_bits < 8

    @cached_property
    def b_zero(self) -> bool:
        """Weights with zero points (unsigned or min-max): stored as code - b_offset, corrected
        in the epilogue by row sums of A's centered codes times the weights' zero points."""
        qb = self.qb  # None only for a float B (then float_path)
        return not self.float_path and qb is not None and (
            not qb.signed or qb.calibrate == Calibration.MINMAX)

    @cached_property
    def b_offset(self) -> int:
        """Subtracted from unsigned weight codes so they fit the signed storage."""
        qb = self.qb
        return 2 ** (qb.bits - 1) if qb is not None and not qb.signed else 0

    @cached_property
    def stochastic_a(self) -> bool:
        """A rounds stochastically: quantize_a reads the reference's U[0, 1) draws (noise())."""
        return self.qa is not None and self.qa.round == Rounding.STOCHASTIC

    def noise(self) -> np.ndarray:
        """The draws lrqc.reference.quantize makes for A at this bucket's M rows: U[0, 1) of
        shape (M, K padded as the reference pads it) from the quantizer's seed, in C order
        (so the first m rows are those of a call with m rows), zero padded to Kp columns."""
        qa = self.qa
        if qa is None:
            raise TypeError(f"plan of '{self.scheme.name}': a float A draws no noise")
        kref = padded_k(qa, self.k)
        out = np.zeros((self.m, self.kq))
        out[:, :kref] = np.random.default_rng(qa.seed).random((self.m, kref))
        return out

    @cached_property
    def zero_points(self) -> bool:
        """Whether the integer sums depend on zero points that come from the data (min-max
        quantizers, of A or of the weights): each call checks them (zero_point_problem)."""
        if self.float_path:
            return False
        quants: list[Quant | None] = [sg.qa for sg in self.segments] or [self.qa]
        return self.b_zero or any(q is not None and q.is_int and q.calibrate == Calibration.MINMAX
                                  for q in quants)

    @cached_property
    def a_zero_static(self) -> int | None:
        """A's zero correction zc where every row and group has the same one, known here:
        a_offset, the offset added to A's codes (no min-max quantizer gives A zero points from
        the data, and one K segment); None where zc comes from the data."""
        qa = self.qa
        if self.float_path or self.segments or qa is None or \
                (qa.is_int and qa.calibrate == Calibration.MINMAX):
            return None
        return self.a_offset

    @cached_property
    def mx(self) -> bool:
        return self.qa is not None and self.qa.granularity == Granularity.PER_BLOCK

    @cached_property
    def half(self) -> str | None:
        """float16 or bfloat16 when the float path's GEMM can multiply 16-bit values exactly:
        each operand is a float of that type, or quantized symmetrically (maxabs) with its
        scale outside the K sum (per_tensor / per_channel: codes of at most 8 bits and e*m*
        element values are exact in both types), and B has no dense term folded in. The GEMM
        then multiplies A's codes by B's codes (products exact in float32, accumulated in
        float32) and applies the row and column scales in its epilogue; CUDA runs it on
        fp16/bf16 tensor cores. None: the float32 GEMM of dequantized values."""
        return None if self.float_codes else self._fits_half()

    def _fits_half(self) -> str | None:
        """KernelPlan.half's type, before weight-only codes (float_codes) are considered."""
        if not self.float_path or self.dense_b:
            return None
        fits = set(HALF_TYPES)
        for op in (self.scheme.a, self.scheme.b):
            fits &= _half_types(op)
        return next((t for t in HALF_TYPES if t in fits), None)




HALF_TYPES = ("float16", "bfloat16")  # preferred first


def _quant(op: Operand) -> Quant | None:
    """The quantizer of a quantized operand; None for a float one (plans hold no LPLR)."""
    return op.quant if isinstance(op, QuantOperand) else None


def _half_types(op: Operand) -> set[str]:
    """The 16-bit float types that hold an operand's GEMM values exactly (see KernelPlan.half)."""
    if isinstance(op, FloatOperand):
        return {op.dtype} & set(HALF_TYPES)
    q = _quant(op)
    if q is None:  # an LPLR operand: make_plan plans none
        return set()
    outside_k = q.granularity in (Granularity.PER_TENSOR, Granularity.PER_CHANNEL)
    if not outside_k or q.scale != "float32" or q.calibrate == Calibration.MINMAX or q.bits > 8:
        # (minmax zero points are not clamped: code - zero is unbounded for data of one sign)
        return set()
    if q.is_int:
        return set(HALF_TYPES)  # codes of at most 8 bits (fixed point included)
    return {t for t in HALF_TYPES if exact_in(q.fmt, t)}  # eXmY element values


