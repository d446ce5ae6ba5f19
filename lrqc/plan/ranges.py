"""Range analysis of the integer GEMM and the instructions it proves exact (no TVM here).

From the scheme alone, every code the GEMM multiplies lies in a known interval: A's stored codes
(the quantizer's integer range plus the storage offset that makes them unsigned bytes), B's
stored codes (signed, a byte or fewer bits each), over every K segment. From those intervals
follow the bounds of each partial sum an instruction forms, and so which instructions are exact:

  tdpbusd      AMX tiles: u8·s8 products summed in fours into int32 (as vpdpbusd, per tile
               element): exact for every byte code.
  vpdpbusd     u8·s8 products summed in fours into int32: exact for every byte code.
  vpsignb      A's codes read as signed bytes (a - 128), their signs moved onto B's codes
               (vpsignb), then vpmaddubsw of |a - 128| by those: exact where those pair sums
               fit int16 and B has no code -128 (which vpsignb cannot negate): every signed
               A code against symmetric int8 weights (2·128·127 = 32512).
  vpmaddwd     bytes widened to int16, pair sums into int32: exact for every byte code.
  vpmaddubsw   u8·s8 products summed in pairs into int16, *saturating*: exact only when every
               pair sum a0·b0 + a1·b1 fits [-32768, 32767]. Where it does, int16 lanes can add
               further pair sums before widening (int16_steps of them, the bound times steps
               still inside int16).

Per-vector scales stored as integers times a row's (column's) float (two-level scales) make
every group's contribution an integer, Σ_g sA[g]·sB[g]·Σ_(k in g) (a - zA)·b; where each group's
sum and each product of the integer scales fit int16 and the whole sum fits int32, two groups
at a time go as int16 pairs through one vpdpwssd (AVX-512; on AVX2 one vpmaddwd per 8 columns)
(scale_pairs), instead of a float scaling per group.

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


def a_codes(q: Quant, offset: int | None = None) -> Interval:
    """A-side codes as the GEMM reads them: code + offset (default a_offset(q), as quantize_a
    stores them), unsigned bytes."""
    c, off = _codes(q), a_offset(q) if offset is None else offset
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
    def signed_pair(self) -> Interval:
        """A pair sum of the signed formulation: (a0 - 128)·b0 + (a1 - 128)·b1."""
        return Interval(self.a.lo - 128, self.a.hi - 128).times(self.b).scaled(2)

    @property
    def signed_exact(self) -> bool:
        """Whether the signed formulation's int16 pair sums are exact (and vpsignb can negate
        every code of B)."""
        return self.signed_pair.within(*INT16) and self.b.lo > -128

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
    # one segment: A's codes with the plan's own offset (a sparse term's dense formulation
    # stores its codes + 128 whatever their width); segments: each quantizer's (quantize_a)
    offset = None if pairs else plan.a_offset
    pairs = pairs or [(plan.qa, plan.qb)]
    a = b = None
    fmts = []
    for qa, qb in pairs:
        if qa is None or qb is None:
            return None
        a = a_codes(qa, offset) if a is None else a.union(a_codes(qa, offset))
        b = b_codes(qb) if b is None else b.union(b_codes(qb))
        fmts.append(f"{qa.fmt} x {qb.fmt}")
    assert a is not None and b is not None
    sp = scale_pairs(plan)
    if sp is not None and sp.usable and sp.data:  # quantize_a stores centred codes
        a = a.union(sp.centred_codes)
    prod = a.times(b)
    return Ranges(a, b, prod, prod.scaled(2), "; ".join(dict.fromkeys(fmts)))


@dataclass(frozen=True)
class ScalePairs:
    """The bounds of per-vector products with two-level integer scales on both operands."""

    group: Interval  # one group's integer sum as the pairs take it: Σ_(k in g) (a - zA)·b (where
    #   A's zero points come from the data, of centred codes: |a - zA| <= reach)
    scales: int  # the largest product of the two integer scales
    groups: int  # G
    total: int  # the largest |Σ_g sA·sB·Σ (a - zA)·b| over a chunk of groups (data zero
    #   points: of centred groups, |a - zA| <= reach)
    blocked: str = ""  # why the groups are scaled in float32 all the same ("": they need not)
    zeros: int = 0  # the largest |cs| (B's column sums per group, int16 in pairs) where the
    #   group sums lose a zero correction offset·cs before their scaling, subtracted in int16
    #   (modulo 2^16: exact as the corrected sum fits); 0: none
    offset: int = 0  # that fixed correction: A's signed codes' storage offset, or with data
    #   zero points the centre, the top of `centred` (a value no group outside it can have)
    data: bool = False  # A's zero points come from the data: quantize_a stores the codes of
    #   the groups whose zero correction zc lies within `centred` as a - zc + offset, and
    #   offset as their zc (te centre); a call with any other group runs gemm_groups
    reach: int = 0  # data zero points: the largest |a - zc| of a centred group
    stored: Interval = Interval(0, 0)  # A's codes as stored
    vector: int = 0  # V
    chunk: int = 0  # groups per int32 total (a divisor of G; the chunks' totals are added in
    #   float32)
    narrow: tuple[str, str] = ("int16", "int16")  # how pack stores B's integer scales and its
    #   column sums in pairs (sqb, cqb): bytes where they fit (the GEMM widens them as it loads
    #   them), halving what a call of few rows reads besides the codes

    @property
    def exact(self) -> bool:
        """Whether group sums, scale products (and the column sums of the zero corrections)
        fit int16 and the total int32."""
        return (self.group.within(*INT16) and self.scales <= INT16[1]
                and self.total <= 2**31 - 1 and self.zeros <= INT16[1])

    @property
    def usable(self) -> bool:
        return self.exact and not self.blocked

    @property
    def verdict(self) -> str:
        return "not used" if self.exact and self.blocked else \
            "exact" if self.exact else "NOT exact"

    @property
    def centred(self) -> Interval:
        """The zero corrections zc (zero point plus storage offset) of the groups whose codes
        quantize_a stores centred: every stored code within `reach` of zc."""
        return Interval(self.stored.hi - self.reach, self.stored.lo + self.reach)

    @property
    def centred_codes(self) -> Interval:
        """A's codes as the GEMM reads them in centred groups: a - zc + offset (a byte)."""
        return Interval(self.offset - self.reach, self.offset + self.reach)

    def why(self) -> str:
        """The bounds (naming each that fails), and what blocks the pairs where something
        does."""
        def bound(ok: bool, room: str) -> str:
            return "" if ok else f" (outside {room})"

        zeros = (f"; each group sum loses its zero correction {self.offset}·cs in int16 "
                 f"before its scaling (|cs| <= {self.zeros}"
                 f"{bound(self.zeros <= INT16[1], 'int16')})" if self.zeros else "")
        zeros += (f"; A's zero points from the data: codes stored centred, a - zc + "
                  f"{self.offset}, in the groups whose zc lies in {self.centred} (|a - zc| <= "
                  f"{self.reach}); a call with any other group scales each group in float32"
                  if self.data else "")
        chunks = f" (the {self.groups} in chunks)" if self.chunk < self.groups else ""
        return (f"integer scales as int16 pairs: group sums in {self.group}"
                f"{bound(self.group.within(*INT16), 'int16')}, scale products <= "
                f"{self.scales}{bound(self.scales <= INT16[1], 'int16')}; {self.chunk} groups"
                f"{chunks} sum to at most {self.total} "
                f"({'inside' if self.total <= 2**31 - 1 else 'outside'} int32)" + zeros
                + (f"; {self.blocked}" if self.blocked else ""))


