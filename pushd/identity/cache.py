"""A small thread-safe TTL cache for principal-source lookups.

    TTLCache(ttl, *, max_entries=10000, clock=time.monotonic)
        get_or_load(key, load) -> value
            The cached value for `key` if younger than `ttl` seconds, else ``load()`` stored
            and returned. None results ("does not exist") are cached like any other value, so
            an unknown requester cannot make every request hit the upstream; exceptions are
            not cached. The oldest entries are dropped beyond `max_entries`. A load that was
            under way when ``invalidate()`` forgot everything is returned but not stored: it
            may have read what the invalidation is about.
        put_many(items, epoch=None): store (key, value) pairs as loaded now (a bulk load; no-op
            at ttl 0, and when `epoch` is given and ``invalidate()`` has run since it was read).
        invalidate(key=None): forget one key, or everything.
    ``max_entries`` (attribute): the bound. ``epoch`` (attribute): changes with every
    ``invalidate()`` of everything. A `ttl` of 0 disables caching (every call loads).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


class TTLCache:
    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl < 0:
            raise ValueError("ttl must not be negative")
        self._ttl = ttl
        self._max_entries = max(1, max_entries)
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._epoch = 0
        # threading.Lock is patched into a gevent lock in the API workers, so this is safe there.
        self._lock = threading.Lock()

    def get_or_load(self, key: Hashable, load: Callable[[], T]) -> T:
        epoch = self._epoch
        if self._ttl > 0:
            now = self._clock()
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and now - entry[0] < self._ttl:
                    return entry[1]
        # Load outside the lock: a slow upstream must not serialise unrelated lookups.
        value = load()
        if self._ttl > 0:
            with self._lock:
                if epoch != self._epoch:
                    return value
                self._entries[key] = (self._clock(), value)
                self._entries.move_to_end(key)
                while len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)
        return value

    def put_many(self, items: Iterable[tuple[Hashable, Any]], epoch: int | None = None) -> None:
        if self._ttl <= 0:
            return
        now = self._clock()
        with self._lock:
            if epoch is not None and epoch != self._epoch:
                return
            for key, value in items:
                self._entries[key] = (now, value)
                self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    @property
    def max_entries(self) -> int:
        return self._max_entries

    @property
    def epoch(self) -> int:
        return self._epoch

    def invalidate(self, key: Hashable | None = None) -> None:
        with self._lock:
            if key is None:
                self._entries.clear()
                self._epoch += 1
            else:
                self._entries.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
