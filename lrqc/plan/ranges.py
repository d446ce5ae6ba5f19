"""Range analysis of the integer GEMM and the instructions it proves exact (no TVM here).

From the scheme alone, every code the GEMM multiplies lies in a known interval: A's stored codes
(the quantizer's integer range plus the storage offset that makes them unsigned bytes), B's
stored codes (signed, a byte or fewer bits each), over every K segment. From those intervals
follow the bounds of each partial sum an instruction forms, and so which instructions are exact:

  tdpbusd      AMX tiles: u8·s8 products summed in fours into int32 (as vpdpbusd, per tile
               element): exact for every byte code.
  vpdpbusd     u8·s8 products summed in fours into int32: exact for every byte code.
  vpmaddwd     bytes widened to int16, pair sums into int32: exact for every byte code.
  vpmaddubsw   u8·s8 products summed in pairs into int16, *saturating*: exact only when every
               pair sum a0·b0 + a1·b1 fits [-32768, 32767]. Where it does, int16 lanes can add
               further pair sums before widening (int16_steps of them, the bound times steps
               still inside int16).

Per-vector scales stored as integers times a row's (column's) float (two-level scales) make
every group's contribution an integer, Σ_g sA[g]·sB[g]·Σ_(k in g) (a - zA)·b; where each group's
sum and each product of the integer scales fit int16 and the whole sum fits int32, two groups
at a time go as int16 pairs through one vpdpwssd (scale_pairs), instead of a float scaling per
group.

rule_proof() is the text lrqc explain and the build report print for the chosen instruction;
instruction_proofs() gives every candidate's verdict."""

from __future__ import annotations

from dataclasses import dataclass

from ..frontend.model import Granularity, Quant
from ..reference.quant import int_range
from .model import KernelPlan
from .support import a_offset, code_limit

INT16 = (-(2**15), 2**15 - 1)


@dataclass(frozen=True)
class Interval:
    lo: int
    hi: int

    def __str__(self) -> str:
        return f"[{self.lo}, {self.hi}]"

    def times(self, other: Interval) -> Interval:
        c = [x * y for x in (self.lo, self.hi) for y in (other.lo, other.hi)]
        return Interval(min(c), max(c))

    def scaled(self, n: int) -> Interval:
        return Interval(self.lo * n, self.hi * n)

    def union(self, other: Interval) -> Interval:
        return Interval(min(self.lo, other.lo), max(self.hi, other.hi))

    def within(self, lo: int, hi: int) -> bool:
        return lo <= self.lo and self.hi <= hi


def _codes(q: Quant) -> Interval:
    """The integer codes of quantizer q before any storage offset."""
    if q.granularity == Granularity.PER_BLOCK or not q.is_int:
        lim = code_limit(q)
        return Interval(-lim, lim)
    return Interval(*int_range(q))


def a_codes(q: Quant) -> Interval:
    """A-side codes as the GEMM reads them: code + a_offset, unsigned bytes."""
    c, off = _codes(q), a_offset(q)
    return Interval(c.lo + off, c.hi + off)


def b_codes(q: Quant) -> Interval:
    """B-side codes as stored: code - 2^(b-1) for unsigned formats, signed."""
    c = _codes(q)
    off = 2 ** (q.bits - 1) if q.is_int and not q.signed else 0
    return Interval(c.lo - off, c.hi - off)


@dataclass(frozen=True)
class Ranges:
    """The proven intervals of one plan's integer GEMM (union over its K segments)."""

    a: Interval  # A-side codes, stored
    b: Interval  # B-side codes, stored
    product: Interval  # one product a·b
    pair: Interval  # a vpmaddubsw pair sum a0·b0 + a1·b1
    formats: str  # the formats, for the proof text

    @property
    def pair_exact(self) -> bool:
        """Whether a saturating int16 pair sum is exact."""
        return self.pair.within(*INT16)

    @property
    def int16_steps(self) -> int:
        """How many pair sums an int16 lane adds exactly (0 when one pair may saturate)."""
        bound = max(-self.pair.lo, self.pair.hi, 1)
        return (2**15 - 1) // bound if self.pair_exact else 0


def ranges(plan: KernelPlan) -> Ranges | None:
    """The plan's proven intervals; None for a float GEMM (no integer codes)."""
    if plan.float_path:
        return None
    pairs: list[tuple[Quant | None, Quant | None]] = [(sg.qa, sg.qb) for sg in plan.segments]
    pairs = pairs or [(plan.qa, plan.qb)]
    a = b = None
    fmts = []
    for qa, qb in pairs:
        if qa is None or qb is None:
            return None
        a = a_codes(qa) if a is None else a.union(a_codes(qa))
        b = b_codes(qb) if b is None else b.union(b_codes(qb))
        fmts.append(f"{qa.fmt} x {qb.fmt}")
    assert a is not None and b is not None
    prod = a.times(b)
    return Ranges(a, b, prod, prod.scaled(2), "; ".join(dict.fromkeys(fmts)))


