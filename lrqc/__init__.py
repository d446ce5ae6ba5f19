"""lrqc: accurate low-bit matrix multiplication, from a scheme language to fused kernels.

The language, IR and numpy reference import without TVM; code generation lives in lrqc.backend.
"""

from . import reference
from .api import load_schemes, parse_schemes
from .errors import InputError, LrqcError, SchemeError
from .frontend.model import Scheme

__version__ = "0.1.0"
__all__ = ["parse_schemes", "load_schemes", "reference", "LrqcError", "SchemeError",
           "InputError", "Scheme", "__version__"]
