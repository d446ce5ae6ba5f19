"""The typed scheme AST that the rest of lrqc consumes: every option resolved, defaults filled in.

  Scheme   := name, a: Operand, b: Operand, product: LowRankProduct?, accumulate, output, static
  Operand  := FloatOperand | QuantOperand(quant: Quant, residuals: Residual*) | LplrOperand
  Residual := LowRank | Dense(quant) | Sparse(threshold, max_density, quant)
Spans are carried for error messages and never take part in equality.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from ..errors import Span

# the OCP MX minifloats by name (suggestions and messages); any eXmY is a format: fp_format
NAMED_FP_FORMATS = ("e5m2", "e4m3", "e3m2", "e2m3", "e2m1")
FLOAT_TYPES = ("float32", "float64", "float16", "bfloat16")
PACK_CHOICES = ("dense", "byte")  # storage of the static operand's integer codes
_INT_RE = re.compile(r"^(u?)int(\d{1,9})$")  # more digits: not a format name
_FP_RE = re.compile(r"^e(\d{1,3})m(\d{1,3})$")
MAX_FORMAT_BITS = 8


def fp_format(name: str) -> tuple[int, int] | None:
    """(exp_bits, man_bits) of a minifloat 'eXmY' with X >= 1, Y >= 0 and 1 + X + Y <= 8
    (e3m2: (3, 2)), else None."""
    m = _FP_RE.match(name)
    if not m:
        return None
    x, y = int(m.group(1)), int(m.group(2))
    return (x, y) if x >= 1 and 1 + x + y <= MAX_FORMAT_BITS else None


def int_format(name: str) -> tuple[bool, int] | None:
    """(signed, bits) for 'int8'/'uint4'-style names (any width below 10^9), else None."""
    m = _INT_RE.match(name)
    return (m.group(1) == "", int(m.group(2))) if m else None


class Word(str, Enum):
    """A keyword of the language as a typed value: equal to, hashed and printed as its text
    (so the canonical scheme text, manifests and tuning keys are unchanged)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Granularity(Word):
    """Which elements share a scale (docs/numerics.md, section 1)."""

    PER_TENSOR = "per_tensor"
    PER_CHANNEL = "per_channel"
    PER_VECTOR = "per_vector"
    PER_BLOCK = "per_block"


class Rounding(Word):
    """How x / s becomes an integer (lrqc.reference.rounding)."""

    NEAREST = "nearest"
    NEAREST_AWAY = "nearest_away"
    FLOOR = "floor"
    TRUNC = "trunc"
    STOCHASTIC = "stochastic"


class Calibration(Word):
    """How the scale is chosen: maxabs (symmetric, no zero point) or minmax (zero points)."""

    MAXABS = "maxabs"
    MINMAX = "minmax"


@dataclass(frozen=True, slots=True)
class Quant:
    """One quantizer Q(X; format, granularity, rounding, calibration): docs/numerics.md,
    section 1.

    granularity: per_tensor | per_channel | per_vector | per_block; `vector` is V for the last two.
    scale: "float32" (plain float scales), "uintM" (VS-Quant two-level: M-bit integer per-vector
    scales times a float per channel) or "e8m0" (MX shared power-of-two scale, per_block only).
    fixed_max: > 0 for fixed point `fixed(bits, max=V)`: fmt is "intN"/"uintN" and the scale is
    the static V / 2^(N-1) (signed) or V / 2^N (unsigned), no calibration.
    pack: storage of the static operand's integer codes: "dense" (N bits each), "byte" (one
    code per byte) or "auto" (the kernels choose).
    """

    fmt: str
    granularity: Granularity = Granularity.PER_TENSOR
    vector: int = 0
    scale: str = "float32"
    scale_round: str = "ceil"
    round: Rounding = Rounding.NEAREST
    calibrate: Calibration = Calibration.MAXABS
    seed: int = 0
    pad: bool = True
    fixed_max: float = 0.0
    pack: str = "auto"
    span: Span | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        """The keywords as their types, whether given as words or as the enums."""
        object.__setattr__(self, "granularity", Granularity(self.granularity))
        object.__setattr__(self, "round", Rounding(self.round))
        object.__setattr__(self, "calibrate", Calibration(self.calibrate))

    @property
    def is_int(self) -> bool:
        return int_format(self.fmt) is not None

    @property
    def signed(self) -> bool:
        info = int_format(self.fmt)
        return True if info is None else info[0]

    @property
    def is_fixed(self) -> bool:
        """Fixed point with a static scale (fixed(bits, max=V))."""
        return self.fixed_max > 0

    @property
    def fixed_scale(self) -> float:
        """The static scale of fixed point: V / 2^(bits-1) signed, V / 2^bits unsigned."""
        return self.fixed_max / 2.0 ** (self.bits - 1 if self.signed else self.bits)

    @property
    def bits(self) -> int:
        info = int_format(self.fmt)
        if info is not None:
            return info[1]
        xy = fp_format(self.fmt)
        if xy is None:
            raise ValueError(f"'{self.fmt}' is not a format")
        return 1 + xy[0] + xy[1]

    @property
    def scale_bits(self) -> int:
        """M of a two-level "uintM" scale, else 0."""
        info = int_format(self.scale)
        return info[1] if info else 0

    @property
    def grouped(self) -> bool:
        """Scales vary along K (inside the K-sum)."""
        return self.granularity in (Granularity.PER_VECTOR, Granularity.PER_BLOCK)


