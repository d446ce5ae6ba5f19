"""Schedule rules: files in schedules/<family>/ (loaded from the data dir by path), tried in
file order. Each file defines one subclass of protocol.ScheduleRule."""

from __future__ import annotations

import importlib.util
import inspect
from functools import cache
from typing import TYPE_CHECKING

from ...plan.model import KernelPlan
from ...resources import data_dir
from .protocol import ScheduleRule

if TYPE_CHECKING:  # for annotations only: the target module imports TVM, this one does not
    from ..target import Target


@cache
def load_rules(family: str) -> tuple[ScheduleRule, ...]:
    """One instance of the rule of every file in schedules/<family>/, in file order."""
    folder = data_dir("schedules") / family
    rules = []
    for path in sorted(folder.glob("*.py")):
        name = f"lrqc_schedules.{family}.{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        found = [c for c in vars(mod).values() if inspect.isclass(c) and c.__module__ == name
                 and issubclass(c, ScheduleRule) and not inspect.isabstract(c)]
        if len(found) != 1:
            raise TypeError(f"{path}: defines {len(found)} schedule rules (ScheduleRule "
                            "subclasses), expected one")
        rule = found[0]()
        if rule.family != family:
            raise TypeError(f"{path}: rule {rule.name} is of family {rule.family!r}, not "
                            f"{family!r}")
        rules.append(rule)
    return tuple(rules)


def choose(family: str, plan: KernelPlan, target: Target
           ) -> tuple[ScheduleRule, list[tuple[str, str]]]:
    """(rule, skipped): the first rule of the family that applies to the plan on the target
    (lrqc.backend.target.Target), and (rule name, reason) of each faster rule that did not."""
    skipped = []
    for rule in load_rules(family):
        reason = rule.why_not(plan, target)
        if reason is None:
            return rule, skipped
        skipped.append((rule.name, reason))
    raise RuntimeError(f"no schedule rule applies in schedules/{family}: {skipped}")


FLOAT_RULE = "float32_tile"  # floats.float_gemm: products with a float operand, float fallback


def rule_of(plan: KernelPlan, rule: ScheduleRule) -> tuple[str, bool]:
    """(name, fast) reported for the plan's GEMM: on CPUs products with a float operand use
    the float32 tile, whatever the integer rule."""
    if plan.float_path and rule.family == "x86":
        return FLOAT_RULE, False
    return rule.name, rule.fast


def instruction_proof(plan: KernelPlan, rule_name: str, family: str) -> str | None:
    """Why the integer instruction of the named rule computes the plan exactly (the range
    proof of lrqc.plan.ranges), or None when the rule issues no x86 integer instruction."""
    rule = next((r for r in load_rules(family) if r.name == rule_name), None)
    return None if rule is None else rule.proof(plan)
