"""What-if patches for benchmarks only: NOT part of pushd. Loaded when a benchmark runs with
``--what-if`` (PYTHONPATH=bench/whatif), to measure changes proposed to the broker's owners
before anyone edits the broker. Each patch keeps the patched function's behaviour exactly:

1. pushd.protocol.frames._decode_json_object: one JSONDecoder built at import instead of
   ``json.loads(text, parse_constant=..., parse_float=...)``, which constructs a new
   JSONDecoder (and its scanner) on every call.
2. pushd.broker.service.Broker._on_command: check ``EVENTS & POLLIN`` before each NOBLOCK
   receive instead of ending every drain with a raised ``zmq.Again`` (pyzmq builds the
   exception and maps errno through an Enum: ~10-20 us here).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
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


_PATCHES = {"pushd.protocol.frames": _patch_frames, "pushd.broker.service": _patch_service}


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
