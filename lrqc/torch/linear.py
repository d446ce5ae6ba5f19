"""lrqc.torch.Linear: a drop-in inference replacement of torch.nn.Linear that computes
x @ Wᵀ + bias with an lrqc scheme. The weight is packed once (B = Wᵀ, the bias packed with it
and added in the kernel's epilogue); inputs of any leading shape (..., K) in float32, float16
or bfloat16 come back in the same shape and dtype. Rows go to the kernel as zero-copy numpy
views of the torch tensors (copied only when the dtype or layout needs it), M buckets up to
max_tokens rows, larger inputs in equal chunks of at most max_tokens rows, each multiplied as
its own product (the same numbers as one product wherever A's treatment is per row, e.g.
per_channel; per_tensor statistics and A's residual terms then follow each chunk).
backend="reference" runs lrqc.reference on the weight prepared once (the same numbers, in
float64, slowly).

Kernels are shared between layers of the same scheme and sizes (one compilation each) and are
safe to call from several threads. Where torch runs its operators on OpenMP (libgomp), the
kernels run their parallel loops on torch's own threads (threads="auto"), so a model does not
hand its cores between two thread pools at every layer. The module's state (state_dict's
`_extra_state`) holds the scheme's text and the packed weight, so a saved model loads without
re-quantization (lrqc.torch.load)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import reference
from ..api import parse_schemes
from ..door import compile as compile_kernel
from ..errors import InputError, LrqcError
from ..frontend.model import Scheme
from ..frontend.unparse import unparse
from ..plan.buckets import least_rows
from ..runtime import packstate

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
BACKENDS = ("kernel", "reference")
THREADS = ("auto", "openmp", "tvm")
_KERNELS: dict[tuple, Any] = {}  # (scheme text, N, K, max_tokens, target, threads) -> kernel
_LOCK = threading.Lock()
# numpy dtypes torch.from_numpy cannot take (ml_dtypes' bfloat16, float8): stored as raw bits
_RAW = {1: np.uint8, 2: np.int16, 4: np.int32}


def torch_threads(threads: str) -> str:
    """The threads to compile with: "auto" stays "auto" (lrqc.compile's choice: OpenMP for
    single-product kernels on this CPU where a libgomp is loaded, which is torch's, else TVM's
    pool, and TVM's pool where the OpenMP launcher cannot be built) where torch runs its
    operators on OpenMP, else "tvm"; the layer reports what the kernel chose."""
    if threads not in THREADS:
        raise LrqcError(f"lrqc.torch: threads must be one of {THREADS}, got {threads!r}")
    if threads != "auto":
        return threads
    return "auto" if "parallel backend: OpenMP" in torch.__config__.parallel_info() else "tvm"


def kernel_for(scheme: Scheme, n: int, k: int, max_tokens: int, target: Any,
               threads: str = "tvm") -> Any:
    """The compiled kernel for min_rows..max_tokens rows of (M x K) @ (K x N), compiled once
    per process for every layer that asks for the same one."""
    key = (unparse(scheme), n, k, max_tokens, repr(target), threads)
    lo = least_rows(scheme)
    if lo > max_tokens:
        raise LrqcError(f"scheme '{scheme.name}' factors A at rank {lo}, which needs at least "
                        f"{lo} rows: max_tokens={max_tokens} is too few")
    with _LOCK:
        if key not in _KERNELS:
            _KERNELS[key] = compile_kernel(scheme, (lo, max_tokens), n, k, target,
                                           threads=threads)
        return _KERNELS[key]


def chunks(rows: int, most: int) -> list[tuple[int, int]]:
    """(lo, hi) of the fewest chunks of at most `most` rows, as equal as they can be (so none
    is much shorter than the others: a rank-r scheme needs r rows in each)."""
    n = max(1, -(-rows // most))
    cuts = [rows * i // n for i in range(n + 1)]
    return [(cuts[i], cuts[i + 1]) for i in range(n) if cuts[i + 1] > cuts[i]]


def _check_scheme(scheme: Any) -> Scheme:
    if not isinstance(scheme, Scheme):
        raise LrqcError(f"lrqc.torch: expected an lrqc.Scheme (e.g. "
                        f"lrqc.load_schemes(path)[name]), got {type(scheme).__name__}")
    if scheme.static == "a":
        raise LrqcError(f"scheme '{scheme.name}': static: a packs the activations; a Linear "
                        "layer packs its weight (B = Wᵀ): use static: b (the default)")
    return scheme


class Linear(nn.Module):
    """y = x Wᵀ + bias by an lrqc scheme (A = x, B = Wᵀ packed once). Inference only."""

    def __init__(self, in_features: int, out_features: int, scheme: Scheme, *,
                 max_tokens: int = 512, backend: str = "kernel", target: Any = None,
                 threads: str = "auto"):
        super().__init__()
        if backend not in BACKENDS:
            raise LrqcError(f"lrqc.torch.Linear: backend must be one of {BACKENDS}, got "
                            f"{backend!r}")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise LrqcError(f"lrqc.torch.Linear: max_tokens must be a positive int, got "
                            f"{max_tokens!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.scheme, self.max_tokens = _check_scheme(scheme), max_tokens
        self.backend, self.target = backend, target
        self.asked = torch_threads(threads)  # what the kernel is compiled with
        self.kernel = (kernel_for(scheme, self.out_features, self.in_features, max_tokens, target,
                                  self.asked) if backend == "kernel" else None)
        self.threads = self.kernel.threads if self.kernel is not None else "none"
        self.packed = None  # kernel: the packed weight; reference: (prepared W, bias)
        self.has_bias = False
        self.name = ""  # its qualified name in a model (quantize and load set it)

    @classmethod
    def from_linear(cls, linear: nn.Linear, scheme: Scheme, *, max_tokens: int = 512,
                    backend: str = "kernel", target: Any = None,
                    threads: str = "auto") -> Linear:
        """The lrqc layer computing what `linear` computes, with its weight (and bias) packed.
        threads: where its kernel's parallel loops run: "openmp" on torch's own OpenMP
        threads, "tvm" on TVM's thread pool, "auto" the first where torch runs on OpenMP."""
        if not isinstance(linear, nn.Linear):
            raise LrqcError(f"lrqc.torch.Linear.from_linear: expected a torch.nn.Linear, got "
                            f"{type(linear).__name__}")
        if linear.weight.is_meta:
            raise LrqcError("lrqc.torch.Linear.from_linear: the layer's weight is on the meta "
                            "device (no values to pack); load or materialize the weights first")
        out = cls(linear.in_features, linear.out_features, scheme, max_tokens=max_tokens,
                  backend=backend, target=target, threads=threads)
        w = linear.weight.detach().to(torch.float32).cpu().numpy()
        b = None if linear.bias is None else linear.bias.detach().to(torch.float64).cpu().numpy()
        out.set_weight(w, b)
        return out

    def set_weight(self, weight: np.ndarray, bias: np.ndarray | None = None) -> None:
        """Pack W (out_features x in_features) and the bias (out_features values or None)."""
        B = np.ascontiguousarray(np.asarray(weight).T)
        if self.kernel is not None:
            self.packed = self.kernel.pack(B, bias=bias)
        else:
            self.packed = (reference.prepare(self.scheme, B),
                           None if bias is None else np.asarray(bias, np.float64))
        self.has_bias = bias is not None

    @property
    def label(self) -> str:
        what = f"lrqc.torch.Linear({self.in_features} -> {self.out_features})"
        return f"layer {self.name} ({what})" if self.name else what

    # pickling and deepcopy: the compiled kernel and the packed TVM tensors are not copied;
    # the copy holds the saved state and finds (or compiles) the kernel again
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["kernel"], state["_packed"], state["_short"] = None, None, None
        state["_lrqc_state"] = self.get_extra_state()
        return state

    def __setstate__(self, state: dict) -> None:
        saved = state.pop("_lrqc_state")
        super().__setstate__(state)
        if self.backend == "kernel":
            self.kernel = kernel_for(self.scheme, self.out_features, self.in_features,
                                     self.max_tokens, self.target, getattr(self, "asked", "auto"))
        self.set_extra_state(saved)

    def extra_repr(self) -> str:
        how = (f"rule={self.kernel.rule}, threads={self.threads}" if self.kernel is not None
               else "backend=reference")
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.has_bias}, scheme={self.scheme.name}, {how}")

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """x as (rows, K) float32 on the CPU, after the checks."""
        if not isinstance(x, torch.Tensor):
            raise InputError(f"lrqc.torch.Linear: expected a torch.Tensor, got "
                             f"{type(x).__name__}")
        if x.requires_grad and torch.is_grad_enabled():
            raise InputError("lrqc.torch.Linear runs inference only and has no gradient: call "
                             "it under torch.no_grad() or torch.inference_mode(), or detach "
                             "the input")
        if x.dtype not in DTYPES:
            raise InputError(f"lrqc.torch.Linear: input dtype {x.dtype}; expected float32, "
                             "float16 or bfloat16")
        if x.device.type != "cpu":
            raise InputError(f"lrqc.torch.Linear: input on {x.device}; lrqc's kernels here run "
                             "on the CPU")
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise InputError(f"lrqc.torch.Linear: input of shape {tuple(x.shape)}; expected "
                             f"(..., {self.in_features})")
        if self.packed is None:
            raise InputError("lrqc.torch.Linear: no weight (from_linear, set_weight or a state "
                             "loaded by lrqc.torch.load)")
        return x.reshape(-1, self.in_features).to(torch.float32).contiguous()

    @property
    def packed(self) -> Any:
        return self._packed

    @packed.setter
    def packed(self, value: Any) -> None:
        self._packed = value
        kernel = self.kernel  # a plain kernel's short path, for float32 C (forward)
        short = (getattr(kernel, "short_path", None)
                 if value is not None and getattr(kernel, "output", None) == "float32"
                 else None)
        self._short = short() if short is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            short = self._short
            if (short is not None and type(x) is torch.Tensor and x.dtype is torch.float32
                    and not x.requires_grad and x.device.type == "cpu" and x.is_contiguous()):
                shape = x.shape  # the common case, in few steps: float32 rows as they lie
                if shape and shape[-1] == self.in_features:
                    a = x.numpy().reshape(-1, self.in_features)
                    if self.kernel.m_min <= a.shape[0] <= self.max_tokens:
                        c = short(a, self._packed)
                        return torch.from_numpy(c).view(*shape[:-1], self.out_features)
            return self._forward(x)
        except LrqcError as exc:
            raise type(exc)(f"{self.label}: {exc}") from None

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self._rows(x).detach().numpy()  # a view of the tensor's memory
        if a.shape[0] == 0:  # no rows: nothing to multiply
            return torch.zeros((*x.shape[:-1], self.out_features), dtype=x.dtype)
        parts = chunks(a.shape[0], self.max_tokens)
        least = getattr(self.kernel, "m_min", 1)
        if a.shape[0] < least:
            raise InputError(f"{a.shape[0]} rows: this scheme needs at least {least} rows "
                             "per product (its rank)")
        if min(hi - lo for lo, hi in parts) < least:
            raise InputError(f"{a.shape[0]} rows run in {len(parts)} chunks of at most max_tokens="
                             f"{self.max_tokens} rows ({parts[-1][1] - parts[-1][0]} in the "
                             f"last), and this scheme needs at least {least} rows per product "
                             "(its rank): quantize with a larger max_tokens")
        if len(parts) == 1:  # C as the kernel returned it, no copy
            out = torch.from_numpy(self._matmul(a).astype(np.float32, copy=False))
        else:
            out = torch.empty((a.shape[0], self.out_features), dtype=torch.float32)
            for lo, hi in parts:
                out[lo:hi] = torch.from_numpy(self._matmul(a[lo:hi]).astype(np.float32,
                                                                             copy=False))
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def _matmul(self, a: np.ndarray) -> np.ndarray:
        if self.kernel is not None:
            return self.kernel(a, self.packed)
        prepared, bias = self.packed
        c = reference.matmul(self.scheme, a, prepared, bias=bias)
        return c if c.dtype != np.dtype("bfloat16") else c.astype(np.float32)

    def packed_bytes(self) -> int:
        """Bytes the packed weight (and bias) hold (kernel backend), or the reference's float64
        copy of the weight (reference backend)."""
        if self.kernel is not None:
            return packstate.nbytes(self.packed)
        return self.in_features * self.out_features * 8

    # the state: the scheme's text and the packed weight, no float weight. Its tensors share the
    # layer's memory, as a state_dict's parameters do: change them only to load them back.
    def get_extra_state(self) -> dict:
        state: dict[str, Any] = {
            "lrqc": 1, "scheme": unparse(self.scheme), "scheme_name": self.scheme.name,
            "in_features": self.in_features, "out_features": self.out_features,
            "max_tokens": self.max_tokens, "backend": self.backend, "has_bias": self.has_bias}
        if self.packed is None:  # no weight yet: a state that loads as none
            return state
        if self.kernel is None:
            prepared, bias = self.packed
            state["weight"] = torch.from_numpy(np.ascontiguousarray(prepared.x.T))
            state["bias"] = None if bias is None else torch.from_numpy(bias)
            return state
        arrays, meta = packstate.save(self.packed)
        state["meta"], state["arrays"], state["dtypes"] = meta, {}, {}
        for name, arr in arrays.items():
            try:
                state["arrays"][name] = torch.from_numpy(np.ascontiguousarray(arr))
            except TypeError:  # a dtype torch does not have: its raw bits
                state["arrays"][name] = torch.from_numpy(arr.view(_RAW[arr.itemsize]))
                state["dtypes"][name] = str(arr.dtype)
        return state

    def set_extra_state(self, state: Any) -> None:
        check_state(state)
        if (state["in_features"], state["out_features"]) != (self.in_features,
                                                             self.out_features):
            raise InputError(f"lrqc.torch.Linear: state of a {state['in_features']} -> "
                             f"{state['out_features']} layer loaded into a {self.in_features} "
                             f"-> {self.out_features} one")
        self.has_bias = bool(state["has_bias"])
        if "arrays" not in state and "weight" not in state:
            self.packed = None
            return
        if self.kernel is None:
            bias = state["bias"]
            self.packed = (reference.prepare(self.scheme, state["weight"].numpy().T),
                           None if bias is None else bias.numpy())
            return
        arrays = {name: t.numpy() for name, t in state["arrays"].items()}
        for name, dt in state["dtypes"].items():
            arrays[name] = arrays[name].view(np.dtype(dt))
        self.packed = packstate.restore(self.kernel, arrays, state["meta"])

    @classmethod
    def from_state(cls, state: Any, *, target: Any = None, threads: str = "auto") -> Linear:
        """The layer a saved state describes (its scheme compiled, its packed weight adopted)."""
        check_state(state)
        scheme = next(iter(parse_schemes(state["scheme"]).values()))
        out = cls(state["in_features"], state["out_features"], scheme,
                  max_tokens=state["max_tokens"], backend=state["backend"], target=target,
                  threads=threads)
        out.set_extra_state(state)
        return out


# what every saved layer state holds, and what its packed weight comes as: all of a group or none
_STATE_KEYS = ("scheme", "scheme_name", "in_features", "out_features", "max_tokens", "backend",
               "has_bias")
_WEIGHT_GROUPS = (("meta", "arrays", "dtypes"), ("weight", "bias"))


def check_state(state: Any) -> None:
    """LrqcError unless `state` is a whole lrqc layer state as get_extra_state writes it: its
    entries all there, its packed weight (or reference weight) whole or absent."""
    if not (isinstance(state, dict) and state.get("lrqc") == 1):
        raise InputError("lrqc.torch.Linear: not the state of an lrqc layer (or of another "
                         "lrqc version)")
    lacks = [k for k in _STATE_KEYS if k not in state]
    for group in _WEIGHT_GROUPS:
        if any(k in state for k in group):
            lacks += [k for k in group if k not in state]
    if lacks:
        raise InputError(f"lrqc.torch.Linear: the layer's state is damaged: it lacks "
                         f"{', '.join(repr(k) for k in lacks)}; save it again from the "
                         "quantized model")
