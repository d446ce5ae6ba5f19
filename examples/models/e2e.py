"""Part 2 of minilm.py: the model end to end with every Linear replaced (lrqc.torch.quantize;
torch's dynamic int8 quantization for comparison): each sentence embedding's cosine to
float32's, and whether each sentence's nearest other sentence stays the same; then one layer
type at a time, to see which layers cost the accuracy."""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass, field

import bert
import bits
import torch
from torch import nn

import lrqc
from lrqc import torch as lrqc_torch

MAX_TOKENS = 512  # tokens per forward batch, and the largest M the kernels are compiled for


def weight_code_bits(s: lrqc.Scheme) -> int | None:
    """Bits of the weights' codes when the weights (b) are quantized with one format."""
    quant = getattr(s.b, "quant", None) if s.product is None else None
    return quant.bits if quant is not None else None


@dataclass
class Quantized:
    name: str
    model: nn.Module | None
    backend: str  # "kernel", "reference" (lrqc.reference, weights prepared once), "torch"
    bits: float = float("nan")  # nominal bits per weight (bits.py)
    stored: float = float("nan")  # bits per weight as the kernel stores them, bias included
    seconds: float = 0.0  # time to quantize (compile and pack)
    note: str = ""
    result: dict = field(default_factory=dict)


def _reason(error: Exception) -> str:
    return str(error).strip().splitlines()[0][:90] if str(error).strip() else type(error).__name__


def quantize_lrqc(model: nn.Module, name: str, s: lrqc.Scheme, probe, shapes) -> Quantized:
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
        stored = (8 * sum(r.packed_bytes for r in report.layers) / weights
                  if backend == "kernel" else float("nan"))
        return Quantized(name, q, backend, bits.model_bits(s, shapes), stored, seconds, note)
    return Quantized(name, None, "skipped", bits.model_bits(s, shapes), note=note)


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
    return Quantized("torch int8", q, "torch", 8.0, 8 * codes / weights, seconds)


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
        with torch.inference_mode():
            q(*batched[0][1:])

    shapes = [(m.in_features, m.out_features) for m in model.modules()
              if isinstance(m, nn.Linear)]
    weights = sum(k * n for k, n in shapes)
    out = [Quantized("float32", model, "torch", 32.0,
                     32 * sum(k * n + n for k, n in shapes) / weights)]
    out.append(quantize_torch_int8(model))
    for name, s in schemes.items():
        out.append(quantize_lrqc(model, name, s, probe, shapes))
        q = out[-1]
        print(f"  {name}: {q.backend} ({q.seconds:.1f} s){'; ' + q.note if q.note else ''}",
              flush=True)
    for q in out:
        if q.model is not None:
            q.result = compare(bert.embed(q.model, batched), ref, partner)
    return out


def end_to_end_table(rows: list[Quantized]) -> str:
    out = ["sentence embeddings against float32's: cosine, nearest-neighbour agreement, "
           "paraphrase pairs whose nearest neighbour is the partner; bits/w: nominal bits per "
           "weight (bits.py), stored: as the kernel holds them, bias included",
           f"{'model':<16}{'backend':<11}{'bits/w':>7}{'stored':>7}{'cos mean':>10}"
           f"{'cos min':>10}{'NN agree':>10}{'pairs':>8}{'prep s':>8}"]
    for q in rows:
        if q.model is None:
            out.append(f"{q.name:<16}{'skipped':<11}  {q.note}")
            continue
        r = q.result
        stored = f"{q.stored:>7.2f}" if q.stored == q.stored else f"{'-':>7}"
        out.append(f"{q.name:<16}{q.backend:<11}{q.bits:>7.2f}{stored}{r['cos_mean']:>10.5f}"
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


def layer_type_rules(model: nn.Module, kind: str, s: lrqc.Scheme) -> dict[str, lrqc.Scheme]:
    """lrqc.torch.quantize's rules for the Linears of one layer type (their exact names)."""
    return {n: s for n, m in model.named_modules()
            if isinstance(m, nn.Linear) and bert.layer_type(n) == kind}


def one_type_at_a_time(model, schemes, rows: list[Quantized], batched, ref, partner) -> dict:
    """{scheme: {layer type: embedding cosine (mean) with only that type quantized}}, on the
    backend the whole-model run used."""
    out: dict[str, dict[str, float]] = {}
    for q in rows:
        if q.name not in schemes or q.model is None:
            continue
        out[q.name] = {}
        for kind in bert.LAYER_TYPES:
            m = copy.deepcopy(model)
            lrqc_torch.quantize(m, layer_type_rules(model, kind, schemes[q.name]),
                                max_tokens=MAX_TOKENS, backend=q.backend)
            out[q.name][kind] = compare(bert.embed(m, batched), ref, partner)["cos_mean"]
    return out


def one_type_table(cos: dict[str, dict[str, float]]) -> str:
    out = ["embedding cosine to float32 (mean) with one layer type quantized, the rest float32",
           f"{'scheme':<16}" + "".join(f"{k:>10}" for k in bert.LAYER_TYPES)]
    for name, by_kind in cos.items():
        out.append(f"{name:<16}" + "".join(f"{by_kind[k]:>10.5f}" for k in bert.LAYER_TYPES))
    return "\n".join(out)
