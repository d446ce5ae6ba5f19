"""lrqc tune through a TVM RPC tracker (--rpc HOST:PORT --key KEY): checking that the tracker
answers and has a server with the key, MetaSchedule's runner (local or through the tracker),
and compiled modules uploaded to the tracker's device in one session."""

from __future__ import annotations

import socket
import struct
import tempfile
import time
from pathlib import Path

from ..backend.compat import error_line, ms, rpc_base, tvm
from ..backend.compat import rpc as tvm_rpc
from ..backend.target import Target
from ..errors import LrqcError
from ..resources import enable_amx

TRACKER_WAIT_S = 10.0  # how long lrqc tune waits for a server with the key to register


def tracker_address(rpc: str, key: str | None) -> tuple[str, int]:
    """(host, port) of --rpc HOST:PORT; LrqcError when it is not that or --key is missing."""
    host, _, port = rpc.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or not key:
        raise LrqcError(f"--rpc {rpc!r}: expected HOST:PORT of an RPC tracker, with --key KEY")
    return host, int(port)


def check_tracker(rpc: str, key: str | None) -> None:
    """LrqcError unless an RPC tracker answers at rpc (HOST:PORT) and a server with this key
    is registered there (waited for up to TRACKER_WAIT_S): MetaSchedule's runner would
    otherwise fail every measurement, in threads that print tracebacks."""
    host, port = tracker_address(rpc, key)
    try:
        keys = _server_keys(host, port, rpc, key)
    except LrqcError:
        raise
    except (OSError, ValueError, RuntimeError, IndexError, AttributeError, struct.error) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else error_line(exc)
        raise LrqcError(f"--rpc {rpc}: no TVM RPC tracker answers there ({why})") from None
    if key not in keys:
        raise LrqcError(f"--rpc {rpc}: the tracker has no server with --key {key} (its servers: "
                        f"{', '.join(keys) or 'none'})")


def _server_keys(host: str, port: int, rpc: str, key: str) -> list[str]:
    """The keys of the servers registered at the tracker, asked until one is `key` or
    TRACKER_WAIT_S has passed (socket and protocol errors are check_tracker's)."""
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.settimeout(5)
        sock.sendall(struct.pack("<i", rpc_base.RPC_TRACKER_MAGIC))
        reply = rpc_base.recvall(sock, 4)
        if struct.unpack("<i", reply)[0] != rpc_base.RPC_TRACKER_MAGIC:
            raise LrqcError(f"--rpc {rpc}: what answers there is not a TVM RPC tracker")
        deadline = time.time() + TRACKER_WAIT_S
        while True:
            rpc_base.sendjson(sock, [rpc_base.TrackerCode.SUMMARY])
            summary = rpc_base.recvjson(sock)[1]
            keys = sorted({str(s.get("key", "")).split(":", 1)[-1]
                           for s in summary.get("server_info", [])})
            if key in keys or time.time() > deadline:
                return keys
            time.sleep(0.5)


def _amx_worker() -> None:
    enable_amx()


def runner(rpc: str | None, key: str | None, timeout: float) -> ms.Runner:
    """MetaSchedule's runner: on this host, or on the device of the tracker at rpc."""
    cfg = ms.runner.EvaluatorConfig(number=3, repeat=3, min_repeat_ms=50,
                                    enable_cpu_cache_flush=False)
    if not rpc:
        # the worker process asks for the AMX tile state before it runs a candidate (a no-op
        # answer elsewhere: candidates of other rules never touch tiles)
        return ms.runner.LocalRunner(timeout_sec=timeout, evaluator_config=cfg,
                                     initializer=_amx_worker)
    host, port = tracker_address(rpc, key)
    return ms.runner.RPCRunner(
        ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=key,
                            session_timeout_sec=int(timeout)), evaluator_config=cfg)


def remote_modules(exs: list[tvm.runtime.Executable], rpc: str, key: str | None, target: Target
                   ) -> tuple[list, object]:
    """The compiled modules exported, uploaded and loaded in one session of the tracker's
    device; and that session's device (its CPU, or its GPU for CUDA targets)."""
    host, port = tracker_address(rpc, key)
    sess = tvm_rpc.connect_tracker(host, port).request(key, session_timeout=300)
    mods = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, ex in enumerate(exs):
            lib = Path(tmp) / f"lrqc_candidate{n}.so"
            ex.export_library(str(lib))
            sess.upload(str(lib))
            mods.append(sess.load_module(lib.name))
    return mods, (sess.cuda(0) if target.is_cuda else sess.cpu())
