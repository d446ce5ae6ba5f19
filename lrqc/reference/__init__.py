"""numpy reference: the oracle. Implements docs/numerics.md section by section in float64.

matmul(s, A, B), compress(s, X), evaluate(s, A, B); quantize/QArray for the integer parts.
"""

from .quant import QArray, int_accumulate, quantize
from .scheme import Report, compress, direct_scheme, evaluate, matmul, rel_error

__all__ = [
           "QArray",
           "Report",
           "compress",
           "direct_scheme",
           "evaluate",
           "int_accumulate",
           "matmul",
           "quantize",
           "rel_error",
]
