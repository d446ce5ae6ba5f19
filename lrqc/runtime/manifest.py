"""The manifest of an ahead-of-time artifact (DIR/manifest.json next to DIR/lib.so, or
lib.tar when cross-compiling): what it records, its schema, and every check made before
anything is loaded. No TVM here (the caller passes the tool versions to compare).

The manifest (format 3) ties the artifact together: the size and sha256 of every file it names
("files"), the sha256 of the canonical scheme text ("scheme_sha256") and of every other entry
("content_sha256"). load_kernel checks, in this order and before any library is loaded: the
manifest's JSON and its schema (MANIFEST_SCHEMA: keys and types), its format, the versions it
was built with, that no entry was edited, that the scheme text is canonical and gives the
recorded sizes, buckets and padding, and each file's size and hash. Every refusal is an
LrqcError naming the file and what is wrong."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, cast

from .._version import __version__
from ..api import parse_schemes
from ..errors import LrqcError
from ..files import MiB, read_bytes
from ..frontend.model import Scheme
from ..frontend.unparse import unparse
from ..plan import names, signature
from ..plan.buckets import bucket_plans, chain_rows
from ..plan.chain import is_chain, parts

if TYPE_CHECKING:  # for annotations only: the kernels import TVM, the manifest's checks do not
    from .chain import ChainKernel
    from .kernel import Kernel

FORMAT = 16  # of manifest.json; older ones are refused: 3 and before carry no file hashes, 4's
# quantize_a takes A with exactly the bucket's rows (5: 1 to the bucket's), 5's as rows x K
# (6: flat, from the aligned address before it), 6's compensated quantize_a as M x K (7: flat),
# 7's compensated quantize_a takes float maxima, which may miss a NaN (8: A's bit patterns'),
# 8's writes no max |R| per row of A's residual (9 does: A's lowrank term reads it), 9's
# CPU kernels have no exact_w (10: A's lowrank term with other=exact computes F_Aᵀ B there),
# 10's no resid_tq and resid_z (11: a randomized SVD's products with A's residual run there)
# nor exact_w_bf16 and exact_w_f16 (11: B's exact 16-bit copy), 11's GEMMs of outputs summed
# over K groups take no bias (12: they add it, the runtime no longer does), 12's GEMMs compute
# every row of their bucket (13: gemm and int_acc take the call's row count, m_rows, last),
# 13's compensated quantize_a of a rank-1 sketch writes no Rᵀ (R s) (14: it does, from the
# call's rows, and CPU kernels have sketch_ab), 14's GEMMs of int16 pairs of integer scales
# take minus B's integer scales times its column sums (15: the column sums, cqb, and min-max
# A's codes are stored centred on their zero points; B's integer scales and column sums in
# bytes where they fit), 15's AVX2 sparse products of B's terms read B's residual codes in
# plain panels and the AVX2 signed rule's A codes unflipped (16: AVX2 quad panels, te.flipped)


REBUILD = "rebuild it with `lrqc build`"


LAYOUTS = {
    "A": "float32 M x K, row-major; quantize_a takes 1 to the bucket's rows (rows past them "
         "read as copies of the last); a call copies A into an aligned buffer unless it is "
         "64-byte aligned, C-contiguous, writeable and only quantize_a reads it",
    "Aq": "uint8 Mp x Kp, signed b-bit codes + 2^(b-1), e*m* values + 128, unsigned codes as is;"
          " for the AVX2 signed rule (x86_avx2_signed) each of those with its top bit flipped "
          "(the stored code less 128, as int8)",
    "Bp": "int8 [Np/16, Kp/4, 16, 4]: one 64-byte VNNI block per 16 columns x 4 k, one code "
          "per byte; integer weights narrower than 8 bits (unless pack=byte) packed densely "
          "as uint8 [Np/16, ceil(Kp/16), 32*w], w bits per code (see packing_order); for "
          "weight-only products (a float A, integer weights) the codes in the float GEMM's "
          "16-column panels, k after k: int8 [Np/16, Kp, 16], or packed as above",
    "sb": "float32 [G, Np] effective weight scales per K-group",
    "cs": "int32 [G, Np] column sums of B's stored codes per K-group (zero-point correction)",
    "sqb": "uint8 (int16 past 255) [G/2, Np, 2] two-level scales' integers per K-group, "
           "groups 2h and 2h + 1 next to each other for every column (per-vector products the "
           "GEMM sums as int16 pairs)",
    "gb": "float32 [1, Np] the columns' float scales of those two-level scales",
    "cqb": "int8 (int16 past it) [G/2, Np, 2] as sqb: the column sums cs per K-group (the "
           "GEMM subtracts each group's zero correction from its sum in int16 before the "
           "scaling)",
    "Bf": "float32 [Np/16, Kp, 16] for products with a float operand: B rounded to its type or "
          "dequantized, 16-column panels; when every value is exact in 16 bits (float16 or "
          "bfloat16 operands, symmetric per_tensor / per_channel codes), B's codes (element "
          "values) stored in that 16-bit type instead, with their scales in sbf",
    "sbf": "float32 [1, Np] column scales of Bf's codes (1 for a float B), products whose "
           "values are exact in 16 bits only; for weight-only products with integer weights "
           "(a float A): float32 [Gb, Np], the scales of Bp's codes per K group of B's "
           "quantizer (one group for per_tensor / per_channel)",
    "zbf": "float32 [Gb, Np] weight-only products with zero points (unsigned or min-max "
           "weights): zero point minus the storage offset 2^(b-1) of unsigned codes, per K "
           "group; the GEMM reads B as (code - zbf) * sbf",
    "zb": "int32 [G, Np] weight zero point minus the storage offset (2^(b-1) for unsigned "
          "weights, else 0), only for weights with zero points",
    "bias": "float32 [1, Np] added to every row of C by the GEMM's epilogue (zeros without a "
            "bias)",
    "Bt": "N x K, B transposed (rows contiguous), for A's lowrank term with other=exact: "
          "exact_w's input on CPUs (K a multiple of 16); float32, or where every value of B "
          "is a bfloat16's its bits as uint16 (exact_w_bf16), else a float16's float16 "
          "(exact_w_f16)",
}


# manifest.json's keys and their JSON types (nested objects: their required keys; [t]: a list
# of t; Map(t): an object of any keys with values t; a tuple: alternatives). Checked by
# validate() before any entry is used.
class Map:
    def __init__(self, spec: object):
        self.spec = spec


FILE_ENTRY = {"size": int, "sha256": str}


MANIFEST_SCHEMA = {
    "format": int,
    "scheme_name": str,
    "scheme": str,
    "scheme_sha256": str,
    "dims": {"M": (int, str), "N": int, "K": int},
    "static": str,
    "m_buckets": [int],
    "padded": {"Mp": int, "Np": int, "Kp": int, "groups": int, "vector": int},
    "target": {"kind": str},
    "cross_compiled": bool,
    "schedule_rule": str,
    "schedules": Map(str),
    "fast_path": bool,
    "instruction": (str, None),
    "functions": [str],
    "product": str,
    "layouts": Map(str),
    "packing_order": str,
    "weights": {"code_bits": int, "codes": int, "scales": int, "other": int,
                "bytes_per_weight": (int, float)},
    "lib": str,
    "cuda": (None, {"archs": [str], "fatbin": str, "source": str, "source_sha256": str}),
    "versions": Map((str, int)),
    "notes": [str],
    "files": Map(FILE_ENTRY),
    "content_sha256": Map(str),
}


def expected_layout(kernel_or_scheme: Kernel | ChainKernel | Scheme,
                    dims: dict | None = None) -> tuple[list[int], dict[str, int]]:
    """(m_buckets, padded) of a kernel, or of a scheme at a manifest's dims (what the build
    of that scheme records: a chain's are those of its first product)."""
    if not isinstance(kernel_or_scheme, Scheme):
        plans = kernel_or_scheme.plans
    elif dims is None:
        raise TypeError("expected_layout of a scheme: the manifest's dims are needed")
    else:
        s, M, N, K = kernel_or_scheme, str(dims["M"]), dims["N"], dims["K"]
        rows: object = M
        if is_chain(s):
            rows = chain_rows(s, M)
            _, s, N, K = parts(s, N, K)[0]
        plans = bucket_plans(s, rows, N, K)
    p = plans[-1]
    return [q.m for q in plans], {"Mp": p.mp, "Np": p.np_, "Kp": p.kp, "groups": p.groups,
                                  "vector": p.vector}


