"""bind_dims(): check a scheme against concrete M, N, K (ranks, vector lengths, sizes) and list
the fallbacks that the sizes cause (zero-padding K). The one validation of sizes, shared by the
reference, the passes, the compiler and the CLI: what it accepts, all of them accept."""

from __future__ import annotations

import numbers

from ..errors import InputError, SchemeError, Span
from .model import Dense, LowRank, LplrOperand, Quant, QuantOperand, Scheme, Sparse

# Values in one operand (M x K, K x N, K padded) or in C (M x N): 2^31 - 1 keeps every index
# of every buffer in int32 (TVM's index type) and one float64 operand within 16 GiB.
MAX_ELEMENTS = (1 << 31) - 1


def operand_dims(role: str, m: int, n: int, k: int) -> tuple[int, int]:
    """(rows, cols) of operand `role` in its own layout: a is M x K, b is K x N."""
    return (m, k) if role == "a" else (k, n)


def padded_k(q: Quant, k: int) -> int:
    """K rounded up to a multiple of V for a per_vector / per_block quantizer, else K."""
    return -(-k // q.vector) * q.vector if q.grouped else k


def _check_grouped(q: Quant, k: int, what: str) -> str | None:
    """Error when V does not divide K and padding is off; else the padding note (or None)."""
    if not q.grouped or k % q.vector == 0:
        return None
    if not q.pad:
        if q.vector > k:
            raise SchemeError(f"{q.granularity}({q.vector}) of {what} is longer than K={k}; allow "
                              "zero-padding with pad=true", q.span)
        raise SchemeError(f"{q.granularity}({q.vector}) of {what} needs K divisible by "
                          f"{q.vector}, K={k}; allow zero-padding with pad=true", q.span)
    return f"K={k} is zero-padded to {padded_k(q, k)} for {q.granularity}({q.vector})"


def check_dim(name: str, v: object) -> int:
    """v as a positive int, or InputError naming dimension `name`."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise InputError(f"dimension {name} must be a positive integer, got {v!r}")
    return int(v)


def _check_size(what: str, rows: int, cols: int, span: Span | None = None) -> None:
    if rows * cols > MAX_ELEMENTS:
        msg = (f"{what} of {rows} x {cols} = {rows * cols} values is too large; at most "
               f"{MAX_ELEMENTS} (2^31 - 1) values per operand or result")
        raise SchemeError(msg, span) if span is not None else InputError(msg)


def bind_dims(scheme: Scheme, m: int, n: int, k: int) -> list[str]:
    """Raise SchemeError (at the offending span) when the scheme cannot run at M x K x N, and
    InputError for sizes beyond MAX_ELEMENTS; return notes about fallbacks such as padding."""
    m, n, k = (check_dim(name, v) for name, v in (("M", m), ("N", n), ("K", k)))
    for what, rows, cols in (("A", m, k), ("B", k, n), ("C", m, n)):
        _check_size(what, rows, cols)
    notes: list[str] = []
    for role in ("a", "b"):
        op = scheme.operand(role)
        rows, cols = operand_dims(role, m, n, k)
        limit = min(rows, cols)
        what = "min(M, K)" if role == "a" else "min(K, N)"
        if isinstance(op, QuantOperand):
            q = op.quant
            note = _check_grouped(q, k, f"'{role}'")
            if note:
                notes.append(f"{role}: {note}")
            _check_size(role.upper(), *operand_dims(role, m, n, padded_k(q, k)), span=q.span)
            other = "b" if role == "a" else "a"
            for r in op.residuals:
                rq = r.quant if isinstance(r, (Dense, Sparse)) else None
                if rq is None:
                    continue
                _check_grouped(rq, k, f"a residual term of '{role}'")
                # the padded residual, and for sparse terms the thresholded other operand
                for who in (role, other) if isinstance(r, Sparse) else (role,):
                    _check_size(who.upper(), *operand_dims(who, m, n, padded_k(rq, k)), rq.span)
            for r in op.residuals:
                if isinstance(r, LowRank) and r.rank > limit:
                    raise SchemeError(f"rank {r.rank} of '{role}' exceeds {what} = {limit}", r.span)
        if isinstance(op, LplrOperand) and op.rank > limit:
            raise SchemeError(f"lplr rank {op.rank} of '{role}' exceeds {what} = {limit}", op.span)
    p = scheme.product
    if p is not None and p.rank > min(m, n, k):
        raise SchemeError(f"product rank {p.rank} exceeds min(M, N, K) = {min(m, n, k)}", p.span)
    return notes
