"""Part 3 of minilm.py: forward times of the float32, torch int8 and lrqc models, and of one
FFN-up and one FFN-down Linear alone on the model's own activations; medians of interleaved
rounds in one run (every contender once per round, each round starting with the next one)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import bert
import numpy as np
import torch

LAYERS = {"ffn_up": "encoder.layer.0.intermediate.dense",
          "ffn_down": "encoder.layer.0.output.dense"}
LAYER_REPEAT = 10  # calls per timed sample of one layer


def interleaved(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each call, `rounds` samples each, after one warm-up call of each."""
    names = list(calls)
    for name in names:
        calls[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def _layer_call(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def call():
        with torch.inference_mode():
            for _ in range(LAYER_REPEAT):
                module(x)
    return call


def measure(models, batched, inputs: dict[str, np.ndarray], rounds: int, max_tokens: int):
    """{"forward": times, "ffn_up": times, "ffn_down": times}, each {model name: seconds}; a
    layer's input is its first max_tokens rows of real activations."""
    out = {"forward": interleaved({q.name: (lambda q=q: bert.embed(q.model, batched))
                                   for q in models}, rounds)}
    for kind, name in LAYERS.items():
        x = torch.from_numpy(np.ascontiguousarray(inputs[name][:max_tokens]))
        calls = {q.name: _layer_call(q.model.get_submodule(name), x) for q in models}
        out[kind] = {n: [t / LAYER_REPEAT for t in ts]
                     for n, ts in interleaved(calls, rounds).items()}
    return out


def _kernel_threads(models) -> str:
    """Where the lrqc models' kernels run their parallel loops, as the header says it."""
    kinds = sorted({getattr(m, "threads", None) for q in models for m in q.model.modules()}
                   - {None, "none"})
    tvm = f"TVM's pool ({os.environ.get('TVM_NUM_THREADS', os.cpu_count())} threads)"
    words = {"openmp": "torch's OpenMP threads", "tvm": tvm}
    return "on " + " and ".join(words.get(k, k) for k in kinds) if kinds else "not run"


def table(models, times, tokens: int, layer_rows: int) -> str:
    threads = torch.get_num_threads()
    fwd = times["forward"]
    base = {k: statistics.median(v["float32"]) for k, v in times.items()}
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    out = [f"forward over {tokens} tokens and one Linear of block 0 on {layer_rows} rows of its "
           f"input; medians of {len(fwd['float32'])} interleaved rounds; torch threads "
           f"{threads} (= os.cpu_count()), OMP_WAIT_POLICY "
           f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}, lrqc's kernels "
           f"{_kernel_threads(models)}; load "
           f"average after timing {load} (other processes slow the medians)",
           f"{'model':<16}{'backend':<11}{'forward ms':>11}{'min ms':>9}{'tokens/s':>10}"
           f"{'vs f32':>8}" + "".join(f"{k + ' ms':>13}{'vs f32':>8}" for k in LAYERS)]
    for q in models:
        med = statistics.median(fwd[q.name])
        line = (f"{q.name:<16}{q.backend:<11}{1e3 * med:>11.1f}{1e3 * min(fwd[q.name]):>9.1f}"
                f"{tokens / med:>10.0f}{med / base['forward']:>7.2f}x")
        for kind in LAYERS:
            t = statistics.median(times[kind][q.name])
            line += f"{1e3 * t:>13.2f}{t / base[kind]:>7.2f}x"
        out.append(line)
    return "\n".join(out)
