"""One control connection for all of a gevent API worker's requests, replies matched by id.

    client = MultiplexedBrokerClient(run_dir, timeout=3.0, context=zmq.green.Context())
    client.request({"op": "status"}) -> dict     as BrokerClient.request (control_client.py):
                                                 the reply, or BrokerUnavailable after `timeout`
    client.close()

Why: BrokerClient gives each request in flight a DEALER socket of its own and keeps up to 64
idle ones, so a worker's open files grew by two (the socket's signal and its ipc connection,
plus one in the broker) whenever its concurrency reached a new peak: the 30-minute soak saw
such steps (bench/RESULTS.md). Here a worker holds one DEALER, whatever its concurrency: every
request is sent on it with its random id, one reader greenlet receives every reply and hands it
to the greenlet waiting for that id. The broker already echoes the id and routes each reply to
the connection the request came from (a ROUTER), so nothing changes on its side.

What per-request sockets gave for free is kept on purpose:
- a request whose caller gave up is never delivered later (a start_job answered 503 must not
  start the job when the broker comes back): the socket has ZMQ_IMMEDIATE, so nothing queues
  while the broker is down (the send waits for the connection, within the timeout), and what
  sits in the connection when the broker dies is dropped with it;
- a reply that arrives after its caller timed out is dropped: nobody waits for its id.
Replies larger than MAX_REPLY_BYTES make libzmq drop the connection (it reconnects at once):
the requests then in flight time out instead of one.

gevent only (the reader is a greenlet): the API workers. Threads and tests use BrokerClient.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from typing import Any

import gevent
import zmq.green as zmq
from gevent.event import AsyncResult

from pushd.broker.control_client import MAX_REPLY_BYTES, BrokerUnavailable, control_address

SEND_RETRY = 0.02  # seconds between send attempts while the connection comes up


class MultiplexedBrokerClient:
    def __init__(self, run_dir: str | os.PathLike[str], timeout: float = 3.0, *,
                 context: Any) -> None:
        self._context = context
        self._address = control_address(run_dir)
        self.timeout = timeout
        self._socket: Any = None
        self._reader: gevent.Greenlet | None = None
        self._waiting: dict[str, AsyncResult[dict[str, Any]]] = {}

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        request_id = secrets.token_hex(8)
        payload = json.dumps({**request, "id": request_id}).encode()
        deadline = time.monotonic() + self.timeout
        waiter: AsyncResult[dict[str, Any]] = AsyncResult()
        self._waiting[request_id] = waiter
        try:
            self._send(payload, deadline, request.get("op"))
            try:
                reply = waiter.get(timeout=max(0.0, deadline - time.monotonic()))
            except gevent.Timeout:
                reply = None
            if reply is None:
                raise self._unavailable(request.get("op"))
            return reply
        finally:
            del self._waiting[request_id]

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.kill(block=False)
        socket, self._socket = self._socket, None
        if socket is not None:
            socket.close(0)

    def _open(self) -> Any:
        if self._socket is None:
            socket = self._context.socket(zmq.DEALER)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.IMMEDIATE, 1)
            socket.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
            socket.connect(self._address)
            self._socket = socket
        if self._reader is None or self._reader.dead:
            self._reader = gevent.spawn(self._read, self._socket)
        return self._socket

    def _send(self, payload: bytes, deadline: float, op: Any) -> None:
        socket = self._open()
        while True:
            try:
                socket.send(payload, zmq.NOBLOCK)
                return
            except zmq.Again:
                # No connection to the broker (ZMQ_IMMEDIATE): wait for one, within the timeout.
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._unavailable(op) from None
                # In slices, trying the send after each: the socket's file descriptor signals
                # an edge, and the reader greenlet waiting on it for replies may take the one
                # that said "connected"; a poll for the whole timeout then sleeps through it and
                # a fresh client's first request failed though the broker was up (12 of 20
                # fresh clients at a 0.3 s timeout: bench/RESULTS.md, eighth session).
                socket.poll(int(min(left, SEND_RETRY) * 1000) + 1, zmq.POLLOUT)

    def _read(self, socket: Any) -> None:
        while True:
            try:
                frames = socket.recv_multipart()
            except zmq.ZMQError:  # closed
                return
            try:
                reply = json.loads(frames[-1])
            except ValueError:
                continue
            if not isinstance(reply, dict):
                continue
            request_id = reply.pop("id", None)
            waiter = self._waiting.get(request_id) if isinstance(request_id, str) else None
            if waiter is not None and not waiter.ready():
                waiter.set(reply)

    def _unavailable(self, op: Any) -> BrokerUnavailable:
        return BrokerUnavailable(f"no reply from the broker within {self.timeout:g} s ({op})")
