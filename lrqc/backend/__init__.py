"""Code generation through Apache TVM: the only package of lrqc that imports tvm."""

from .build import compile
from .kernel import Kernel, Packed

__all__ = ["Kernel", "Packed", "compile"]
