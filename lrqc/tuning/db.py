"""The tuning database: one JSON record per tuned kernel function, in the user cache directory
(LRQC_CACHE_DIR overrides; else $XDG_CACHE_HOME/lrqc, else ~/.cache/lrqc), under tuning/.

A record is keyed by everything that decides whether its schedule is valid and fast: the
canonical scheme text, the function and its compiled sizes (M bucket, N, K), the full target
(its TVM dict and the CPU features it enables) and the lrqc, TVM and LLVM versions
(record_key; the caller gives the TVM side's versions). The key is hashed (sha256 of its
canonical JSON) into the file name, so a record can only be found by a build whose key is
identical: records never leak across targets or versions.

Every record is checked by one function, `check`, whether it is read from its file, imported
or about to be written: its fields and their types, its file name against its key's hash, and
that its two times are plausible (`plausible`). A record that fails is a `BadRecord`: builds
ignore it (and say so), `lrqc cache prune` removes it. No TVM here."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .._version import __version__
from ..errors import LrqcError
from ..files import MiB, cache_dir, read_bytes, usable_folder
from ..frontend.unparse import unparse
from ..plan.model import KernelPlan

if TYPE_CHECKING:  # for annotations only: the target module imports TVM, this one does not
    from ..backend.target import Target

RECORD_FIELDS = ("key", "trace", "tuned_ms", "hand_ms", "trials", "valid", "rejected",
                 "created", "wall_s")
KEY_FIELDS = ("scheme", "function", "m", "n", "k", "target", "features", "versions")
# plausibility of a record's times (both medians of the same alternating rounds): a tuned
# schedule is a point of the hand schedule's own knob space, so it is never many times faster;
# and no kernel call takes less than a few nanoseconds. Outside these bounds the measurement
# is wrong (a timer glitch, a candidate that did not run), never a speedup.
MAX_SPEEDUP = 20.0  # hand_ms / tuned_ms at most
MIN_MS = 1e-5  # 10 ns: tuned_ms and hand_ms at least
PRUNE_HINT = "`lrqc cache prune` removes it"


class BadRecord(LrqcError):
    """A tuning record that cannot be used: unreadable, malformed or implausible."""

    def __init__(self, path, name: str, why: str):
        self.path, self.name, self.why = path, name, why
        super().__init__(f"{path}: bad tuning record {name} ({why}); {PRUNE_HINT}")


def tuning_dir() -> Path:
    return cache_dir() / "tuning"


def records_state() -> str:
    """A digest of the tuning records as they are now (tuning/records/*.json: each file's name
    and content): a compiled kernel cached under one state is compiled again once a record is
    written, rewritten, imported or removed."""
    h = hashlib.sha256()
    try:
        paths = sorted((tuning_dir() / "records").glob("*.json"))
    except OSError:  # no database (or none readable): the empty state
        paths = []
    for path in paths:
        try:
            data = path.read_bytes() if path.is_file() else b"(not a file)"
        except OSError as exc:
            data = f"(unreadable: {exc.errno})".encode()
        h.update(f"{path.name}:{len(data)}:".encode())
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()[:20]


def usable_tuning_dir(write: bool = False) -> Path:
    """tuning_dir(), checked before any work (files.usable_folder)."""
    return usable_folder(tuning_dir(), "the tuning cache", write)


def make_key(scheme_text: str, function: str, m: int, n: int, k: int, target: dict,
             features: Iterable[str], versions: dict) -> dict:
    return {"scheme": scheme_text, "function": function, "m": int(m), "n": int(n), "k": int(k),
            "target": target, "features": sorted(features), "versions": dict(versions)}


def record_key(plan: KernelPlan, function: str, target: Target, versions: dict) -> dict:
    """The key of function `function` of one plan (M bucket) on target (a
    lrqc.backend.target.Target). versions: the TVM side's (lrqc.backend.compat.versions(): tvm,
    tvm_ffi, llvm), given by the caller so that this module needs no TVM; lrqc's own is added
    here."""
    return make_key(unparse(plan.scheme), function, plan.m, plan.n, plan.k, target.as_dict(),
                    target.features, {"lrqc": __version__, **versions})


def key_hash(key: dict) -> str:
    text = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass
class Record:
    key: dict
    trace: object  # the MetaSchedule trace as JSON (replayed on the function's TE)
    tuned_ms: float  # median ms of the tuned function, measured when it was recorded
    hand_ms: float  # median ms of the hand schedule, same run
    trials: int = 0
    valid: int = 0
    rejected: int = 0  # candidates that failed the check against lrqc.reference
    created: float = field(default_factory=time.time)
    wall_s: float = 0.0

    @property
    def hash(self) -> str:
        return key_hash(self.key)

    def summary(self) -> str:
        k = self.key
        return (f"{self.hash}  {k['function']:<10} M={k['m']} N={k['n']} K={k['k']}  "
                f"tuned {shown_ms(self.tuned_ms)} vs hand {shown_ms(self.hand_ms)} "
                f"({self.hand_ms / self.tuned_ms:.2f}x)  trials {self.trials}, "
                f"rejected {self.rejected}  [scheme {_scheme_name(k['scheme'])}]")


def ms_digits(value: float) -> str:
    """A time in ms as reports print it, without the unit: three decimals, or three
    significant digits below 0.01 ms (a small function's microseconds would otherwise all
    print as 0.000)."""
    return f"{value:.3f}" if value >= 0.01 else f"{value:.3g}"


def shown_ms(value: float) -> str:
    """ms_digits(value) ms."""
    return f"{ms_digits(value)} ms"


def _scheme_name(text: str) -> str:
    m = re.search(r"scheme\s+(\w+)", text)
    return m.group(1) if m else "?"


def plausible(tuned_ms: float, hand_ms: float) -> str | None:
    """None when a record's two times are believable, else why not (see MAX_SPEEDUP)."""
    low = [f"{n} {v:.2e} ms" for n, v in (("tuned", tuned_ms), ("hand", hand_ms)) if v < MIN_MS]
    if low:
        return f"implausible time: {', '.join(low)} is below {MIN_MS:g} ms"
    if hand_ms / tuned_ms > MAX_SPEEDUP:
        return (f"implausible speedup: {shown_ms(tuned_ms)} tuned vs {shown_ms(hand_ms)} hand "
                f"({hand_ms / tuned_ms:.0f}x, more than {MAX_SPEEDUP:g}x)")
    return None


def check(d: object, name: str | None = None) -> Record:
    """The Record of a JSON object d, or LrqcError saying what is wrong with it: its fields and
    their types, its key's hash against `name` (the file name a record was read from), and
    `plausible`. Used on every record read, imported or written."""
    if not isinstance(d, dict):
        raise LrqcError(f"expected a JSON object, got {_kind(d)}")
    missing = [f for f in RECORD_FIELDS if f not in d]
    if missing:
        raise LrqcError(f"missing fields {', '.join(missing)}")
    extra = sorted(str(f) for f in d if f not in RECORD_FIELDS)
    if extra:
        raise LrqcError(f"unknown fields {', '.join(extra)}")
    key = d["key"]
    if not isinstance(key, dict) or set(key) != set(KEY_FIELDS):
        raise LrqcError(f"its key must be an object with exactly {', '.join(KEY_FIELDS)}")
    for f in ("scheme", "function"):
        if not isinstance(key[f], str) or not key[f].strip():
            raise LrqcError(f"key.{f} must be a non-empty string, got {_show(key[f])}")
    for f in ("m", "n", "k"):
        if not _is_int(key[f]) or key[f] < 1:
            raise LrqcError(f"key.{f} must be a positive integer, got {_show(key[f])}")
    if not isinstance(key["target"], dict) or not all(isinstance(t, str) for t in key["target"]):
        raise LrqcError(f"key.target must be an object, got {_show(key['target'])}")
    if not isinstance(key["features"], list) or not all(isinstance(x, str)
                                                        for x in key["features"]):
        raise LrqcError(f"key.features must be a list of strings, got {_show(key['features'])}")
    versions = key["versions"]
    if not isinstance(versions, dict) or not all(
            isinstance(n, str) and (isinstance(v, str) or _is_int(v)) for n, v in versions.items()):
        raise LrqcError(f"key.versions must map names to versions, got {_show(versions)}")
    trace = d["trace"]
    if not (isinstance(trace, list) and len(trace) == 2
            and all(isinstance(x, list) for x in trace)):
        raise LrqcError("trace must be a MetaSchedule trace: [instructions, decisions]")
    if not trace[0]:  # replayed, it would leave the function unscheduled
        raise LrqcError("trace has no instructions (a schedule would leave the function "
                        "unscheduled)")
    for f in ("tuned_ms", "hand_ms"):
        if not _is_number(d[f]) or not d[f] > 0:
            raise LrqcError(f"{f} must be a positive number, got {_show(d[f])}")
    for f in ("trials", "valid", "rejected"):
        if not _is_int(d[f]) or d[f] < 0:
            raise LrqcError(f"{f} must be a non-negative integer, got {_show(d[f])}")
    for f in ("created", "wall_s"):
        if not _is_number(d[f]) or d[f] < 0:
            raise LrqcError(f"{f} must be a non-negative number, got {_show(d[f])}")
    rec = Record(**{f: d[f] for f in RECORD_FIELDS})
    if name is not None and name != rec.hash:
        raise LrqcError(f"its key hashes to {rec.hash}, not to its file name {name} (was the "
                        "key edited?)")
    why = plausible(rec.tuned_ms, rec.hand_ms)
    if why:
        raise LrqcError(why)
    return rec


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return (_is_int(x) or isinstance(x, float)) and math.isfinite(x)


def _kind(x) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null",
            bool: "a boolean"}.get(type(x), "a number")


def _show(x) -> str:
    try:
        text = json.dumps(x, default=repr)
    except (TypeError, ValueError):  # keys that are not strings, cycles
        text = repr(x)
    return text if len(text) <= 40 else text[:37] + "..."


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of a file, or LrqcError saying why it cannot be read."""
    if Path(path).is_dir():
        raise LrqcError(f"{path}: is a directory, not a {what}")
    try:
        return read_bytes(path, 256 * MiB, f"cannot read {path}").decode("utf-8")
    except UnicodeDecodeError:
        raise LrqcError(f"{path}: binary content, not a {what} (not UTF-8 text)") from None
    except OSError as exc:
        raise LrqcError(f"cannot read {path}: {exc.strerror or exc}") from None


def _parse(text: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise LrqcError(f"not valid JSON: {str(exc)[:120]}") from None


class Database:
    """Records under `root` (default tuning_dir()): records/<hash>.json; work/<hash>/ holds the
    MetaSchedule work directory of an unfinished or finished tuning run (for resuming)."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else tuning_dir()

    @property
    def records_dir(self) -> Path:
        return self.root / "records"

    def work_dir(self, key: dict) -> Path:
        return self.root / "work" / key_hash(key)

    def get(self, key: dict) -> Record | None:
        """The record of this key, None when there is none, BadRecord when its file is bad."""
        path = self.records_dir / f"{key_hash(key)}.json"
        if not path.exists() and not path.is_symlink():
            return None
        return self.read(path)

    def put(self, rec: Record) -> Path:
        """Write a record (LrqcError, nothing written, when `check` refuses it)."""
        try:
            check(asdict(rec))
        except LrqcError as exc:
            raise LrqcError(f"tuning record {rec.hash} not recorded: {exc}") from None
        self.records_dir.mkdir(parents=True, exist_ok=True)
        path = self.records_dir / f"{rec.hash}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(rec), indent=1, sort_keys=True))
        tmp.replace(path)  # atomic: an interrupted write never leaves half a record
        return path

    def paths(self) -> list[Path]:
        """Every record file (good or bad) in the database."""
        if not self.records_dir.is_dir():
            return []
        return sorted(self.records_dir.glob("*.json"))

    def read(self, path: Path) -> Record:
        """The record in one file (BadRecord when it is unreadable, malformed or implausible)."""
        path = Path(path)
        try:
            return check(_parse(read_text(path, "tuning record")), path.stem)
        except BadRecord:
            raise
        except LrqcError as exc:
            why = str(exc).removeprefix(f"{path}: ")
            raise BadRecord(path, path.stem, why) from None

    def scan(self) -> list[tuple[Path, Record | BadRecord]]:
        """(path, its Record or the BadRecord saying why it is not one) for every file."""
        out = []
        for path in self.paths():
            try:
                out.append((path, self.read(path)))
            except BadRecord as exc:
                out.append((path, exc))
        return out

    def all(self) -> list[Record]:
        """Every good record (bad ones: scan)."""
        return [r for _, r in self.scan() if isinstance(r, Record)]

    def remove(self, rec: Record) -> None:
        self.remove_path(self.records_dir / f"{rec.hash}.json")

    def remove_path(self, path: Path) -> None:
        """Remove one record's file (or whatever stands in its place in records/)."""
        path = Path(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def export(self, path: str | Path, records: list[Record] | None = None) -> int:
        recs = self.all() if records is None else records
        text = "".join(json.dumps(asdict(r), sort_keys=True) + "\n" for r in recs)
        try:
            Path(path).write_text(text)
        except IsADirectoryError:
            raise LrqcError(f"cannot write {path}: it is a directory") from None
        except OSError as exc:
            raise LrqcError(f"cannot write {path}: {exc.strerror or exc}") from None
        return len(recs)

    def import_(self, path: str | Path) -> int:
        """Import the records of a JSON-lines file: all or none (LrqcError naming the first
        bad line)."""
        recs = []
        for line_no, line in enumerate(read_text(path, "JSON-lines file").splitlines(), 1):
            if not line.strip():
                continue
            try:
                recs.append(check(_parse(line)))
            except LrqcError as exc:
                raise LrqcError(f"{path}:{line_no}: not a tuning record ({exc})") from None
        for rec in recs:
            self.put(rec)
        return len(recs)
