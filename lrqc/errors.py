"""Error types: one LrqcError base; scheme errors render `file:line:col: error:` with a caret.

Lines are counted at "\n" only (as the parser counts them): form feeds, vertical tabs, \x1c..\x1e,
\x85 and U+2028/U+2029 do not end a line. Tokens quoted in messages are cut to TOKEN_SHOWN
characters and the source line is shown in a window around the column.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

TOKEN_SHOWN = 40  # characters of a quoted token shown in a message before "..."
LINE_SHOWN = 100  # characters of the source line shown above the caret


@dataclass(frozen=True, slots=True)
class Span:
    """A source range: 1-based line/column of the start, and the end column on the same line."""

    file: str
    line: int
    column: int
    end_line: int = 0
    end_column: int = 0
    text: str = field(default="", repr=False)  # the whole source, for rendering the line


class LrqcError(Exception):
    """Base of every error lrqc raises on purpose (user errors: exit code 1 in the CLI)."""


class SchemeError(LrqcError):
    """An error in scheme text, located by a Span."""

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None) -> None:
        self.message = cut_tokens(message)
        self.span = span
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        msg = self.message + (f" (did you mean '{self.hint}'?)" if self.hint else "")
        if self.span is None:
            return f"error: {msg}"
        sp = self.span
        head = f"{sp.file}:{sp.line}:{sp.column}: error: {msg}"
        lines = source_lines(sp.text)
        if not 1 <= sp.line <= len(lines):
            return head
        src = lines[sp.line - 1]
        src = src.removesuffix("\r")  # CRLF line ends
        col = sp.column - 1
        width = 1
        if sp.end_line == sp.line and sp.end_column > sp.column:
            width = sp.end_column - sp.column
        start = 0
        if len(src) > LINE_SHOWN:  # a window around the column
            start = max(0, min(col - LINE_SHOWN // 2, len(src) - LINE_SHOWN))
        shown = src[start:start + LINE_SHOWN]
        width = max(1, min(width, len(shown) - (col - start)))
        pre = "..." if start else ""
        post = "..." if start + LINE_SHOWN < len(src) else ""
        # one column per character: tabs and other unprintable characters show as a space
        shown = "".join(c if c.isprintable() else " " for c in shown)
        caret = " " * (len(pre) + col - start) + "^" + "~" * (width - 1)
        return f"{head}\n    {pre}{shown}{post}\n    {caret}"


def source_lines(text: str) -> list[str]:
    """The lines of scheme text as the parser numbers them: split at "\n" only."""
    return text.split("\n")


def cut(token: str, limit: int = TOKEN_SHOWN) -> str:
    """`token`, or its first `limit` characters and "..." when it is longer."""
    return token if len(token) <= limit else token[:limit] + "..."


_LONG_TOKEN = re.compile(rf"[^\s']{{{TOKEN_SHOWN + 1},}}")


def cut_tokens(message: str) -> str:
    """`message` with every token (a run without spaces or quotes) longer than TOKEN_SHOWN
    characters cut to its first TOKEN_SHOWN characters and "..."."""
    return _LONG_TOKEN.sub(lambda m: cut(m.group(0)), message)


class InputError(LrqcError):
    """Bad arrays or dimensions given to the API (shapes, dtypes, non-finite values)."""


def nearest_word(word: str, choices: Iterable[str]) -> str | None:
    """The closest valid word to a misspelt one, or None when nothing is close."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


class FormatError(InputError, ValueError):
    """A bad format name, code or value given to the format functions of lrqc.reference
    (encode, decode, value_table)."""


class UnsupportedScheme(LrqcError):
    """The scheme is valid but the code generator does not handle it yet."""


class MissingExtra(LrqcError, ImportError):
    """An optional part of lrqc imported without the package it needs (e.g. lrqc.torch
    without torch): says which extra to install."""
