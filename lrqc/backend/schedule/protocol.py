"""The schedule-rule protocol (after TVM dlight's ScheduleRule): one class per file in
schedules/<family>/, tried in file order by rules.choose. A rule says whether it applies to a
kernel plan on a target (why_not), how the TE must write the integer GEMM for its instruction
(formulation), and schedules the functions it handles, by hand or with a tuning knob."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from ...plan import names, ranges
from ...plan.model import KernelPlan

if TYPE_CHECKING:  # for annotations only: the target module imports TVM, this one does not
    from ..target import Target

# knob(name, candidates, hand choice) -> the value a schedule uses: the hand choice, or under
# tuning a MetaSchedule sample of the candidates (an ExprRV)
Knob = Callable[[str, tuple, int], Any]


class Formulation(enum.Enum):
    """How the TE writes the GEMM for the rule's instruction."""

    PLAIN = "plain"  # u8 x s8 products summed per k (vpdpbusd, dp4a, plain loops)
    PAIRS = "pairs"  # k pairs summed into int16x2 lanes (vpmaddwd on widened bytes)
    S8 = "s8"  # s8 x s8 products, A's u8 codes shifted by 128 (int8 tensor cores)
    SIGNED = "signed"  # A's u8 codes less 128 times s8 per k (AVX2: vpsignb, vpmaddubsw)
    HALF = "half"  # float GEMMs: 16-bit float products, float32 sums (fp16/bf16 tensor cores)


class ScheduleRule(ABC):
    """A schedule rule. Class attributes: name (reported to users: builds, tuning records),
    family ("x86": every LLVM target, or "cuda"), fast (whether it is the target's fast path:
    lrqc build warns otherwise), measured (where and how fast, for users), formulation,
    instruction (the x86 integer instruction of its GEMM, whose exactness lrqc.plan.ranges
    proves for each plan; "" when it issues plain loops).

    knob(name, candidates, hand) -> value picks each tunable choice of a schedule (None: the
    hand choices; lrqc tune passes a sampler); variant: one of variants(plan) (None: the
    hand one, which the rule chooses)."""

    name: ClassVar[str]
    family: ClassVar[str]
    fast: ClassVar[bool] = False
    measured: ClassVar[str] = ""
    instruction: ClassVar[str] = ""  # the integer instruction its GEMM issues ("" for loops)
    formulation: ClassVar[Formulation] = Formulation.PLAIN
    # whether its schedule lets per-group int32 sums start from a value, minus the group's
    # zero correction (te.gemm's start), instead of 0: not where an instruction zeroes them
    # (AMX tiles) or dlight reduces them across threads (CUDA)
    sums_start: ClassVar[bool] = False
    # whether an output summed over K groups may start from the bias (te.epilogue's grouped):
    # not where dlight reduces it across threads (it needs the sum's identity)
    output_start: ClassVar[bool] = True
    # whether its schedule sums per-vector groups with two-level integer scales as int16 pairs
    # (te.gemm's scale_pairs, where plan.signature.scale_pairs holds): AVX-512 VNNI + BW
    # (vpdpwssd), AVX2 (vpmaddwd); pairs_instruction names the instruction in its proof
    scale_pairs: ClassVar[bool] = False
    pairs_instruction: ClassVar[str] = "vpdpwssd"
    # whether its targets have 32 vector registers of 16 float32 lanes (AVX-512): the outer
    # products (te.outer_dots) take their wide form there, 16 registers of sums, and the row
    # dot products and Rᵀ Q their larger register blocks (lanes.DOT_BLOCK, passes.COL_PIECE,
    # COL_ROWS); elsewhere AVX2's narrow forms (Rᵀ Q: te.outer_dots.outer_columns), and the
    # smaller blocks where those do not apply
    wide_floats: ClassVar[bool] = False

    @abstractmethod
    def why_not(self, plan: KernelPlan, target: Target) -> str | None:
        """Why the rule does not apply to the plan on the target (lrqc.backend.target.Target:
        its features), or None when it does. The reason is shown to users."""

    @abstractmethod
    def schedule(self, fn: str, sch: Any, plan: KernelPlan, knob: Knob | None = None,
                 variant: str | None = None) -> None:
        """Schedule function fn of the plan in sch (a function handles() accepts)."""

    def knobs(self, plan: KernelPlan) -> dict:
        """The tuning space: name -> (candidates, hand choice); {} when nothing is tunable."""
        return {}

    def variants(self, plan: KernelPlan) -> tuple:
        """Structural alternatives (loop orders) lrqc tune explores as separate design spaces;
        the hand one (variant None) is the rule's choice, usually the first."""
        return (None,)

    def unit_safe(self, plan: KernelPlan) -> tuple:
        """Knobs that are pure split factors: their value may be 1 where the hand choice is
        not (every schedule step sees the same loops at every value)."""
        return ()

    def proof(self, plan: KernelPlan) -> str | None:
        """Why the rule's integer instruction computes the plan exactly (lrqc.plan.ranges), for
        explain's plan stage and the build report; None when it issues no x86 instruction."""
        if not self.instruction or plan.float_path:
            return None
        return ranges.proof(plan, self.instruction) + self.pairs_proof(plan)

    def pairs_proof(self, plan: KernelPlan) -> str:
        """"; <pairs instruction> exact: ..." where the rule sums the plan's groups as int16
        pairs of integer scales, else ""."""
        sp = ranges.scale_pairs(plan) if self.scale_pairs else None
        if sp is None or not sp.usable:
            return ""
        return f"; {self.pairs_instruction} {sp.verdict}: {sp.why()}"

    def handles(self, fn: str, plan: KernelPlan) -> bool:
        """Whether the rule schedules function fn itself (CUDA: the others get lrqc's
        per-block schedule or dlight): the integer GEMM and its integer sums by default."""
        return fn in (names.FN_GEMM, names.FN_ACC, names.FN_GEMM_GROUPS)

    def __repr__(self) -> str:
        return f"<schedule rule {self.name}>"
