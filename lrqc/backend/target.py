"""Targets: lrqc's short names and TVM target dicts, host detection, and CPU feature checks.

CUDA targets: "cuda-sm80", "cuda-sm90" (short names), "cuda -arch=sm_90" (TVM's string form;
"cuda -arch=sm_80,sm_90" builds device code for both), or a dict {"kind": "cuda", "arch":
"sm_90"}. Bare "cuda" is refused: TVM would silently compile for sm_50. The host part is
LLVM code for this machine's architecture without CPU features (it only launches the device
code). Everything resolves to one Target value; its dict form (manifests, tuning records) may
carry "lrqc_archs" (every arch the artifact's fatbin holds; TVM's own "arch" is the lowest,
which code generation targets)."""

from __future__ import annotations

import functools
import os
import platform
import tempfile
import threading
from dataclasses import dataclass, field
from types import MappingProxyType

from ..errors import LrqcError, nearest_word
from ..resources import enable_amx, host_cpu_flags
from .compat import TvmTarget, codegen

# cpuinfo flag -> LLVM feature
_X86_FEATURES = {
    "avx2": "avx2", "fma": "fma", "avx512f": "avx512f", "avx512bw": "avx512bw",
    "avx512vl": "avx512vl", "avx512dq": "avx512dq", "avx512_vnni": "avx512vnni",
    "avx512_bf16": "avx512bf16", "gfni": "gfni", "avx_vnni": "avxvnni",
    "amx_tile": "amx-tile", "amx_int8": "amx-int8",
}
_ARM_EXAMPLES = ("neon", "dotprod", "i8mm", "sve", "sve2", "bf16", "fullfp16")  # for hints
_AMX_FLAGS = ("amx_tile", "amx_int8")  # used only where the OS grants the tile state
SHORT_NAMES = {
    "host": None,
    "x86-avx512-vnni": {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4"},
    "x86-avx2": {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell"},
    "x86-avxvnni": {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "alderlake"},
    "x86-amx": {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "sapphirerapids"},
    "aarch64": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "neoverse-n1"},
    "cuda-sm80": {"kind": "cuda", "arch": "sm_80"},
    "cuda-sm90": {"kind": "cuda", "arch": "sm_90"},
}
CUDA_ARCHS = ("sm_75", "sm_80", "sm_86", "sm_89", "sm_90", "sm_100", "sm_120")  # lrqc builds for
ARCHS_KEY = "lrqc_archs"  # lrqc's own key: every arch of the fatbin (not a TVM attribute)


@dataclass(frozen=True)
class Target:
    """A resolved compilation target. spec: TVM's target dict (without lrqc's own keys);
    archs: every CUDA arch the device code is built for (the first is TVM's codegen arch);
    features: what the schedule rules test (LLVM features such as "avx2", "avx512vnni"; for
    CUDA "cuda" and the instructions the lowest arch has)."""

    spec: MappingProxyType
    archs: tuple[str, ...] = ()
    features: frozenset[str] = field(default=frozenset())

    @property
    def kind(self) -> str:
        return str(self.spec["kind"])

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    @property
    def family(self) -> str:
        """The schedule-rule family: "cuda", or "x86" (whose generic rule also serves every
        other LLVM target)."""
        return "cuda" if self.is_cuda else "x86"

    @property
    def triple(self) -> str:
        return str(self.spec.get("mtriple", ""))

    @property
    def host(self) -> Target | None:
        """A CUDA target's host part (LLVM code that launches the kernels)."""
        return resolve(dict(self.spec["host"])) if self.is_cuda else None

    @property
    def is_cross(self) -> bool:
        """Code for another architecture than this machine's (it cannot be loaded here)."""
        if self.is_cuda:
            return self.host.is_cross
        return bool(self.triple) and not self.triple.startswith(platform.machine())

    def tvm(self) -> TvmTarget:
        return TvmTarget(_plain(self.spec))

    def as_dict(self) -> dict:
        """The JSON form written to manifests and tuning records (resolve() reads it back)."""
        out = _plain(self.spec)
        if len(self.archs) > 1:
            out[ARCHS_KEY] = list(self.archs)
        return out

    def grant_tiles(self, what: str) -> None:
        """Ask the OS for the AMX tile state where this target's code uses tiles and can run
        here (before its first tile instruction); LrqcError naming `what` if it refuses."""
        if "amx-int8" in self.features and not self.host_lacks():
            why = enable_amx()
            if why:
                raise LrqcError(f"{what} uses AMX tiles, but {why}; build for --target "
                                "x86-avx512-vnni")

    def host_lacks(self) -> list[str]:
        """Features the target needs that this CPU does not have (for refusing to load)."""
        if self.is_cuda:
            return self.host.host_lacks()
        if self.is_cross:
            return [f"{self.triple or 'another architecture'}'s instruction set"]
        flags = host_cpu_flags()
        rev = {v: k for k, v in _X86_FEATURES.items()}
        return sorted(f for f in self.features if f in rev and rev[f] not in flags)


def _plain(spec) -> dict:
    return {k: (_plain(v) if isinstance(v, (dict, MappingProxyType)) else
                list(v) if isinstance(v, tuple) else v) for k, v in spec.items()}




def host_target_dict() -> dict:
    """The host CPU as LLVM sees it, plus every vector feature /proc/cpuinfo reports (LLVM 22
    names this Zen 5 VM 'znver3' and would otherwise leave AVX-512 VNNI off). AMX counts only
    where the OS grants this process the tile state (asked here, once: resources.enable_amx);
    where it refuses, the AMX features are switched off, since a CPU name may imply them."""
    d = {"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu()),
         "num-cores": os.cpu_count() or 1}
    if platform.machine() in ("x86_64", "AMD64"):
        flags = host_cpu_flags()
        refused = []  # an mcpu such as sapphirerapids implies AMX: switched off explicitly
        if set(_AMX_FLAGS) & flags and enable_amx() is not None:
            flags = flags - set(_AMX_FLAGS)
            refused = ["-amx-tile", "-amx-int8"]
        feats = [f"+{v}" for k, v in _X86_FEATURES.items() if k in flags] + refused
        if feats:
            d["mattr"] = feats
    return d


def host_target() -> Target:
    return resolve(None)


def resolve(target: str | dict | Target | None) -> Target:
    """A Target from None/'host', a short name, a CUDA target string, a dict (validated by
    TVM; the form Target.as_dict writes) or a Target."""
    if isinstance(target, Target):
        return target
    if target is None or target == "host" or target == "llvm":
        d = host_target_dict()
    elif isinstance(target, dict):
        d = dict(target)
    elif isinstance(target, str) and target in SHORT_NAMES:
        d = dict(SHORT_NAMES[target])
    elif isinstance(target, str) and target.split()[:1] == ["cuda"]:
        d = _cuda_string(target)
    else:
        raise LrqcError(f"unknown target {target!r}; use 'host', a TVM target dict, "
                        "'cuda -arch=sm_XX', or one of "
                        f"{', '.join(k for k in SHORT_NAMES if k != 'host')}")
    if d.get("kind") not in ("llvm", "cuda"):
        raise LrqcError(f"target kind {d.get('kind')!r}: lrqc compiles for 'llvm' (CPUs) and "
                        "'cuda' targets")
    if d["kind"] == "llvm":
        _check_llvm(d)
    archs: tuple[str, ...] = ()
    if d["kind"] == "cuda":
        d = _cuda_dict(d)
        archs = tuple(d.pop(ARCHS_KEY, None) or [d["arch"]])
    try:
        tvm_target = TvmTarget(d)
    except (ValueError, TypeError, RuntimeError) as exc:  # TVM's refusal of the dict
        raise LrqcError(f"invalid target {d}: {str(exc).splitlines()[-1]}") from None
    spec = MappingProxyType({k: (MappingProxyType(v) if isinstance(v, dict) else
                                 tuple(v) if isinstance(v, list) else v) for k, v in d.items()})
    return Target(spec, archs, frozenset(_features(d, tvm_target)))


def _check_llvm(d: dict) -> None:
    """An LLVM target dict's triple, CPU and features, each one LLVM knows (LrqcError), before
    TVM sees them: TVM and LLVM only log what they do not know (and crash on some)."""
    triple = d.get("mtriple") or ""
    if not isinstance(triple, str):
        raise LrqcError(f"target: mtriple must be a string such as 'x86_64-linux-gnu', got "
                        f"{triple!r}")
    if triple and not _valid_cpu("generic", triple):
        raise LrqcError(f"target: LLVM knows no triple {triple!r}; use one such as "
                        "'x86_64-linux-gnu' or 'aarch64-linux-gnu'")
    if d.get("mcpu"):
        _check_cpu(str(d["mcpu"]), triple)
    if "mattr" in d:
        _check_features(d["mattr"], triple)


_QUIET = threading.Lock()
_LLVM_NOISE = (b"is not a recognized feature", b"is not valid in `-mtriple=")


def _quiet_llvm(ask):
    """ask() with what LLVM and TVM print to stderr about the names asked kept back (lrqc
    refuses those names in its own words); anything else written there meanwhile, by any
    thread, is written after."""
    with _QUIET:
        try:
            held, saved = tempfile.TemporaryFile(), os.dup(2)
        except OSError:  # no stderr (closed), or no temporary folder: ask as it is
            return ask()
        with held:
            os.dup2(held.fileno(), 2)
            try:
                return ask()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                held.seek(0)
                rest = b"".join(line for line in held.read().splitlines(True)
                                if not any(n in line for n in _LLVM_NOISE))
                if rest:
                    os.write(2, rest)


def _check_cpu(mcpu: str, triple: str) -> None:
    """LrqcError where LLVM does not know mcpu for the triple ('' the default): TVM would only
    log an error and compile for a generic CPU, without the vector instructions asked for."""
    if mcpu == "native":
        raise LrqcError("target: mcpu 'native' is not resolved by LLVM here; use the target "
                        "'host' (this CPU, its vector features included)")
    if not _valid_cpu(mcpu, triple):
        where = (f" for {triple} (an unknown triple, or a CPU of another architecture)"
                 if triple else "")
        raise LrqcError(f"target: LLVM knows no CPU {mcpu!r}{where}; name one LLVM knows (e.g. "
                        "'znver4', 'haswell', 'neoverse-n1'), or use a short name such as "
                        "'x86-avx2'")


def _check_features(mattr, triple: str) -> None:
    """LrqcError for an mattr that LLVM would misread without an error: an entry without its
    sign (LLVM takes "avx2" to turn AVX2 off) or a feature it does not know for the triple
    (it only prints a warning and ignores it, so the kernel is built without it)."""
    if not isinstance(mattr, (list, tuple)) or not all(isinstance(f, str) for f in mattr):
        raise LrqcError(f"target: mattr must be a list of strings such as ['+avx2', "
                        f"'-avx512f'], got {mattr!r}")
    unsigned = [f for f in mattr if len(f) < 2 or f[0] not in "+-"]
    if unsigned:
        raise LrqcError(f"target: mattr entries start with '+' (on) or '-' (off): "
                        f"{', '.join(map(repr, unsigned))}")
    unknown = [f for f in mattr if not _known_feature(f[1:], triple)]
    if unknown:
        arm = (triple or platform.machine()).startswith(("aarch64", "arm"))
        known = _ARM_EXAMPLES if arm else tuple(_X86_FEATURES.values())
        near = nearest_word(unknown[0][1:], known)
        hint = (f"did you mean '+{near}'?" if near else "name features as LLVM does, e.g. "
                + ", ".join(f"'+{f}'" for f in known[:3]))
        where = f" for {triple}" if triple else ""
        raise LrqcError(f"target: LLVM knows no CPU feature {', '.join(map(repr, unknown))}"
                        f"{where} (it would build without it); {hint}")


@functools.lru_cache(maxsize=256)
def _valid_cpu(mcpu: str, triple: str) -> bool:
    """Whether LLVM knows CPU mcpu for the triple ("generic": whether it knows the triple)."""
    return bool(_quiet_llvm(lambda: codegen.llvm_is_valid_cpu(mcpu, triple)))


@functools.lru_cache(maxsize=256)
def _known_feature(name: str, triple: str) -> bool:
    """Whether LLVM knows feature `name` for the triple ('' this machine's): a target with it
    turned on has it (an unknown one is dropped)."""
    probe = {"kind": "llvm", "mattr": [f"+{name}"], **({"mtriple": triple} if triple else {})}
    try:
        return bool(_quiet_llvm(lambda: codegen.target_has_features(name, TvmTarget(probe))))
    except (ValueError, TypeError, RuntimeError):  # TVM refuses the name itself
        return False


def _cuda_string(text: str) -> dict:
    words = text.split()
    archs = [w.split("=", 1)[1] for w in words[1:] if w.startswith("-arch=")]
    rest = [w for w in words[1:] if not w.startswith("-arch=")]
    if rest:
        raise LrqcError(f"target {text!r}: only -arch=sm_XX[,sm_YY] is understood after 'cuda'")
    if not archs:
        raise LrqcError(f"target {text!r} names no GPU architecture (TVM would silently build "
                        "for sm_50): use 'cuda -arch=sm_90', 'cuda-sm80' or 'cuda-sm90'")
    return {"kind": "cuda", "arch": archs[-1]}


def _cuda_dict(d: dict) -> dict:
    """Normalise a CUDA target: the archs sorted, TVM's arch the lowest, the host this CPU."""
    archs = d.get(ARCHS_KEY) or str(d.get("arch", "")).split(",")
    archs = [a.strip() for a in archs if a.strip()]
    if not archs:
        raise LrqcError(f"CUDA target {d} names no arch (TVM would silently build for sm_50): "
                        "give 'arch': 'sm_90'")
    bad = [a for a in archs if a not in CUDA_ARCHS]
    if bad:
        raise LrqcError(f"CUDA arch {', '.join(bad)} is not supported; lrqc builds for "
                        f"{', '.join(CUDA_ARCHS)} (dp4a needs sm_61+, int8 tensor cores sm_75+)")
    archs = sorted(set(archs), key=CUDA_ARCHS.index)
    out = {k: v for k, v in d.items() if k not in ("arch", ARCHS_KEY, "host")}
    # the host part only launches kernels: generic code for this machine's architecture (no
    # CPU features), its triple recorded so another architecture refuses it clearly
    out.update(arch=archs[0], host=d.get("host") or {"kind": "llvm",
                                                     "mtriple": f"{platform.machine()}-linux-gnu"})
    if len(archs) > 1:
        out[ARCHS_KEY] = archs
    return out


def _features(d: dict, t) -> set[str]:
    if d["kind"] == "cuda":
        sm = int(d["arch"].split("_")[1])
        have = {"dp4a": 61, "mma_s8": 75, "mma_f16": 75, "mma_bf16": 80}
        return {"cuda"} | {f for f, lo in have.items() if sm >= lo}
    if not str(d.get("mtriple") or platform.machine()).startswith(("x86", "AMD64")):
        return set()  # the x86 feature names mean nothing to other LLVM targets
    return {f for f in ("avx512vnni", "avxvnni", "avx512bw", "avx512f", "avx2", "avx512bf16",
                        "gfni", "amx-int8")
            if codegen.target_has_features(f, t)}
