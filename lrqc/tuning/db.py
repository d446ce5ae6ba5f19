"""The tuning database: one JSON record per tuned kernel function, in the user cache directory
(LRQC_CACHE_DIR overrides; else $XDG_CACHE_HOME/lrqc, else ~/.cache/lrqc), under tuning/.

A record is keyed by everything that decides whether its schedule is valid and fast: the
canonical scheme text, the function and its compiled sizes (M bucket, N, K), the full target
(its TVM dict and the CPU features it enables) and the lrqc, TVM and LLVM versions. The key is
hashed (sha256 of its canonical JSON) into the file name, so a record can only be found by a
build whose key is identical: records never leak across targets or versions. No TVM here."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import LrqcError

RECORD_FIELDS = ("key", "trace", "tuned_ms", "hand_ms", "trials", "valid", "rejected",
                 "created", "wall_s")


def cache_dir() -> Path:
    env = os.environ.get("LRQC_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lrqc"


def tuning_dir() -> Path:
    return cache_dir() / "tuning"


def make_key(scheme_text: str, function: str, m: int, n: int, k: int, target: dict,
             features, versions: dict) -> dict:
    return {"scheme": scheme_text, "function": function, "m": int(m), "n": int(n), "k": int(k),
            "target": target, "features": sorted(features), "versions": dict(versions)}


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
                f"tuned {self.tuned_ms:.3f} ms vs hand {self.hand_ms:.3f} ms "
                f"({self.hand_ms / self.tuned_ms:.2f}x)  trials {self.trials}, "
                f"rejected {self.rejected}  [scheme {_scheme_name(k['scheme'])}]")


def _scheme_name(text: str) -> str:
    import re

    m = re.search(r"scheme\s+(\w+)", text)
    return m.group(1) if m else "?"


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
        path = self.records_dir / f"{key_hash(key)}.json"
        if not path.exists():
            return None
        rec = _load(path)
        return rec if rec.key == key else None  # a hash collision is never a match

    def put(self, rec: Record) -> Path:
        self.records_dir.mkdir(parents=True, exist_ok=True)
        path = self.records_dir / f"{rec.hash}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(rec), indent=1, sort_keys=True))
        tmp.replace(path)  # atomic: an interrupted write never leaves half a record
        return path

    def paths(self) -> list[Path]:
        return sorted(self.records_dir.glob("*.json")) if self.records_dir.exists() else []

    def read(self, path: Path) -> Record:
        """The record in one file (LrqcError when it is corrupt)."""
        return _load(path)

    def all(self) -> list[Record]:
        return [_load(p) for p in self.paths()]

    def remove(self, rec: Record) -> None:
        (self.records_dir / f"{rec.hash}.json").unlink(missing_ok=True)

    def export(self, path: str | Path, records=None) -> int:
        recs = self.all() if records is None else records
        Path(path).write_text("".join(json.dumps(asdict(r), sort_keys=True) + "\n" for r in recs))
        return len(recs)

    def import_(self, path: str | Path) -> int:
        n = 0
        for line_no, line in enumerate(Path(path).read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = _record(json.loads(line))
            except (json.JSONDecodeError, LrqcError) as exc:
                raise LrqcError(f"{path}:{line_no}: not a tuning record ({exc})") from None
            self.put(rec)
            n += 1
        return n


def _load(path: Path) -> Record:
    try:
        return _record(json.loads(path.read_text()))
    except (json.JSONDecodeError, LrqcError) as exc:
        raise LrqcError(f"{path}: corrupt tuning record ({exc}); remove it or run "
                        "`lrqc cache prune --corrupt`") from None


def _record(d) -> Record:
    if not isinstance(d, dict) or any(f not in d for f in RECORD_FIELDS):
        missing = [f for f in RECORD_FIELDS if not isinstance(d, dict) or f not in d]
        raise LrqcError(f"missing fields {', '.join(missing)}")
    key = d["key"]
    need = ("scheme", "function", "m", "n", "k", "target", "features", "versions")
    if not isinstance(key, dict) or any(f not in key for f in need):
        raise LrqcError("its key lacks scheme/function/dims/target/versions")
    return Record(**{f: d[f] for f in RECORD_FIELDS})
