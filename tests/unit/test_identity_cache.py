"""TTLCache: expiry, cached misses, uncached errors, bound, and concurrent use."""

from __future__ import annotations

import threading

import pytest

from pushd.identity.cache import TTLCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_values_and_misses_are_cached_until_the_ttl() -> None:
    clock = Clock()
    cache = TTLCache(5, clock=clock)
    loads: list[str] = []

    def load(value: str | None) -> str | None:
        loads.append(str(value))
        return value

    assert cache.get_or_load("a", lambda: load("A")) == "A"
    assert cache.get_or_load("missing", lambda: load(None)) is None
    clock.now = 4.9
    assert cache.get_or_load("a", lambda: load("changed")) == "A"
    assert cache.get_or_load("missing", lambda: load("appeared")) is None
    clock.now = 5.0
    assert cache.get_or_load("a", lambda: load("changed")) == "changed"
    assert loads == ["A", "None", "changed"]


def test_errors_are_not_cached() -> None:
    cache = TTLCache(60)
    calls = 0

    def failing() -> str:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            cache.get_or_load("k", failing)
    assert calls == 2
    assert len(cache) == 0


def test_zero_ttl_disables_caching_and_negative_is_refused() -> None:
    cache = TTLCache(0)
    values = iter(range(10))
    assert [cache.get_or_load("k", lambda: next(values)) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError):
        TTLCache(-1)


def test_oldest_entries_are_dropped_beyond_the_bound() -> None:
    cache = TTLCache(60, max_entries=3)
    for key in "abcd":
        cache.get_or_load(key, lambda key=key: key.upper())
    assert len(cache) == 3
    assert cache.get_or_load("a", lambda: "reloaded") == "reloaded"  # "a" was evicted
    assert cache.get_or_load("d", lambda: "reloaded") == "D"


def test_put_many_caches_a_bulk_load_for_the_ttl_within_the_bound() -> None:
    clock = Clock()
    cache = TTLCache(5, max_entries=3, clock=clock)
    cache.put_many([("a", 1), ("b", 2), ("c", 3), ("d", 4)])
    assert len(cache) == 3 and cache.max_entries == 3
    assert cache.get_or_load("d", lambda: 0) == 4
    assert cache.get_or_load("a", lambda: 0) == 0  # the oldest was dropped
    clock.now = 5.1
    assert cache.get_or_load("d", lambda: 40) == 40
    off = TTLCache(0)
    off.put_many([("a", 1)])
    assert len(off) == 0


def test_invalidate_one_or_all() -> None:
    cache = TTLCache(60)
    cache.get_or_load("a", lambda: 1)
    cache.get_or_load("b", lambda: 2)
    cache.invalidate("a")
    assert cache.get_or_load("a", lambda: 10) == 10
    assert cache.get_or_load("b", lambda: 20) == 2
    cache.invalidate()
    assert len(cache) == 0


def test_concurrent_users_see_consistent_values() -> None:
    cache = TTLCache(60, max_entries=50)
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for i in range(500):
                key = (i + offset) % 80
                assert cache.get_or_load(key, lambda key=key: key * 2) == key * 2
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) <= 50


def test_a_load_overtaken_by_an_invalidation_is_not_stored() -> None:
    cache = TTLCache(60)

    def load_while_invalidated() -> str:
        cache.invalidate()  # the ctl's change lands while this load reads the old state
        return "old"

    assert cache.get_or_load("k", load_while_invalidated) == "old"
    assert cache.get_or_load("k", lambda: "new") == "new"
    epoch = cache.epoch
    cache.invalidate()
    cache.put_many([("bulk", "old")], epoch)
    assert cache.get_or_load("bulk", lambda: "new") == "new"
    cache.put_many([("bulk2", "now")], cache.epoch)
    assert cache.get_or_load("bulk2", lambda: "later") == "now"
