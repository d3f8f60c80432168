"""The server's keys as the cluster's: one RSA and one Curve keypair for every server sharing a
PostgreSQL database (docs/operations.md, "Build a three-server cluster").

The key files under ``<data_dir>/keys`` stay what the broker and the API workers read
(`pushd.keys.load_or_create_server_keys`). On PostgreSQL this module makes them the cluster's
before anything reads them: the local files (created if missing) are offered as candidates to
`store.cluster.shared_keys`, which keeps the first server's; where the database holds other
bytes, the local file is replaced by the cluster's (atomically, 0600). A node configured by one
server therefore verifies every other server's heartbeats and reaches its command port with the
Curve key it already has: it can move between servers without re-keying. On SQLite nothing is
shared and only the files are made (the behaviour before clusters).

Called by ``push-jobs-server-ctl reconfigure`` (ctl/provision.py) and by the service's main
process before it starts the broker and gunicorn (pushd/server/main.py), which is how a server
started without a reconfigure (the tests) joins too.

    KEY_FILES                                  the file names, also the names in cluster_keys
    keys_dir(settings) -> Path                 <data_dir>/keys
    ensure_server_keys(settings, *, migrate=False) -> KeysOutcome
        the files made (SQLite) or made the cluster's (PostgreSQL: opens the database, migrating
        it first with `migrate`, and closes it again). ConfigError when a key the database holds
        is not a usable key (the local files are left alone); StoreError when it cannot be read.
    KeysOutcome(keys: ServerKeys, created: bool, taken: bool)
        created: a key file did not exist before; taken: a local file was replaced by the
        cluster's key
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pushd import chefauth
from pushd.errors import ConfigError
from pushd.keys import (
    CURVE_SECRET_FILE,
    RSA_BITS,
    RSA_KEY_FILE,
    ServerKeys,
    load_or_create_server_keys,
    write_secret_file,
    z85_decode,
)

__all__ = ["KEY_FILES", "KeysOutcome", "ensure_server_keys", "keys_dir"]

KEY_FILES = (RSA_KEY_FILE, CURVE_SECRET_FILE)


@dataclass(frozen=True)
class KeysOutcome:
    keys: ServerKeys
    created: bool
    taken: bool


def keys_dir(settings: Any) -> Path:
    return Path(settings.get("data_dir")) / "keys"


def ensure_server_keys(settings: Any, *, migrate: bool = False) -> KeysOutcome:
    directory = keys_dir(settings)
    created = not all((directory / name).exists() for name in KEY_FILES)
    keys = load_or_create_server_keys(directory)
    if not settings.get("postgresql.enable"):
        return KeysOutcome(keys, created, False)
    local = {name: (directory / name).read_bytes() for name in KEY_FILES}
    cluster = _shared(settings, local, migrate=migrate)
    changed = {
        name: cluster[name] for name in KEY_FILES if cluster.get(name, local[name]) != local[name]
    }
    for name, value in changed.items():
        _check(name, value)  # all checked before any file is replaced
    for name, value in changed.items():
        write_secret_file(directory / name, value)
    if changed:
        keys = load_or_create_server_keys(directory)
    return KeysOutcome(keys, created, bool(changed))


def _shared(settings: Any, local: dict[str, bytes], *, migrate: bool) -> dict[str, bytes]:
    from pushd import store

    store.open_database(settings, migrate=migrate)
    try:
        return store.cluster.shared_keys(local)
    finally:
        store.close_database()


def _check(name: str, value: bytes) -> None:
    """A key from the database must be usable before it replaces a working file."""
    where = f"the cluster's {name} (table cluster_keys)"
    if name == RSA_KEY_FILE:
        try:
            key = chefauth.load_private_key(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if key.key_size < RSA_BITS:
            raise ConfigError(f"{where}: {key.key_size} bits; at least {RSA_BITS} required")
        return
    try:
        raw = z85_decode(value.decode("ascii", "replace").strip())
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"{where}: not a Curve secret key (40 Z85 characters)")
