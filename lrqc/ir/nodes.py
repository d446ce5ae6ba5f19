"""IR nodes. A Program is straight-line single-assignment code over named values:

  Program := name, inputs (A, B), Op*, output
  Op      := Quantize | Dequantize | IntMatMul | Rescale | Residual | LowRank | Sparsify
           | MatMul | Add | Pack           (results, args, attributes, stage)
  Type    := TensorType(shape: (int | sympy.Expr)*, dtype, quant?)

Ops are frozen; passes return new Programs. `stage` is "" until split_stages sets pack | run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..frontend.model import Quant, Scheme


@dataclass(frozen=True, slots=True)
class TensorType:
    shape: tuple[Any, ...]
    dtype: str  # f64 | f32 | i32 | i64 | a quantized format name (int8, e2m1, ...)
    quant: Quant | None = None
    role: str = ""  # quantized values: which operand layout (a: rows x K, b: K x cols)

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"


@dataclass(frozen=True, slots=True)
class Op:
    results: tuple[str, ...]
    args: tuple[str, ...]
    stage: str = field(default="", kw_only=True)

    kind = "op"
    n_args = 1
    n_results = 1

    def attrs(self) -> dict:
        """Attributes for printing (everything but results/args/stage)."""
        skip = {"results", "args", "stage"}
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in skip}


@dataclass(frozen=True, slots=True)
class Quantize(Op):
    """Q(x) along the operand's K axis: role a = rows x K, role b = K x cols."""

    quant: Quant = None
    role: str = "a"
    kind = "quantize"


@dataclass(frozen=True, slots=True)
class Dequantize(Op):
    kind = "dequantize"


@dataclass(frozen=True, slots=True)
class IntMatMul(Op):
    """Exact integer sums of centered codes per K-group: (G, M, N)."""

    accumulate: str = "int32"
    kind = "int_matmul"
    n_args = 2


@dataclass(frozen=True, slots=True)
class Rescale(Op):
    """Σ_g sA[i,g] sB[g,j] acc[g,i,j]: args (acc, qa, qb)."""

    kind = "rescale"
    n_args = 3


@dataclass(frozen=True, slots=True)
class Residual(Op):
    """x - y, where y is a quantized value (then deq(y)) or a float approximation."""

    kind = "residual"
    n_args = 2


@dataclass(frozen=True, slots=True)
class LowRank(Op):
    """x ≈ L @ Ft. method: sketch | rsvd | svd | lplr | dsvd; split: left | sqrt.
    For lplr/dsvd the factors are quantized (bits) and normalize_shift adds a ones column."""

    method: str = "rsvd"
    rank: int = 1
    oversample: int = 8
    power_iters: int = 1
    seed: int = 0
    split: str = "left"
    bits: tuple[int, int] = (0, 0)
    normalize_shift: bool = False
    kind = "lowrank"
    n_results = 2


@dataclass(frozen=True, slots=True)
class Sparsify(Op):
    """Keep |x| >= 2·threshold·mean|x|; the dense x itself when the density exceeds max_density."""

    threshold: float = 0.5
    max_density: float = 0.35
    kind = "sparsify"


@dataclass(frozen=True, slots=True)
class MatMul(Op):
    """x @ y in float. A quantized argument multiplies as its dequantized value, read from its
    codes (A's lowrank term with other=packed: F_Aᵀ times B's codes)."""

    kind = "matmul"
    n_args = 2


@dataclass(frozen=True, slots=True)
class Add(Op):
    kind = "add"
    n_args = 2


@dataclass(frozen=True, slots=True)
class Pack(Op):
    """Boundary of the pack stage: a weight-only value handed to the run stage."""

    kind = "pack"


OP_KINDS: tuple[type[Op], ...] = (
    Quantize, Dequantize, IntMatMul, Rescale, Residual, LowRank, Sparsify, MatMul, Add, Pack,
)


@dataclass(frozen=True, slots=True)
class Program:
    name: str
    inputs: tuple[tuple[str, str], ...]  # (name, dtype the input is read as): ("A", "f64")
    ops: tuple[Op, ...]
    output: str
    types: tuple[tuple[str, TensorType], ...] = ()
    static: str = "b"
    out_dtype: str = "float32"  # the scheme's output type: the result is rounded once to it
    # the typed scheme the program was lowered from: its operand declarations, which the
    # kernel plan reads (not printed, not compared)
    decl: Scheme | None = field(default=None, compare=False, repr=False)

    def type_of(self, value: str) -> TensorType | None:
        for name, t in self.types:
            if name == value:
                return t
        return None

    def producer(self, value: str) -> Op | None:
        for op in self.ops:
            if value in op.results:
                return op
        return None
