"""numpy reference: the oracle. Implements docs/numerics.md section by section in float64.

matmul(s, A, B, bias=...), compress(s, X), evaluate(s, A, B, bias=...); prepare(s, X) treats a
static operand once for many products; error_metrics and operand_stats measure outliers;
quantize/QArray for the integer parts; encode/decode/value_table give the bit patterns of
every element format (formats).
"""

from .formats import decode, encode, value_table
from .metrics import ErrorMetrics, OperandStats, error_metrics, operand_stats
from .prepared import PreparedOperand, prepare
from .quant import QArray, int_accumulate, quantize
from .report import Report
from .scheme import compress, direct_scheme, evaluate, matmul, rel_error

__all__ = [
           "ErrorMetrics",
           "OperandStats",
           "PreparedOperand",
           "QArray",
           "Report",
           "compress",
           "decode",
           "encode",
           "direct_scheme",
           "error_metrics",
           "evaluate",
           "int_accumulate",
           "matmul",
           "operand_stats",
           "prepare",
           "quantize",
           "rel_error",
           "value_table",
]
