"""parse(): scheme text -> syntax tree (lark LALR with positions, one Transformer); syntax errors
become SchemeError with file:line:col and a caret.

Limits of the text, checked here (docs/language-limits.md): at most MAX_SOURCE_CHARS characters,
parentheses nested at most MAX_NESTING deep, names of at most MAX_NAME_CHARS characters, numbers
of at most MAX_NUMBER_CHARS characters and finite. A leading byte-order mark is dropped.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, cast

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)
from lark.tree import Meta

from ..errors import LrqcError, SchemeError, Span, cut, source_lines
from ..resources import grammar_path
from . import syntax as sx

MAX_SOURCE_CHARS = 1 << 20  # 1 Mi characters: thousands of schemes
MAX_NESTING = 16  # parentheses (calls, tuples) inside each other; the examples use 2
MAX_NAME_CHARS = 64  # scheme names, words, entry and option keys
MAX_NUMBER_CHARS = 32  # digits, sign, point and exponent of one number
BOM = "\ufeff"

_TOKEN_WORDS = {
    "LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'", "COMMA": "','",
    "PLUS": "'+'", "KEY": "an entry such as 'a:'", "OPTKEY": "an option such as 'round='",
    "NAME": "a name", "SIGNED_NUMBER": "a number", "SCHEME": "'scheme'", "$END": "end of file",
}


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(grammar_path().read_text(), parser="lalr", propagate_positions=True)


class _Build(Transformer):
    """The one Transformer: lark tree -> syntax nodes with spans."""

    def __init__(self, filename: str, text: str) -> None:
        super().__init__()
        self.filename, self.text = filename, text

    def _span(self, obj: Token | Meta) -> Span:
        # lark types a Token's positions Optional[int]; its lexer sets them on every token
        return Span(self.filename, obj.line, obj.column, obj.end_line, obj.end_column, self.text)  # type: ignore[arg-type]

    def _name(self, tok: Token, strip: str = "") -> str:
        """A name token (without the `strip` characters of KEY/OPTKEY), at most MAX_NAME_CHARS."""
        name = str(tok).rstrip(strip)
        if len(name) > MAX_NAME_CHARS:
            raise SchemeError(f"name too long: {len(name)} characters, at most {MAX_NAME_CHARS} "
                              f"('{cut(name)}')", self._span(tok))
        return name

    @v_args(meta=True)
    def start(self, meta: Meta, schemes: list[sx.SchemeDecl]) -> list[sx.SchemeDecl]:
        return list(schemes)

    @v_args(meta=True)
    def scheme(self, meta: Meta, children: list[Any]) -> sx.SchemeDecl:
        name, *entries = children
        return sx.SchemeDecl(self._name(name), tuple(entries), self._span(name), self.text)

    @v_args(meta=True)
    def entry(self, meta: Meta, children: list[Any]) -> sx.Entry:
        key, spec = children
        return sx.Entry(self._name(key, " \t:"), spec, self._span(key))

    @v_args(meta=True)
    def spec(self, meta: Meta, terms: list[sx.Term]) -> sx.Spec:
        return sx.Spec(tuple(terms), self._span(meta))

    @v_args(meta=True)
    def term(self, meta: Meta, atoms: list[sx.Atom]) -> sx.Term:
        return sx.Term(tuple(atoms), self._span(meta))

    @v_args(meta=True)
    def word(self, meta: Meta, children: list[Token]) -> sx.Word:
        (tok,) = children
        return sx.Word(self._name(tok), self._span(tok))

    @v_args(meta=True)
    def number(self, meta: Meta, children: list[Token]) -> sx.Num:
        (tok,) = children
        return self._num(tok)

    def _num(self, tok: Token) -> sx.Num:
        text = str(tok)
        if len(text) > MAX_NUMBER_CHARS:
            raise SchemeError(f"number too long: {len(text)} characters, at most "
                              f"{MAX_NUMBER_CHARS} ('{cut(text)}')", self._span(tok))
        try:
            value: int | float = int(text)
        except ValueError:
            value = float(text)
            if not math.isfinite(value):
                raise SchemeError(f"number {text} is out of range: numbers must be finite "
                                  "(below 1.8e308 in magnitude)", self._span(tok)) from None
        return sx.Num(value, text, self._span(tok))

    @v_args(meta=True)
    def tuple(self, meta: Meta, children: list[Token | None]) -> sx.Tup:
        return sx.Tup(tuple(self._num(t) for t in children if t is not None), self._span(meta))

    @v_args(meta=True)
    def option(self, meta: Meta, children: list[Any]) -> sx.Option:
        key, value = children
        return sx.Option(self._name(key, " \t="), value, self._span(key))

    @v_args(meta=True)
    def call(self, meta: Meta, children: list[Any]) -> sx.Call:
        name, *args = children
        return sx.Call(self._name(name), tuple(a for a in args if a is not None), self._span(name))

    @v_args(meta=True)
    def arg(self, meta: Meta, atoms: list[sx.Atom]) -> sx.Arg:
        span = self._span(meta)
        first = atoms[0]
        if isinstance(first, sx.Option):  # key=value [more atoms]: a keyword argument
            if len(atoms) == 1:
                return sx.Keyword(first.key, first.value, first.span)
            rest = (first.value,) + tuple(atoms[1:])
            return sx.Keyword(first.key, sx.Term(rest, span), first.span)
        return sx.Positional(sx.Term(tuple(atoms), span), span)


def parse(text: str, filename: str = "<string>") -> list[sx.SchemeDecl]:
    """Parse scheme text into syntax trees, in file order. Raises SchemeError on syntax errors
    and on text beyond the limits above."""
    if not isinstance(text, str):
        raise LrqcError(f"{filename}: scheme text must be a str, got {type(text).__name__}")
    text = text.removeprefix(BOM)  # a UTF-8 byte-order mark, as some editors write it
    if len(text) > MAX_SOURCE_CHARS:
        raise LrqcError(f"{filename}: scheme text of {len(text)} characters is too long; at most "
                        f"{MAX_SOURCE_CHARS} characters are read")
    _check_nesting(text, filename)
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text, filename) from None
    try:
        return _Build(filename, text).transform(tree)
    except VisitError as exc:  # lark wraps what the Transformer raises
        if isinstance(exc.orig_exc, LrqcError):
            raise exc.orig_exc from None
        raise


_PARENS = re.compile(r"[()]|#[^\n]*")


def _check_nesting(text: str, filename: str) -> None:
    """Parentheses nested deeper than MAX_NESTING are an error at the first one too deep (the
    tree would be as deep, and everything that walks it recursive). Comments are skipped."""
    depth = 0
    for m in _PARENS.finditer(text):
        c = m.group()
        if c == "(":
            depth += 1
            if depth > MAX_NESTING:
                pos = m.start()
                line = text.count("\n", 0, pos) + 1
                col = pos - text.rfind("\n", 0, pos)
                raise SchemeError(f"parentheses nested more than {MAX_NESTING} deep",
                                  Span(filename, line, col, line, col + 1, text))
        elif c == ")":
            depth = max(depth - 1, 0)


def _end_of_text(text: str) -> tuple[int, int]:
    """(line, column) just after the last character that is not white space."""
    lines = source_lines(text.rstrip())
    return len(lines), len(lines[-1]) + 1


def describe_char(ch: str) -> str:
    """A character as messages show it: quoted when visible, else its code point and name."""
    if ch.isprintable() and not ch.isspace():
        return f"'{ch}'"
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" ({name.lower()})" if name else f" {ch!a}")


def _syntax_error(exc: UnexpectedInput, text: str, filename: str) -> SchemeError:
    line, col = max(getattr(exc, "line", 1) or 1, 1), max(getattr(exc, "column", 1) or 1, 1)
    if isinstance(exc, UnexpectedEOF):
        line, col = _end_of_text(text)
        msg = f"unexpected end of file; expected {_expected(exc.expected)}"
    elif isinstance(exc, UnexpectedToken):
        tok = exc.token
        found = "end of file" if tok.type == "$END" else f"'{cut(str(tok))}'"
        if tok.type == "$END":
            line, col = _end_of_text(text)
        msg = f"unexpected {found}; expected {_expected(exc.expected)}"
    elif isinstance(exc, UnexpectedCharacters):
        # lark declares pos_in_stream None on UnexpectedInput; UnexpectedCharacters sets an int
        pos = cast(int, exc.pos_in_stream)
        ch = text[pos] if pos < len(text) else "?"
        msg = f"unexpected character {describe_char(ch)}"
        if exc.allowed:
            msg += f"; expected {_expected(exc.allowed)}"
    else:  # pragma: no cover - lark has no other kinds today
        msg = str(exc)
    span = Span(filename, line, col, line, col + 1, text)
    return SchemeError(msg, span)


def _expected(names: Iterable[str]) -> str:
    words = sorted({_TOKEN_WORDS.get(n, n.lower()) for n in names})
    return " or ".join(words) if len(words) <= 4 else ", ".join(words[:-1]) + " or " + words[-1]