@dataclass(frozen=True)
class ScalePairs:
    """The bounds of per-vector products with two-level integer scales on both operands."""

    group: Interval  # one group's sum of centered products Σ_(k in g) (a - zA)·b
    scales: int  # the largest product of the two integer scales
    groups: int  # G
    total: int  # the largest |Σ_g sA·sB·sum| over the G groups
    blocked: str = ""  # why the groups are scaled in float32 all the same ("": they need not)

    @property
    def exact(self) -> bool:
        """Whether group sums and scale products fit int16 and the total int32."""
        return (self.group.within(*INT16) and self.scales <= INT16[1]
                and self.total <= 2**31 - 1)

    @property
    def usable(self) -> bool:
        return self.exact and not self.blocked

    @property
    def verdict(self) -> str:
        return "not used" if self.exact and self.blocked else \
            "exact" if self.exact else "NOT exact"

    def why(self) -> str:
        """The bounds, and what blocks the pairs where something does."""
        return (f"integer scales as int16 pairs: group sums in {self.group}, scale products <= "
                f"{self.scales}; {self.groups} groups sum to at most {self.total} "
                f"({'inside' if self.total <= 2**31 - 1 else 'outside'} int32)"
                + (f"; {self.blocked}" if self.blocked else ""))


def scale_pairs(plan: KernelPlan) -> ScalePairs | None:
    """The bounds of the plan's per-vector product with two-level integer scales (uint scales
    of per_vector quantizers on A and B, the same V, integer codes), or None for other
    products. The group sums are those of A's codes minus its zero point (the GEMM's sums
    start from minus the zero correction). `blocked` says why the pairs are not used even so:
    A's zero points from the data (min-max), B's zero points, an odd number of groups, or
    residual terms."""
    qa, qb = plan.qa, plan.qb
    if plan.float_path or plan.segments or qa is None or qb is None or plan.groups < 2:
        return None
    if not all(q.is_int and q.granularity == Granularity.PER_VECTOR and
               q.scale.startswith("uint") for q in (qa, qb)) or qa.vector != qb.vector:
        return None
    group = _codes(qa).times(b_codes(qb)).scaled(plan.vector)
    scales = (2**qa.scale_bits - 1) * (2**qb.scale_bits - 1)
    total = plan.groups * scales * max(-group.lo, group.hi)
    blocked = ("A's zero points come from the data (min-max): its groups are scaled in "
               "float32; a signed format (or calibrate=maxabs for data >= 0) sums them in pairs"
               if plan.a_zero_static is None else
               "B's zero points (unsigned or min-max weights)" if plan.b_zero else
               f"an odd number of groups ({plan.groups})" if plan.groups % 2 else
               "residual terms (compensation)" if plan.compensated else "")
    return ScalePairs(group, scales, plan.groups, total, blocked)


def instruction_proofs(plan: KernelPlan) -> list[tuple[str, bool, str]]:
    """(instruction, exact, why) for each x86 integer instruction, from the plan's ranges, in
    the order the CPU rules prefer them."""
    r = ranges(plan)
    if r is None:
        return []
    if r.pair_exact:
        bytes_why = (f"pair sums a0·b0 + a1·b1 lie in {r.pair}, inside int16: no saturation "
                     f"(an int16 lane holds {r.int16_steps} of them)")
    else:
        bytes_why = f"pair sums reach {r.pair}, outside int16 {Interval(*INT16)}: it saturates"
    return [("tdpbusd", True, f"products {r.product} summed in fours into int32 tiles"),
            ("vpdpbusd", True, f"products {r.product} summed in fours into int32"),
            ("vpmaddubsw", r.pair_exact, bytes_why),
            ("vpmaddwd", True, f"bytes widened to int16, pair sums {r.pair} into int32")]


def proof(plan: KernelPlan, instruction: str) -> str:
    """The one-line proof (or refusal) of `instruction` for the plan."""
    r = ranges(plan)
    for name, exact, why in instruction_proofs(plan):
        if name == instruction and r is not None:
            return (f"{name} {'exact' if exact else 'NOT exact'}: A's codes {r.a} x B's codes "
                    f"{r.b}: {why}")
    return f"{instruction}: no integer ranges (float GEMM)"


def proof_text(plan: KernelPlan) -> str:
    """The explain section: the intervals and every instruction's verdict."""
    r = ranges(plan)
    if r is None:
        return "no integer GEMM (float path): no instruction to prove"
    lines = [f"A's codes {r.a}, B's codes {r.b} as the GEMM reads them ({r.formats});",
             f"one product in {r.product}"]
    lines += [f"  {name:<11} {'exact' if ok else 'NOT exact':<10} {why}"
              for name, ok, why in instruction_proofs(plan)]
    sp = scale_pairs(plan)
    if sp is not None:
        lines.append(f"  {'vpdpwssd':<11} {sp.verdict:<10} {sp.why()}")
    lines.append("x86 rules take the first exact instruction the target has: tdpbusd "
                 "(amx-int8 tiles), vpdpbusd (avx512vnni; avxvnni: 256-bit), vpmaddubsw "
                 "(avx2), vpmaddwd (avx2)")
    return "\n".join(lines)
