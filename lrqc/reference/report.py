"""Report: what evaluate() measured (direct quantization, the scheme and numpy float32 against
the float64 product, and the operands' outlier statistics), and the table `lrqc eval` prints."""

from __future__ import annotations

from dataclasses import dataclass, field

from .metrics import DOMINANT_SHARE, ErrorMetrics, OperandStats, dominated

ROWS = (("direct", "direct quant"), ("compensated", "scheme {name}"), ("float32", "numpy float32"))


@dataclass
class Report:
    """Relative Frobenius errors against the float64 product (direct, compensated, float32),
    and, when evaluate() made the report: `metrics` (the ErrorMetrics of each, by those three
    names), `operands` (OperandStats of "A", channels = columns, and "B", channels = rows),
    `reference` (OperandStats of the float64 C over its columns), `top_columns` (how many are
    the largest 1% of its columns, and their share of its squared norm: metrics.top_columns)
    and whether a bias was added."""

    scheme: str
    dims: tuple[int, int, int]
    direct: float
    compensated: float
    float32: float
    notes: list[str] = field(default_factory=list)
    metrics: dict[str, ErrorMetrics] = field(default_factory=dict)
    operands: dict[str, OperandStats] = field(default_factory=dict)
    reference: OperandStats | None = None
    top_columns: tuple[int, float] | None = None
    bias: bool = False

    @property
    def gain(self) -> float:
        return self.direct / self.compensated if self.compensated > 0 else float("inf")

    def table(self) -> str:
        m, n, k = self.dims
        what = "A @ B + bias" if self.bias else "A @ B"
        out = [f"M={m} N={n} K={k}: errors against {what} in float64",
               f"{'method':<28}{'rel. Frob.':>12}{'col. worst':>12}{'col. p99':>12}"
               f"{'cosine':>14}"]
        for key, label in ROWS:
            mt = self.metrics.get(key)
            cols = (f"{mt.col_worst:>12.4e}{mt.col_p99:>12.4e}{mt.cosine:>14.10f}" if mt
                    else f"{'-':>12}{'-':>12}{'-':>14}")
            out.append(f"{label.format(name=self.scheme):<28}{getattr(self, key):>12.4e}{cols}")
        out.append(f"{'gain (direct / scheme)':<28}{self.gain:>11.1f}x")
        if self.metrics:
            out.append("col. worst / p99: largest and 99th percentile of ||C[:,j] - ref[:,j]|| / "
                       "||ref[:,j]|| over the columns j" +
                       _zero_columns(self.metrics["compensated"]))
        for name, where, size in (("A", "column", k), ("B", "row", k)):
            st = self.operands.get(name)
            if st is not None:
                out.append(f"operand {name}: max|x|/rms {st.max_over_rms:.3g}; its largest channel "
                           f"({where} {st.top_channel} of {size}) holds "
                           f"{st.top_channel_share:.1%} of ||{name}||^2")
        line = self.dominated_line()
        if line:
            out.append(line)
        out += [f"note: {n}" for n in dict.fromkeys(self.notes)]
        return "\n".join(out)

    def dominated_line(self) -> str | None:
        """The one explanatory line when a few columns dominate the Frobenius figures
        (metrics.dominated), else None."""
        if self.top_columns is None or not dominated(self.top_columns[1]):
            return None
        count, share = self.top_columns
        ref = self.reference
        if ref is not None and ref.top_channel_share >= DOMINANT_SHARE:
            which, them = f"column {ref.top_channel} holds", "its size"
            share = ref.top_channel_share
        else:
            which, them = f"the largest {count} of {self.dims[1]} columns hold", "their size"
        line = (f"note: {which} {share:.1%} of ||ref||^2 (>= {DOMINANT_SHARE:.0%}): the "
                f"Frobenius errors are relative to {them} and say little of the other columns")
        mt = self.metrics.get("compensated")
        if mt is not None:
            line += (f"; the scheme's p99 column error is {mt.col_p99:.2e} against "
                     f"{mt.rel_frobenius:.2e} overall")
        return line


def _zero_columns(mt: ErrorMetrics) -> str:
    if not mt.zero_columns:
        return ""
    return f" ({mt.zero_columns} columns whose reference is all zero left out)"
