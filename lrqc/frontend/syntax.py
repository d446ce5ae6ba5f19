"""Concrete syntax tree of scheme files: what the grammar says, with spans, before any meaning.

  File := SchemeDecl*;  SchemeDecl := name, Entry*;  Entry := key, Spec;  Spec := Term ('+' Term)*
  Term := Atom+;  Atom := Word | Num | Tup | Option(key, value) | Call(name, Arg*)
  Arg  := Positional(Term) | Keyword(key, value: Atom | Term)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Span


@dataclass(frozen=True, slots=True)
class Word:
    name: str
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Num:
    value: int | float
    text: str
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Tup:
    items: tuple[Num, ...]
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Option:
    key: str
    value: Word | Num | Tup
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Arg, ...]
    span: Span | None = field(default=None, compare=False)


Atom = Word | Num | Tup | Option | Call


@dataclass(frozen=True, slots=True)
class Term:
    atoms: tuple[Atom, ...]
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Positional:
    value: Term
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Keyword:
    key: str
    value: Word | Num | Tup | Term
    span: Span | None = field(default=None, compare=False)


Arg = Positional | Keyword


@dataclass(frozen=True, slots=True)
class Spec:
    terms: tuple[Term, ...]
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    spec: Spec
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class SchemeDecl:
    name: str
    entries: tuple[Entry, ...]
    span: Span | None = field(default=None, compare=False)
    source: str = field(default="", compare=False, repr=False)


Node = SchemeDecl | Entry | Spec | Term | Atom | Arg  # what dump() prints


def dump(node: Node, indent: int = 0) -> str:
    """An indented text form of a syntax node (for `lrqc explain --emit syntax`)."""
    pad = "  " * indent
    if isinstance(node, SchemeDecl):
        return "\n".join([f"{pad}scheme {node.name}"] + [dump(e, indent + 1) for e in node.entries])
    if isinstance(node, Entry):
        return "\n".join([f"{pad}{node.key}:"] + [dump(t, indent + 1) for t in node.spec.terms])
    if isinstance(node, Term):
        return "\n".join([f"{pad}term"] + [dump(a, indent + 1) for a in node.atoms])
    if isinstance(node, Call):
        return "\n".join([f"{pad}call {node.name}"] + [dump(a, indent + 1) for a in node.args])
    if isinstance(node, Positional):
        return dump(node.value, indent)
    if isinstance(node, Keyword):
        return f"{pad}{node.key} =\n{dump(node.value, indent + 1)}"
    if isinstance(node, Option):
        return f"{pad}option {node.key} = {_scalar(node.value)}"
    return f"{pad}{_scalar(node)}"


def _scalar(node: object) -> str:
    if isinstance(node, Word):
        return node.name
    if isinstance(node, Num):
        return node.text
    if isinstance(node, Tup):
        return "(" + ", ".join(i.text for i in node.items) + ")"
    return repr(node)
