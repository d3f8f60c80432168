"""SharedReads: the store reads one worker's SSE streams share, keyed on the topic generation."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pushd.api.events import EventHub
from pushd.api.feeds import SHARED_MAX, SharedReads


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Loads:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> tuple[int, ...]:
        self.count += 1
        return (self.count,)


def hub() -> EventHub:
    return EventHub(zmq_module=None, context=None, address="ipc://unused")  # never started


def test_generation_exists_only_while_someone_listens_and_changes_on_each_event() -> None:
    events = hub()
    assert events.generation("job.a") is None
    listener = events.listen("job.a")
    first = events.generation("job.a")
    assert first is not None
    events._wake("job.b")  # nobody listens there: nothing to track
    assert events.generation("job.b") is None and events.generation("job.a") == first
    events._wake("job.a")
    second = events.generation("job.a")
    assert second is not None and second != first and listener.wait(0)
    listener.close()
    assert events.generation("job.a") is None
    events.listen("job.a")  # a topic listened to again never gets a value used before
    assert events.generation("job.a") not in (first, second)


def test_one_load_per_key_and_generation() -> None:
    events, clock, load = hub(), Clock(), Loads()
    events.listen("job.a")
    shared = SharedReads(events, 1.0, clock=clock)
    assert shared.read("job.a", ("q", 1), load) == (1,)
    assert shared.read("job.a", ("q", 1), load) == (1,)
    assert shared.read("job.a", ("q", 2), load) == (2,)  # another question
    events._wake("job.a")  # an event arrived: the same question is asked again
    assert shared.read("job.a", ("q", 1), load) == (3,)
    assert shared.read("job.a", ("q", 1), load) == (3,)
    clock.now += 1.0  # the safety net: answers age out even without an event
    assert shared.read("job.a", ("q", 1), load) == (4,)


def test_without_listeners_nothing_is_shared() -> None:
    shared, load = SharedReads(hub(), 1.0, clock=Clock()), Loads()
    assert shared.read("job.a", ("q",), load) == (1,)
    assert shared.read("job.a", ("q",), load) == (2,)


def test_a_failed_load_is_not_shared() -> None:
    events = hub()
    events.listen("job.a")
    shared = SharedReads(events, 1.0, clock=Clock())

    def fail() -> Any:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        shared.read("job.a", ("q",), fail)
    assert shared.read("job.a", ("q",), Loads()) == (1,)


def test_a_reader_asking_while_the_query_runs_waits_for_its_answer() -> None:
    events = hub()
    events.listen("job.a")
    shared = SharedReads(events, 10.0)
    started, release = threading.Event(), threading.Event()
    loads = Loads()

    def slow() -> tuple[int, ...]:
        started.set()
        assert release.wait(5)
        return loads()

    answers: list[Any] = []
    first = threading.Thread(target=lambda: answers.append(shared.read("job.a", ("q",), slow)))
    first.start()
    assert started.wait(5)
    second = threading.Thread(target=lambda: answers.append(shared.read("job.a", ("q",), loads)))
    second.start()
    release.set()
    first.join(5)
    second.join(5)
    assert answers == [(1,), (1,)] and loads.count == 1


def test_answers_are_bounded() -> None:
    events = hub()
    events.listen("org.o")
    shared = SharedReads(events, 60.0, clock=Clock())
    for after in range(SHARED_MAX * 2):
        shared.read("org.o", ("q", after), Loads())
    assert len(shared) <= SHARED_MAX
