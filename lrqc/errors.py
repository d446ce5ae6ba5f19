"""Error types: one LrqcError base; scheme errors render `file:line:col: error:` with a caret."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field


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

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None):
        self.message = message
        self.span = span
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        msg = self.message + (f" (did you mean '{self.hint}'?)" if self.hint else "")
        if self.span is None:
            return f"error: {msg}"
        sp = self.span
        head = f"{sp.file}:{sp.line}:{sp.column}: error: {msg}"
        lines = sp.text.splitlines()
        if not 1 <= sp.line <= len(lines):
            return head
        src = lines[sp.line - 1]
        width = 1
        if sp.end_line == sp.line and sp.end_column > sp.column:
            width = sp.end_column - sp.column
        caret = " " * (sp.column - 1) + "^" + "~" * (width - 1)
        return f"{head}\n    {src}\n    {caret}"


class InputError(LrqcError):
    """Bad arrays or dimensions given to the API (shapes, dtypes, non-finite values)."""


def nearest_word(word: str, choices) -> str | None:
    """The closest valid word to a misspelt one, or None when nothing is close."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None
