"""push-jobs-server-ctl cluster-status: the members of a real PostgreSQL database's cluster as
a table and as JSON; SQLite says it is no cluster; an unreachable database is one line."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from pushd_ctl.main import main

from pushd import store
from tests.support.ports import free_ports


def write_config(root: Path, params: dict[str, Any] | None) -> Path:
    lines = [f"opscode_pushy_server['dir'] = '{root / 'srv'}'"]
    if params is not None:
        lines += [
            "postgresql['enable'] = true",
            f"postgresql['vip'] = '{params['host']}'",
            f"postgresql['port'] = {int(params['port'])}",
            f"postgresql['database_name'] = '{params['database']}'",
            f"postgresql['sql_user'] = '{params['user']}'",
        ]
    path = root / "opscode-push-jobs-server.rb"
    path.write_text("\n".join(lines) + "\n")
    return path


def ctl(config: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--config", str(config), "cluster-status", *args])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.postgres
def test_members_with_nodes_jobs_and_leases(tmp_path: Path, postgres_store: dict) -> None:
    config = write_config(tmp_path, postgres_store)
    assert ctl(config) == (0, "no cluster members: no server has started on this database\n", "")

    cluster = store.cluster
    cluster.register_member("push-a:10003", "10.0.0.1", 10003, 10000, 10002, 60)
    cluster.register_member("push-b:10003", "10.0.0.2", 10013, 10010, 10012, -5)  # lease over
    org = store.create_organization("acme")
    cluster.set_presence("push-a:10003", {(org.id, "n1"): True, (org.id, "n2"): False})
    store.create_job(org.id, "a" * 32, "chef-client", ["n1", "n2"], 2, 3600, "alice",
                     coordinator="push-a:10003")  # fmt: skip
    store.close_database()

    code, out, err = ctl(config)
    assert (code, err) == (0, "")
    heading, first, second = (line.split() for line in out.splitlines())
    assert heading == ["MEMBER", "HOST", "API", "HEARTBEAT", "COMMAND", "NODES(AVAIL/ALL)",
                       "JOBS", "LEASE", "STARTED"]  # fmt: skip
    assert first[:6] == ["push-a:10003", "10.0.0.1", "10003", "10000", "10002", "1/2"]
    assert first[6] == "1" and first[8] == "s" and 0 < int(first[7]) <= 60
    assert first[9].endswith("Z")
    assert second[:8] == ["push-b:10003", "10.0.0.2", "10013", "10010", "10012", "0/0", "0",
                          "expired"]  # fmt: skip

    code, out, err = ctl(config, "--json")
    assert (code, err) == (0, "")
    a, b = json.loads(out)
    assert {k: a[k] for k in ("member", "host", "api_port", "heartbeat_port", "command_port",
                              "nodes", "available_nodes", "jobs", "expired")} == {
        "member": "push-a:10003", "host": "10.0.0.1", "api_port": 10003,
        "heartbeat_port": 10000, "command_port": 10002, "nodes": 2, "available_nodes": 1,
        "jobs": 1, "expired": False,
    }  # fmt: skip
    assert 0 < a["lease_left"] <= 60 and a["started_at"].endswith("Z")
    assert (b["member"], b["expired"], b["lease_left"]) == ("push-b:10003", True, None)


def test_sqlite_is_not_a_cluster(tmp_path: Path) -> None:
    code, out, err = ctl(write_config(tmp_path, None))
    assert (code, err) == (0, "")
    assert out == ("not a cluster: SQLite serves one server (set postgresql['enable'] to form a "
                   "cluster)\n")  # fmt: skip


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    (port,) = free_ports(1)  # nothing listens there
    params = {"host": "127.0.0.1", "port": port, "database": "pushd", "user": "pushd"}
    code, out, err = ctl(write_config(tmp_path, params))
    assert code == 1 and out == ""
    assert err.startswith(f"push-jobs-server-ctl: database pushd at 127.0.0.1:{port}: ")
    assert len(err.splitlines()) == 1
