"""minilm.py's figure: error against bits per weight for each scheme, and per-layer errors."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _tradeoff(ax, rows, e2e) -> None:
    """Left: mean per-layer relative Frobenius error and end-to-end 1 - cosine against the
    stored bits per weight."""
    placed: list[tuple[float, float]] = []
    for q in e2e:
        if q.model is None or q.name == "float32":
            continue
        layer = [r.report.metrics["compensated"].rel_frobenius for r in rows
                 if r.scheme == q.name]
        y_e2e = max(1.0 - q.result["cos_mean"], 1e-9)
        ax.scatter([q.bits], [y_e2e], marker="o", color="C0")
        if layer:
            ax.scatter([q.bits], [statistics.fmean(layer)], marker="s", color="C1")
        # a label near an earlier point's moves a line away from it (up when above it)
        shift = sum((1 if y_e2e > y else -1) for x, y in placed
                    if abs(math.log2(q.bits / x)) < 0.4 and abs(math.log10(y_e2e / y)) < 0.3)
        placed.append((q.bits, y_e2e))
        ax.annotate(q.name, (q.bits, y_e2e), textcoords="offset points",
                    xytext=(4, 3 + 9 * shift), fontsize=7)
    ax.scatter([], [], marker="o", color="C0", label="end to end: 1 - embedding cosine (mean)")
    ax.scatter([], [], marker="s", color="C1", label="per layer: rel. Frobenius (mean)")
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 2, 4, 8, 16, 32, 64], ["1", "2", "4", "8", "16", "32", "64"])
    ax.set_yscale("log")
    ax.set_xlabel("nominal bits per weight (codes, scales, factors, what A's terms keep of W)")
    ax.set_ylabel("error")
    ax.set_title("error against bits per weight")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def _per_layer(ax, rows, schemes, kinds) -> None:
    """Right: per layer type, each scheme's relative Frobenius error (bar: mean over blocks,
    whiskers: min to max)."""
    names = [n for n in schemes if any(r.scheme == n for r in rows)]
    kinds = [k for k in kinds if any(r.kind == k for r in rows)]
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        mean, lo, hi = [], [], []
        for kind in kinds:
            errs = [r.report.metrics["compensated"].rel_frobenius for r in rows
                    if r.scheme == name and r.kind == kind]
            m = statistics.fmean(errs)
            mean.append(m)
            lo.append(m - min(errs))
            hi.append(max(errs) - m)
        xs = [k + (i - (len(names) - 1) / 2) * width for k in range(len(kinds))]
        ax.bar(xs, mean, width, yerr=[lo, hi], capsize=1.5, label=name,
               color=f"C{i % 10}", error_kw={"elinewidth": 0.6})
    ax.set_xticks(range(len(kinds)), kinds)
    ax.set_yscale("log")
    ax.set_ylabel("rel. Frobenius error (min..max over blocks)")
    ax.set_title("per layer type, on the model's activations")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.08))


def write(path: Path, rows, e2e, schemes, kinds) -> Path:
    """The figure as a PNG at `path`; `kinds`: the layer types in their order."""
    fig = Figure(figsize=(13, 5.6))
    FigureCanvasAgg(fig)  # the Agg backend, without pyplot's global state
    left, right = fig.subplots(1, 2)
    _tradeoff(left, rows, e2e)
    _per_layer(right, rows, schemes, kinds)
    fig.suptitle("all-MiniLM-L6-v2 under lrqc's example schemes", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path
