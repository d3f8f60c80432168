"""Principal source backed by pushd's own database (`pushd.store`, the embedded default).

    LocalSource(cache_ttl=0.0, *, clock=time.monotonic, generation_file=None)
        Implements `PrincipalSource` over the process-wide database the caller opened with
        `pushd.store.open_database(...)`. With `cache_ttl` > 0 (the API workers pass
        `principal_cache_ttl`) every answer of `org`, `principal` and `group`, "does not exist"
        included, is kept in this process for up to `cache_ttl` seconds, so a steady stream of
        requests from known principals makes no database query for identity. A change made
        with `push-jobs-server-ctl` (a client deleted, a key replaced, a group changed) bumps
        `generation_file` (`pushd.identity.generation`, in run_dir; the API workers pass it):
        every lookup first stats that file and, when it changed, forgets everything cached, so
        such a change takes effect on the next lookup whatever `cache_ttl` is. A change made
        to the database behind the ctl's back takes effect within `cache_ttl` seconds. Errors
        are never cached. Cache keys carry the organization name, so every lookup stays
        org-scoped.
        ``invalidate()`` forgets everything cached.
        Herds: when `cache_ttl` > 0 and BULK_AFTER principal lookups of one organization miss
        the cache within one `cache_ttl` window (a restart storm: every node re-fetches its
        config at once), the source loads all of that organization's principals in one query
        and caches them, at most once per window and only when they fit in half the cache
        (CACHE_ENTRIES, so an org of up to 25,000 principals: ~1 KB each, mostly the PEM);
        the lookups that follow are answered from memory instead of one query each. A name
        not found in that load is still looked up on its own, so a principal created since is
        seen at once, as without the bulk load.

Mapping to Chef's model:
    org(name)                 the stored organization (its id is the 32-hex guid)
    principal(org, name)      the stored client or user of that org. A client and a user may
                              share a name in the store; the client wins, as nodes are what
                              sign most requests (the same rule as the chef_server source).
                              A user stored only in other organizations is returned with
                              ``org_member=False`` and those keys, so the API answers 403 "not
                              associated with organization" like Chef Server does for a user
                              outside the org; clients belong to exactly one org, so an unknown
                              client stays unknown (401).
    group(org, name)          the stored group with its user, client and nested group members
Errors from the store (`pushd.errors.StoreError`, e.g. the database is unreachable) are
re-raised as `SourceUnavailable`, which the API answers with 502.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from pushd import store
from pushd.errors import StoreError
from pushd.identity.base import (
    KIND_CLIENT,
    KIND_USER,
    Group,
    Org,
    Principal,
    SourceUnavailable,
)
from pushd.identity.cache import TTLCache
from pushd.identity.generation import GenerationWatch

P = ParamSpec("P")
# Misses within one cache_ttl window before a bulk load: on PostgreSQL, loading 5,000
# principals took 33-49 ms of CPU, one single lookup 0.25 ms, so a load pays from ~150 misses;
# a storm makes thousands, steady traffic (nodes re-fetching their config at 90-100 % of its
# lifetime) far fewer, and at worst a load is made once per window.
BULK_AFTER = 64
_MAX_HERD_ORGS = 1000
# Room for the bulk load of an 8,000-node org (the scale target) with margin: TTLCache's
# default of 10,000 would allow bulk loads of 5,000 principals only.
CACHE_ENTRIES = 50_000
R = TypeVar("R")


def _store_errors_unavailable(func: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except StoreError as exc:
            raise SourceUnavailable(f"local principal store: {exc}") from exc

    return wrapper


def _member(row: Any) -> Principal:
    """A stored client or user of the organization asked about."""
    return Principal(
        name=row.name,
        kind=row.kind,
        public_keys=(row.public_key,),
        org_member=True,
        admin=row.admin,
    )


class LocalSource:
    def __init__(
        self,
        cache_ttl: float = 0.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        generation_file: Path | None = None,
    ) -> None:
        self._cache = TTLCache(cache_ttl, max_entries=CACHE_ENTRIES, clock=clock)
        self._ttl = cache_ttl
        self._clock = clock
        # org name -> [window start, misses in the window, bulk loaded in the window]
        self._herds: dict[str, list[Any]] = {}
        # Without a cache there is nothing to forget, and no stat per lookup to pay.
        self._generation = (
            GenerationWatch(generation_file)
            if generation_file is not None and cache_ttl > 0
            else None
        )

    def invalidate(self) -> None:
        """Forget every cached answer."""
        self._cache.invalidate()
        self._herds.clear()

    def _fresh(self) -> None:
        if self._generation is not None:
            self._generation.check(self.invalidate)

    def org(self, name: str) -> Org | None:
        self._fresh()
        return self._cache.get_or_load(("org", name), lambda: self._load_org(name))

    def principal(self, org_name: str, name: str) -> Principal | None:
        self._fresh()
        return self._cache.get_or_load(
            ("principal", org_name, name), lambda: self._principal_missed(org_name, name)
        )

    def group(self, org_name: str, group_name: str) -> Group | None:
        self._fresh()
        return self._cache.get_or_load(
            ("group", org_name, group_name), lambda: self._load_group(org_name, group_name)
        )

    @_store_errors_unavailable
    def _load_org(self, name: str) -> Org | None:
        row = store.get_organization(name)
        return None if row is None else Org(name=row.name, id=row.id)

    def _principal_missed(self, org_name: str, name: str) -> Principal | None:
        if self._bulk_due(org_name):
            found = self._load_org_principals(org_name).get(name)
            if found is not None:
                return found
        return self._load_principal(org_name, name)

    def _bulk_due(self, org_name: str) -> bool:
        if self._ttl <= 0:
            return False
        now = self._clock()
        herd = self._herds.get(org_name)
        if herd is None or now - herd[0] >= self._ttl:
            if len(self._herds) >= _MAX_HERD_ORGS:
                self._herds.clear()
            herd = self._herds[org_name] = [now, 0, False]
        herd[1] += 1
        if herd[1] < BULK_AFTER or herd[2]:
            return False
        herd[2] = True  # before loading: concurrent misses must not start a second load
        return True

    @_store_errors_unavailable
    def _load_org_principals(self, org_name: str) -> dict[str, Principal]:
        """Every principal of the org, cached; {} (nothing cached) when they would not fit."""
        epoch = self._cache.epoch  # before reading: a load an invalidation overtook is dropped
        org = self.org(org_name)
        if org is None:
            return {}
        rows = store.list_principals(org.id)
        if len(rows) > self._cache.max_entries // 2:
            return {}
        found: dict[str, Principal] = {}
        for row in rows:
            if row.kind == KIND_CLIENT or row.name not in found:  # the client wins
                found[row.name] = _member(row)
        self._cache.put_many(
            ((("principal", org_name, name), principal) for name, principal in found.items()),
            epoch,
        )
        return found

    @_store_errors_unavailable
    def _load_principal(self, org_name: str, name: str) -> Principal | None:
        # Through the cached org: an authenticated request has just looked it up.
        org = self.org(org_name)
        if org is None:
            return None
        rows = {row.kind: row for row in store.find_principals(org.id, name)}
        row = rows.get(KIND_CLIENT) or rows.get(KIND_USER)
        if row is not None:
            return _member(row)
        return self._outside_user(org.id, name)

    def _outside_user(self, org_id: str, name: str) -> Principal | None:
        keys: list[str] = []
        for other in store.list_organizations():
            if other.id == org_id:
                continue
            row = store.get_principal(other.id, name, KIND_USER)
            if row is not None and row.public_key not in keys:
                keys.append(row.public_key)
        if not keys:
            return None
        return Principal(
            name=name, kind=KIND_USER, public_keys=tuple(keys), org_member=False, admin=False
        )

    @_store_errors_unavailable
    def _load_group(self, org_name: str, group_name: str) -> Group | None:
        org = self.org(org_name)
        if org is None:
            return None
        row = store.get_group(org.id, group_name)
        if row is None:
            return None
        return Group.of(row.name, row.users, row.clients, row.groups)
