"""prepare(s, X): the static operand of a scheme treated once (quantized, its residual terms
factorized; LPLR's or LRAMM's factors computed), to stand in for X in matmul and evaluate with
the same numbers; and `sides`, which checks the operands a product is given."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from ..errors import InputError
from ..frontend.bind import bind_dims
from ..frontend.model import FloatOperand, Operand, Scheme
from . import lramm
from .inputs import as_matrix, check_k
from .operand import Prepared
from .operand import prepare as prepare_part


@dataclass(eq=False)
class PreparedOperand:
    """Operand `role` ("a": A, M x K; "b": B, K x N) of `scheme`, treated once: `x` is the
    operand as given (float64, a private read-only copy); `part` its quantization, rounding or
    LPLR factors with every residual term; `factors` instead, for an LRAMM scheme, its two
    quantized RSVD factors. Other treatments of the same operand (the direct-quant baseline
    that evaluate() computes) are made on first use and kept."""

    scheme: Scheme
    role: str
    x: np.ndarray
    part: Prepared | None = None
    factors: tuple[np.ndarray, np.ndarray] | None = None
    _other: dict[Operand, Prepared] = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return self.x.shape  # type: ignore[return-value]

    def treated(self, op: Operand) -> Prepared:
        """This operand under `op`: the prepared part for the scheme's own operand, else
        `op`'s treatment, made on first use and kept."""
        if self.part is not None and op == self.scheme.operand(self.role):
            return self.part
        if op not in self._other:
            self._other[op] = prepare_part(op, self.x, self.role)
        return self._other[op]


def default_role(s: Scheme) -> str:
    """The operand a scheme keeps static: `static: a` or `b`, else b."""
    return s.static if s.static in ("a", "b") else "b"


def check_scheme(s: object, what: str) -> None:
    """InputError unless s is a Scheme (the reference's entry points take parsed schemes)."""
    if not isinstance(s, Scheme):
        raise InputError(f"{what}: expected a Scheme (e.g. lrqc.parse_schemes(text)[name]), got "
                         f"{type(s).__name__}")


def prepare(s: Scheme, X: npt.ArrayLike, role: str | None = None) -> PreparedOperand:
    """Operand `role` of scheme `s` (default: the static one, else b) treated once, for matmul
    and evaluate to use in place of X with the same numbers. Sizes that the scheme cannot take
    (a rank above min(K, N), a vector length that does not divide K without pad) are refused
    here, as matmul would refuse them."""
    check_scheme(s, "prepare")
    role = default_role(s) if role is None else role
    if role not in ("a", "b"):
        raise InputError(f"prepare: role must be 'a' or 'b', got {role!r}")
    x = np.array(as_matrix(X, role.upper()), dtype=np.float64, copy=True)
    x.flags.writeable = False
    _bind_alone(s, role, *x.shape)
    if s.product is not None:
        return PreparedOperand(s, role, x, factors=lramm.side(s.product, x, role))
    return PreparedOperand(s, role, x, part=prepare_part(s.operand(role), x, role))


def _bind_alone(s: Scheme, role: str, rows: int, cols: int) -> None:
    """bind_dims for one operand of known size: the other operand (unknown yet) becomes a float
    one, which binds nothing, and its free size min(rows, cols), which limits no rank and no
    size beyond what this operand's own sizes do."""
    other = "b" if role == "a" else "a"
    alone = replace(s, **{other: FloatOperand("float64")})
    free = min(rows, cols)
    m, n, k = (rows, free, cols) if role == "a" else (free, cols, rows)
    bind_dims(alone, m, n, k)


Side = np.ndarray | PreparedOperand


def side(s: Scheme, X: npt.ArrayLike | PreparedOperand, role: str) -> Side:
    """Operand `role` of a product: a PreparedOperand made for this scheme and role, or X
    checked as a matrix (float64)."""
    if not isinstance(X, PreparedOperand):
        return as_matrix(X, role.upper())
    if X.scheme != s:
        same = " (a scheme of the same name, defined differently)" if X.scheme.name == s.name \
            else ""
        raise InputError(f"{role.upper()}: a PreparedOperand made for scheme {X.scheme.name!r}"
                         f"{same} was given to scheme {s.name!r}; prepare it with this scheme")
    if X.role != role:
        raise InputError(f"{role.upper()}: a PreparedOperand of operand {X.role!r} was given as "
                         f"{role.upper()}; prepare(s, X, role={role!r}) makes one for {role!r}")
    return X


def sides(s: Scheme, A: npt.ArrayLike | PreparedOperand, B: npt.ArrayLike | PreparedOperand
          ) -> tuple[Side, Side]:
    """A and B of one product, each checked (side) and their K compared."""
    check_scheme(s, "scheme")
    a, b = side(s, A, "a"), side(s, B, "b")
    check_k(a.shape, b.shape)
    return a, b


def raw(x: Side) -> np.ndarray:
    """The operand as given, in float64."""
    return x.x if isinstance(x, PreparedOperand) else x


def part(op: Operand, x: Side, role: str) -> Prepared:
    """Operand `op`'s treatment of x: the prepared one, or made now."""
    return x.treated(op) if isinstance(x, PreparedOperand) else prepare_part(op, x, role)


def lramm_side(s: Scheme, x: Side, role: str) -> tuple[np.ndarray, np.ndarray]:
    """LRAMM's quantized factor pair of x: the prepared one, or made now."""
    assert s.product is not None
    if isinstance(x, PreparedOperand) and x.factors is not None:
        return x.factors
    return lramm.side(s.product, raw(x), role)
