"""Recorded schedules: a MetaSchedule trace (the schedule steps lrqc tune found, as JSON) replayed
onto a fresh schedule of the same function, and a trace written back to plain JSON. What a
build needs to apply a tuning record (the pipeline replays them; lrqc.tuning records them)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from ..compat import TVM_ERRORS, Schedule, Trace, error_line, prim_func, te, tvm
from ..intrin import amx as intrin_amx
from ..intrin import cuda as intrin_cuda
from ..intrin import pairs as intrin_pairs
from ..intrin import stream as intrin_stream
from ..intrin import x86 as intrin_x86
from ..target import Target
from . import tiles


def register_intrinsics(trace_json: Any = None) -> None:
    """Every tensor intrinsic lrqc's schedules use (traces name them): the fixed ones, and the
    sized or parameterized ones that trace_json names (AMX tile blocks, streamed output tiles,
    AVX2 blocks over n k steps, the signed block, scale pairs: _sized)."""
    tiles.register_avx2()
    tiles.register_vnni()
    intrin_x86.register(intrin_x86.DP4A)
    for dt in intrin_cuda.ACC:
        intrin_cuda.register_all(dt)
    names = r"lrqc_(?:amx|stream|avx2|vnni)_[0-9a-z_]+"
    for name in set(re.findall(names, json.dumps(trace_json))):
        sized = _sized(name)
        if sized is not None:
            intrin_x86.register(*sized)


def _sized(name: str):
    """(name, maker) of a sized or parameterized intrinsic from its name (AMX tiles, streamed
    output tiles, AVX2 blocks over n k steps, the signed block, scale pairs), or None for
    another name."""
    for pattern, make in ((r"lrqc_amx_(\d+)x(\d+)x(\d+)_k(\d+)_u8s8s32", intrin_amx.tiles),
                          (r"lrqc_amx_zero_(\d+)x(\d+)x(\d+)_s32", intrin_amx.zero),
                          (r"lrqc_stream_(\d+)x(\d+)_p(\d+)_f32", intrin_stream.tile),
                          (r"lrqc_avx2_16x4x(\d+)_bytes_i16_u8s8s32", intrin_x86.bytes_steps)):
        m = re.fullmatch(pattern, name)
        if m:
            return make(*(int(g) for g in m.groups()))
    if name == intrin_x86.signed_block()[0]:
        return intrin_x86.signed_block()
    m = re.fullmatch(r"lrqc_(vnni|avx2)_scale_pairs_i16(?:_o(\d+))?_(u?int\d+)(?:_(u?int\d+))?",
                     name)
    if m:
        width, offset, sb, w = m.groups()
        return intrin_pairs.scale_pairs(int(offset or 0), sb, w or "int16", width == "avx2")
    return None


def replay(sch: Schedule, trace_json: Any) -> None:
    """Apply a recorded trace to a fresh schedule of the same function."""
    register_intrinsics(trace_json)
    Trace.apply_json_to_schedule(trace_json, sch)


def replay_error(tensors: Sequence[te.Tensor], target: Target, trace: Any) -> str | None:
    """None when the trace replays onto a fresh schedule of the TE function `tensors` under
    target (a lrqc.backend.target.Target), else why not: TVM's own checks of every schedule
    step refuse a record whose schedule was edited or belongs to another function."""
    try:
        with target.tvm():
            replay(Schedule(prim_func(tensors)), trace)
    except TVM_ERRORS as exc:  # the step TVM refused: the build keeps the hand schedule
        return error_line(exc)
    return None


def trace_to_json(trace: Trace) -> list:
    """A recorded trace as plain JSON (lists, strings, numbers): Trace.as_json() unwrapped."""
    return json.loads(json.dumps(_plain(trace.as_json())))


def _plain(x):
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if hasattr(x, "items"):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, tvm.tirx.IntImm):
        return int(x.value)
    if isinstance(x, tvm.tirx.FloatImm):
        return float(x.value)
    try:
        return [_plain(e) for e in x]
    except TypeError:  # not iterable: a TVM object without a JSON form
        return str(x)
