"""compile(): a scheme to a callable kernel through the stage table (stages.py), with the
texts of any stages printed or written to files on the way."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..backend import openmp
from ..backend.schedule.rules import rule_of
from ..backend.target import Target, resolve
from ..errors import LrqcError, UnsupportedScheme
from ..frontend.model import Scheme
from ..plan import names
from ..plan.buckets import m_range
from ..plan.names import tuned_functions
from ..runtime.assemble import assemble
from ..runtime.protocol import KernelLike
from .functions import hand_source
from .stages import EMITS, FILE_NAMES, Compilation, emits_for, link_now, run_stages

# records(plans, rule, target) -> (traces {(m, fn): trace JSON}, sources {(m, fn): text}):
# the tuning database's lookup (lrqc.tuning.records.recorded_traces), passed in by lrqc.compile
Records = Callable[..., tuple[dict, dict]]
THREADS = ("auto", "tvm", "openmp")


def check_emits(emit: Iterable[str], target: Target) -> tuple[str, ...]:
    """The emit names, checked against the target (CPU: llvm, asm; CUDA: cuda, ptx)."""
    emit = tuple(emit)
    have = emits_for(target)
    bad = [e for e in emit if e not in have]
    if bad:
        kind = "CUDA" if target.is_cuda else "CPU"
        raise LrqcError(f"--emit: {', '.join(bad)} not available for a {kind} target; choose "
                        f"from {', '.join(have)}" if all(e in EMITS for e in bad) else
                        f"--emit: unknown stage {bad[0]!r}; choose from {', '.join(have)}")
    return emit


def dump_folder(dump_dir: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """(dump_dir as a folder that exists, the outermost folder made for it or None), made with
    its parents where missing and checked before any stage runs; LrqcError naming the path
    where it cannot be made."""
    if not isinstance(dump_dir, (str, os.PathLike)):
        raise LrqcError(f"dump_dir: expected a folder path, got {type(dump_dir).__name__}")
    out = Path(dump_dir)
    made = next((p for p in reversed((out, *out.parents)) if not p.exists()), None)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise LrqcError(f"dump_dir: {out} exists and is not a folder") from None
    except OSError as exc:
        raise LrqcError(f"dump_dir: cannot make the folder {out}: {exc.strerror or exc}") from None
    return out, made


def check_threads(threads: str, target: Target) -> None:
    if threads not in THREADS:
        raise LrqcError(f"threads: expected one of {', '.join(THREADS)}, got {threads!r}")
    if threads == "openmp" and (target.is_cuda or target.host_lacks()):
        raise LrqcError("threads='openmp' runs the kernel on this CPU's OpenMP threads: it "
                        "needs a target this CPU runs (--target host), not "
                        f"{target.kind} {target.triple}".rstrip())


def load_for(threads: str, target: Target, c: Compilation, link: bool = True
             ) -> tuple[str, Any]:
    """(threads, the module the kernel calls): the compiled executable for TVM's pool (linked
    now where `link`), the library loaded with its loops on OpenMP for "openmp"; "auto" falls
    back to TVM's pool where the library cannot be made (no C compiler with OpenMP)."""
    chosen = openmp.choose(target, c.parts) if threads == "auto" else threads
    if chosen != "tvm":
        try:
            return chosen, openmp.load(c.executable)
        except LrqcError:
            if threads == "openmp":
                raise
            chosen = "tvm"
    if link:
        link_now(c)
    return chosen, c.executable


def compile(scheme: Scheme, M: int | tuple[int, int] | range | str, N: int, K: int,
            target: str | dict | Target | None = None, *, traces: dict | None = None,
            records: Records | None = None, emit: Iterable[str] = (),
            on_text: Callable[[str, str], None] | None = None,
            dump_dir: str | os.PathLike[str] | None = None,
            threads: str = "auto", link: bool = True) -> KernelLike:
    """A Kernel (ChainKernel for LPLR, LRAMM) for scheme at M x K @ K x N on `target` (None:
    this CPU). M is a row count, or a range lo..hi given as (lo, hi), range(lo, hi + 1) or
    "lo..hi": one code path is compiled per bucket (4, 8, .., 64, then powers of two and 1.5
    times them, and hi) and each call runs the smallest that fits.

    traces: {(bucket m, function): trace JSON} replayed instead of the hand schedules (lrqc
    tune's checks); records: where to look traces up instead (the tuning database);
    emit: stage texts passed to on_text(name, text) as the stages run; dump_dir: a folder
    that receives the text of every stage (ir.txt, plan.txt, te.txt, tir.txt, llvm.txt and
    asm.txt, or cuda.txt and ptx.txt); threads: where a CPU kernel's parallel loops run,
    "tvm" (TVM's thread pool), "openmp" (the process's OpenMP threads, lrqc.backend.openmp;
    this CPU's targets only) or "auto" (lrqc.backend.openmp.choose); link: False leaves a
    kernel on TVM's pool unlinked until its first call (a kernel that is only exported)."""
    target = resolve(target)
    check_threads(threads, target)
    if scheme.output == "float64":  # the kernels' epilogues and glue compute in float32
        raise UnsupportedScheme(f"scheme '{scheme.name}': output: float64 is computed by the "
                                "reference only (lrqc.reference.matmul); the compiled kernels "
                                "produce float32, float16 or bfloat16")
    emit = check_emits(emit, target)
    out, made = (None, None) if dump_dir is None else dump_folder(dump_dir)
    lo, _ = m_range(M)
    c = Compilation(scheme, M, N, K, target, records=records if traces is None else None,
                    traces={("", m, fn): t for (m, fn), t in (traces or {}).items()})
    texts: dict[str, str] = {}

    def collect(name: str, text: str) -> None:
        texts[name] = text
        if on_text is not None and name in emit:
            on_text(name, text)

    wanted = emits_for(target) if dump_dir is not None else emit
    try:
        c = run_stages(c, wanted, collect)
    except BaseException:  # nothing to dump: the folders made for it go again
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise
    if out is not None:
        for name, text in texts.items():
            try:
                (out / FILE_NAMES[name]).write_text(text + "\n")
            except OSError as exc:
                raise LrqcError(f"dump_dir: cannot write {out / FILE_NAMES[name]}: "
                                f"{exc.strerror or exc}") from None
    reports = [rule_of(part.plans[-1], rule) for part, rule in zip(c.parts, c.rules, strict=True)]
    threads, module = load_for(threads, target, c, link)
    kernel = assemble(scheme, c.parts, reports, module, target, lo, N, K)
    kernel.threads = threads
    if len(c.parts) == 1 and not c.parts[0].prefix:
        kernel.schedules = _schedule_sources(c)
    return kernel


def _schedule_sources(c: Compilation) -> dict[str, str]:
    """symbol -> where the schedule of each tuned function came from (the build reports it):
    a tuning record, the CUDA schedule's own account, or the hand schedule."""
    out = {}
    part, rule = c.parts[0], c.rules[0]
    for p in part.plans:
        for fn in tuned_functions(p):
            sym = names.symbol(fn, p.m)
            how = c.sources.get(("", p.m, fn))
            if how is None and c.target.is_cuda:
                how = str(c.module[sym].attrs["lrqc_schedule"])
            out[sym] = how or hand_source(fn, p, rule)
    return out
