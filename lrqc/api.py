"""Public entry points on scheme text: parse_schemes and load_schemes (files are UTF-8)."""

from __future__ import annotations

import os

from .errors import LrqcError, SchemeError, Span, cut, nearest_word
from .files import read_bytes
from .frontend import elaborate, parse
from .frontend.model import Scheme
from .frontend.parser import MAX_SOURCE_CHARS


def parse_schemes(text: str | bytes | bytearray | memoryview,
                  filename: str = "<string>") -> dict[str, Scheme]:
    """Every scheme of `text`, name -> Scheme in file order. Raises SchemeError (an LrqcError).
    Bytes are decoded as by load_schemes (UTF-8, an optional byte-order mark)."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = decode_scheme_bytes(bytes(text), filename)
    out: dict[str, Scheme] = {}
    decls = parse(text, filename)
    for decl in decls:
        if decl.name in out:
            first = out[decl.name].span
            where = f" (first at line {first.line})" if first is not None else ""
            raise SchemeError(f"duplicate scheme name '{decl.name}'{where}", decl.span)
        out[decl.name] = elaborate(decl)
    return out


def decode_scheme_bytes(data: bytes, filename: str) -> str:
    """Scheme text from the bytes of a file: UTF-8 (a leading byte-order mark is dropped by the
    parser). Anything else is a SchemeError at the first bad byte, naming the file."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        shown = data.decode("utf-8", "replace")  # the line, with the bad bytes as U+FFFD
        line = data.count(b"\n", 0, exc.start) + 1
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        col = len(data[line_start:exc.start].decode("utf-8", "replace")) + 1
        raise SchemeError(f"scheme file is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                          f"{exc.start}); save it as UTF-8",
                          Span(filename, line, col, line, col + 1, shown)) from None


def read_scheme_text(path: str | os.PathLike[str]) -> str:
    """The text of a scheme file: read, size-checked and decoded (decode_scheme_bytes)."""
    # a character is at least one byte: a larger file is refused before it is read
    data = read_bytes(path, 4 * MAX_SOURCE_CHARS, f"cannot read scheme file {path}")
    return decode_scheme_bytes(data, str(path))


def load_schemes(path: str | os.PathLike[str]) -> dict[str, Scheme]:
    """parse_schemes() of a file (read_scheme_text)."""
    return parse_schemes(read_scheme_text(path), str(path))


def no_scheme(filename: str) -> LrqcError:
    """The error of a scheme file that holds no scheme."""
    return LrqcError(f"{filename}: no scheme in file (a scheme reads `scheme NAME {{ a: ... b: "
                     "... }`)")


def pick_scheme(schemes: dict[str, Scheme], name: str | None, filename: str) -> Scheme:
    """The scheme called `name` (or the only one), with a suggestion when it is misspelt."""
    if not schemes:
        raise no_scheme(filename)
    if name is None:
        if len(schemes) > 1:
            raise LrqcError(f"{filename} has {len(schemes)} schemes ({_names(schemes)}); "
                            "choose one with --scheme")
        return next(iter(schemes.values()))
    if name not in schemes:
        hint = nearest_word(name, schemes)
        raise LrqcError(f"{filename}: no scheme '{cut(name)}'"
                        + (f" (did you mean '{hint}'?)" if hint else "")
                        + f"; schemes: {_names(schemes)}")
    return schemes[name]


def _names(schemes: dict[str, Scheme], shown: int = 10) -> str:
    """The first `shown` scheme names, and how many more there are."""
    names = list(schemes)
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
