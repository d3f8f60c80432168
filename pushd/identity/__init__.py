"""Principal sources (who may sign requests, with which keys, in which groups) and authorization.

    make_principal_source(settings) -> PrincipalSource
        By ``settings.get("principal_source")``: "local" (default) returns `LocalSource`, which
        reads the process's open database (call `pushd.store.open_database` first) and caches
        its answers for ``principal_cache_ttl`` seconds (0: no cache), forgetting them when
        the ctl bumps the identity generation in ``run_dir`` (`pushd.identity.generation`);
        "chef_server" returns `ChefServerSource.from_settings(settings)`. ConfigError for
        anything else or an unusable superuser key.

Re-exported here: `Org`, `Principal`, `Group`, `PrincipalSource`, `SourceUnavailable`
(`pushd.identity.base`), `ChefServerSource`, `ChefServerUnavailable`
(`pushd.identity.chef_server`) and the `authz` module (`can_read`, `can_write`,
`can_read_config`, `validate_client_node_name`, `is_member`). `LocalSource` lives in
`pushd.identity.local` (imported on demand: it pulls in the store and peewee).
"""

from __future__ import annotations

from typing import Any

from pushd.errors import ConfigError
from pushd.identity import authz
from pushd.identity.base import (
    KIND_CLIENT,
    KIND_USER,
    Group,
    Org,
    Principal,
    PrincipalSource,
    SourceUnavailable,
)
from pushd.identity.chef_server import ChefServerSource, ChefServerUnavailable

__all__ = [
    "KIND_CLIENT",
    "KIND_USER",
    "ChefServerSource",
    "ChefServerUnavailable",
    "Group",
    "Org",
    "Principal",
    "PrincipalSource",
    "SourceUnavailable",
    "authz",
    "make_principal_source",
]


def make_principal_source(settings: Any) -> PrincipalSource:
    kind = settings.get("principal_source") or "local"
    if kind == "local":
        from pushd.identity.generation import generation_path
        from pushd.identity.local import LocalSource

        ttl = settings.get("principal_cache_ttl")
        return LocalSource(
            cache_ttl=0.0 if ttl is None else float(ttl),
            generation_file=generation_path(settings.get("run_dir")),
        )
    if kind == "chef_server":
        try:
            return ChefServerSource.from_settings(settings)
        except ValueError as exc:
            raise ConfigError(str(exc), text=str(settings.get("chef_server_url"))) from exc
    raise ConfigError(f"principal_source must be 'local' or 'chef_server', not {kind!r}")
