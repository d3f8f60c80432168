"""SSE parsing and the job tracker that turns feed events into node states."""

from __future__ import annotations

import json

import pytest
from pushd_knife import sse
from pushd_knife.follow import JobTracker
from pushd_knife.sse import Event, SSEParser, iter_events


def test_parser_events_comments_and_ids() -> None:
    stream = [
        ":keepalive\n",
        "event: start\n",
        "id: job-1\n",
        'data: {"timestamp":"2014-07-10 05:10:40.995958Z","command":"chef-client"}\n',
        "\n",
        ":ping\n",
        "event: quorum_vote\r\n",
        "id:job-2\r\n",
        'data:{"node":"n1",\r\n',
        'data: "status":"success"}\r\n',
        "\r\n",
    ]
    events = list(iter_events(stream))
    assert [e.name for e in events] == ["start", "quorum_vote"]
    assert [e.id for e in events] == ["job-1", "job-2"]
    assert events[0].json()["command"] == "chef-client"
    assert events[1].data == '{"node":"n1",\n"status":"success"}'
    assert events[1].json() == {"node": "n1", "status": "success"}


def test_parser_dispatches_final_summary_without_blank_line() -> None:
    summary = {"id": "j", "status": "complete", "nodes": {"succeeded": ["n1"]}}
    events = list(iter_events([b"event: summary\n", b"id: job-1\n",
                               f"data: {json.dumps(summary)}\n".encode()]))
    assert events == [Event("summary", "job-1", json.dumps(summary))]


def test_parser_drops_event_cut_off_mid_data() -> None:
    parser = SSEParser()
    for line in ("event: run_complete\n", "id: 9\n", 'data: {"node": "n1", "sta\n'):
        assert parser.feed(line) is None
    assert parser.finish() is None
    assert parser.last_event_id is None


def test_parser_bounds_an_event_made_of_many_short_data_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sse, "MAX_EVENT_CHARS", 1000)
    parser = SSEParser()
    for _ in range(90):  # 90 x 11 characters: just under the bound, dispatched whole
        assert parser.feed("data: 0123456789\n") is None
    assert len(parser.feed("\n").data) == 90 * 11 - 1
    with pytest.raises(ValueError, match="larger than 1000"):
        for _ in range(100):
            parser.feed("data: 0123456789\n")


def test_parser_ignores_unknown_fields_and_non_json_data() -> None:
    events = list(iter_events(["retry: 10\n", "weird\n", "data: not json\n", "\n"]))
    assert events == [Event("message", None, "not json")]
    assert events[0].json() == {}


def ev(name: str, **data: str) -> Event:
    return Event(name, None, json.dumps(data))


def test_tracker_follows_a_job_through_its_events() -> None:
    tracker = JobTracker({"status": "new", "nodes": {"new": ["a", "b", "c"]}})
    assert tracker.apply_event(ev("start"))
    assert tracker.status == "voting"
    tracker.apply_event(ev("quorum_vote", node="a", status="success"))
    tracker.apply_event(ev("quorum_vote", node="b", status="failure"))
    tracker.apply_event(ev("quorum_vote", node="c", status="down"))
    assert tracker.nodes == {"a": "ready", "b": "nacked", "c": "unavailable"}
    tracker.apply_event(ev("quorum_succeeded"))
    tracker.apply_event(ev("run_start", node="a"))
    assert (tracker.status, tracker.nodes["a"]) == ("running", "running")
    assert not tracker.apply_event(ev("rehab", node="b"))
    tracker.apply_event(ev("run_complete", node="a", status="failure"))
    assert tracker.nodes["a"] == "failed"
    assert not tracker.finished
    tracker.apply_event(ev("job_complete", status="complete"))
    assert tracker.finished and tracker.status == "complete"


def test_tracker_quorum_failure_marks_ready_nodes_was_ready() -> None:
    tracker = JobTracker({"status": "voting", "nodes": {"new": ["a", "b"]}})
    tracker.apply_event(ev("quorum_vote", node="a", status="success"))
    tracker.apply_event(ev("quorum_vote", node="b", status="voting_timeout"))
    tracker.apply_event(ev("job_complete", status="quorum_failed"))
    assert tracker.status == "quorum_failed"
    assert tracker.nodes == {"a": "was_ready", "b": "unavailable"}


def test_tracker_takes_summary_as_truth() -> None:
    tracker = JobTracker({"status": "running", "nodes": {"running": ["a"]}})
    summary = {"status": "timed_out", "nodes": {"timed_out": ["a"]}}
    assert tracker.apply_event(Event("summary", "job-1", json.dumps(summary)))
    assert (tracker.status, tracker.nodes, tracker.finished) == ("timed_out", {"a": "timed_out"},
                                                                True)


def test_stop_ends_a_reader_blocked_on_a_silent_stream() -> None:
    """stop() must end the reader thread, not leave it blocked in a read: a daemon thread
    still reading when the interpreter exits (after Ctrl-C) could abort the process."""
    import queue
    import socket
    import threading
    import time

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from pushd_knife.chefhttp import ChefHTTP

    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:  # a feed that sends one event, then nothing (a quiet stream)
        conn, _ = listener.accept()
        held.append(conn)
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
                     b"event: start\nid: 1\ndata: {}\n\n")

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption())
    http = ChefHTTP(f"http://127.0.0.1:{listener.getsockname()[1]}/organizations/o", "u", key)
    events: queue.Queue[object] = queue.Queue()
    reader = sse.FeedReader(http, "/pushy/jobs/x/events", events, stall_timeout=60.0)
    reader.start()
    try:
        assert events.get(timeout=10) is sse.FEED_CONNECTED
        assert isinstance(events.get(timeout=10), Event)  # now blocked reading a silent stream
        started = time.monotonic()
        reader.stop()
        assert not reader._thread.is_alive()
        assert time.monotonic() - started < sse.STOP_JOIN
    finally:
        for conn in held:
            conn.close()
        listener.close()
