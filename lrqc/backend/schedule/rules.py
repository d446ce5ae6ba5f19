"""Schedule rules: modules in schedules/<family>/ (loaded from the data dir), tried in file
order. A rule module defines NAME, FAST (bool), MEASURED (where and how fast, a comment for
users), applies(plan, features) -> reason-or-None, and schedule(fn, sch, plan, tiles)."""

from __future__ import annotations

import importlib.util
from functools import cache

from ...resources import data_dir


@cache
def load_rules(family: str) -> tuple:
    folder = data_dir("schedules") / family
    mods = []
    for path in sorted(folder.glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"lrqc_schedules.{family}.{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mods.append(mod)
    return tuple(mods)


def choose(family: str, plan, features: set[str]):
    """(rule, skipped) where skipped lists (rule name, reason) of faster rules that did not apply."""
    skipped = []
    for rule in load_rules(family):
        reason = rule.applies(plan, features)
        if reason is None:
            return rule, skipped
        skipped.append((rule.NAME, reason))
    raise RuntimeError(f"no schedule rule applies in schedules/{family}: {skipped}")
