"""bind_dims(): check a scheme against concrete M, N, K (ranks, vector lengths) and list the
fallbacks that the sizes cause (zero-padding K). Shared by the reference, the passes and the CLI."""

from __future__ import annotations

from ..errors import InputError, SchemeError
from .model import LowRank, LplrOperand, QuantOperand, Scheme


def operand_dims(role: str, m: int, n: int, k: int) -> tuple[int, int]:
    """(rows, cols) of operand `role` in its own layout: a is M x K, b is K x N."""
    return (m, k) if role == "a" else (k, n)


def bind_dims(scheme: Scheme, m: int, n: int, k: int) -> list[str]:
    """Raise SchemeError (at the offending span) when the scheme cannot run at M x K x N; return
    notes about fallbacks such as padding."""
    for name, v in (("M", m), ("N", n), ("K", k)):
        if not isinstance(v, int) or v < 1:
            raise InputError(f"dimension {name} must be a positive integer, got {v!r}")
    notes: list[str] = []
    for role in ("a", "b"):
        op = scheme.operand(role)
        rows, cols = operand_dims(role, m, n, k)
        limit = min(rows, cols)
        what = "min(M, K)" if role == "a" else "min(K, N)"
        if isinstance(op, QuantOperand):
            q = op.quant
            if q.grouped and k % q.vector:
                kp = -(-k // q.vector) * q.vector
                if not q.pad:
                    raise SchemeError(f"{q.granularity}({q.vector}) of '{role}' needs K divisible "
                                      f"by {q.vector}, K={k}; allow zero-padding with pad=true", q.span)
                notes.append(f"{role}: K={k} is zero-padded to {kp} for {q.granularity}({q.vector})")
            for r in op.residuals:
                if isinstance(r, LowRank) and r.rank > limit:
                    raise SchemeError(f"rank {r.rank} of '{role}' exceeds {what} = {limit}", r.span)
                for rq in (getattr(r, "quant", None),):
                    if rq is not None and rq.grouped and k % rq.vector and not rq.pad:
                        raise SchemeError(f"{rq.granularity}({rq.vector}) needs K divisible by "
                                          f"{rq.vector}, K={k}", rq.span)
        if isinstance(op, LplrOperand) and op.rank > limit:
            raise SchemeError(f"lplr rank {op.rank} of '{role}' exceeds {what} = {limit}", op.span)
    p = scheme.product
    if p is not None and p.rank > min(m, n, k):
        raise SchemeError(f"product rank {p.rank} exceeds min(M, N, K) = {min(m, n, k)}", p.span)
    return notes
