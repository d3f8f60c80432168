"""The client's config reload (SIGUSR1/SIGHUP) and its login-like job environment, with a real
push-jobs-client against a real pushd server."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_client_server import Node, files_root, finished, output, start_job
from tests.support.client_process import wait_until
from tests.support.server import PushdServer, running_server

__all__ = ["files_root"]  # the fixture, imported for its use here

ENV_DUMP = {"command_line": "env", "shell": False}


@pytest.fixture(scope="module")
def server() -> Iterator[PushdServer]:
    with running_server(nodes=("node1",)) as srv:
        yield srv


def _signal_and_wait_reconnected(node: Node, signum: int, logged: str) -> None:
    """Send `signum` and wait until the client has logged `logged` once more and has then
    fetched its config and reconnected (the reload also reconfigures): a job offered while the
    old connection is being replaced could lose its `run` message to the closing socket."""
    log = node.client.log
    before, connects = log().count(logged), log().count("connected to ")
    node.client.signal(signum)
    wait_until(lambda: log().count(logged) > before and log().count("connected to ") > connects,
               20)
    node.wait_available()


def _edit_config(node: Node, **changes: object) -> None:
    path = node.client.config_path
    document = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if key == "whitelist":
            document["whitelist"].update(value)
        else:
            document[key] = value
    path.write_text(yaml.safe_dump(document))


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGHUP])
def test_a_whitelist_entry_added_to_the_file_applies_after_a_signal(
    server: PushdServer, tmp_path: Path, files_root: Path, signum: int
) -> None:
    node = Node(server, tmp_path, files_root, "node1")
    try:
        node.start()
        refused = finished(server, start_job(server, "greet", ["node1"]))
        assert refused["node_reasons"] == {"node1": "not_whitelisted"}

        _edit_config(node, whitelist={"greet": "echo hello after reload"})
        _signal_and_wait_reconnected(node, signum, "whitelist entries")

        doc = finished(server, start_job(server, "greet", ["node1"], capture_output=True))
        assert doc["nodes"] == {"succeeded": ["node1"]}
        assert output(server, doc["id"], "node1", "stdout") == "hello after reload\n"
        assert node.client.proc is not None and node.client.proc.poll() is None  # same process
    finally:
        node.client.stop()


def test_a_file_that_no_longer_loads_keeps_the_previous_whitelist(
    server: PushdServer, tmp_path: Path, files_root: Path
) -> None:
    node = Node(server, tmp_path, files_root, "node1")
    try:
        node.start()
        node.client.config_path.write_text(
            node.client.config_path.read_text() + "kill_grace: -3\n"
        )
        _signal_and_wait_reconnected(node, signal.SIGUSR1, "config not reloaded")
        assert "kill_grace" in node.client.log().split("config not reloaded", 1)[1]
        doc = finished(server, start_job(server, "hello", ["node1"], capture_output=True))
        assert doc["nodes"] == {"succeeded": ["node1"]}
    finally:
        node.client.stop()


def _job_env(server: PushdServer, node: Node) -> dict[str, str]:
    doc = finished(server, start_job(server, "envdump", ["node1"], capture_output=True,
                                     user="daemon", dir="/tmp"))
    assert doc["nodes"] == {"succeeded": ["node1"]}, doc
    text = output(server, doc["id"], "node1", "stdout")
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_inherit_passes_the_clients_environment_and_login_gives_a_clean_one(
    server: PushdServer, tmp_path: Path, files_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUSHD_CLIENT_ONLY_VARIABLE", "leaks")
    monkeypatch.setenv("LANG", "C.UTF-8")
    node = Node(server, tmp_path, files_root, "node1", whitelist={"envdump": "env"})
    try:
        node.start()
        inherited = _job_env(server, node)
        assert inherited["PUSHD_CLIENT_ONLY_VARIABLE"] == "leaks"
        assert inherited["HOME"] != "/root" and inherited["USER"] == "daemon"

        _edit_config(node, job_environment="login")
        _signal_and_wait_reconnected(node, signal.SIGUSR1, "whitelist entries")
        login = _job_env(server, node)
        assert "PUSHD_CLIENT_ONLY_VARIABLE" not in login
        assert login["PATH"] == "/usr/local/bin:/usr/bin:/bin"
        assert login["PWD"] == "/tmp" and login["LANG"] == "C.UTF-8"
        assert login["USER"] == login["LOGNAME"] == "daemon"
        assert login["HOME"] == inherited["HOME"] and login["SHELL"] == inherited["SHELL"]
        assert set(login) - {"PATH", "PWD", "LANG", "HOME", "USER", "LOGNAME", "SHELL"} == {
            "CHEF_PUSH_NODE_NAME", "CHEF_PUSH_JOB_ID",
        }
    finally:
        node.client.stop()
