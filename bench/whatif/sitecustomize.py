"""What-if patches for benchmarks only: NOT part of pushd. Loaded when a benchmark runs with
``--what-if`` (PYTHONPATH=bench/whatif), to measure changes proposed to the broker's owners
before anyone edits the broker. Each patch keeps the patched function's behaviour exactly:

1. pushd.protocol.frames._decode_json_object: one JSONDecoder built at import instead of
   ``json.loads(text, parse_constant=..., parse_float=...)``, which constructs a new
   JSONDecoder (and its scanner) on every call.
2. pushd.broker.service.Broker._on_command: check ``EVENTS & POLLIN`` before each NOBLOCK
   receive instead of ending every drain with a raised ``zmq.Again`` (pyzmq builds the
   exception and maps errno through an Enum: ~10-20 us here).
3. ("pool", only when named) playhouse.pool: peewee's PostgreSQL pool runs ``SELECT 1`` on every
   checkout of an idle connection (a round trip per store call made outside a connection
   block: 13 % of the broker's samples in a 5,000-node storm). Here a connection checked in the
   last 5 s is trusted without the round trip; older ones are still probed, so a PostgreSQL
   restart is still noticed.

PUSHD_BENCH_WHATIF_PATCHES=frames,service,pool picks the patches (default: frames,service).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import sys
from typing import Any


def _patch_frames(frames: Any) -> None:
    decoder = json.JSONDecoder(parse_constant=frames._reject_constant,
                               parse_float=frames._finite_float)
    protocol_error = frames.ProtocolError

    def _decode_json_object(raw: bytes) -> dict[str, Any]:
        try:
            body = decoder.decode(raw.decode("utf-8"))
        except RecursionError:
            raise protocol_error("bad_json", "body nests too deeply") from None
        except ValueError as exc:
            raise protocol_error("bad_json", str(exc)[:200]) from None
        if not isinstance(body, dict):
            raise protocol_error("bad_json",
                                 f"body is a JSON {type(body).__name__}, not an object")
        return body

    frames._decode_json_object = _decode_json_object


def _patch_service(service: Any) -> None:
    zmq = service.zmq
    limit = service.MAX_MESSAGES_PER_TURN

    def _on_command(self: Any, kind: str) -> None:
        socket = self._sockets[kind]
        for _ in range(limit):
            if not socket.get(zmq.EVENTS) & zmq.POLLIN:
                return
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                self._handle_command(kind, frames)
            except service.ProtocolError as err:
                self._drop(err.reason, err.detail)
            except Exception:
                service.log.exception("error handling a command message")
                self.counters["internal_error"] += 1

    service.Broker._on_command = _on_command


def _patch_pool(pool: Any) -> None:
    import time

    checked: dict[int, float] = {}
    original = pool._PooledPostgresqlDatabase._is_closed

    def _is_closed(self: Any, conn: Any) -> bool:
        if conn.closed or getattr(conn, "broken", False):
            return True
        now = time.monotonic()
        if now - checked.get(id(conn), -1e9) < 5.0 and \
                self._adapter.txn_status(conn) == self._adapter.txn_idle:
            return False
        checked[id(conn)] = now
        return bool(original(self, conn))

    pool._PooledPostgresqlDatabase._is_closed = _is_closed


_ALL = {"frames": ("pushd.protocol.frames", _patch_frames),
        "service": ("pushd.broker.service", _patch_service),
        "pool": ("playhouse.pool", _patch_pool)}
_PATCHES = dict(_ALL[name] for name in os.environ.get(
    "PUSHD_BENCH_WHATIF_PATCHES", "frames,service").split(",") if name in _ALL)


class _PatchingFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in _PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module: Any) -> None:
            original(module)
            _PATCHES[name](module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


sys.meta_path.insert(0, _PatchingFinder())