def artifact_files(lib: str, cuda: dict | None) -> list[str]:
    """The files of an artifact besides manifest.json."""
    return [lib] + ([cuda["fatbin"], cuda["source"]] if cuda else [])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(path: Path) -> dict:
    """{"size", "sha256"} of a file, read once in chunks."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


def content_hashes(man: dict) -> dict:
    """sha256 of the canonical JSON of every manifest entry but content_sha256 itself."""
    return {k: sha256(json.dumps(v, sort_keys=True, separators=(",", ":")).encode())
            for k, v in man.items() if k != "content_sha256"}


def functions(kernel: Kernel | ChainKernel) -> list[str]:
    """Exported symbols: every function of every bucket (of every part of a chain)."""
    parts = getattr(kernel, "kernels", [kernel])
    out = []
    for k in parts:
        prefix = k.prefix
        for p in k.plans:
            dense = () if k.target.is_cuda else signature.cpu_functions(p)  # CPU only
            out += [names.symbol(fn, p.m, prefix) for fn in (*signature.functions(p), *dense)]
    return out


def product_text(kernel: Kernel | ChainKernel) -> str:
    if hasattr(kernel, "kernels"):
        chain = cast("ChainKernel", kernel)  # only chains hold kernels (mypy narrows no union
        # by hasattr, and the manifest cannot import the kernels for an isinstance: TVM)
        return "LRAMM: float32 GEMM of U_A (V_A^T U_B) with Q(V_B^T)" \
            if chain.scheme.product is not None else (
                "LPLR: integer GEMM A' L (int8 codes of L, offset by a ones column), then "
                "float32 GEMM with R" if chain.integer_left else "LPLR: float32 GEMMs (A L) R")
    p = kernel.plan
    if p.half:
        return (f"float32 GEMM of values exact in {p.half} (codes, scales in the epilogue; "
                f"{p.half} tensor cores on CUDA)")
    if p.float_codes:
        return (f"float32 GEMM of B's {p.pack_bits}-bit codes, widened per 16-column panel "
                "(column scales in the epilogue)")
    if p.float_path:
        return "float32 GEMM"
    extra = [f"{p.nseg} K segments (dense residual terms)"] if p.segments else []
    extra += [f"sparse product of {'A' if sp.side == 'a' else 'B'}'s thresholded copy "
              f"({'zero-skip codes' if sp.side == 'a' else 'CSR'}) after the GEMM"
              for sp in p.sparse]
    extra += [f"rank-{r} epilogue of {side}'s lowrank term" for side, r in
              (("A", p.rank_a), ("B", p.rank_b)) if r]
    if signature.w_from_codes(p):
        extra.append("A's term times B as packed (W from B's codes, no float copy of B)")
    return "integer GEMM" + (" + " + ", ".join(extra) if extra else "")


def read_manifest(path: str | Path) -> dict:
    """DIR/manifest.json as a dict, checked against MANIFEST_SCHEMA and FORMAT."""
    d = Path(path)
    file = d / "manifest.json"
    if not d.is_dir():
        raise LrqcError(f"{d}: not a directory (an artifact is the folder `lrqc build -o` "
                        "wrote)" if d.exists() else f"{d}: no such artifact directory")
    if not file.exists():
        raise LrqcError(f"{d}: no manifest.json (not an lrqc build directory)")
    raw = read_bytes(file, 16 * MiB, f"{file}: cannot be read")
    try:
        man = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise LrqcError(f"{file}: not UTF-8 text (binary content?); {REBUILD}") from None
    except json.JSONDecodeError as exc:
        raise LrqcError(f"{file}: not valid JSON ({exc}); {REBUILD}") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise LrqcError(f"{file}: not a manifest ({str(exc)[:80]}); {REBUILD}") from None
    except RecursionError:
        raise LrqcError(f"{file}: not a manifest (JSON nested too deeply); {REBUILD}") from None
    if not isinstance(man, dict):
        raise LrqcError(f"{file}: expected a JSON object, found {json_name(man)}; {REBUILD}")
    if "format" not in man:
        raise LrqcError(f"{file}: missing key 'format'; {REBUILD}")
    fmt = man["format"]
    validate(fmt, int, "format", file)
    if fmt != FORMAT:
        raise LrqcError(f"{file}: manifest format {fmt}, " + (
            "from an older lrqc (its functions' arguments differ)" if fmt < FORMAT else
            f"newer than this lrqc reads ({FORMAT})") + f"; {REBUILD}")
    validate(man, MANIFEST_SCHEMA, "", file)
    return man


def validate(value: object, spec: object, where: str, file: Path) -> None:
    """LrqcError unless value has the JSON type of spec (see MANIFEST_SCHEMA)."""
    alts = spec if isinstance(spec, tuple) else (spec,)
    for alt in alts:
        if alt is None and value is None:
            return
        if isinstance(alt, dict) and isinstance(value, dict):
            for key, sub in alt.items():
                if key not in value:
                    raise LrqcError(f"{file}: missing key '{_at(where, key)}'; {REBUILD}")
                validate(value[key], sub, _at(where, key), file)
            return
        if isinstance(alt, list) and isinstance(value, list):
            for i, item in enumerate(value):
                validate(item, alt[0], f"{where}[{i}]", file)
            return
        if isinstance(alt, Map) and isinstance(value, dict):
            for key, item in value.items():
                validate(item, alt.spec, _at(where, key), file)
            return
        if isinstance(alt, type) and isinstance(value, alt) and (
                alt is bool or not isinstance(value, bool)):
            return
    raise LrqcError(f"{file}: '{where}' must be {' or '.join(map(type_name, alts))}, found "
                    f"{json_name(value)}; {REBUILD}")


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def type_name(spec: object) -> str:
    if spec is None:
        return "null"
    if isinstance(spec, (dict, Map)):
        return "an object"
    if isinstance(spec, list):
        return "a list"
    return _TYPE_NAMES[spec]


_TYPE_NAMES: dict[object, str] = {int: "an integer", float: "a number", str: "a string",
                                  bool: "true or false"}


def json_name(value: object) -> str:
    """How a JSON value is named in messages (its type, and short values)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    text = json.dumps(value)
    return ("a number " if isinstance(value, (int, float)) else "a string ") + (
        text if len(text) <= 40 else text[:37] + "...")


