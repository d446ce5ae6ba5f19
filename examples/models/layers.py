"""Part 1 of minilm.py: every Linear's input captured from the float32 model, and the errors
of each scheme on it against the float64 product (lrqc.reference.evaluate), per layer type;
with how outlier-heavy those inputs and weights are (max|x|/rms, the largest channel's share
of ||x||^2)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import bert
import numpy as np
import torch
from torch import nn

import lrqc


def capture_inputs(model: nn.Module, batched) -> dict[str, np.ndarray]:
    """The input of every Linear in the float32 model, real tokens only (tokens x in)."""
    seen: dict[str, list[np.ndarray]] = {}
    keep: dict[str, torch.Tensor] = {}

    def hook(name):
        def pre(_module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1])
            seen.setdefault(name, []).append(x[keep["rows"]].float().numpy())
        return pre

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in model.named_modules()
               if isinstance(m, nn.Linear)]
    try:
        with torch.inference_mode():
            for _, ids, mask in batched:
                keep["rows"] = mask.reshape(-1).bool()
                model(ids, mask)
    finally:
        for h in handles:
            h.remove()
    return {n: np.concatenate(v) for n, v in seen.items()}


@dataclass
class LayerRow:
    scheme: str
    kind: str
    block: int
    report: object  # lrqc.reference.Report


def layer_reports(model, inputs, schemes, blocks) -> list[LayerRow]:
    """evaluate() of every scheme on every captured Linear of the given blocks."""
    rows = []
    linears = dict(model.named_modules())
    for name, X in inputs.items():
        block = int(name.split(".")[2])
        if block not in blocks:
            continue
        lin = linears[name]
        W = lin.weight.detach().double().numpy().T  # K x N
        b = lin.bias.detach().double().numpy()
        for sname, s in schemes.items():
            rep = lrqc.reference.evaluate(s, X, W, bias=b)
            rows.append(LayerRow(sname, bert.layer_type(name), block, rep))
    return rows


def operand_table(rows: list[LayerRow]) -> str:
    """How outlier-heavy each layer type's inputs (A), weights (B) and exact outputs (C) are:
    the largest over blocks, with the channel where it is largest."""
    out = ["operands (largest over blocks): max|x|/rms, and the largest channel's share of "
           "||x||^2 (A: input channels, B: its rows, C: output columns)",
           f"{'layer':<10}{'A max/rms':>10}{'A top ch.':>11}{'share':>8}"
           f"{'B max/rms':>11}{'B top ch.':>11}{'share':>8}{'C top col.':>12}{'share':>8}"]
    first = rows[0].scheme
    for kind in bert.LAYER_TYPES:
        reps = [r.report for r in rows if r.kind == kind and r.scheme == first]
        if not reps:
            continue
        line = f"{kind:<10}"
        for op in ("A", "B"):
            stats = [rep.operands[op] for rep in reps]
            top = max(stats, key=lambda st: st.top_channel_share)
            line += (f"{' ' if op == 'B' else ''}{max(st.max_over_rms for st in stats):>10.1f}"
                     f"{top.top_channel:>11d}{top.top_channel_share:>8.1%}")
        col = max((rep.reference for rep in reps), key=lambda st: st.top_channel_share)
        out.append(line + f"{col.top_channel:>12d}{col.top_channel_share:>8.1%}")
    return "\n".join(out)


def error_table(rows: list[LayerRow], schemes) -> str:
    out = ["errors against the float64 product (+ bias) on the model's activations; rel. F "
           "and p99: mean over blocks, worst col.: max, cosine: min",
           f"{'scheme':<16}{'layer':<10}{'direct F':>10}{'scheme F':>10}{'gain':>7}"
           f"{'col p99':>10}{'worst col':>10}{'cosine':>12}"]
    for sname in schemes:
        for kind in bert.LAYER_TYPES:
            reps = [r.report for r in rows if r.kind == kind and r.scheme == sname]
            if not reps:
                continue
            d = statistics.fmean(rep.metrics["direct"].rel_frobenius for rep in reps)
            m = [rep.metrics["compensated"] for rep in reps]
            c = statistics.fmean(x.rel_frobenius for x in m)
            out.append(f"{sname:<16}{kind:<10}{d:>10.2e}{c:>10.2e}{d / c:>6.1f}x"
                       f"{statistics.fmean(x.col_p99 for x in m):>10.2e}"
                       f"{max(x.col_worst for x in m):>10.2e}"
                       f"{min(x.cosine for x in m):>12.8f}")
    return "\n".join(out)


# ---------------------------------------------------------------- part 2: end to end
