"""The server heartbeat from a process of its own (setting `heartbeat_process`).

    python -m pushd.broker.heartbeat_relay --inbound ipc://RUN_DIR/heartbeat.sock \\
        --outbound tcp://ADDRESS:PORT [--backlog 4096]

    HeartbeatRelay(context, run_dir, outbound, *, backlog)   the broker's handle:
        .start(timeout)   spawn the relay (it dies with the broker: PR_SET_PDEATHSIG through
                          pushd.server.supervisor's launcher) and wait until both its sockets
                          are bound; RelayFailed with its error output if it could not bind
        .publisher        the broker's PUB socket, connected to the relay's inbound side
        .check()          restart the relay if it died (called once a second)
        .close()

Why: every node holds two TCP connections to its server, its SUB to the heartbeat PUB and its
DEALER to the command ROUTER, and a process may hold a limited number of open files (20,000
on the machines pushd is measured on). With the heartbeat published from this process, the
broker holds one descriptor per node instead of two, so one server holds about twice the nodes
(a cluster member that takes over a dead member's nodes needs that room). The relay is a
libzmq proxy (XSUB <- broker's PUB over ipc, XPUB -> nodes over TCP): heartbeats are signed by
the broker and only forwarded here; the nodes' subscriptions travel the other way. It prints
"ready" once bound, or the bind error and exits 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import zmq

log = logging.getLogger(__name__)

INBOUND_NAME = "heartbeat.sock"
START_TIMEOUT = 10.0
BIND_RETRY_FOR = 5.0  # seconds: a relay of the previous broker may still hold the port


class RelayFailed(RuntimeError):
    pass


def inbound_address(run_dir: Path) -> str:
    return f"ipc://{Path(run_dir) / INBOUND_NAME}"


class HeartbeatRelay:
    def __init__(self, context: zmq.Context, run_dir: Path, outbound: str, *,
                 backlog: int) -> None:
        self._context = context
        self._inbound = inbound_address(run_dir)
        self._outbound = outbound
        self._backlog = backlog
        self._process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.publisher = context.socket(zmq.PUB)
        self.publisher.linger = 0
        self.publisher.connect(self._inbound)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        from pushd.server.supervisor import guarded_command

        command = [sys.executable, "-m", "pushd.broker.heartbeat_relay", "--inbound",
                   self._inbound, "--outbound", self._outbound, "--backlog", str(self._backlog)]
        process = subprocess.Popen(
            guarded_command(command, os.getpid()), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None
        line = b""
        deadline = time.monotonic() + timeout
        import select

        while time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], 0.1)
            if ready:
                line = process.stdout.readline()
                break
            if process.poll() is not None:
                break
        if line.strip() != b"ready":
            process.kill()
            _, err = process.communicate(timeout=5)
            raise RelayFailed(
                f"the heartbeat process could not bind {self._outbound}: "
                f"{err.decode('utf-8', 'replace').strip()[-500:] or 'no answer'}"
            )
        self._process = process

    def check(self) -> None:
        process = self._process
        if process is None or process.poll() is None:
            return
        log.error("heartbeat process exited with %s; starting it again", process.returncode)
        self.restarts += 1
        self._process = None
        try:
            self.start()
        except RelayFailed as err:
            log.error("%s", err)

    def close(self) -> None:
        self.publisher.close(0)
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()


def _bind(socket: Any, address: str) -> None:
    deadline = time.monotonic() + BIND_RETRY_FOR
    while True:
        try:
            socket.bind(address)
            return
        except zmq.ZMQError as err:
            if err.errno != zmq.EADDRINUSE or time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pushd-heartbeat")
    parser.add_argument("--inbound", required=True)
    parser.add_argument("--outbound", required=True)
    parser.add_argument("--backlog", type=int, default=4096)
    args = parser.parse_args(argv)
    context = zmq.Context()
    inbound = context.socket(zmq.XSUB)
    outbound = context.socket(zmq.XPUB)
    for socket in (inbound, outbound):
        socket.linger = 0
    outbound.setsockopt(zmq.BACKLOG, args.backlog)
    try:
        if args.inbound.startswith("ipc://"):
            Path(args.inbound[len("ipc://"):]).unlink(missing_ok=True)
        _bind(inbound, args.inbound)
        _bind(outbound, args.outbound)
    except zmq.ZMQError as err:
        print(f"{args.outbound}: {err}", file=sys.stderr, flush=True)
        return 2
    print("ready", flush=True)
    try:
        zmq.proxy(inbound, outbound)
    except (KeyboardInterrupt, zmq.ContextTerminated):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
