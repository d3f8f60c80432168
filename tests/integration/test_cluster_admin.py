"""Several real servers on one database: on PostgreSQL they share the first server's keys (a
node can move between them without re-keying); on one SQLite file the second is refused."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import zmq
from pushd_ctl.main import main as ctl_main

from pushd.cluster_keys import KEY_FILES
from pushd.sqlite_lock import ADVICE, lock_path
from tests.support.server import PushdServer, running_server


def ctl(server: PushdServer, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = ctl_main(["--config", str(server.config_path), *args])
    return code, out.getvalue(), err.getvalue()


def key_files(server: PushdServer) -> dict[str, bytes]:
    return {name: (server.dir / "data" / "keys" / name).read_bytes() for name in KEY_FILES}


def server_keys(server: PushdServer) -> tuple[str, str]:
    """The RSA and Curve public keys the server gives a node in its config answer."""
    ccpk = zmq.curve_keypair()[0].decode()
    answer = server.node_config("node1", ccpk=ccpk)
    assert answer.status == 200, answer.body
    config = answer.json()
    return config["public_key"], config["curve_public_key"]


@pytest.mark.postgres
@pytest.mark.parametrize("db_backend", ["postgres"], indirect=True)
def test_servers_on_one_postgresql_database_share_the_first_servers_keys(
    db_backend: tuple[str, dict[str, Any]],
) -> None:
    with running_server(db_backend=db_backend) as first:
        kept = key_files(first)
        first_keys = server_keys(first)
        with running_server(db_backend=db_backend, provision=False) as second:
            assert server_keys(second) == first_keys
            assert key_files(second) == kept
            for name in KEY_FILES:
                assert (second.dir / "data" / "keys" / name).stat().st_mode & 0o777 == 0o600
            code, out, err = ctl(second, "cluster-status", "--json")
            assert (code, err) == (0, "")
            members = {m["member"]: m for m in json.loads(out)}
            assert set(members) == {f"127.0.0.1:{s.api_port}" for s in (first, second)}
            assert not any(m["expired"] for m in members.values())
            assert members[f"127.0.0.1:{second.api_port}"]["command_port"] == (
                second.ports["command_port"])
        assert key_files(first) == kept


def test_a_second_server_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    database = tmp_path / "shared.sqlite3"
    with running_server(settings={"sqlite_path": str(database)}) as first:
        broker = first.broker_pid()
        second = PushdServer(
            settings={"sqlite_path": str(database), "etc_dir": str(tmp_path / "etc")},
            provision=False,
        )
        try:
            refusal = (f"{lock_path(database)} is held by the pushd server with run_dir "
                       f"{first.dir / 'run'} (pid {broker}): {ADVICE}")  # fmt: skip

            # The service's main process: exit 2, the reason on one line.
            with pytest.raises(RuntimeError, match="pushd exited with 2 while starting"):
                second.start()
            assert f"pushd: {refusal}" in second.log_text().splitlines()

            # The broker alone (as its supervisor would start it): refuses, saying why.
            alone = subprocess.run(
                [sys.executable, "-m", "pushd.broker", "--config", str(second.config_path)],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert alone.returncode == 1
            assert f"not starting: {refusal}" in alone.stderr

            # reconfigure: one line, before anything is touched.
            code, _, err = ctl(second, "reconfigure")
            assert code == 1
            assert err == f"push-jobs-server-ctl: {refusal}\n"
            assert not (second.dir / "srv" / "service").exists()
        finally:
            second.cleanup()

        # The first server never noticed.
        assert first.broker_pid() == broker
        assert first.request("GET", "/_status", sign=False).status == 200
        assert first.request("GET", "jobs").status == 200
        first.peer("node1")
        first.wait_available("node1")
