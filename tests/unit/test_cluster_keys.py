"""The server keys as the cluster's (pushd.cluster_keys): the first server's are kept in the
shared PostgreSQL database and every other server's key files become those; SQLite: files only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pushd import store
from pushd.cluster_keys import KEY_FILES, ensure_server_keys, keys_dir
from pushd.errors import ConfigError
from pushd.settings import Settings
from tests.support.databases import postgres_database

pytestmark = pytest.mark.postgres


def server_settings(root: Path, params: dict[str, Any] | None) -> Settings:
    values: dict[str, Any] = {"dir": str(root / "srv")}
    if params is not None:
        values.update({
            "postgresql.enable": True,
            "postgresql.vip": params["host"],
            "postgresql.port": params["port"],
            "postgresql.database_name": params["database"],
            "postgresql.sql_user": params["user"],
            "postgresql.sql_password": params.get("password") or "",
            "db_pool_size": 2,
        })  # fmt: skip
    return Settings.from_values(values)


def key_files(settings: Settings) -> dict[str, bytes]:
    return {name: (keys_dir(settings) / name).read_bytes() for name in KEY_FILES}


@pytest.fixture
def database() -> Iterator[dict[str, Any]]:
    with postgres_database() as params:
        yield params
    store.close_database()


def test_the_second_server_takes_the_first_servers_keys(
    tmp_path: Path, database: dict[str, Any]
) -> None:
    first = server_settings(tmp_path / "a", database)
    second = server_settings(tmp_path / "b", database)
    made = ensure_server_keys(first, migrate=True)
    assert made.created and not made.taken
    kept = key_files(first)

    joined = ensure_server_keys(second)
    assert joined.created and joined.taken
    assert key_files(second) == kept
    assert joined.keys.curve_public_z85 == made.keys.curve_public_z85
    assert joined.keys.rsa_public_pem == made.keys.rsa_public_pem
    for name in KEY_FILES:
        assert (keys_dir(second) / name).stat().st_mode & 0o777 == 0o600

    again = ensure_server_keys(second)
    assert not again.created and not again.taken
    assert key_files(first) == key_files(second) == kept


def test_a_broken_key_in_the_database_leaves_the_files_alone(
    tmp_path: Path, database: dict[str, Any]
) -> None:
    first = server_settings(tmp_path / "a", database)
    ensure_server_keys(first, migrate=True)
    store.open_database(first)
    try:
        store.get_database().execute_sql(
            "UPDATE cluster_keys SET value = %s WHERE name = %s", (b"junk", KEY_FILES[1])
        )
    finally:
        store.close_database()
    second = server_settings(tmp_path / "b", database)
    ensure_server_keys(second.replace({"postgresql.enable": False}))  # its own files
    before = key_files(second)
    with pytest.raises(ConfigError, match=r"cluster's curve_secret\.z85"):
        ensure_server_keys(second)
    assert key_files(second) == before


def test_sqlite_servers_keep_their_own_keys(tmp_path: Path) -> None:
    first, second = (server_settings(tmp_path / name, None) for name in ("a", "b"))
    assert ensure_server_keys(first).created
    assert ensure_server_keys(second).created
    assert key_files(first) != key_files(second)
    assert not ensure_server_keys(first).created
