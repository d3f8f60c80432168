"""Which database the settings name, without importing the store (peewee, psycopg).

    database_params_from_settings(settings) -> (kind, params)   for store.open_database_params:
        ("postgres", {host, port, user, password, database}) when postgresql.enable, else
        ("sqlite", {path}): sqlite_path, or pushd.sqlite3 in data_dir
    SQLITE_FILENAME

Apart from pushd.store.db so the broker can take the SQLite file's server lock and start its
heartbeat before it imports the store (pushd.broker.startup says why that matters).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pushd.errors import StoreError

SQLITE_FILENAME = "pushd.sqlite3"


def setting(settings: Any, name: str, default: Any = None) -> Any:
    """settings.get(name), or `default` when it is missing or None."""
    try:
        value = settings.get(name)
    except (KeyError, LookupError):
        return default
    return default if value is None else value


def database_params_from_settings(settings: Any) -> tuple[str, dict[str, Any]]:
    """(kind, params) for `open_database_params`, read from a settings object."""
    if setting(settings, "postgresql.enable", False):
        return "postgres", {
            "host": setting(settings, "postgresql.vip", "127.0.0.1"),
            "port": int(setting(settings, "postgresql.port", 5432)),
            "user": setting(settings, "postgresql.sql_user", "opscode_pushy"),
            "password": setting(settings, "postgresql.sql_password", ""),
            "database": setting(settings, "postgresql.database_name", "opscode_pushy"),
        }
    sqlite_path = setting(settings, "sqlite_path")
    if sqlite_path:
        return "sqlite", {"path": str(sqlite_path)}
    data_dir = setting(settings, "data_dir")
    if not data_dir:
        raise StoreError("settings sqlite_path and data_dir are empty: nowhere to put SQLite")
    return "sqlite", {"path": str(Path(data_dir) / SQLITE_FILENAME)}
