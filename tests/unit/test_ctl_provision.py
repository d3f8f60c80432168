"""What reconfigure provisions (ctl/provision.py): directories, keys, schema, ownership."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
from pushd_ctl import layout, provision

from pushd.settings import Settings


def make_settings(root: Path) -> Settings:
    values = {"dir": root / "srv", "log_directory": root / "log", "etc_dir": root / "etc"}
    return Settings.from_values({name: str(path) for name, path in values.items()})


def test_directories_keys_and_schema_are_created_once(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    created = provision.ensure_directories(settings)
    assert Path(settings.get("data_dir")) in created
    assert Path(settings.get("data_dir")).stat().st_mode & 0o077 == 0
    assert provision.ensure_directories(settings) == []
    first = provision.ensure_database(settings)
    assert first[0] is None and first[1] >= 1
    assert provision.ensure_database(settings) == (first[1], first[1])
    made = provision.ensure_server_keys(settings)
    assert made.created and not made.taken  # SQLite: this server's own keys
    key = layout.keys_dir(settings) / "pushy_priv.pem"
    before = key.read_bytes()
    again = provision.ensure_server_keys(settings)
    assert not again.created and not again.taken
    assert key.read_bytes() == before


@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
def test_hand_over_gives_state_to_the_account_but_keeps_the_service_dir_roots(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    provision.ensure_directories(settings)
    provision.ensure_database(settings)
    service = layout.service_path(settings, layout.MAIN_SERVICE)
    (service / "log").mkdir(parents=True)
    (service / "run").write_text("#!/bin/sh\n")
    provision.hand_over(settings, "nobody")
    nobody = pwd.getpwnam("nobody").pw_uid
    assert Path(settings.get("data_dir")).stat().st_uid == nobody
    assert Path(settings.get("sqlite_path")).stat().st_uid == nobody
    assert Path(settings.get("log_directory")).stat().st_uid == nobody
    assert Path(settings.get("service_dir")).stat().st_uid == 0
    assert (service / "run").stat().st_uid == 0


@pytest.mark.postgres
def test_postgres_role_and_database_are_created_when_missing(tmp_path: Path) -> None:
    """reconfigure's first run on PostgreSQL: the superuser creates the owner role and database."""
    import uuid

    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict

    from pushd import store
    from tests.support.databases import POSTGRES_ADMIN_URL

    admin = conninfo_to_dict(POSTGRES_ADMIN_URL)
    suffix = uuid.uuid4().hex[:10]
    database, role = f"pushd_ctl_{suffix}", f"pushd_ctl_{suffix}"
    settings = make_settings(tmp_path).replace(
        {
            "postgresql.enable": True,
            "postgresql.vip": admin.get("host", "127.0.0.1"),
            "postgresql.port": int(admin.get("port", 5432)),
            "postgresql.db_superuser": admin.get("user", "root"),
            "postgresql.database_name": database,
            "postgresql.sql_user": role,
        }
    )
    try:
        before, after = provision.ensure_database(settings)
        assert before is None and after >= 1
        assert provision.ensure_database(settings) == (after, after)
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            owner = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (database,)
            ).fetchone()
        assert owner == (role,)
    finally:
        store.close_database()
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(database)))  # fmt: skip
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
