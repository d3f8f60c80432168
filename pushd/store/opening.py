"""Opening the store: connect (pushd.store.db) and, when asked, migrate (pushd.store.migrations).

    open_database_params(kind, params, *, pool_size=20, migrate=False) -> peewee.Database
        ("sqlite", {"path"}) or ("postgres", {"host", "port", "user", "password", "database"});
        see db.bind_database. migrate=True also brings the schema up to date (migrations.migrate).
    open_database(settings, *, migrate=False) -> peewee.Database
        the same, chosen by settings (db.database_params_from_settings).

This sits above both db.py and migrations.py so that neither imports the other's dependant:
migrations need db's connection and errors, and opening needs both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import peewee

from pushd.store.db import (
    bind_database,
    database_params_from_settings,
    pool_size_from_settings,
    release_idle,
    translate_errors,
)
from pushd.store.migrations import migrate as run_migrations


@translate_errors
def open_database_params(
    kind: str, params: Mapping[str, Any], *, pool_size: int = 20, migrate: bool = False
) -> peewee.Database:
    """Open the database described by (kind, params), bind the models to it and return it."""
    database = bind_database(kind, params, pool_size=pool_size)
    if migrate:
        run_migrations(database)
    release_idle(database)
    return database


def open_database(settings: Any, *, migrate: bool = False) -> peewee.Database:
    """Open the database the settings describe (see db.database_params_from_settings)."""
    kind, params = database_params_from_settings(settings)
    return open_database_params(
        kind, params, pool_size=pool_size_from_settings(settings), migrate=migrate
    )
