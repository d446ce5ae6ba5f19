"""The lrqc IR: nodes, lower_ast (Scheme -> Program), verify, print_program."""

from .lower import lower_ast
from .nodes import OP_KINDS, Program
from .printer import print_program
from .verify import IRError, verify

__all__ = ["OP_KINDS", "IRError", "Program", "lower_ast", "print_program", "verify"]
