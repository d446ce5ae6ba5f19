"""Front end: scheme text -> syntax tree (parser) -> typed Scheme (elaborate) -> text (unparse)."""

from .elaborate import elaborate
from .parser import parse

__all__ = ["elaborate", "parse"]
