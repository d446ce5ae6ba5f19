"""Running a CPU kernel's parallel loops on the process's OpenMP threads instead of TVM's own
thread pool.

A compiled library calls its parallel loops through two function pointers that TVM's loader
fills with its thread pool's entry points (`__TVMBackendParallelLaunch`,
`__TVMBackendParallelBarrier`). `attach` points them at two small C functions that run the
same loop bodies in an OpenMP parallel region: on the threads of the libgomp already loaded in
the process (torch's, where torch runs its operators on OpenMP). Inside a model, lrqc's layers
then share torch's threads, which are awake after torch's operators, instead of waking TVM's
sleeping workers onto cores torch's threads still spin on. The loop bodies and their split
into tasks are the same either way: the numbers do not change.

The C functions are compiled once per process with the system's C compiler (`CC`, else `cc`)
and `-fopenmp`; `launcher()` raises LrqcError saying why where that fails."""

from __future__ import annotations

import ctypes
import os
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import LrqcError
from ..resources import loaded_libgomp
from .compat import TVM_ERRORS, error_line, load_module

SOURCE = r"""
#include <omp.h>
#include <stdint.h>
#include <stddef.h>
/* TVM's TVMParallelGroupEnv and FTVMParallelLambda */
typedef struct { void* sync_handle; int32_t num_task; } lrqc_env;
typedef int (*lrqc_lambda)(int task_id, lrqc_env* penv, void* cdata);
int64_t lrqc_omp_launches = 0;  /* parallel loops run here (tests read it) */

int lrqc_omp_launch(lrqc_lambda f, void* cdata, int num_task) {
  int n = num_task > 0 ? num_task : omp_get_max_threads();
  int err = 0;
  __atomic_add_fetch(&lrqc_omp_launches, 1, __ATOMIC_RELAXED);
  if (n <= 1 || omp_in_parallel()) {  /* one task, or called from a parallel region: here */
    lrqc_env env = {NULL, 1};
    return f(0, &env, cdata);
  }
  #pragma omp parallel num_threads(n)
  {
    lrqc_env env = {NULL, omp_get_num_threads()};
    int r = f(omp_get_thread_num(), &env, cdata);
    if (r != 0) {
      #pragma omp atomic write
      err = r;
    }
  }
  return err;
}

int lrqc_omp_barrier(int task_id, lrqc_env* penv) {
  (void)task_id; (void)penv;
  #pragma omp barrier
  return 0;
}

/* part(0) .. part(n - 1), spread over the threads of one parallel region (a team smaller than
   n runs several parts per thread); the host's per-call work between compiled functions */
typedef void (*lrqc_part)(int part);
int64_t lrqc_omp_parts = 0;  /* calls of lrqc_omp_each (tests read it) */

void lrqc_omp_each(lrqc_part f, int n) {
  __atomic_add_fetch(&lrqc_omp_parts, 1, __ATOMIC_RELAXED);
  int team = n < omp_get_max_threads() ? n : omp_get_max_threads();  /* OMP_NUM_THREADS */
  if (team <= 1 || omp_in_parallel()) {
    for (int i = 0; i < n; i++) f(i);
    return;
  }
  #pragma omp parallel num_threads(team)
  {
    for (int i = omp_get_thread_num(); i < n; i += omp_get_num_threads()) f(i);
  }
}
"""
LAUNCH, BARRIER = "__TVMBackendParallelLaunch", "__TVMBackendParallelBarrier"
_LOCK = threading.Lock()
_SHIM: list[ctypes.CDLL] = []  # the compiled C functions, loaded once per process
_FAILED: dict[str, str] = {}  # compiler command -> why it could not build them (tried once)