def check_manifest(d: Path, man: dict, tools: dict) -> Scheme:
    """The scheme of a format-3 manifest whose entries are all as built (versions, hashes,
    canonical scheme text re-deriving its sizes, buckets and padding). tools: the versions of
    TVM, its FFI and LLVM of this install (lrqc.backend.compat.versions())."""
    file = d / "manifest.json"
    want = {"lrqc": __version__, **tools}
    have = man["versions"]
    diff = [f"{k} {have.get(k)} (this install: {v})" for k, v in want.items() if have.get(k) != v]
    if diff:
        raise LrqcError(f"{d}: built with other versions: {', '.join(diff)}; {REBUILD}")
    now = content_hashes(man)
    rec = man["content_sha256"]
    edited = [k for k in now if rec.get(k) != now[k]] + [k for k in rec if k not in now]
    if edited:
        raise LrqcError(f"{file}: {', '.join(repr(k) for k in edited)} edited after the build "
                        f"(the content hashes recorded at build time differ); {REBUILD}")
    text = man["scheme"]
    if sha256(text.encode()) != man["scheme_sha256"]:
        raise LrqcError(f"{file}: the scheme text does not match its scheme_sha256; {REBUILD}")
    schemes = parse_schemes(text, f"{file} (scheme)")
    s = schemes.get(man["scheme_name"])
    if s is None or unparse(s) != text or s.static != man["static"]:
        raise LrqcError(f"{file}: the scheme text is not the canonical text of scheme "
                        f"'{man['scheme_name']}'; {REBUILD}")
    dims = man["dims"]
    if min(dims["N"], dims["K"]) < 1:
        raise LrqcError(f"{file}: dims N={dims['N']}, K={dims['K']} are not positive; {REBUILD}")
    buckets, padded = expected_layout(s, dims)
    if (buckets, padded) != (man["m_buckets"], man["padded"]):
        raise LrqcError(f"{file}: m_buckets {man['m_buckets']} and padded {man['padded']} are not "
                        f"those of the scheme at M={dims['M']}, N={dims['N']}, K={dims['K']} "
                        f"({buckets}, {padded}); {REBUILD}")
    check_files(d, man)
    return s