def scale_pairs(plan: KernelPlan) -> ScalePairs | None:
    """The bounds of the plan's per-vector product with two-level integer scales (uint scales
    of per_vector quantizers on A and B, the same V, integer codes), or None for other
    products. The GEMM sums A's stored codes times B's per group, then subtracts each group's
    zero correction offset·cs in int16, exact modulo 2^16 since the corrected sum
    Σ (a - zA)·b fits int16: offset is A's storage offset where its zero point is fixed by the
    format, and for min-max zero points from the data a centre, their codes stored centred on
    them (te centre) where they lie within `reach`.
    `blocked` says why the pairs are not used even so: B's zero points, an odd number of
    groups, or residual terms."""
    qa, qb = plan.qa, plan.qb
    if plan.float_path or plan.segments or qa is None or qb is None or plan.groups < 2:
        return None
    if not all(q.is_int and q.granularity == Granularity.PER_VECTOR and
               q.scale.startswith("uint") for q in (qa, qb)) or qa.vector != qb.vector:
        return None
    b, v = b_codes(qb), plan.vector
    scales = (2**qa.scale_bits - 1) * (2**qb.scale_bits - 1)
    dev_b = max(-b.lo, b.hi)
    stored, static = a_codes(qa), plan.a_zero_static
    span = stored.hi - stored.lo
    if static is None:  # min-max: centred codes within `reach` of their zero points
        unit = scales * v * dev_b  # a group's largest contribution per unit of |a - zc|
        chunk = _chunk(plan.groups, unit * span, ZERO_CHUNK)
        reach = min((255 - stored.lo) // 2, INT16[1] // (v * dev_b),
                    (2**31 - 1) // (chunk * unit))
        group = Interval(-reach, reach).times(b).scaled(v)
    else:
        group, reach = _codes(qa).times(b).scaled(v), 0
        chunk = _chunk(plan.groups, scales * max(-group.lo, group.hi), plan.groups)
    offset = stored.lo + reach if static is None else static  # the top of `centred`
    total = chunk * scales * max(-group.lo, group.hi)
    blocked = ("B's zero points (unsigned or min-max weights)" if plan.b_zero else
               f"an odd number of groups ({plan.groups})" if plan.groups % 2 else
               "residual terms (compensation)" if plan.compensated else
               f"no even divisor of the {plan.groups} groups from {MIN_CHUNK} up keeps a "
               "chunk's total inside int32" if chunk < min(plan.groups, MIN_CHUNK) else
               f"A's min-max codes span {span}, more than the {reach} a centred code may lie "
               "from its zero point" if static is None and reach < span else "")
    sums = b.scaled(v)  # B's column sums over a group
    narrow = ("uint8" if 2**qb.scale_bits - 1 <= 255 else "int16",
              "int8" if sums.within(-128, 127) else "int16")
    return ScalePairs(group, scales, plan.groups, total, blocked, v * dev_b if offset else 0,
                      offset, static is None, reach, stored, v, chunk, narrow)


def pairs_of(plan: KernelPlan) -> ScalePairs:
    """scale_pairs(plan) of a plan known to sum its groups as int16 pairs (signature
    .scale_pairs)."""
    sp = scale_pairs(plan)
    assert sp is not None, "the plan has no two-level integer scales"
    return sp


# groups per int32 total where A's zero points come from the data: the longer the chunks, the
# nearer centred codes must lie to their zero points (reach)
ZERO_CHUNK = 64
# the fewest groups per total worth the pairs: shorter chunks add a float32 scaling per few
# groups, as many as scaling each group costs (G = 2 x a prime would give chunks of 2)
MIN_CHUNK = 8


def _chunk(groups: int, one: int, most: int) -> int:
    """The groups of one int32 total: the largest even divisor of G (all of them where they
    fit) of at most `most` whose totals stay inside int32, one group adding up to `one`; 2
    where none does (the total is then refused: ScalePairs.exact)."""
    fit = [c for c in range(2, min(groups, most) + 1, 2)
           if groups % c == 0 and c * one <= 2**31 - 1]
    return max(fit, default=2)


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
    a8 = Interval(r.a.lo - 128, r.a.hi - 128)
    signed_why = (f"A's codes less 128 in {a8}, their signs moved onto B's: pair sums "
                  f"(a0 - 128)·b0 + (a1 - 128)·b1 in {r.signed_pair}")
    signed_why += (", inside int16: no saturation" if r.signed_pair.within(*INT16) else
                   f", outside int16 {Interval(*INT16)}: it saturates")
    signed_why += "" if r.b.lo > -128 else "; B's code -128 has no byte negation"
    return [("tdpbusd", True, f"products {r.product} summed in fours into int32 tiles"),
            ("vpdpbusd", True, f"products {r.product} summed in fours into int32"),
            ("vpmaddubsw", r.pair_exact, bytes_why),
            ("vpsignb", r.signed_exact, signed_why),
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
    sp = scale_pairs(plan)
    centred = (f" (A's min-max codes stored centred: a - zc + {sp.offset})"
               if sp is not None and sp.usable and sp.data else "")
    lines = [f"A's codes {r.a}, B's codes {r.b} as the GEMM reads them ({r.formats}){centred};",
             f"one product in {r.product}"]
    lines += [f"  {name:<11} {'exact' if ok else 'NOT exact':<10} {why}"
              for name, ok, why in instruction_proofs(plan)]
    if sp is not None:
        lines.append(f"  {'vpdpwssd':<11} {sp.verdict:<10} {sp.why()}")
    pairs = ("; x86_vnni (vpdpwssd) and x86_avx2_bytes (vpmaddwd) sum the groups of two-level "
             "integer scales as int16 pairs where exact" if sp is not None else "")
    lines.append("x86 rules take the first exact instruction the target has: tdpbusd "
                 "(amx-int8 tiles), vpdpbusd (avx512vnni; avxvnni: 256-bit), vpmaddubsw "
                 "(avx2), vpsignb (avx2), vpmaddwd (avx2)" + pairs)
    return "\n".join(lines)
