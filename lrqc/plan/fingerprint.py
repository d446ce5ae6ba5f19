"""The fingerprint that ties packed arrays to the kernel they were made for (the scheme's
canonical text, the static operand's sizes, the layout version and padded sizes, the device),
and the check that names what differs when a kernel is handed another kernel's packed operand.
No TVM."""

from __future__ import annotations

from ..errors import InputError
from ..frontend.model import Scheme
from ..frontend.unparse import unparse
from .model import KernelPlan

LAYOUT_VERSION = 5  # of layout.pack()'s arrays: change it whenever their meaning or shapes change


def fingerprint(scheme: Scheme, sizes: str, device: str,
                plan: KernelPlan | None = None, held: str = "") -> dict[str, str]:
    """What packed arrays depend on: the canonical scheme text, the static operand's sizes, the
    layout (version and padded sizes) and the device holding them; held: how the kernel's
    compiled functions hold some of them beyond that (e.g. a sparse product's codes for
    AVX-512 VNNI), where they do ("held" then: saved arrays leave it out, portable). Two
    kernels accept each other's packed operands exactly when their fingerprints are equal."""
    layout = f"version {LAYOUT_VERSION}"
    if plan is not None:
        layout += (f", Np={plan.np_}, Kp={plan.kp}, groups={plan.groups}, "
                   f"vector={plan.vector}")
    out = {"scheme": unparse(scheme), "sizes": sizes, "layout": layout, "device": device}
    return {**out, HELD: held} if held else out


HELD = "held"  # the fingerprint's entry for how a kernel's functions hold its packed arrays


def portable(fp: dict[str, str]) -> dict[str, str]:
    """A fingerprint without its HELD entry: what saved packed arrays (layout-level arrays,
    held as the loading kernel's functions need) must match."""
    return {k: v for k, v in fp.items() if k != HELD}


def check_fingerprint(packed: object, want: dict[str, str], what: str) -> None:
    """InputError unless `packed` (a Packed or ChainPacked) was made for a kernel with the
    fingerprint `want`; the message says what differs. what: the static operand's name."""
    have = getattr(packed, "fingerprint", None)
    if not isinstance(have, dict):
        raise InputError(f"packed: expected the result of this kernel's pack({what}), got "
                         f"{type(packed).__name__}")
    if have == want:
        return
    key = next(k for k in (*want, *have) if have.get(k) != want.get(k))
    if key == "scheme":
        diff = text_difference(str(have.get(key)), want[key])
    else:
        diff = (f"{key} {have.get(key, 'as laid out')} (this kernel: "
                f"{want.get(key, 'as laid out')})")
    raise InputError(f"packed: made for another kernel: {diff}; pack {what} with this kernel")


def text_difference(have: str, want: str) -> str:
    """The first difference between two scheme texts, as short as it can be said."""
    a, b = have.splitlines(), want.splitlines()
    i = next((j for j, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    la, lb = (a[i] if i < len(a) else "", b[i] if i < len(b) else "")
    ta, tb = la.split(), lb.split()
    lo = next((j for j, (x, y) in enumerate(zip(ta, tb, strict=False)) if x != y),
              min(len(ta), len(tb)))
    hi = 0
    while hi < min(len(ta), len(tb)) - lo and ta[-1 - hi] == tb[-1 - hi]:
        hi += 1
    da, db = " ".join(ta[lo:len(ta) - hi]), " ".join(tb[lo:len(tb) - hi])
    entry = f" ({tb[0]})" if lo > 0 and tb[0].endswith(":") else ""
    return (f"scheme differs at line {i + 1}{entry}: '{_cut(da or la)}' (this kernel: "
            f"'{_cut(db or lb)}')")


def _cut(text: str, width: int = 120) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
