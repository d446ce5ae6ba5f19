"""A packed static operand as flat named arrays plus a small JSON-able description, and back:
what a model saves so that loading it needs no re-quantization (lrqc.torch keeps them in a
module's state_dict). Covers a Kernel's Packed (every PackedOperand field, the sparse
products' arrays) and a ChainKernel's ChainPacked (each part, and the numpy glue's values).
The fingerprint travels with the arrays: a kernel adopts them only when it would have made
them itself (the same scheme text, sizes, layout version and device)."""

from __future__ import annotations

import zlib
from dataclasses import fields
from typing import Any

import numpy as np

from ..errors import InputError
from ..plan import fingerprint as fp
from ..plan import layout
from .buckets import Packed
from .chain import ChainKernel, ChainPacked
from .kernel import Kernel

FORMAT = 1
_SPARSE = {cls.__name__: cls for cls in (layout.SparseCodes, layout.SparseCsr,
                                         layout.SparseDense)}
_SKIP = ("sparse", "notes")


def _flat(arrays: layout.PackedOperand, prefix: str, out: dict[str, np.ndarray]) -> dict:
    for f in fields(arrays):
        v = getattr(arrays, f.name)
        if f.name not in _SKIP and v is not None:
            out[prefix + f.name] = v
    kinds = []
    for j, sp in enumerate(arrays.sparse):
        kinds.append(type(sp).__name__)
        for f in fields(sp):
            v = getattr(sp, f.name)
            if v is not None:
                out[f"{prefix}sparse{j}.{f.name}"] = v
    return {"notes": list(arrays.notes), "sparse": kinds}


def _unflat(arrays: dict[str, np.ndarray], prefix: str, meta: dict) -> layout.PackedOperand:
    def take(p: str, cls: Any) -> dict[str, np.ndarray]:
        return {f.name: arrays[p + f.name] for f in fields(cls)
                if f.name not in _SKIP and p + f.name in arrays}

    try:
        sparse = tuple(_SPARSE[kind](**take(f"{prefix}sparse{j}.", _SPARSE[kind]))
                       for j, kind in enumerate(meta["sparse"]))
        return layout.PackedOperand(**take(prefix, layout.PackedOperand), sparse=sparse,
                                    notes=tuple(meta["notes"]))
    except (KeyError, TypeError) as exc:
        raise InputError(f"packed state: incomplete or of another lrqc version ({exc})") from None


def _arrays(packed: Packed | ChainPacked) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays by name, their layout description) of a packed operand."""
    out: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"format": FORMAT, "fingerprint": fp.portable(packed.fingerprint)}
    if isinstance(packed, ChainPacked):
        meta["parts"] = [_flat(part.arrays, f"part{i}.", out)
                         for i, part in enumerate(packed.parts)]
        meta["extra"] = {}
        for k, v in packed.extra.items():
            if isinstance(v, np.ndarray):
                out[f"extra.{k}"] = v
                meta["extra"][k] = None
            else:
                meta["extra"][k] = float(v)
    else:
        meta["packed"] = _flat(packed.arrays, "", out)
    return out, meta


def save(packed: Packed | ChainPacked) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays by name, description) of a packed operand, with each array's shape, type and
    CRC-32 for restore() to check."""
    out, meta = _arrays(packed)
    meta["arrays"] = _summary(out)
    return out, meta


def _summary(arrays: dict[str, np.ndarray]) -> dict[str, list]:
    """name -> [shape, dtype, crc32 of the bytes]: what restore() checks the arrays against."""
    return {name: [list(v.shape), str(v.dtype),
                   zlib.crc32(np.ascontiguousarray(v).reshape(-1).view(np.uint8).tobytes())]
            for name, v in arrays.items()}


def restore(kernel: Kernel | ChainKernel, arrays: dict[str, np.ndarray], meta: dict
            ) -> Packed | ChainPacked:
    """The packed operand that save() described, for `kernel`: InputError when it was made
    for another kernel (the fingerprints differ) or the state is incomplete."""
    have = meta.get("format") if isinstance(meta, dict) else None
    if have != FORMAT:
        raise InputError(f"packed state: format {have!r}, this lrqc reads format {FORMAT}")
    holder = type("Saved", (), {"fingerprint": meta.get("fingerprint")})()
    if _summary(arrays) != meta.get("arrays"):
        bad = sorted(set(arrays) ^ set(meta.get("arrays") or {})) or [
            n for n, v in _summary(arrays).items() if meta["arrays"].get(n) != v]
        raise InputError(f"packed state: array {bad[0]} differs from what was saved (shape, "
                         "type or contents): the state is damaged")
    fp.check_fingerprint(holder, fp.portable(kernel.fingerprint), "B")
    if isinstance(kernel, ChainKernel):
        if "parts" not in meta:
            raise InputError("packed state: made for a single product, this kernel is a chain")
        parts = [k._adopt(_unflat(arrays, f"part{i}.", m))  # (the fingerprint matched)
                 for i, (k, m) in enumerate(zip(kernel.kernels, meta["parts"], strict=True))]
        extra = {k: arrays[f"extra.{k}"] if v is None else v for k, v in meta["extra"].items()}
        return ChainPacked(parts, extra, kernel.fingerprint)
    if "packed" not in meta:
        raise InputError("packed state: made for a chain of products, this kernel is not one")
    return kernel._adopt(_unflat(arrays, "", meta["packed"]))


def nbytes(packed: Packed | ChainPacked) -> int:
    """Bytes of host memory the packed operand's arrays hold."""
    return sum(int(v.nbytes) for v in _arrays(packed)[0].values())
