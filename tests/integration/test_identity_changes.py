"""Identity changes made with push-jobs-server-ctl apply to the very next request.

A real server (two API workers, `principal_cache_ttl` 300 s) and the real ctl as a subprocess.
Before each change, several requests warm the identity caches of both workers (gunicorn hands
each new connection to whichever worker accepts it first); right after the ctl returns, every
request must see the change, whichever worker answers it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import PushdServer, running_server

ROUNDS = 8  # requests per step: enough that both workers answer some of them
JOB = {"command": "true", "nodes": ["node1"]}
CCPK = "a" * 40


def ctl(server: PushdServer, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pushd_ctl", "--config", str(server.config_path), *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning" not in done.stderr, done.stderr


def statuses(server: PushdServer, method: str, path: str, user: str) -> set[int]:
    body = JOB if method == "POST" else None
    query = {"ccpk": CCPK} if path.startswith("config/") else None
    return {
        server.request(method, path, body, user=user, query=query).status for _ in range(ROUNDS)
    }


@pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)
def test_ctl_identity_changes_apply_to_the_next_request(
    tmp_path: Path, db_backend: tuple[str, dict[str, Any]]
) -> None:
    settings: dict[str, Any] = {"principal_cache_ttl": 300, "api_workers": 2}
    if db_backend[0] == "postgres":
        settings["postgresql.db_superuser"] = db_backend[1]["user"]  # the ctl provisions
    with running_server(db_backend=db_backend, nodes=("node1", "node2"),
                        settings=settings) as server:  # fmt: skip
        org = server.org_name
        carol_key = tmp_path / "carol.pem"
        ctl(server, "user-create", "carol", "--org", org, "--key-out", str(carol_key))
        server.users["carol"] = carol_key
        # Not a writer yet: the org has no pushy_job_writers group and carol is not an admin.
        assert statuses(server, "POST", "jobs", "carol") == {403}

        ctl(server, "group-add", org, "pushy_job_writers", "--user", "carol")
        assert statuses(server, "POST", "jobs", "carol") == {201}
        assert statuses(server, "POST", "jobs", server.admin_user) == {403}  # not in the group

        ctl(server, "group-remove", org, "pushy_job_writers", "--user", "carol")
        assert statuses(server, "POST", "jobs", "carol") == {403}

        # A new key: the old one is refused at once, the new one accepted.
        assert statuses(server, "GET", "jobs", "carol") == {200}
        new_key = tmp_path / "carol-new.pem"
        ctl(server, "user-key", "carol", "--org", org, "--key-out", str(new_key))
        assert statuses(server, "GET", "jobs", "carol") == {401}
        server.users["carol"] = new_key
        assert statuses(server, "GET", "jobs", "carol") == {200}

        ctl(server, "user-delete", "carol", "--org", org)
        assert statuses(server, "GET", "jobs", "carol") == {401}

        # A node: deleted, its config is refused at once.
        assert statuses(server, "GET", "config/node2", "node2") == {200}
        ctl(server, "client-delete", "node2", "--org", org)
        assert statuses(server, "GET", "config/node2", "node2") == {401}
