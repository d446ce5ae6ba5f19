"""Whole models: quantize(model, scheme or rules) replaces a model's torch.nn.Linear layers by
lrqc.torch.Linear in place and reports what each layer got; load(model, state_dict) rebuilds
the quantized layers a saved state describes (no re-quantization) and loads the rest."""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import LrqcError
from ..frontend.model import Scheme
from .linear import Linear, check_state

EXTRA = "_extra_state"  # where nn.Module.state_dict keeps get_extra_state()


@dataclass
class LayerReport:
    name: str
    scheme: str  # the scheme's name, or "float" for a layer left as it was
    rule: str  # the kernel's schedule rule ("reference" for backend="reference")
    in_features: int
    out_features: int
    packed_bytes: int
    float_bytes: int  # float32 weight and bias


@dataclass
class QuantizeReport:
    layers: list[LayerReport] = field(default_factory=list)

    @property
    def quantized(self) -> list[LayerReport]:
        return [r for r in self.layers if r.scheme != "float"]

    def table(self) -> str:
        rows = [f"{'layer':<40}{'K -> N':>13}  {'scheme':<18}{'rule':<18}{'packed':>10}"
                f"{'float32':>10}"]
        for r in self.layers:
            rows.append(f"{r.name:<40}{f'{r.in_features} -> {r.out_features}':>13}  "
                        f"{r.scheme:<18}{r.rule:<18}{_mib(r.packed_bytes):>10}"
                        f"{_mib(r.float_bytes):>10}")
        q = self.quantized
        packed, full = sum(r.packed_bytes for r in q), sum(r.float_bytes for r in q)
        rows.append(f"{len(q)} of {len(self.layers)} Linear layers quantized: "
                    f"{_mib(packed)} packed for {_mib(full)} of float32 weights"
                    + (f" ({packed / full:.2f}x)" if full else ""))
        return "\n".join(rows)


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


Rules = Mapping[str, "Scheme | None"]


def _scheme_of(name: str, rules: Scheme | Rules, skip: Iterable[str]) -> Scheme | None:
    if any(fnmatch.fnmatchcase(name, pat) for pat in skip):
        return None
    if isinstance(rules, Scheme):
        return rules
    return next((s for pat, s in rules.items() if fnmatch.fnmatchcase(name, pat)), None)


def _check_rules(scheme_or_rules: Any) -> Scheme | Rules:
    if isinstance(scheme_or_rules, Scheme):
        return scheme_or_rules
    if isinstance(scheme_or_rules, Mapping):
        for k, v in scheme_or_rules.items():
            if not isinstance(k, str) or not (v is None or isinstance(v, Scheme)):
                raise LrqcError(f"lrqc.torch.quantize: rule {k!r}: expected a name pattern "
                                f"(str) mapped to an lrqc.Scheme or None, got "
                                f"{type(k).__name__} -> {type(v).__name__}")
        return scheme_or_rules
    raise LrqcError("lrqc.torch.quantize: expected an lrqc.Scheme or a dict from layer-name "
                    "patterns (fnmatch, e.g. '*.intermediate.*') to a Scheme or None, got "
                    f"{type(scheme_or_rules).__name__}")


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _progress(progress: bool | Callable[[str], None]) -> Callable[[str], None]:
    if callable(progress):
        return progress
    return (lambda line: print(line, file=sys.stderr, flush=True)) if progress else \
        (lambda line: None)


def _check_skip(skip: Any) -> tuple[str, ...]:
    """skip as a tuple of name patterns (one pattern, or an iterable of them)."""
    if isinstance(skip, str):
        return (skip,)
    try:
        out = tuple(skip)
    except TypeError:
        raise LrqcError(f"lrqc.torch.quantize: skip: expected a name pattern or a list of "
                        f"them, got {type(skip).__name__}") from None
    bad = next((p for p in out if not isinstance(p, str)), None)
    if bad is not None:
        raise LrqcError(f"lrqc.torch.quantize: skip: expected name patterns (str), got "
                        f"{bad!r}")
    return out


