"""Public entry points on scheme text: parse_schemes and load_schemes."""

from __future__ import annotations

from pathlib import Path

from .errors import LrqcError, SchemeError
from .frontend import elaborate, parse
from .frontend.model import Scheme


def parse_schemes(text: str, filename: str = "<string>") -> dict[str, Scheme]:
    """Every scheme of `text`, name -> Scheme in file order. Raises SchemeError (an LrqcError)."""
    out: dict[str, Scheme] = {}
    decls = parse(text, filename)
    for decl in decls:
        if decl.name in out:
            raise SchemeError(f"duplicate scheme name '{decl.name}' (first at line "
                              f"{out[decl.name].span.line})", decl.span)
        out[decl.name] = elaborate(decl)
    return out


def load_schemes(path) -> dict[str, Scheme]:
    """parse_schemes() of a file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise LrqcError(f"cannot read scheme file {p}: {exc.strerror}") from None
    return parse_schemes(text, str(path))


def pick_scheme(schemes: dict[str, Scheme], name: str | None, filename: str) -> Scheme:
    """The scheme called `name` (or the only one), with a suggestion when it is misspelt."""
    from .errors import nearest_word

    if not schemes:
        raise LrqcError(f"{filename}: no scheme in file")
    if name is None:
        if len(schemes) > 1:
            raise LrqcError(f"{filename} has {len(schemes)} schemes ({', '.join(schemes)}); "
                            "choose one with --scheme")
        return next(iter(schemes.values()))
    if name not in schemes:
        hint = nearest_word(name, schemes)
        raise LrqcError(f"{filename}: no scheme '{name}'"
                        + (f" (did you mean '{hint}'?)" if hint else "")
                        + f"; schemes: {', '.join(schemes)}")
    return schemes[name]
