"""Client end of the broker's control socket (``ipc://{run_dir}/control.sock``), for API workers.

    control_path(run_dir) / events_path(run_dir) -> Path      the two ipc socket files
    control_address(run_dir) / events_address(run_dir) -> str  their ``ipc://`` addresses
    client = BrokerClient(run_dir, timeout=3.0, zmq_module=zmq, context=None)
    client.request({"op": "status"}) -> dict     one request, its reply (a JSON object)
    client.admit(org_name, org_id, node, ccpk) -> dict
    client.start_job(org_id, job_id) -> dict
    client.abort_job(org_id, job_id) -> dict
    client.node_states(org_id, nodes | None) -> dict
    client.status() -> dict
    client.forget_session_key(org_id, node) -> dict   the key was deleted in the store
    client.close()                               close the idle pooled sockets
    BrokerUnavailable       raised when no reply arrives within `timeout` seconds (answer 503)

Pass ``zmq_module=zmq.green`` and a green context in gevent workers: every call then yields to
other greenlets while it waits. Each request has a DEALER socket to itself, so concurrent
greenlets never read each other's replies: sockets are kept in a small idle pool
(MAX_IDLE_SOCKETS) and reused, because opening one per request cost ~9 % of an API worker
during a config-fetch storm (64: a 5,000-node storm keeps ~50 config requests in flight per
worker, and with 16 the rest opened and closed a socket each, ~8 % of the worker again); a
socket whose request timed out is closed instead of returned, so a reply that arrives late is
dropped with it instead of confusing the next request.

Wire format: one frame of UTF-8 JSON each way. The client adds ``"id"`` (a random hex string)
to the request; the broker echoes it in the reply, and a reply with another id is ignored.
Error replies are ``{"ok": false, "error": "<code>", "message": "..."}`` and are returned, not
raised (pushd.api.broker.BrokerGateway turns them into exceptions).

Imports only pyzmq (no peewee, no gevent): safe to import anywhere.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import zmq as _zmq

MAX_REPLY_BYTES = 16 * 1024 * 1024
MAX_IDLE_SOCKETS = 64


class BrokerUnavailable(Exception):
    """The broker did not answer in time (not running, restarting or overloaded)."""


def control_path(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / "control.sock"


def events_path(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / "events.sock"


def control_address(run_dir: str | os.PathLike[str]) -> str:
    return f"ipc://{control_path(run_dir)}"


def events_address(run_dir: str | os.PathLike[str]) -> str:
    return f"ipc://{events_path(run_dir)}"


class BrokerClient:
    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        timeout: float = 3.0,
        *,
        zmq_module: Any = None,
        context: Any = None,
    ) -> None:
        self._zmq = zmq_module or _zmq
        self._context = context or self._zmq.Context.instance()
        self._address = control_address(run_dir)
        self.timeout = timeout
        # Idle connected sockets. Taking and returning one never yields (list pop/append), so
        # greenlets and threads never share a socket while a request is in flight.
        self._idle: list[Any] = []

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        request_id = secrets.token_hex(8)
        payload = json.dumps({**request, "id": request_id}).encode()
        socket = self._idle.pop() if self._idle else self._connect()
        try:
            reply = self._exchange(socket, payload, request_id, request.get("op"))
        except BaseException:
            socket.close(0)
            raise
        if len(self._idle) < MAX_IDLE_SOCKETS:
            self._idle.append(socket)
        else:
            socket.close(0)
        return reply

    def close(self) -> None:
        """Close the idle sockets (requests in flight close theirs when they end)."""
        while self._idle:
            self._idle.pop().close(0)

    def _connect(self) -> Any:
        zmq = self._zmq
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
        socket.connect(self._address)
        return socket

    def _exchange(self, socket: Any, payload: bytes, request_id: str, op: Any) -> dict[str, Any]:
        zmq = self._zmq
        socket.send(payload)
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not socket.poll(int(left * 1000) + 1, zmq.POLLIN):
                raise BrokerUnavailable(
                    f"no reply from the broker within {self.timeout:g} s ({op})"
                )
            frames = socket.recv_multipart()
            try:
                reply = json.loads(frames[-1])
            except ValueError:
                continue
            # A reply to an earlier request on this socket cannot be here (a socket that timed
            # out is closed), but the id check keeps that true even if it were.
            if isinstance(reply, dict) and reply.get("id") == request_id:
                reply.pop("id", None)
                return reply

    def admit(self, org_name: str, org_id: str, node: str, ccpk: str | None) -> dict[str, Any]:
        return self.request(
            {"op": "admit", "org_name": org_name, "org_id": org_id, "node": node, "ccpk": ccpk}
        )

    def start_job(self, org_id: str, job_id: str) -> dict[str, Any]:
        return self.request({"op": "start_job", "org_id": org_id, "job_id": job_id})

    def abort_job(self, org_id: str, job_id: str) -> dict[str, Any]:
        return self.request({"op": "abort_job", "org_id": org_id, "job_id": job_id})

    def node_states(self, org_id: str, nodes: list[str] | None) -> dict[str, Any]:
        return self.request({"op": "node_states", "org_id": org_id, "nodes": nodes})

    def status(self) -> dict[str, Any]:
        return self.request({"op": "status"})

    def forget_session_key(self, org_id: str, node: str) -> dict[str, Any]:
        return self.request({"op": "forget_session_key", "org_id": org_id, "node": node})
