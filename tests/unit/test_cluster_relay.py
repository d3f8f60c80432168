"""ClusterRelay's view of remote jobs: a finished job stops being known (unit, fakes named)."""

from __future__ import annotations

from typing import Any

import pytest

from pushd.cluster import relay as relay_module
from pushd.cluster.relay import COORDINATOR_TTL, ClusterRelay

REF = ("org-id", "node7")


class FakeClock:
    """Stands in for time.monotonic in the relay module."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class NoEngine:
    """The local job engine: it runs no job here."""

    def knows(self, ref: Any, job_id: str) -> bool:
        return False

    def is_live(self, job_id: str) -> bool:
        return False

    def job_message(self, ref: Any, job_id: str, kind: str, body: dict[str, Any]) -> bool:
        return False

    def reattach(self, ref: Any, job_id: str, body: dict[str, Any]) -> bool:
        return False


class AdoptingEngine(NoEngine):
    """The local job engine before and after it adopts job-1: records what it is handed."""

    def __init__(self) -> None:
        self.live: set[str] = set()
        self.handed: list[tuple[Any, str, str]] = []

    def is_live(self, job_id: str) -> bool:
        return job_id in self.live

    def job_message(self, ref: Any, job_id: str, kind: str, body: dict[str, Any]) -> bool:
        if job_id not in self.live:
            return False
        self.handed.append((ref, job_id, kind))
        return True


class Recorder:
    """Tracker, outbox, mailer and scheduler fakes: record nothing the test reads."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch) -> tuple[ClusterRelay, FakeClock, dict[str, Any]]:
    clock = FakeClock()
    monkeypatch.setattr(relay_module, "time", clock)
    database: dict[str, Any] = {"job-1": "m2"}  # active jobs -> coordinator (the store fake)
    monkeypatch.setattr(relay_module.cluster, "coordinator_of", database.get)
    relay = ClusterRelay("m1", Recorder(), Recorder(), Recorder(), Recorder(),
                         recovery_grace=10.0)
    relay.attach(NoEngine())
    relay.on_members(["m1", "m2"], [])
    return relay, clock, database


def test_a_remote_job_is_known_while_its_coordinator_runs_it(
    setup: tuple[ClusterRelay, FakeClock, dict[str, Any]],
) -> None:
    relay, clock, _ = setup
    assert relay.knows(REF, "job-1")
    clock.now += COORDINATOR_TTL * 3
    assert relay.knows(REF, "job-1")


def test_a_finished_remote_job_stops_being_known_after_the_ttl(
    setup: tuple[ClusterRelay, FakeClock, dict[str, Any]],
) -> None:
    # A node that still heartbeats a job its live coordinator finished must be rehabbed (the
    # holder calls knows() for each such heartbeat and rehabs on False).
    relay, clock, database = setup
    assert relay.knows(REF, "job-1")
    del database["job-1"]  # the job ended at m2; holders are not told
    assert relay.knows(REF, "job-1")  # still cached
    clock.now += COORDINATOR_TTL + 0.1
    assert not relay.knows(REF, "job-1")


def test_a_job_taken_over_is_reattached_even_before_the_new_coordinator_says_so(
    setup: tuple[ClusterRelay, FakeClock, dict[str, Any]],
) -> None:
    # The holder relayed the node's job to m2; m3 took the job over (the jobs table says so)
    # and its "coordinator" broadcast has not arrived: the node's next heartbeat after the TTL
    # must still tell m3 that the node runs the job, or m3 counts it crashed.
    relay, clock, database = setup
    relay.on_members(["m1", "m2", "m3"], [])
    heartbeat = {"type": "heartbeat", "job_id": "job-1", "job_state": "running"}
    assert relay.knows(REF, "job-1", heartbeat)
    database["job-1"] = "m3"
    clock.now += COORDINATOR_TTL + 0.1
    assert relay.knows(REF, "job-1", heartbeat)
    mailed = [m for m in relay._outgoing.get("m3", []) if m.get("op") == "reattach"]
    assert mailed and mailed[0]["job"] == "job-1"


def test_a_node_of_a_job_being_taken_over_here_is_not_sent_to_rehab(
    setup: tuple[ClusterRelay, FakeClock, dict[str, Any]],
) -> None:
    # m2 died; the take-over named this member (m1) coordinator in the jobs table and the loop
    # has not adopted the job yet: the node's heartbeat and result read in between must not
    # count as an unknown job (rehab would drop the job the node runs), and the result reaches
    # the engine once it runs the job.
    relay, _, database = setup
    engine = AdoptingEngine()
    relay.attach(engine)
    database["job-1"] = "m1"
    heartbeat = {"type": "heartbeat", "job_id": "job-1", "job_state": "running"}
    assert relay.knows(REF, "job-1", heartbeat)
    assert relay.reattach(REF, "job-1", heartbeat)
    assert relay.job_message(REF, "job-1", "succeeded", {"type": "succeeded"})
    assert engine.handed == []
    engine.live.add("job-1")
    relay.adopted(["job-1"])
    assert engine.handed == [(REF, "job-1", "succeeded")]


def test_a_job_that_ended_here_stops_being_known_after_the_ttl(
    setup: tuple[ClusterRelay, FakeClock, dict[str, Any]],
) -> None:
    relay, clock, database = setup
    database["job-1"] = "m1"
    assert relay.knows(REF, "job-1")  # adopting, as far as the relay can tell
    del database["job-1"]  # over: no longer active in the jobs table
    clock.now += COORDINATOR_TTL + 0.1
    assert not relay.knows(REF, "job-1")
    assert not relay.job_message(REF, "job-1", "succeeded", {"type": "succeeded"})