def quantize(model: nn.Module, scheme_or_rules: Scheme | Rules, *, skip: Iterable[str] = (),
             max_tokens: int = 512, backend: str = "kernel", target: Any = None,
             threads: str = "auto",
             progress: bool | Callable[[str], None] = False) -> QuantizeReport:
    """Replace model's torch.nn.Linear layers in place by lrqc.torch.Linear: every one with
    one scheme, or by rules (the first pattern matching a layer's qualified name gives its
    scheme; None, or no match, keeps it float); `skip`: patterns of layers kept float.
    Kernels are compiled once per scheme and sizes; threads: where they run (Linear.from_linear
    says). progress: True prints a line per layer to
    stderr (compilation takes seconds per new kernel), or a function that takes the lines."""
    if not isinstance(model, nn.Module):
        raise LrqcError(f"lrqc.torch.quantize: expected a torch.nn.Module, got "
                        f"{type(model).__name__}")
    rules = _check_rules(scheme_or_rules)
    skip = _check_skip(skip)
    say = _progress(progress)
    if type(model) is nn.Linear:
        raise LrqcError("lrqc.torch.quantize replaces the Linear layers inside a model; for a "
                        "single nn.Linear use lrqc.torch.Linear.from_linear(linear, scheme)")
    linears = [(n, m) for n, m in model.named_modules() if type(m) is nn.Linear]
    if not linears:
        done = any(isinstance(m, Linear) for m in model.modules())
        raise LrqcError(f"lrqc.torch.quantize: {type(model).__name__} has no torch.nn.Linear "
                        "layers" + (" left (its lrqc layers are quantized already)" if done
                                    else ""))
    report, new = QuantizeReport(), {}
    for i, (name, lin) in enumerate(linears):
        scheme = _scheme_of(name, rules, skip)
        fbytes = 4 * (lin.weight.numel() + (lin.bias.numel() if lin.bias is not None else 0))
        if scheme is None:
            report.layers.append(LayerReport(name, "float", "torch", lin.in_features,
                                             lin.out_features, fbytes, fbytes))
            continue
        say(f"[{i + 1}/{len(linears)}] {name}: {lin.in_features} -> {lin.out_features}, "
            f"scheme {scheme.name}")
        try:
            q = Linear.from_linear(lin, scheme, max_tokens=max_tokens, backend=backend,
                                   target=target, threads=threads)
        except LrqcError as exc:  # nothing replaced yet: the model is as it was
            raise LrqcError(f"layer {name} ({lin.in_features} -> {lin.out_features}): {exc}"
                            ) from None
        q.name, new[name] = name, q
        rule = q.kernel.rule if q.kernel is not None else "reference"
        report.layers.append(LayerReport(name, scheme.name, rule, lin.in_features,
                                         lin.out_features, q.packed_bytes(), fbytes))
    if not report.quantized:
        raise LrqcError("lrqc.torch.quantize: no Linear layer matched (every one skipped or "
                        f"without a rule): {', '.join(n for n, _ in linears[:5])} ...")
    for name, q in new.items():  # every layer made: now replace them
        _set(model, name, q)
    return report


def _is_linear(model: nn.Module, name: str) -> bool:
    """Whether the model's module `name` is a Linear that keeps no extra state of its own (a
    subclass that does may hold anything there)."""
    try:
        m = model.get_submodule(name)
    except AttributeError:
        return False
    return isinstance(m, nn.Linear) and type(m).get_extra_state is nn.Module.get_extra_state


def load(model: nn.Module, state_dict: Mapping[str, Any], *, target: Any = None,
         strict: bool = True, threads: str = "auto") -> nn.Module:
    """Load a state_dict saved from a model quantized by quantize() into a fresh (float) model
    of the same architecture: every layer the state holds as an lrqc layer becomes one (its
    packed weight adopted, no quantization), then the rest loads as usual. strict=False: as
    torch's load_state_dict, keys the model lacks (lrqc layers too) and keys the state lacks
    are left out; a layer both hold must still fit."""
    if not isinstance(model, nn.Module) or not isinstance(state_dict, Mapping):
        raise LrqcError(f"lrqc.torch.load: expected a torch.nn.Module and a state_dict (a "
                        f"mapping), got {type(model).__name__} and {type(state_dict).__name__}")
    new: dict[str, Linear] = {}
    for key, value in state_dict.items():
        if not key.endswith("." + EXTRA):
            continue
        name = key[: -len(EXTRA) - 1]
        if not isinstance(value, dict) or "lrqc" not in value:
            if _is_linear(model, name):  # where a Linear keeps none, a damaged lrqc state
                raise LrqcError(f"lrqc.torch.load: layer '{name}': its state '{key}' is not "
                                "an lrqc layer's (damaged?); save it again from the quantized "
                                "model")
            continue
        try:
            check_state(value)
        except LrqcError as exc:
            raise LrqcError(f"lrqc.torch.load: layer '{name}': {exc}") from None
        try:
            old = model.get_submodule(name)
        except AttributeError:
            if not strict:  # as load_state_dict(strict=False) leaves keys the model lacks
                continue
            raise LrqcError(f"lrqc.torch.load: the state has an lrqc layer '{name}', the model "
                            "has no such module (strict=False leaves it out)") from None
        if not isinstance(old, (nn.Linear, Linear)):
            raise LrqcError(f"lrqc.torch.load: '{name}' is a {type(old).__name__} in the model, "
                            "an lrqc Linear layer in the state")
        have = (old.in_features, old.out_features)
        if have != (value["in_features"], value["out_features"]):
            raise LrqcError(f"lrqc.torch.load: layer '{name}' is {have[0]} -> {have[1]} in the "
                            f"model, {value['in_features']} -> {value['out_features']} in the "
                            "state")
        try:
            new[name] = Linear.from_state(value, target=target, threads=threads)
        except LrqcError as exc:  # a scheme or packed weight that does not fit
            raise LrqcError(f"lrqc.torch.load: layer '{name}': {exc}") from None
        new[name].name = name
    if not new:
        raise LrqcError("lrqc.torch.load: the state holds no lrqc layer (save the state_dict of "
                        "a model quantized by lrqc.torch.quantize)")
    old_modules = {name: model.get_submodule(name) for name in new}
    for name, q in new.items():
        _set(model, name, q)
    try:
        model.load_state_dict(state_dict, strict=strict)
    except RuntimeError as exc:  # the rest does not fit: the model as it was
        for name, m in old_modules.items():
            _set(model, name, m)
        raise LrqcError(f"lrqc.torch.load: {' '.join(str(exc).split())[:600]}") from None
    return model
