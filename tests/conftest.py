"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import BACKENDS, postgres_database, sqlite_database

# What push-jobs-server-ctl remembers between runs (pushd_ctl.remembered) goes to a directory of
# this test session, inherited by every ctl subprocess: the machine's own state stays untouched
# and no test finds another's "last reconfigured" config.
os.environ.setdefault("PUSHD_CTL_STATE_DIR", tempfile.mkdtemp(prefix="pushd-ctl-state-"))

# Four tests press Ctrl-C on a CLI child (SIGINT). A shell without job control starts a
# background command (`scripts/test &`) with SIGINT ignored, and an ignored signal stays ignored
# across exec: the children would then ignore the Ctrl-C those tests send. Python's own handler
# here gives every child the default disposition, as a terminal's foreground job has.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(params=BACKENDS)
def db_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict]]:
    """("sqlite" | "postgres", connection parameters) for a fresh, empty database.

    Every storage test takes this fixture, so it runs on both backends.
    """
    if request.param == "postgres":
        with postgres_database() as params:
            yield "postgres", params
    else:
        with sqlite_database(tmp_path) as params:
            yield "sqlite", params


@pytest.fixture
def store_db(db_backend: tuple[str, dict]) -> Iterator[str]:
    """A migrated pushd store open on each backend (the proxy bound to it); yields the kind.

    Closes every connection afterwards so the PostgreSQL database can be dropped.
    """
    from pushd import store

    kind, params = db_backend
    store.open_database_params(kind, params, migrate=True)
    try:
        yield kind
    finally:
        store.close_database()


@pytest.fixture
def postgres_store() -> Iterator[dict]:
    """A migrated pushd store open on a fresh PostgreSQL database only (the cluster's
    backend); yields its connection parameters."""
    from pushd import store

    with postgres_database() as params:
        store.open_database_params("postgres", params, migrate=True)
        try:
            yield params
        finally:
            store.close_database()