def check_files(d: Path, man: dict) -> None:
    """Every file of the artifact present, of the recorded size and sha256 (before anything
    is loaded: a truncated or foreign library is never mapped)."""
    files = man["files"]
    need = artifact_files(man["lib"], man["cuda"])
    for name in sorted(set(need) | set(files)):
        if Path(name).name != name or name in ("", ".", "..", "manifest.json"):
            raise LrqcError(f"{d / 'manifest.json'}: '{name}' is not a file name of the "
                            f"artifact; {REBUILD}")
        if name not in files:
            raise LrqcError(f"{d / 'manifest.json'}: no size and hash recorded for {name}; "
                            f"{REBUILD}")
        path = d / name
        if not path.is_file():
            raise LrqcError(f"{path}: " + ("not a file" if path.exists() else "missing")
                            + f" (the artifact needs it); {REBUILD}")
        try:
            have = file_entry(path)
        except OSError as exc:
            raise LrqcError(f"{path}: cannot be read ({exc.strerror}); {REBUILD}") from None
        if have["size"] != files[name]["size"]:
            raise LrqcError(f"{path}: {have['size']} bytes, the manifest records "
                            f"{files[name]['size']} (truncated or replaced after the build); "
                            f"{REBUILD}")
        if have["sha256"] != files[name]["sha256"]:
            raise LrqcError(f"{path}: its sha256 differs from the manifest's (another build's "
                            f"file, or changed after the build); {REBUILD}")
