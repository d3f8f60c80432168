"""Micro-benchmark of the broker's per-heartbeat validation steps (no sockets, one core).

    python bench/bench_decode.py [--count 200000] [--runs 5]

Times, per heartbeat, each step `pushd.broker.service.Broker._handle_command` runs on a real
heartbeat from the emulator's encoder, and the same JSON step with a JSONDecoder built once
(what `pushd.protocol.frames._decode_json_object` would cost if it did not pass keyword
arguments to ``json.loads``, which builds a new JSONDecoder on every call), and pyzmq's costs
on the receive path: a NOBLOCK receive on an empty socket (the ``zmq.Again`` that ends every
drain), and a 3-frame receive with ``copy=False`` plus ``.bytes`` versus ``copy=True``
(inproc, so neither the I/O thread nor Curve is counted; each includes a cheap poll). Prints:

    RESULT name=decode_step_us value=.. unit=us step=STEP       (median of --runs)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

import zmq
from pushd_bench.common import median, result
from pushd_bench.wire import HeartbeatEncoder

from pushd.protocol.frames import (
    _decode_json_object,
    _finite_float,
    _reject_constant,
    open_frames,
    parse_header,
    verify_signature,
)
from pushd.protocol.messages import NodeIdentity
from pushd.protocol.timestamps import check_skew, format_timestamp

_ONCE = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def per_call(fn: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        fn()
    return (time.perf_counter() - started) / count * 1e6


def zmq_steps(frames: list[bytes]) -> dict[str, Callable[[], object]]:
    """pyzmq costs on the broker's receive path, over inproc (no I/O thread, no Curve)."""
    context = zmq.Context.instance()
    router = context.socket(zmq.ROUTER)
    router.rcvhwm = 0
    router.bind("inproc://bench-decode")
    dealer = context.socket(zmq.DEALER)
    dealer.sndhwm = 0
    dealer.connect("inproc://bench-decode")
    empty = context.socket(zmq.PULL)
    empty.bind("inproc://bench-decode-empty")

    def refill() -> None:
        for _ in range(1000):
            dealer.send_multipart(frames)

    def recv_again() -> None:
        try:
            empty.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            pass

    def recv(copy: bool) -> Callable[[], object]:
        def one() -> object:
            if not router.poll(0):
                refill()
            got = router.recv_multipart(zmq.NOBLOCK, copy=copy)
            return [f.bytes for f in got] if not copy else got
        return one

    return {
        "zmq_recv_empty_again": recv_again,
        "zmq_recv3_copy_false_then_bytes": recv(False),
        "zmq_recv3_copy_true": recv(True),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    key = os.urandom(32)
    who = NodeIdentity(node="emu-00042", client="emu-00042.emulated", org="pushdorg",
                       incarnation_id="3f0c8a52-6a51-4d1e-9d55-8d0f0c6b1e77")
    frames = HeartbeatEncoder(who, key).frames(17, None, "idle", format_timestamp())
    envelope = open_frames(frames)
    raw_body = frames[1]
    stamp = envelope.body["timestamp"]
    steps: dict[str, Callable[[], object]] = {
        "open_frames_total": lambda: open_frames(frames),
        "parse_header": lambda: parse_header(frames[0]),
        "json_loads_as_now": lambda: _decode_json_object(raw_body),
        "json_decoder_built_once": lambda: _ONCE.decode(raw_body.decode("utf-8")),
        "hmac_verify": lambda: verify_signature(envelope, key),
        "check_skew": lambda: check_skew(stamp, max_skew=300.0),
    }
    steps.update(zmq_steps(frames))
    figures: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.runs):
        for name, fn in steps.items():
            figures[name].append(per_call(fn, args.count))
    for name, values in figures.items():
        result("decode_step_us", median(values), "us", step=name, runs=args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
