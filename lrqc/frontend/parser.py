"""parse(): scheme text -> syntax tree (lark LALR with positions, one Transformer); syntax errors
become SchemeError with file:line:col and a caret."""

from __future__ import annotations

from functools import lru_cache

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ..errors import SchemeError, Span
from ..resources import grammar_path
from . import syntax as sx

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

    def __init__(self, filename: str, text: str):
        super().__init__()
        self.filename, self.text = filename, text

    def _span(self, obj) -> Span:
        if isinstance(obj, Token):
            return Span(self.filename, obj.line, obj.column, obj.end_line, obj.end_column, self.text)
        return Span(self.filename, obj.line, obj.column, obj.end_line, obj.end_column, self.text)

    @v_args(meta=True)
    def start(self, meta, schemes):
        return list(schemes)

    @v_args(meta=True)
    def scheme(self, meta, children):
        name, *entries = children
        return sx.SchemeDecl(str(name), tuple(entries), self._span(name), self.text)

    @v_args(meta=True)
    def entry(self, meta, children):
        key, spec = children
        return sx.Entry(key.rstrip(" \t:"), spec, self._span(key))

    @v_args(meta=True)
    def spec(self, meta, terms):
        return sx.Spec(tuple(terms), self._span(meta))

    @v_args(meta=True)
    def term(self, meta, atoms):
        return sx.Term(tuple(atoms), self._span(meta))

    @v_args(meta=True)
    def word(self, meta, children):
        (tok,) = children
        return sx.Word(str(tok), self._span(tok))

    @v_args(meta=True)
    def number(self, meta, children):
        (tok,) = children
        return self._num(tok)

    def _num(self, tok: Token) -> sx.Num:
        text = str(tok)
        try:
            value: int | float = int(text)
        except ValueError:
            value = float(text)
        return sx.Num(value, text, self._span(tok))

    @v_args(meta=True)
    def tuple(self, meta, children):
        return sx.Tup(tuple(self._num(t) for t in children if t is not None), self._span(meta))

    @v_args(meta=True)
    def option(self, meta, children):
        key, value = children
        return sx.Option(key.rstrip(" \t="), value, self._span(key))

    @v_args(meta=True)
    def call(self, meta, children):
        name, *args = children
        return sx.Call(str(name), tuple(a for a in args if a is not None), self._span(name))

    @v_args(meta=True)
    def arg(self, meta, atoms):
        span = self._span(meta)
        first = atoms[0]
        if isinstance(first, sx.Option):  # key=value [more atoms]: a keyword argument
            if len(atoms) == 1:
                return sx.Keyword(first.key, first.value, first.span)
            rest = (first.value,) + tuple(atoms[1:])
            return sx.Keyword(first.key, sx.Term(rest, span), first.span)
        return sx.Positional(sx.Term(tuple(atoms), span), span)


def parse(text: str, filename: str = "<string>") -> list[sx.SchemeDecl]:
    """Parse scheme text into syntax trees, in file order. Raises SchemeError on syntax errors."""
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text, filename) from None
    return _Build(filename, text).transform(tree)


def _syntax_error(exc: UnexpectedInput, text: str, filename: str) -> SchemeError:
    line, col = max(getattr(exc, "line", 1) or 1, 1), max(getattr(exc, "column", 1) or 1, 1)
    if isinstance(exc, UnexpectedEOF):
        lines = text.splitlines() or [""]
        line, col = len(lines), len(lines[-1]) + 1
        msg = f"unexpected end of file; expected {_expected(exc.expected)}"
    elif isinstance(exc, UnexpectedToken):
        tok = exc.token
        found = "end of file" if tok.type == "$END" else f"'{tok}'"
        if tok.type == "$END":
            lines = text.splitlines() or [""]
            line, col = len(lines), len(lines[-1]) + 1
        msg = f"unexpected {found}; expected {_expected(exc.expected)}"
    elif isinstance(exc, UnexpectedCharacters):
        ch = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else "?"
        msg = f"unexpected character '{ch}'"
        if exc.allowed:
            msg += f"; expected {_expected(exc.allowed)}"
    else:  # pragma: no cover - lark has no other kinds today
        msg = str(exc)
    span = Span(filename, line, col, line, col + 1, text)
    return SchemeError(msg, span)


def _expected(names) -> str:
    words = sorted({_TOKEN_WORDS.get(n, n.lower()) for n in names})
    return " or ".join(words) if len(words) <= 4 else ", ".join(words[:-1]) + " or " + words[-1]
