"""pushd installed on a Chef Server host, plugged in the way the Push Jobs add-on was.

Real parts: a Chef Server host stand-in (tests/support/chef_server_host.py: Debian's nginx laid
out like Chef Server's, TLS with a self-signed certificate, goiardi --use-auth as erchef,
chef-server-running.json and private-chef-secrets.json), the appliance under a temporary directory
driven by push-jobs-server-ctl (real runsvdir, the real service, the machine's PostgreSQL as the
Chef Server's), the push-jobs CLI with a knife.rb and trusted_certs, and a real node client.
Every URL the CLI and the node use is nginx's https port.

The tests run in file order and share one appliance; the last one uninstalls.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.chef_server_host import (
    STAND_IN_PG_PASSWORD,
    ChefServerHostStandIn,
    chef_server_host_stand_in,
)
from tests.support.client_process import ClientProcess
from tests.support.databases import POSTGRES_ADMIN_URL
from tests.support.ports import free_ports

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REPO_ROOT = Path(__file__).resolve().parents[2]
ORG = "acme"
ADDONS = ("10-push_jobs_upstreams.conf", "10-push_jobs_external.conf")
START_LINE = re.compile(r"^Started\.  Job ID: ([0-9a-f]{32})$", re.MULTILINE)


def wait_for(check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.1)


def _admin_sql(statement: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(statement)


@dataclass
class World:
    root: Path
    host: ChefServerHostStandIn
    config: Path
    workdir: Path
    env: dict[str, str]
    node_key: Path
    nginx_before: dict[str, Any]

    def ctl(self, *args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pushd_ctl", "--config", str(self.config), *args],
            capture_output=True, text=True, timeout=timeout, input="",
        )  # fmt: skip

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pushd_knife", *args],
            cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    @property
    def log_current(self) -> Path:
        return self.root / "log" / "current"

    def service_log(self) -> str:
        try:
            return self.log_current.read_text(errors="replace")[-6000:]
        except OSError:
            return ""


def _nginx_state(host: ChefServerHostStandIn) -> dict[str, Any]:
    return {
        "conf": host.conf_path.read_text(),
        "addons": sorted(path.name for path in host.addon_dir.iterdir()),
    }


def _appliance_config(root: Path, host: ChefServerHostStandIn, database: str) -> Path:
    ports = free_ports(4)
    values = {
        "dir": str(root / "srv"),
        "log_directory": str(root / "log"),
        "etc_dir": str(root / "etc"),
        "api_port": ports[0],
        "server_heartbeat_port": ports[1],
        "command_port": ports[2],
        "unencrypted_command_port": ports[3],
        "zeromq_listen_address": "tcp://127.0.0.1",
        "heartbeat_interval": 500,
        "chef_server_running_json": str(host.running_json),
        "chef_server_secrets_json": str(host.secrets_json),
    }
    text = "# pushd on the Chef Server host stand-in\n" + "".join(
        f"opscode_pushy_server['{key}'] = {json.dumps(value)}\n" for key, value in values.items()
    )
    # Its own database and users in the Chef Server's PostgreSQL (the machine's, shared).
    text += (
        f"postgresql['database_name'] = '{database}'\n"
        f"postgresql['sql_user'] = '{database}'\n"
        f"postgresql['sql_ro_user'] = '{database}_ro'\n"
    )
    config = root / "opscode-push-jobs-server.rb"
    config.write_text(text)
    return config


def _operator(root: Path, host: ChefServerHostStandIn) -> tuple[Path, dict[str, str]]:
    workdir = root / "operator"
    chef = workdir / ".chef"
    (chef / "trusted_certs").mkdir(parents=True)
    (chef / "admin.pem").write_text(host.goiardi.admin_key)
    # Where `knife ssl fetch` puts the Chef Server's self-signed certificate.
    (chef / "trusted_certs" / "127_0_0_1.crt").write_bytes(host.cert_path.read_bytes())
    (chef / "knife.rb").write_text(
        "current_dir = File.dirname(__FILE__)\n"
        f"node_name                '{host.goiardi.admin_name}'\n"
        "client_key               \"#{current_dir}/admin.pem\"\n"
        f"chef_server_url          '{host.url}/organizations/{ORG}'\n"
        "trusted_certs_dir        \"#{current_dir}/trusted_certs\"\n"
    )
    env = {"HOME": str(root / "home"), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return workdir, env


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="pushd-chefhost-", dir="/tmp"))
    database = f"pushd_chefhost_{uuid.uuid4().hex[:10]}"
    try:
        with chef_server_host_stand_in(root / "chef-server") as host:
            goiardi = host.goiardi
            node_key = root / "node1.pem"
            node_key.write_text(goiardi.create_client("node1"))
            for name in ("node1", "web1"):
                status, body = goiardi.request("POST", "/nodes", {
                    "name": name, "json_class": "Chef::Node", "chef_type": "node",
                    "chef_environment": "_default", "run_list": [],
                })  # fmt: skip
                assert status == 201, body
            config = _appliance_config(root, host, database)
            workdir, env = _operator(root, host)
            world = World(root, host, config, workdir, env, node_key, _nginx_state(host))
            try:
                yield world
            finally:
                world.ctl("cleanse", "--yes")
    finally:
        for statement in (f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)',
                          f'DROP ROLE IF EXISTS "{database}"'):  # fmt: skip
            try:
                _admin_sql(statement)
            except Exception as exc:  # cleanup must go on
                print(f"cleanup: {statement}: {exc}", file=sys.stderr)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def _pushd_status(world: World) -> bool:
    status, body = world.host.get("/pushy/_status")
    if status != 200:
        return False
    try:
        return json.loads(body).get("status") == "it's alive"
    except ValueError:
        return False


def test_reconfigure_takes_the_chef_server_and_loads_the_addon(world: World) -> None:
    assert world.nginx_before["addons"] == []
    assert not _pushd_status(world)  # before: nginx sends /pushy/ to erchef

    result = world.ctl("reconfigure")
    assert result.returncode == 0, result.stdout + result.stderr + world.service_log()
    assert f"Chef Server host ({world.host.running_json})" in result.stdout
    for name in ADDONS:
        assert f"wrote {world.host.addon_dir / name}" in result.stdout
    assert "reloaded nginx" in result.stdout
    checked = world.host.nginx_test()
    assert checked.returncode == 0, checked.stderr

    external = (world.host.addon_dir / ADDONS[1]).read_text()
    assert 'location ~ "^/organizations/[a-z0-9-_]+/pushy/"' in external
    assert 'location ~ "^/pushy/_status"' in external
    assert "proxy_buffering off;" in external
    assert "proxy_pass http://opscode_pushy;" in external  # no URI part: the path is kept

    wait_for(lambda: _pushd_status(world), what="pushd's /pushy/_status through nginx")

    shown = world.ctl("show-config")
    assert shown.returncode == 0, shown.stderr
    values = json.loads(shown.stdout)
    pushy, postgresql = values["opscode_pushy_server"], values["postgresql"]
    assert pushy["principal_source"] == "chef_server"
    assert pushy["chef_server_url"] == world.host.goiardi.url  # erchef itself, not nginx
    assert pushy["chef_server_superuser_key"] == str(world.host.secrets_json)
    assert (pushy["vip"], pushy["server_name_advertised"]) == ("127.0.0.1", "127.0.0.1")
    assert (postgresql["enable"], postgresql["db_superuser"]) == (True, "root")
    assert postgresql["database_name"].startswith("pushd_chefhost_")  # the file wins
    origin_line = shown.stderr.strip()
    assert origin_line.startswith(f"From the Chef Server ({world.host.running_json}):")
    taken = set(origin_line.split(": ", 1)[1].split(", "))
    assert {"vip", "principal_source", "chef_server_url", "chef_server_superuser_key",
            "postgresql.enable", "postgresql.vip", "postgresql.port",
            "postgresql.db_superuser"} <= taken  # fmt: skip
    assert "postgresql.database_name" not in taken

    assert "postgresql.db_superuser_password" in taken
    running = json.loads((world.root / "etc" / "opscode-push-jobs-server-running.json").read_text())
    assert running["postgresql"]["db_superuser_password"] == f"(in {world.host.secrets_json})"

    # The Chef Server's secrets are read where they are: no copy anywhere in the appliance.
    key_line = json.loads(world.host.secrets_json.read_text())["chef-server"]["superuser_key"]
    secrets = (key_line.strip().splitlines()[1].encode(), STAND_IN_PG_PASSWORD.encode())
    for path in world.root.rglob("*"):
        if path.is_file() and "chef-server" not in path.parts and path.stat().st_size < 10**7:
            data = path.read_bytes()
            assert not any(secret in data for secret in secrets), path


def test_second_reconfigure_rewrites_nothing_and_does_not_reload(world: World) -> None:
    stamps = {name: (world.host.addon_dir / name).stat().st_mtime_ns for name in ADDONS}
    result = world.ctl("reconfigure")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reloaded nginx" not in result.stdout
    assert "Nothing changed." in result.stdout
    assert stamps == {name: (world.host.addon_dir / name).stat().st_mtime_ns for name in ADDONS}


def test_knife_and_a_node_work_through_the_chef_server_front_door(world: World) -> None:
    url = f"{world.host.url}/organizations/{ORG}"
    client = ClientProcess(world.root / "node1", world.node_key, url, node="node1",
                           trusted_certs_dir=str(world.host.cert_path.parent))
    client.start()
    try:
        def available() -> bool:
            status = world.cli("node", "status", "node1")
            return status.returncode == 0 and status.stdout == "node1\tavailable\n"

        wait_for(available, timeout=60, what="node1 available through nginx")
        assert "GET /organizations/acme/pushy/config/node1" in world.service_log()

        started = world.cli("job", "start", "--capture", "--search", "name:node*", "hello")
        assert started.returncode == 0, started.stdout + started.stderr + world.service_log()
        match = START_LINE.search(started.stdout)
        assert match, started.stdout
        job_id = match.group(1)
        assert started.stdout.endswith("NODE   STATUS\nnode1  succeeded\n"), started.stdout

        output = world.cli("job", "output", "--channel", "stdout", job_id, "node1")
        assert (output.returncode, output.stdout) == (0, "hello from the node\n"), output.stderr

        watch = world.cli("job", "watch", job_id)
        assert watch.returncode == 0, watch.stderr
        assert watch.stdout.endswith(f"Job {job_id}: complete\nNODE   STATUS\nnode1  succeeded\n")
        # Both followed the job's feed through nginx (not polling): the SSE stream answered.
        feed = f'"GET /organizations/{ORG}/pushy/job_status_feed/{job_id} HTTP/1.1" 200 '
        assert world.host.access_log().count(feed) >= 2, world.host.access_log()[-3000:]
        # goiardi answered the search (at its root: it is single-tenant).
        assert '"GET /search/node?q=name%3Anode%2A' in world.host.access_log()
    finally:
        client.stop()


def test_x_forwarded_for_is_logged_as_the_client_address(world: World) -> None:
    status, _ = world.host.get("/pushy/_status", headers={"X-Forwarded-For": "203.0.113.7"})
    assert status == 200
    wait_for(lambda: '203.0.113.7 - "GET /pushy/_status HTTP/1.1" 200' in world.service_log(),
             what="the forwarded client address in the service log")


def test_uninstall_leaves_nginx_as_it_was(world: World) -> None:
    result = world.ctl("uninstall")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ADDONS:
        assert f"removed {world.host.addon_dir / name}" in result.stdout
    assert _nginx_state(world.host) == world.nginx_before
    checked = world.host.nginx_test()
    assert checked.returncode == 0, checked.stderr
    wait_for(lambda: not _pushd_status(world), what="nginx without the push locations")
    assert world.host.process.poll() is None, world.host.log_text()
