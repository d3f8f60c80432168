"""The control socket as the API workers use it (BrokerClient), plus the events socket."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import zmq

from pushd import store
from pushd.broker.control import iso_time
from pushd.broker.control_client import BrokerClient, BrokerUnavailable, events_address
from pushd.states import JobStatus
from tests.support.broker_runner import ORG_ID, ORG_NAME, BrokerEnv, wait_until


@pytest.fixture
def env(tmp_path: Path) -> Iterator[BrokerEnv]:
    env = BrokerEnv(tmp_path, ("sqlite", {"path": str(tmp_path / "pushd.sqlite3")})).start()
    try:
        yield env
    finally:
        env.close()


def test_admit_returns_the_persisted_session_key(env: BrokerEnv) -> None:
    ccpk = zmq.curve_keypair()[0].decode()
    first = env.client.admit(ORG_NAME, ORG_ID, "n1", ccpk)
    assert first["ok"] is True
    assert len(base64.b64decode(first["session_key"])) == 32
    assert first["curve_public_key"] == env.broker.keys.curve_public_z85
    assert first["incarnation_id"] == env.broker.incarnation_id
    assert store.get_session_key(ORG_ID, "n1") == base64.b64decode(first["session_key"])
    env.restart()
    again = env.client.admit(ORG_NAME, ORG_ID, "n1", ccpk)
    assert again["session_key"] == first["session_key"]  # nodes need not re-key
    assert again["curve_public_key"] == first["curve_public_key"]
    assert again["incarnation_id"] != first["incarnation_id"]


def test_admit_answers_from_memory_and_follows_a_deleted_key(tmp_path: Path) -> None:
    env = BrokerEnv(tmp_path, ("sqlite", {"path": str(tmp_path / "pushd.sqlite3")}),
                    session_key_reload_interval=0.3).start()
    try:
        ccpk = zmq.curve_keypair()[0].decode()
        first = env.client.admit(ORG_NAME, ORG_ID, "n1", ccpk)["session_key"]
        assert env.client.admit(ORG_NAME, ORG_ID, "n1", ccpk)["session_key"] == first
        store.delete_session_key(ORG_ID, "n1")  # `push-jobs-server-ctl client delete`
        # Once the broker has reloaded its keys the deleted one is never handed out again:
        # the next config fetch gets a new key, persisted.
        wait_until(lambda: env.broker.known_session_key(ORG_NAME, ORG_ID, "n1") is None, 3,
                   "deleted key dropped")
        fresh = env.client.admit(ORG_NAME, ORG_ID, "n1", ccpk)["session_key"]
        assert fresh != first
        assert store.get_session_key(ORG_ID, "n1") == base64.b64decode(fresh)
    finally:
        env.close()


def test_forget_session_key_takes_effect_before_the_reload(env: BrokerEnv) -> None:
    # What `client delete` does: delete the key in the store, then tell the broker. A client
    # re-created under the same name at once must get a new key, not the deleted one.
    ccpk = zmq.curve_keypair()[0].decode()
    first = env.client.admit(ORG_NAME, ORG_ID, "n1", ccpk)["session_key"]
    store.delete_session_key(ORG_ID, "n1")
    assert env.client.forget_session_key(ORG_ID, "n1") == {"ok": True, "forgot": True}
    assert env.client.forget_session_key(ORG_ID, "n1") == {"ok": True, "forgot": False}
    fresh = env.client.admit(ORG_NAME, ORG_ID, "n1", ccpk)["session_key"]
    assert fresh != first
    assert store.get_session_key(ORG_ID, "n1") == base64.b64decode(fresh)


@pytest.mark.parametrize(
    "request_body, code",
    [
        ({"op": "launch"}, "unknown_op"),
        ({"op": "admit", "org_name": "", "org_id": ORG_ID, "node": "n", "ccpk": None},
         "bad_request"),
        ({"op": "admit", "org_name": "o", "org_id": ORG_ID, "node": "n", "ccpk": "~" * 40},
         "bad_ccpk"),
        ({"op": "start_job", "org_id": ORG_ID, "job_id": "0" * 32}, "not_found"),
        ({"op": "abort_job", "org_id": ORG_ID, "job_id": "0" * 32}, "not_found"),
        ({"op": "node_states", "org_id": ORG_ID, "nodes": "n1"}, "bad_request"),
        ({"op": "node_states", "org_id": ORG_ID, "nodes": [1]}, "bad_request"),
        ({"op": "forget_session_key", "org_id": ORG_ID}, "bad_request"),
    ],
)
def test_bad_requests_get_error_codes(env: BrokerEnv, request_body: dict, code: str) -> None:
    reply = env.client.request(request_body)
    assert reply["ok"] is False
    assert reply["error"] == code
    assert reply["message"]


def test_garbage_on_the_control_socket_does_not_hurt(env: BrokerEnv) -> None:
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.linger = 0
    socket.connect(f"ipc://{env.config.run_dir}/control.sock")
    socket.send(b"\xff not json")
    assert json.loads(socket.recv())["error"] == "bad_request"
    socket.send_multipart([b"a", b"b", b"[1, 2]"])
    assert json.loads(socket.recv())["error"] == "bad_request"
    socket.close(0)
    assert env.client.status()["ok"] is True


def test_node_states_and_status(env: BrokerEnv) -> None:
    peer = env.peer("n1")
    states = env.client.node_states(ORG_ID, ["n1", "never"])["nodes"]
    assert states[0]["node_name"] == "n1"
    assert (states[0]["status"], states[0]["availability"]) == ("online", "available")
    assert states[0]["last_seen"].endswith("Z")
    assert states[1] == {"node_name": "never", "status": "offline",
                         "availability": "unavailable", "last_seen": None}
    everyone = env.client.node_states(ORG_ID, None)["nodes"]
    assert [n["node_name"] for n in everyone] == ["n1"]
    assert env.client.node_states("f" * 32, None)["nodes"] == []  # other orgs see nothing
    status = env.client.status()
    assert status["node_fsm_count"] == 1
    peer.kill()
    wait_until(lambda: env.node_state("n1")["status"] == "offline", 3, "offline")
    assert env.client.status()["node_fsm_count"] == 0
    assert env.client.node_states(ORG_ID, None)["nodes"][0]["status"] == "offline"


def test_last_seen_survives_a_broker_restart(env: BrokerEnv) -> None:
    peer = env.peer("n1")
    seen_while_online = env.node_state("n1")["last_seen"]
    peer.stop()
    env.restart()  # the broker writes known nodes' last-seen times as it stops
    after = env.client.node_states(ORG_ID, None)["nodes"]
    assert [(n["node_name"], n["status"]) for n in after] == [("n1", "offline")]
    # ISO 8601 UTC strings of one format compare in time order.
    assert after[0]["last_seen"] >= seen_while_online


def test_start_job_twice_and_after_finish(env: BrokerEnv) -> None:
    job = env.create_job(["ghost"], "true")
    env.wait_job(job, JobStatus.QUORUM_FAILED)
    reply = env.client.start_job(ORG_ID, job)
    assert reply["error"] == "already_finished"
    assert env.client.start_job("f" * 32, job)["error"] == "not_found"  # scoped by org


def test_abort_of_a_job_not_yet_started(env: BrokerEnv) -> None:
    job = env.create_job(["n1", "n2"], "true", start=False)
    assert env.client.abort_job(ORG_ID, job)["status"] == "aborted"
    view = env.job(job)
    assert view.status == JobStatus.ABORTED
    assert view.nodes_by_status() == {"aborted": ["n1", "n2"]}


def test_feeds_are_woken_with_the_newest_stored_event(env: BrokerEnv) -> None:
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(events_address(env.config.run_dir))
    wait_until(lambda: _joined(env, sub), 3, "events subscription")
    env.peer("n1")
    job = env.create_job(["n1"], "true")
    env.wait_job(job, JobStatus.COMPLETE)
    received = []
    while sub.poll(500):
        topic, payload = sub.recv_multipart()
        received.append((topic.decode(), json.loads(payload)))
    sub.close(0)
    stored = store.job_events_after(ORG_ID, job)
    assert [e.name for e in stored] == [
        "start", "quorum_vote", "quorum_succeeded", "run_start", "run_complete", "job_complete"
    ]
    ids = {e.id for e in stored}
    job_wakes = [p["id"] for t, p in received if t == f"job.{job}"]
    org_wakes = [p["id"] for t, p in received if t == f"org.{ORG_ID}" and p["id"] in ids]
    # A wake-up carries no event, only the newest stored id on its topic, and comes after it.
    assert job_wakes and set(job_wakes) <= ids and job_wakes == sorted(job_wakes)
    assert job_wakes[-1] == stored[-1].id
    assert org_wakes[-1] == stored[-1].id  # job_complete is on the org feed
    assert all(set(p) == {"id"} for t, p in received if t.startswith(("job.", "org.")))
    assert stored[0].data["user"] == "alice"
    assert next(iter(stored[-1].data)) == "timestamp" and stored[-1].data["status"] == "complete"


def _joined(env: BrokerEnv, sub: zmq.Socket) -> bool:
    # Publish a throwaway event stream: a job on an offline node gives events at once.
    env.create_job(["ghost"], "true")
    if sub.poll(200):
        while sub.poll(100):
            sub.recv_multipart()
        return True
    return False


def test_client_times_out_without_a_broker(tmp_path: Path) -> None:
    client = BrokerClient(tmp_path, timeout=0.2)
    with pytest.raises(BrokerUnavailable):
        client.status()


def test_client_works_with_zmq_green(env: BrokerEnv) -> None:
    import gevent
    import zmq.green as green

    client = BrokerClient(env.config.run_dir, timeout=3, zmq_module=green,
                          context=green.Context())
    jobs = [gevent.spawn(client.status) for _ in range(5)]
    gevent.joinall(jobs, timeout=5)
    assert all(j.value and j.value["ok"] for j in jobs)


def test_last_seen_is_iso_8601_utc_to_the_microsecond() -> None:
    assert iso_time(None) is None
    assert iso_time(0.0) == "1970-01-01T00:00:00.000000Z"
    assert iso_time(1714564800.25) == "2024-05-01T12:00:00.250000Z"
    assert iso_time(datetime(2024, 5, 1, 12)) == "2024-05-01T12:00:00.000000Z"  # naive = UTC
    plus_two = datetime(2024, 5, 1, 14, 0, 0, 7, tzinfo=timezone(timedelta(hours=2)))
    assert iso_time(plus_two) == "2024-05-01T12:00:00.000007Z"
    assert iso_time(datetime(2024, 5, 1, 12, tzinfo=UTC)) == "2024-05-01T12:00:00.000000Z"