def _compile(out: Path) -> None:
    cc = shlex.split(os.environ.get("CC") or "cc")
    src = out.with_suffix(".c")
    src.write_text(SOURCE)
    cmd = [*cc, "-O2", "-fPIC", "-shared", "-fopenmp", str(src), "-o", str(out)]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LrqcError(f"threads='openmp' needs a C compiler with OpenMP ({' '.join(cc)}: "
                        f"{exc}); set CC, or use threads='tvm'") from None
    if run.returncode != 0:
        why = (run.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise LrqcError(f"threads='openmp': compiling the OpenMP launcher with "
                        f"{' '.join(cc)} -fopenmp failed ({why}); set CC, or use "
                        "threads='tvm'")


def choose(target: Any, parts: Any) -> str:
    """threads="auto" for a kernel of these parts (plan.lower's: .plans, .prefix): "openmp"
    where the process already runs an OpenMP pool (a libgomp is loaded, e.g. torch's) and the
    kernel is one product (not a chain: LPLR and LRAMM run numpy products between their
    parts), so that its loops join those threads instead of waking TVM's; else "tvm". A
    low-rank term on A runs its per-call numpy work on the same threads (each). Measured on 2
    cores: direct int8 calls 1.6-1.9x faster on OpenMP threads (TVM's workers sleep between
    loops), B-only low-rank, sparse and dense terms 3-9 % faster; LRQMM with A's terms 0-30 %
    faster alone and 17-30 % faster right after a torch operator (on TVM's pool they wait
    for torch's spinning threads)."""
    plain = len(parts) == 1 and not parts[0].prefix
    here = not target.is_cuda and not target.host_lacks()
    return "openmp" if plain and here and loaded_libgomp() else "tvm"


def launches() -> int:
    """How many parallel loops the launcher has run in this process."""
    return ctypes.c_int64.in_dll(launcher(), "lrqc_omp_launches").value


def part_runs() -> int:
    """How many times `each` has been called in this process (its parts on the OpenMP
    threads, or in turn on the calling thread for one part or inside a parallel region)."""
    return ctypes.c_int64.in_dll(launcher(), "lrqc_omp_parts").value


_PART = ctypes.CFUNCTYPE(None, ctypes.c_int)


def each(fn: Callable[[int], Any], parts: int) -> list:
    """[fn(0), ..., fn(parts - 1)] run on the OpenMP threads, spread over a team of at most
    omp_get_max_threads() (the host's per-call numpy work of a kernel whose loops run there:
    lrqc.runtime.linalg.each). The launcher releases the GIL; each part takes it back to run
    fn, and numpy releases it again inside BLAS, so the parts' products run side by side as on
    a Python thread pool, on the threads that would otherwise spin. An exception a part raises
    is raised here (an interruption, KeyboardInterrupt or SystemExit, before any other). A
    signal handler's exception raised as a part starts (Ctrl-C while that thread waited for
    the GIL) escapes the part's own handler and ctypes only prints it: such a part did not
    run, and KeyboardInterrupt is raised here rather than return a result without it."""
    shim = launcher()
    got: list = [None] * parts
    done = [False] * parts
    errors: list[BaseException] = []

    def part(i: int) -> None:
        try:
            got[i] = fn(i)
            done[i] = True
        except BaseException as exc:  # re-raised by the caller's thread below
            errors.append(exc)

    shim.lrqc_omp_each(_PART(part), parts)
    if errors:
        raise next((e for e in errors if not isinstance(e, Exception)), errors[0])
    if not all(done):
        raise KeyboardInterrupt(f"interrupted: {done.count(False)} of {parts} parts of the "
                                "host's per-call work did not run")
    return got


def launcher() -> ctypes.CDLL:
    """The loaded launcher (compiled on the first call); LrqcError if it cannot be built."""
    with _LOCK:
        if not _SHIM:
            cc = os.environ.get("CC") or "cc"
            if cc in _FAILED:  # each compiler is tried once per process
                raise LrqcError(_FAILED[cc])
            with tempfile.TemporaryDirectory(prefix="lrqc-omp-") as tmp:
                lib = Path(tmp) / "liblrqc_omp.so"
                try:
                    _compile(lib)
                except LrqcError as exc:
                    _FAILED[cc] = str(exc)
                    raise
                shim = ctypes.CDLL(str(lib))  # stays loaded after the file is gone
                shim.lrqc_omp_each.restype = None
                shim.lrqc_omp_each.argtypes = [_PART, ctypes.c_int]
                _SHIM.append(shim)
        return _SHIM[0]


def attach(library: str) -> None:
    """Point the parallel-loop entry points of the library at `library` (already loaded by
    TVM: the same handle) at the OpenMP launcher."""
    shim = launcher()
    lib = ctypes.CDLL(library)
    for slot, fn in ((LAUNCH, shim.lrqc_omp_launch), (BARRIER, shim.lrqc_omp_barrier)):
        try:
            ptr = ctypes.c_void_p.in_dll(lib, slot)
        except ValueError:  # a library without parallel loops (or barriers) lacks the slot
            continue
        ptr.value = ctypes.cast(fn, ctypes.c_void_p).value


def load(executable: Any) -> Any:
    """A compiled executable written to a shared library, loaded, its parallel loops attached
    to OpenMP (the library file is removed once loaded: the process keeps its mapping)."""
    launcher()  # the compiler's error first, before the export's
    with tempfile.TemporaryDirectory(prefix="lrqc-lib-") as tmp:
        path = str(Path(tmp) / "lib.so")
        try:
            executable.export_library(path)
        except TVM_ERRORS as exc:  # the C++ compiler or linker TVM runs failed
            raise LrqcError(f"threads='openmp': writing the kernel's library failed "
                            f"({error_line(exc)}); use threads='tvm'") from None
        module = load_module(path)
        attach(path)
    return module