@dataclass(frozen=True, slots=True)
class LowRank:
    """LRQMM residual term: R ≈ L Fᵀ by sketch | rsvd | svd.

    other (a's term only): what L (Fᵀ ·) multiplies: "exact", the exact B, or "packed", B as
    the kernel holds it, B̂ = deq(Q(B)) + the reconstruction of B's own residual terms
    (docs/numerics.md, section 3). On b's term it stays "exact" (elaborate refuses other=)."""

    rank: int = 1
    method: str = "rsvd"
    oversample: int = 8
    power_iters: int = 1
    seed: int = 0
    other: str = "exact"
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Dense:
    """Full residual method: the residual itself quantized (`quant`)."""

    quant: Quant
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Sparse:
    """Sparse residual method: residual quantized with `quant`, multiplied by a thresholded,
    requantized (`quant`) copy of the other operand; dense fallback above max_density."""

    threshold: float = 0.5
    max_density: float = 0.35
    quant: Quant | None = None
    span: Span | None = field(default=None, compare=False, repr=False)


Residual = LowRank | Dense | Sparse


@dataclass(frozen=True, slots=True)
class FloatOperand:
    dtype: str = "float32"
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class QuantOperand:
    quant: Quant
    residuals: tuple[Residual, ...] = ()
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class LplrOperand:
    """LPLR (or its DSVD baseline): the operand as a product of low-precision factors L R."""

    rank: int
    left: str = "int4"
    right: str = "int8"
    sketch: str = "gaussian"
    seed: int = 0
    method: str = "lplr"
    power_iters: int = 0
    normalize_shift: bool = False
    span: Span | None = field(default=None, compare=False, repr=False)

    @property
    def left_bits(self) -> int:
        return _int_bits(self.left)

    @property
    def right_bits(self) -> int:
        return _int_bits(self.right)


def _int_bits(name: str) -> int:
    """Bits of an integer format name (elaborate admits only those for lplr's factors)."""
    info = int_format(name)
    if info is None:
        raise ValueError(f"'{name}' is not an integer format")
    return info[1]


Operand = FloatOperand | QuantOperand | LplrOperand


@dataclass(frozen=True, slots=True)
class LowRankProduct:
    """LRAMM: both operands through rank-r RSVD factors, √Σ split, factors quantized with
    bits = (U_A, inner factors V_Aᵀ and U_B, V_Bᵀ), chain evaluated smallest product first."""

    rank: int
    method: str = "rsvd"
    oversample: int = 8
    power_iters: int = 1
    seed: int = 0
    bits: tuple[int, int, int] = (8, 8, 8)
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Scheme:
    name: str
    a: Operand
    b: Operand
    product: LowRankProduct | None = None
    accumulate: str = "int32"
    output: str = "float32"
    static: str = "b"
    span: Span | None = field(default=None, compare=False, repr=False)

    def operand(self, role: str) -> Operand:
        return self.a if role == "a" else self.b

    @property
    def file(self) -> str:
        return self.span.file if self.span else "<scheme>"
