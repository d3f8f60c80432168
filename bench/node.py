"""One emulated node: protocol state, its two sockets and its answers to the server.

    Behaviour(exit_code=0, output_bytes=0, delay=0.0, lines_per_second=0.0)
        what every emulated command does: finishes after `delay` seconds with `exit_code`
        (0 -> ``succeeded``, else ``failed``) and, when the job asked for capture, `output_bytes`
        bytes of stdout (cut to the server's max_body_size, the cut reported as the real client
        does in ``truncated``). With `lines_per_second` (and capture) it also prints that many
        lines a second while it runs, each ``NAME N WALL`` (WALL: time.time() when printed),
        sent live the way pushd's client does (pushd_client.output: TailBuffer + LiveStream, as
        `output` messages) when the server advertises live output; the result then carries
        what was printed.
    EmulatedNode(index, name, org, key, behaviour, job_stats, decoder=None)
        `decoder`: the worker's shared pushd_bench.wire.CommandDecoder (one per node if None)
        .identity                 NodeIdentity (a fresh incarnation id per emulator run)
        .configure(config, session_key, dealer, sub)   after a config fetch; resets sequence
        .detach() -> [sockets]    forget the sockets (the worker closes them)
        .restart()                what a restarted client process is: a new incarnation id, no
                                  job (one it had is lost with the process), no output buffers
        .heartbeat_frames(timestamps) -> [header, body]
        .on_command(frames, now, wall) -> list[list[bytes]]   the frames to send back
        .finish_job(wall) -> list[bytes] | None                the result, when running
        .next_print: float | None  monotonic time the running job prints its next line
        .print_line(now, wall) -> list[list[bytes]]   print it; the live chunks now due
        .flush_due(now) -> float | None               when the next live chunk is due
        .live_chunks(now, final=False) -> list[list[bytes]]
        .online(now) -> bool      command channel answered and server heartbeats fresh
        .job_stats: JobStats      shared per worker; updated as commits/runs/results go by

Stock-client behaviour (original-client-and-knife.md 2.5-2.9): ``commit`` when idle ->
``ack_commit``, else ``nack_commit``; ``run`` for the committed job -> ``ack_run`` then the
result; ``run`` for anything else -> ``nack_run``; ``abort`` -> ``aborted`` and idle. Every
emulated node accepts every command (there is no whitelist to check).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import zmq
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from pushd_bench.wire import (
    TIMESTAMPS,
    CommandDecoder,
    HeartbeatEncoder,
    ReplyEncoder,
    TimestampCache,
)
from pushd_client.output import LiveStream, TailBuffer

from pushd.protocol.config import NodeConfig
from pushd.protocol.frames import encode
from pushd.protocol.messages import NodeIdentity, node_output, node_result

RESULT_HEADROOM = 2048  # body bytes kept free for the result's other fields


@dataclass(frozen=True)
class Behaviour:
    exit_code: int = 0
    output_bytes: int = 0
    delay: float = 0.0
    lines_per_second: float = 0.0


@dataclass
class JobRecord:
    """What one worker saw of one job (wall-clock times, so processes can be compared)."""

    commits: int = 0
    acked_runs: int = 0
    results: int = 0
    first_commit: float | None = None
    last_commit: float | None = None
    first_run: float | None = None
    last_ack_run: float | None = None
    last_result: float | None = None

    def merge(self, other: dict[str, Any]) -> None:
        self.commits += other["commits"]
        self.acked_runs += other["acked_runs"]
        self.results += other["results"]
        self.first_commit = _min(self.first_commit, other["first_commit"])
        self.last_commit = _max(self.last_commit, other["last_commit"])
        self.first_run = _min(self.first_run, other["first_run"])
        self.last_ack_run = _max(self.last_ack_run, other["last_ack_run"])
        self.last_result = _max(self.last_result, other["last_result"])


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass
class JobStats:
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    keep: int = 50

    def record(self, job_id: str) -> JobRecord:
        found = self.jobs.get(job_id)
        if found is None:
            if len(self.jobs) >= self.keep:
                self.jobs.pop(next(iter(self.jobs)))
            found = self.jobs[job_id] = JobRecord()
        self.dirty.add(job_id)
        return found

    def take_changes(self) -> dict[str, dict[str, Any]]:
        """The jobs touched since the last call (their counts since then), for the parent."""
        out = {}
        for job_id in self.dirty:
            record = self.jobs.get(job_id)
            if record is not None:
                out[job_id] = dict(record.__dict__)
                self.jobs[job_id] = JobRecord()  # counts are sent as deltas
        self.dirty.clear()
        return out


class EmulatedNode:
    __slots__ = (
        "_buffer",
        "_capture",
        "_decoder",
        "_encoder",
        "_lines",
        "_live",
        "_replies",
        "_timestamps",
        "answered",
        "behaviour",
        "config",
        "dealer",
        "fetch_failures",
        "fetching",
        "finish_at",
        "identity",
        "index",
        "job_id",
        "job_state",
        "job_stats",
        "key",
        "last_server_beat",
        "name",
        "next_print",
        "reconfigure_at",
        "sequence",
        "session_key",
        "sub",
    )

    def __init__(
        self,
        index: int,
        name: str,
        org: str,
        key: RSAPrivateKey,
        behaviour: Behaviour,
        job_stats: JobStats,
        decoder: CommandDecoder | None = None,
    ) -> None:
        self.index = index
        self.name = name
        self.key = key
        self.behaviour = behaviour
        self.job_stats = job_stats
        self.identity = NodeIdentity(node=name, client=f"{name}.emulated", org=org,
                                     incarnation_id=str(uuid.uuid4()))
        self.config: NodeConfig | None = None
        self.session_key = b""
        self.dealer: zmq.Socket | None = None
        self.sub: zmq.Socket | None = None
        self._encoder: HeartbeatEncoder | None = None
        self._replies: ReplyEncoder | None = None
        self._decoder = decoder if decoder is not None else CommandDecoder()
        self._timestamps = TIMESTAMPS  # shared: formatted once a second per process
        self.sequence = 0
        self.job_state = "idle"
        self.job_id: str | None = None
        self.finish_at: float | None = None
        self._capture = False
        self.answered = False  # the server said something on this command socket
        self.last_server_beat = -1e18
        self.reconfigure_at: float | None = None
        self.fetching = False
        self.fetch_failures = 0
        self._buffer: TailBuffer | None = None
        self._live: LiveStream | None = None
        self._lines = 0
        self.next_print: float | None = None

    # -- connection ---------------------------------------------------------------------------

    def configure(self, config: NodeConfig, session_key: bytes, dealer: zmq.Socket,
                  sub: zmq.Socket) -> None:
        self.config = config
        self.session_key = session_key
        self.dealer, self.sub = dealer, sub
        self._encoder = HeartbeatEncoder(self.identity, session_key)
        self._replies = ReplyEncoder(self.identity, session_key)
        self.sequence = 0
        self.answered = False

    def detach(self) -> list[zmq.Socket]:
        sockets = [s for s in (self.dealer, self.sub) if s is not None]
        self.dealer = self.sub = None
        self.answered = False
        return sockets

    def restart(self) -> None:
        # A stock client that restarts knows nothing of its old process: the server sees a new
        # incarnation and settles whatever job the old one had.
        self.identity = NodeIdentity(node=self.identity.node, client=self.identity.client,
                                     org=self.identity.org, incarnation_id=str(uuid.uuid4()))
        self.config = None
        self._encoder = None
        self.job_state, self.job_id, self.finish_at = "idle", None, None
        self.next_print = None
        self._buffer = self._live = None
        self._capture = False
        self.last_server_beat = -1e18

    def online(self, now: float) -> bool:
        config = self.config
        if config is None or self.dealer is None or not self.answered:
            return False
        return now - self.last_server_beat <= config.offline_threshold * config.interval

    # -- messages -----------------------------------------------------------------------------

    def _next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence

    def heartbeat_frames(self, timestamps: TimestampCache) -> list[bytes]:
        assert self._encoder is not None
        return self._encoder.frames(self._next_sequence(), self.job_id, self.job_state,
                                    timestamps.now())

    def _reply(self, kind: str, job_id: str | None) -> list[bytes]:
        # Byte-identical to encode(node_reply(...)) (tests/integration/test_emulator.py).
        assert self._replies is not None
        return self._replies.frames(kind, self._next_sequence(), job_id,
                                    self._timestamps.now())

    def on_command(self, frames: list[bytes], now: float, wall: float) -> list[list[bytes]]:
        config = self.config
        if config is None:
            return []
        message = self._decoder.decode(frames, self.session_key,
                                       max_skew=config.max_message_skew,
                                       max_body_size=max(config.max_body_size or 0, 1 << 20))
        if message is None:
            return []  # forged, stale or malformed: the stock client logs and drops
        self.answered = True
        kind, job_id = message.type, message.job_id
        if kind == "commit":
            assert job_id is not None
            record = self.job_stats.record(job_id)
            record.commits += 1
            record.first_commit = _min(record.first_commit, wall)
            record.last_commit = _max(record.last_commit, wall)
            if self.job_state != "idle":
                return [self._reply("nack_commit", job_id)]
            self.job_state, self.job_id = "committed", job_id
            self._capture = message.capture
            return [self._reply("ack_commit", job_id)]
        if kind == "run":
            if self.job_state != "committed" or job_id != self.job_id:
                return [self._reply("nack_run", job_id)]
            assert job_id is not None
            self.job_state = "running"
            out = [self._reply("ack_run", job_id)]
            record = self.job_stats.record(job_id)
            record.acked_runs += 1
            record.first_run = _min(record.first_run, wall)
            record.last_ack_run = _max(record.last_ack_run, wall)
            self.finish_at = now + self.behaviour.delay
            if self._capture and self.behaviour.lines_per_second > 0:
                self._buffer = TailBuffer(1 << 20)
                self._lines = 0
                self.next_print = now
                output = self.config.output if self.config is not None else None
                self._live = LiveStream(output, now) if output is not None else None
            if self.behaviour.delay <= 0:
                result = self.finish_job(wall)
                if result is not None:
                    out.append(result)
            return out
        if kind == "abort":
            job = self.job_id
            self.job_state, self.job_id, self.finish_at = "idle", None, None
            return [self._reply("aborted", job)]
        return []  # ack: nothing to do

    def print_line(self, now: float, wall: float) -> list[list[bytes]]:
        if self._buffer is None or self.next_print is None or self.job_state != "running":
            return []
        self._lines += 1
        self._buffer.feed(f"{self.name} {self._lines} {wall:.6f}\n".encode())
        self.next_print += 1.0 / self.behaviour.lines_per_second
        return self.live_chunks(now)

    def flush_due(self, now: float) -> float | None:
        if self._live is None or self._buffer is None:
            return None
        due = self._live.next_due(self._buffer, now)
        return None if due is None else now + due

    def live_chunks(self, now: float, final: bool = False) -> list[list[bytes]]:
        live, buffer, job_id = self._live, self._buffer, self.job_id
        out: list[list[bytes]] = []
        while live is not None and buffer is not None and job_id is not None:
            chunk = live.take(buffer, now, final=final)
            if chunk is None:
                break
            body = node_output(self.identity, sequence=self._next_sequence(), job_id=job_id,
                               channel="stdout", offset=chunk[0], data=chunk[1])
            out.append(encode(body, hmac_key=self.session_key))
        return out

    def finish_job(self, wall: float) -> list[bytes] | None:
        if self.job_state != "running" or self.job_id is None:
            return None
        job_id = self.job_id
        self.job_state, self.job_id, self.finish_at = "idle", None, None
        self.next_print = None
        fields: dict[str, Any] = {}
        if self._capture and self._buffer is not None:
            limit = (self.config.max_body_size if self.config and self.config.max_body_size
                     else 65536) - RESULT_HEADROOM
            data = self._buffer.data
            kept = data[-limit:] if len(data) > limit else data
            fields = {"stdout": kept.decode(), "stderr": "",
                      "stdout_dropped": self._buffer.total - len(kept)}
            self._buffer = self._live = None
        elif self._capture:
            wanted = self.behaviour.output_bytes
            limit = (self.config.max_body_size if self.config and self.config.max_body_size
                     else 65536) - RESULT_HEADROOM
            kept = max(0, min(wanted, limit))
            fields = {"stdout": "x" * kept, "stderr": "", "stdout_dropped": wanted - kept}
        record = self.job_stats.record(job_id)
        record.results += 1
        record.last_result = _max(record.last_result, wall)
        succeeded = self.behaviour.exit_code == 0
        if not fields:  # no output: a plain reply (byte-identical to node_result's)
            return self._reply("succeeded" if succeeded else "failed", job_id)
        body = node_result(self.identity, succeeded=succeeded,
                           sequence=self._next_sequence(), job_id=job_id, **fields)
        return encode(body, hmac_key=self.session_key)


def wall_clock() -> float:
    return time.time()
