"""bench/cpu.py's layers section: a Linear layer of a model called on a few rows (one token
decoded, a short sentence embedded), where a call's fixed costs (checks, allocation, the
thread pool's wake-ups, Python) weigh as much as its multiplies. Per layer shape and row count,
in the same interleaved rounds: an lrqc.torch Linear (w8a8 per_channel, `max_tokens` 512, as
`lrqc.torch.quantize` makes it), torch's dynamic-quant Linear and torch's float32 Linear on
the same weights, each timed over `CALLS` calls back to back (as a model's forward makes
them), in microseconds a call.
"""

from __future__ import annotations

import copy
import os
import warnings

import common
import numpy as np

LRQC, TORCH_DQ = "lrqc.torch Linear", "torch dynamic-quant Linear"
TORCH_F32 = "torch float32 Linear"
SCHEME = "a: int8 per_channel\n b: int8 per_channel"
SHAPES = "384,384;384,1536;1536,384"  # in, out: all-MiniLM-L6-v2's attention and FFN layers
ROWS = (1, 16, 128)
CALLS = 100  # calls a timed sample


def layers_section(shapes: list[tuple[int, int]], rows: tuple[int, ...], args) -> list[dict]:
    """One table row per (layer shape, rows), or a single row saying why there are none."""
    try:
        import torch

        import lrqc.torch as lt
    except ImportError as exc:
        return [{"shape": "-", "note": f"skipped: {exc} (pip install 'lrqc[bench]')"}]
    torch.set_num_threads(os.cpu_count() or 1)
    s = common.scheme(SCHEME)
    out = []
    for fan_in, fan_out in shapes:
        common.log(f"layers {fan_in} -> {fan_out}:")
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(fan_in, fan_out))
        ours = copy.deepcopy(model)
        lt.quantize(ours, s, max_tokens=512)
        with warnings.catch_warnings():  # torch.ao.quantization is deprecated for torchao
            warnings.simplefilter("ignore")
            theirs = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model),
                                                            {torch.nn.Linear}, dtype=torch.qint8)
        layers = {LRQC: ours[0], TORCH_DQ: theirs[0], TORCH_F32: model[0]}
        for m in rows:
            x = torch.randn(m, fan_in)
            out.append(_measure(layers, x, args, torch) | {"shape": f"{m},{fan_out},{fan_in}",
                                                          "rows": m})
    return out


def _measure(layers: dict, x, args, torch) -> dict:
    """Microseconds a call of each layer on x (medians of interleaved rounds of CALLS calls)."""

    def batch(layer):
        def run():
            with torch.inference_mode():
                for _ in range(CALLS):
                    layer(x)
        return run

    errors: dict[str, str] = {}
    times = common.interleaved({name: batch(layer) for name, layer in layers.items()},
                               args.rounds, args.slow * CALLS, args.gap, errors, {}, args.warm)
    us = {name: float(np.median(ts)) / CALLS * 1e6 for name, ts in times.items() if ts}
    ours, dq, f32 = (us.get(n) for n in (LRQC, TORCH_DQ, TORCH_F32))
    return {"lrqc_us": ours, "torch_dq_us": dq, "torch_f32_us": f32,
            "torch_dq_vs_lrqc": dq / ours if dq and ours else None,
            "torch_f32_vs_lrqc": f32 / ours if f32 and ours else None,
            "note": "; ".join(f"{n}: {e}" for n, e in errors.items())}


def _f(v, spec: str, width: int) -> str:
    return f"{format(v, spec):>{width}}" if v is not None else f"{'n/a':>{width}}"


def print_rows(rows: list[dict]) -> None:
    line = (f"{'rows,out,in':<18}{'lrqc_us':>9}{'torch_dq':>10}{'torch_f32':>11}"
            f"{'/torch_dq':>11}{'/torch_f32':>12}  note")
    print(f"\nLinear layers on a few rows, {CALLS} calls back to back a sample, microseconds a "
          "call (lrqc: w8a8 per_channel through lrqc.torch; /torch_dq, /torch_f32: how many "
          "times as fast lrqc's call is)")
    print(line + "\n" + "-" * len(line))
    for r in rows:
        print(f"{r['shape']:<18}{_f(r.get('lrqc_us'), '.1f', 9)}"
              f"{_f(r.get('torch_dq_us'), '.1f', 10)}{_f(r.get('torch_f32_us'), '.1f', 11)}"
              f"{_f(r.get('torch_dq_vs_lrqc'), '.2f', 11)}"
              f"{_f(r.get('torch_f32_vs_lrqc'), '.2f', 12)}  {r.get('note', '')}")
    print(flush=True)


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """'in,out;in,out' -> [(in, out), ...]."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        fan_in, fan_out = (int(v) for v in part.split(","))
        out.append((fan_in, fan_out))
    return out
