"""A/B of the per-message steps issue 19 changed, old and new code side by side, one process.

    python bench/bench_steps.py [--count 20000] [--rounds 7]

Each step is timed as CPU per operation (time.process_time over `--count` operations), the old
and the new way alternating `--rounds` times, so both see the same machine load; the figure is
the median of the rounds. The old ways are kept here (copies of what the code did before), the
new ways are the code's own:

    reply_validation     the broker's check of a plain job reply (ack_commit): the full
                         parse_node_message (old) / reply_sequence (new)
    event_encoding       the journal, per event: the data dict for the row encoded by the store
                         (JSONTextField) and the payload dict json.dumps'ed for the events socket
                         (old) / encoded once, the payload built around the same text (new)
    events_reader        an API worker's events reader, per event published: zmq poll +
                         recv_multipart + wake per event (old) / poll once, read everything
                         waiting, wake each topic once (new); zmq.green sockets on a gevent hub
                         as in a gevent API worker, over ipc, bursts of 1,000 events on one
                         topic as a big job's are (reader thread CPU per event)
    emulator_reply       an emulated node's ack_commit: node_reply + frames.encode (old) /
                         ReplyEncoder (new)
    emulator_command     an emulated node's reading of a commit: frames.decode +
                         parse_server_message (old) / the worker's shared CommandDecoder (new)
    access_log           an API worker's access line for a config fetch: gunicorn's atoms (every
                         header, WSGI variable and the time formatted) + the proxy-aware address
                         (old) / only the atoms pushd's format shows (new); formatted both ways
    emulator_events      the emulator's readiness check of one socket: getsockopt(EVENTS) &
                         POLLIN (old) / its share of one zmq_poll over 500 sockets (new)
    job_count            JobRun.count of two statuses, after every reply of a job: sum() over
                         a generator (old) / a loop (new)
    last_seen_format     node_states' last_seen text: strftime (old) / isoformat (new)
    known_nodes_5000     node_states' read of an org's 5,000 known nodes from SQLite: peewee
                         model rows (old) / tuples (new); per read, not per node
    event_array_row      the journal's event insert on PostgreSQL, client side, per row of a
                         1,000-row statement: text arrays (old) / binary arrays (new)

Prints per step:

    RESULT name=step_us value=.. unit=us step=STEP variant=old|new rounds=N all=..
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable

import zmq
from pushd_bench.common import median, result
from pushd_bench.wire import CommandDecoder, ReplyEncoder

from pushd.broker.journal import _ENCODE, _encoded
from pushd.protocol.frames import decode, encode
from pushd.protocol.messages import (
    NodeIdentity,
    commit_message,
    node_reply,
    parse_node_message,
    parse_server_message,
    reply_sequence,
)
from pushd.protocol.timestamps import format_timestamp
from pushd.store.models import JobEvent

WHO = NodeIdentity(node="emu-00042", client="emu-00042.emulated", org="pushdorg",
                   incarnation_id="3f0c8a52-6a51-4d1e-9d55-8d0f0c6b1e77")
JOB = "aaaaaaaaaaaa25fd67fa8715fd547d3d"
KEY = os.urandom(32)


def per_op(fn: Callable[[], object], count: int) -> float:
    started = time.process_time()
    for _ in range(count):
        fn()
    return (time.process_time() - started) / count * 1e6


def reply_validation() -> dict[str, Callable[[], object]]:
    body = node_reply(WHO, "ack_commit", sequence=17, job_id=JOB)
    return {"old": lambda: parse_node_message(body).sequence,
            "new": lambda: reply_sequence(body)}


def event_encoding() -> dict[str, Callable[[], object]]:
    stamp = "2026-12-06 07:00:00.123456Z"
    data = {"node": "emu-00042", "status": "success"}
    to_json = JobEvent.data.db_value  # what the store did with each row's data dict

    def old() -> object:
        full = {"timestamp": stamp, **data}
        row = to_json(dict(full))
        payload = {"id": 123456, "event": "quorum_vote", "job": JOB, "data": full}
        return row, json.dumps(payload).encode()

    head = '{"timestamp":' + _ENCODE(stamp)  # once per batch in the journal

    def new() -> object:
        text = _encoded(head, stamp, data)
        return text, (f'{{"id":{123456},"event":{_ENCODE("quorum_vote")},"job":{_ENCODE(JOB)},'
                      f'"data":{text}}}').encode("ascii")

    return {"old": old, "new": new}


class _Reader:
    """An events reader thread (zmq.green on the thread's own gevent hub, as pushd's API
    workers read), old or new way; counts wake-ups."""

    def __init__(self, address: str, drain: bool) -> None:
        import zmq.green

        self.green = zmq.green
        self.address = address
        self.drain = drain
        self.seen = 0
        self.wakes = 0
        self.cpu = 0.0
        self.running = True
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def wake(self, topic: bytes) -> None:
        with self.lock:
            self.wakes += 1

    def run(self) -> None:
        green = self.green
        context = green.Context()
        self.sock = context.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(self.address)
        poller = green.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while self.running:
            if not poller.poll(50):
                continue
            started = time.thread_time()
            if self.drain:
                topics = set()
                for _ in range(1000):
                    try:
                        frames = self.sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    topics.add(frames[0])
                    self.seen += 1
                for topic in topics:
                    self.wake(topic)
            else:
                frames = self.sock.recv_multipart()
                self.seen += 1
                self.wake(frames[0])
            self.cpu += time.thread_time() - started
        self.sock.close(0)
        context.term()


def events_reader(count: int) -> dict[str, float]:
    """CPU per event of each reader way (not a callable: it needs its own threads)."""
    context = zmq.Context.instance()
    out = {}
    for variant in ("old", "new"):
        pub = context.socket(zmq.PUB)
        pub.sndhwm = 0
        address = f"ipc:///tmp/pushd-bench-steps-{os.getpid()}-{variant}.sock"
        pub.bind(address)
        reader = _Reader(address, drain=variant == "new")
        deadline = time.monotonic() + 10
        while reader.seen == 0 and time.monotonic() < deadline:
            pub.send(b"probe", zmq.SNDMORE)  # until the subscription has reached the PUB
            pub.send(b"")
            time.sleep(0.01)
        time.sleep(0.1)
        reader.seen, reader.cpu = 0, 0.0
        payload = b'{"id":1,"event":"quorum_vote","job":"' + JOB.encode() + b'","data":{}}'
        topic = f"job.{JOB}".encode()
        sent = 0
        while sent < count:
            for _ in range(min(1000, count - sent)):
                pub.send(topic, zmq.SNDMORE)
                pub.send(payload)
                sent += 1
            time.sleep(0.005)  # bursts, as a journal batch is published
        deadline = time.monotonic() + 10
        while reader.seen < count and time.monotonic() < deadline:
            time.sleep(0.01)
        reader.running = False
        reader.thread.join()
        out[variant] = reader.cpu / max(1, reader.seen) * 1e6
        pub.close(0)
        os.unlink(address[len("ipc://"):])
    return out


def emulator_reply() -> dict[str, Callable[[], object]]:
    encoder = ReplyEncoder(WHO, KEY)
    stamp = format_timestamp()
    return {"old": lambda: encode(node_reply(WHO, "ack_commit", sequence=5, job_id=JOB),
                                  hmac_key=KEY),
            "new": lambda: encoder.frames("ack_commit", 5, JOB, stamp)}


def emulator_command() -> dict[str, Callable[[], object]]:
    frames = encode(commit_message(sequence=9, job_id=JOB, server="pushd", command="true",
                                   run_timeout=3600), hmac_key=KEY)
    decoder = CommandDecoder()

    def old() -> object:
        return parse_server_message(decode(frames, key=KEY, max_skew=300,
                                           max_body_size=1 << 20))

    return {"old": old, "new": lambda: decoder.decode(frames, KEY, max_skew=300,
                                                      max_body_size=1 << 20)}


def access_log() -> dict[str, Callable[[], object]]:
    import datetime
    from types import SimpleNamespace

    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    from pushd.server.accesslog import ACCESS_LOG_FORMAT, ProxyAwareLogger, client_address

    cfg = Config()
    cfg.set("access_log_format", ACCESS_LOG_FORMAT)
    logger = ProxyAwareLogger(cfg)
    headers = [("HOST", "127.0.0.1:10003"), ("USER-AGENT", "Python-urllib/3.11"),
               ("ACCEPT", "application/json"), ("X-OPS-SIGN", "algorithm=sha1;version=1.0"),
               ("X-OPS-USERID", "emu-00042"), ("X-OPS-TIMESTAMP", "2026-12-06T07:00:00Z"),
               ("X-OPS-CONTENT-HASH", "2jmj7l5rSw0yVb/vlWAYkK/YBwk="),
               *[(f"X-OPS-AUTHORIZATION-{i}", "A" * 60) for i in range(1, 7)]]
    environ = {"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1",
               "RAW_URI": "/organizations/pushdorg/pushy/config/emu-00042?ccpk=x&version=2.0",
               "REMOTE_ADDR": "127.0.0.1", "PATH_INFO": "/organizations/pushdorg/pushy/config",
               "QUERY_STRING": "ccpk=x&version=2.0", "wsgi.url_scheme": "http",
               **{"HTTP_" + k.replace("-", "_"): v for k, v in headers}}
    request = (SimpleNamespace(status="200 OK", sent=1536, headers=[("Content-Type", "x")]),
               SimpleNamespace(headers=headers), environ,
               datetime.timedelta(microseconds=2345))

    def old() -> object:
        atoms = Logger.atoms(logger, *request)
        atoms["h"] = client_address("127.0.0.1", None, ["127.0.0.1", "::1"])
        return ACCESS_LOG_FORMAT % logger.atoms_wrapper_class(atoms)

    return {"old": old,
            "new": lambda: ACCESS_LOG_FORMAT % logger.atoms_wrapper_class(logger.atoms(*request))}


def emulator_events() -> tuple[dict[str, Callable[[], object]], int, list[zmq.Socket]]:
    context = zmq.Context.instance()
    context.max_sockets = 5000
    # 500, not a worker's 2,000: the gevent reader above uses select(), which takes FDs < 1024.
    sockets = [context.socket(zmq.DEALER) for _ in range(500)]
    for sock in sockets:
        sock.connect("inproc://bench-steps-nowhere")
    one = sockets[0]
    items = [(sock, int(zmq.POLLIN)) for sock in sockets]
    return ({"old": lambda: one.getsockopt(zmq.EVENTS) & zmq.POLLIN,
             "new": lambda: zmq.zmq_poll(items, 0)}, len(sockets), sockets)


def job_count() -> dict[str, Callable[[], object]]:
    from collections import Counter

    from pushd.states import NodeStatus

    tally = Counter({NodeStatus.READY: 4000, NodeStatus.RUNNING: 3000, NodeStatus.NEW: 1000})
    statuses = (NodeStatus.READY, NodeStatus.RUNNING)

    def loop() -> int:
        total = 0
        for status in statuses:
            total += tally[status]
        return total

    return {"old": lambda: sum(tally[status] for status in statuses), "new": loop}


def last_seen_format() -> dict[str, Callable[[], object]]:
    from datetime import UTC, datetime

    from pushd.broker.control import iso_time

    when = 1_765_000_000.123456
    return {"old": lambda: datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "new": lambda: iso_time(when)}


def known_nodes_5000(directory: str) -> dict[str, Callable[[], object]]:
    from datetime import datetime

    from pushd import store
    from pushd.store.models import KnownNode

    store.open_database_params("sqlite", {"path": f"{directory}/steps.db"}, migrate=True)
    seen = datetime(2026, 12, 6, 10, 0, 0, 123456)
    store.touch_known_nodes("org-a", {f"node-{i:05d}": seen for i in range(5000)})

    def models() -> dict[str, datetime]:
        with store.connection():
            return {row.node_name: row.last_seen
                    for row in KnownNode.select().where(KnownNode.org_id == "org-a")}

    def tuples() -> dict[str, datetime]:
        with store.connection():
            return store.known_nodes("org-a")

    assert models() == tuples()
    return {"old": models, "new": tuples}


def event_array_row(rounds: int) -> dict[str, float]:
    """Client CPU per row of the journal's 1,000-row event parameters, text vs binary arrays
    (the statement's server side is the same; it is left out by counting the rows only)."""
    import psycopg

    url = os.environ.get("PUSHD_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432/postgres")
    data = [json.dumps({"timestamp": "2026-12-06 10:00:00.000000Z", "node": f"node-{i:05d}",
                        "status": "complete"}) for i in range(1000)]
    names = [f"node-{i:05d}" for i in range(1000)]
    out = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for variant, mark in (("old", "s"), ("new", "b")):
            cursor = conn.cursor()
            query = f"SELECT count(*) FROM unnest(%{mark}::text[], %{mark}::text[])"
            started = time.process_time()
            for _ in range(rounds):
                cursor.execute(query, [data, names])  # type: ignore[call-overload]
                cursor.fetchall()
            out[variant] = (time.process_time() - started) / rounds / 1000 * 1e6
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"# load at start: {os.getloadavg()}", flush=True)
    figures: dict[tuple[str, str], list[float]] = {}
    events_check, sockets_per_poll, _keep = emulator_events()
    scratch = tempfile.TemporaryDirectory()
    steps = {
        "reply_validation": reply_validation(),
        "event_encoding": event_encoding(),
        "emulator_reply": emulator_reply(),
        "emulator_command": emulator_command(),
        "access_log": access_log(),
        "emulator_events": events_check,
        "job_count": job_count(),
        "last_seen_format": last_seen_format(),
        "known_nodes_5000": known_nodes_5000(scratch.name),
    }
    for _ in range(args.rounds):
        for step, variants in steps.items():
            for variant, fn in variants.items():
                count = args.count
                divisor = 1
                if step == "emulator_events" and variant == "new":
                    count, divisor = max(1, args.count // 200), sockets_per_poll
                if step == "known_nodes_5000":
                    count = max(1, args.count // 1000)
                figures.setdefault((step, variant), []).append(per_op(fn, count) / divisor)
        for variant, value in events_reader(args.count).items():
            figures.setdefault(("events_reader", variant), []).append(value)
        for variant, value in event_array_row(max(1, args.count // 1000)).items():
            figures.setdefault(("event_array_row", variant), []).append(value)
    for (step, variant), values in figures.items():
        result("step_us", median(values), "us", step=step, variant=variant, rounds=len(values),
               all=",".join(f"{v:.2f}" for v in values))
    print(f"# load at end: {os.getloadavg()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
