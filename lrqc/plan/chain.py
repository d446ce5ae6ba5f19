"""LPLR weights and LRAMM products as chains of base products (no TVM): the schemes of the
products a chain kernel runs, in call order (runtime/chain.py runs them)."""

from __future__ import annotations

from dataclasses import replace

from ..errors import UnsupportedScheme
from ..frontend.model import FloatOperand, LplrOperand, Quant, QuantOperand, Scheme
from .support import make_plan

F32 = FloatOperand("float32")
CODES = QuantOperand(Quant("int8"))  # L's centered codes (given exactly: layout.pack's q)


def integer_left(s: Scheme, K: int) -> bool:
    """Whether LPLR's T = A' L runs as an integer GEMM: A quantized to integers, L's codes fit
    int8, and the plan is an integer one at this K (make_plan falls back to a float32 GEMM on
    accumulator overflow, vectors that are not a multiple of 4, MX on one side, ...)."""
    if not (isinstance(s.a, QuantOperand) and s.a.quant.is_int and isinstance(s.b, LplrOperand)
            and s.b.left_bits <= 8):
        return False
    try:
        return not make_plan(replace(s, b=CODES), 4, s.b.rank + 1, K).float_path
    except UnsupportedScheme:
        return False


def is_chain(s: Scheme) -> bool:
    return s.product is not None or isinstance(s.a, LplrOperand) or isinstance(s.b, LplrOperand)


def parts(s: Scheme, N: int, K: int) -> list[tuple[str, Scheme, int, int]]:
    """(symbol prefix, scheme, N, K) of each compiled product, in call order."""
    if s.static != "b" or isinstance(s.a, LplrOperand):
        raise UnsupportedScheme(f"scheme '{s.name}': LPLR and LRAMM are compiled with static: b "
                                "(the weights factored once by pack)")
    if s.product is not None:
        r = s.product.rank
        return [("p1_", Scheme(s.name + "_out", F32, F32), N, r)]
    if not isinstance(s.b, LplrOperand):
        raise TypeError(f"scheme '{s.name}' is not a chain (no product:, no lplr(...) weights)")
    m = s.b.rank
    if isinstance(s.a, QuantOperand) and s.a.residuals:
        raise UnsupportedScheme(
            f"scheme '{s.name}': residual terms on A with LPLR weights are not compiled: the "
            "kernel runs the chain (A' L) R, which has no product of A with one matrix B for "
            "them to join (a lowrank term with other=exact would need the exact B, which it "
            "does not keep; other=packed, dense and sparse terms a product with L R that the "
            "chain does not form)")
    t = replace(s, output="float32")  # the intermediate A' L; the chain rounds C at its end
    first = ("p1_", replace(t, b=CODES), m + 1, K) if integer_left(s, K) else \
        ("p1_", replace(t, b=F32), m, K)
    return [first, ("p2_", Scheme(s.name + "_r", F32, F32), N, m)]
