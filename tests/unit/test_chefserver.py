"""What pushd takes from a Chef Server host (pushd.chefserver), the nginx add-on's text and its
`nginx -t` guard (real Debian nginx), the access log's client address and push-jobs' search root.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pushd_ctl import nginx_addon
from pushd_ctl.context import CommandFailed
from pushd_knife.chefhttp import ChefHTTP

from pushd import chefserver
from pushd.config import load_settings
from pushd.errors import ConfigError
from pushd.identity import ChefServerSource, make_principal_source
from pushd.server.accesslog import client_address
from pushd.settings import Settings

RUNNING = {
    "private_chef": {
        "topology": "standalone",
        "lb": {"api_fqdn": "chef.example.com"},
        "backend_vips": {"ipaddress": "10.0.0.9"},
        "user": {"username": "opscode"},
        "nginx": {"dir": "/var/opt/opscode/nginx"},
        "postgresql": {"vip": "10.0.0.5", "port": "5433", "db_superuser": "opscode-pgsql",
                       "username": "opscode-pgsql"},
        "opscode-erchef": {"listen": "127.0.0.1", "port": 8000},
    }
}  # fmt: skip


def _key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="module")
def pem() -> str:
    return _key_pem()


def _host(tmp_path: Path, running: Any, secrets: Any, extra: str = "") -> Path:
    running_path, secrets_path = tmp_path / "running.json", tmp_path / "secrets.json"
    if running is not None:
        running_path.write_text(running if isinstance(running, str) else json.dumps(running))
    if secrets is not None:
        secrets_path.write_text(json.dumps(secrets))
    config = tmp_path / "server.rb"
    config.write_text(
        f"opscode_pushy_server['chef_server_running_json'] = '{running_path}'\n"
        f"opscode_pushy_server['chef_server_secrets_json'] = '{secrets_path}'\n" + extra
    )
    return config


def _taken(settings: Settings) -> set[str]:
    return {name for name in settings if settings.origin(name) == chefserver.ORIGIN}


def test_without_chef_server_running_json_nothing_is_taken(tmp_path: Path) -> None:
    settings = load_settings(_host(tmp_path, None, None))
    assert _taken(settings) == set()
    assert settings["principal_source"] == "local"
    assert settings["postgresql.enable"] is False


def test_values_come_from_the_chef_server_and_the_file_wins(tmp_path: Path, pem: str) -> None:
    secrets = {"chef-server": {"superuser_key": pem},
               "postgresql": {"db_superuser_password": "pg-secret"},
               "push-jobs-server": {"sql_password": "pushy-secret"}}  # fmt: skip
    config = _host(tmp_path, RUNNING, secrets, "postgresql['port'] = 6000\n")
    settings = load_settings(config)
    assert settings["vip"] == settings["server_name_advertised"] == "chef.example.com"
    assert (settings["postgresql.enable"], settings["postgresql.vip"]) == (True, "10.0.0.5")
    assert settings["postgresql.db_superuser"] == "opscode-pgsql"
    assert settings["postgresql.port"] == 6000 and settings.origin("postgresql.port") is None
    assert settings["postgresql.db_superuser_password"] == "pg-secret"
    assert settings["postgresql.sql_password"] == "pushy-secret"
    assert settings["principal_source"] == "chef_server"
    assert settings["chef_server_url"] == "http://127.0.0.1:8000"
    assert settings["chef_server_superuser_key"] == str(tmp_path / "secrets.json")
    assert "postgresql.port" not in _taken(settings)
    assert {"vip", "principal_source", "chef_server_superuser_key",
            "postgresql.vip"} <= _taken(settings)  # fmt: skip


def test_tier_topology_takes_the_backend_vip(tmp_path: Path) -> None:
    running = json.loads(json.dumps(RUNNING))
    running["private_chef"]["topology"] = "tier"
    running["private_chef"]["opscode-erchef"]["listen"] = "0.0.0.0"
    settings = load_settings(_host(tmp_path, running, None))
    assert settings["vip"] == "10.0.0.9"
    assert settings["chef_server_url"] == "http://127.0.0.1:8000"
    assert "chef_server_superuser_key" not in _taken(settings)  # no secrets file


@pytest.mark.parametrize(
    ("running", "reason"),
    [
        ("{not json", "not valid JSON"),
        ({"other": {}}, "no 'private_chef' object"),
        ({"private_chef": {"postgresql": {"port": "many"}}}, "private_chef postgresql.port"),
    ],
)
def test_a_bad_running_json_is_a_config_error_naming_it(
    tmp_path: Path, running: Any, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_host(tmp_path, running, None))
    assert reason in str(caught.value)
    assert str(tmp_path / "running.json") in str(caught.value)


def test_the_superuser_key_is_read_from_the_secrets_file(tmp_path: Path, pem: str) -> None:
    veil = {"veil": {"credentials": {"chef-server": {"superuser_key": pem}}}}
    for secrets in ({"chef-server": {"superuser_key": pem}}, veil):
        settings = load_settings(_host(tmp_path, RUNNING, secrets))
        assert chefserver.superuser_key_pem(settings["chef_server_superuser_key"]) == pem
        source = ChefServerSource.from_settings(settings)
        assert source.tenancy == "auto"
    settings = load_settings(_host(tmp_path, RUNNING, {"chef-server": {}}))
    with pytest.raises(ConfigError, match=r"chef-server\.superuser_key"):
        make_principal_source(settings)


def _read_as_nobody(path: Path, descriptor: int | None) -> tuple[bool, str]:
    """chefserver.superuser_key_pem(path) in a forked child that became `nobody`."""
    nobody = pwd.getpwnam("nobody")
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(reader)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            if descriptor is not None:
                os.environ[chefserver.SECRETS_FD_ENV] = str(descriptor)
            try:
                answer = "ok:" + chefserver.superuser_key_pem(path)
            except ValueError as exc:
                answer = f"error:{exc}"
            os.write(writer, answer.encode())
        finally:
            os._exit(0)
    os.close(writer)
    chunks = []
    while chunk := os.read(reader, 65536):
        chunks.append(chunk)
    os.close(reader)
    os.waitpid(pid, 0)
    kind, _, text = b"".join(chunks).decode().partition(":")
    return kind == "ok", text


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_an_account_that_cannot_read_the_secrets_reads_them_through_the_descriptor(
    request: pytest.FixtureRequest, pem: str
) -> None:
    # Like /etc/opscode: others may look the file up (stat) but not read it.
    public = Path(tempfile.mkdtemp(prefix="pushd-secrets-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(public, ignore_errors=True))
    public.chmod(0o755)
    secrets = public / "secrets.json"
    secrets.write_text(json.dumps({"chef-server": {"superuser_key": pem}}))
    secrets.chmod(0o600)
    other = public / "other.json"
    other.write_text("{}")
    os.environ.pop(chefserver.SECRETS_FD_ENV, None)
    assert _read_as_nobody(secrets, None) == (False, f"{secrets}: cannot read Chef Server "
                                                     "secrets file: Permission denied")
    descriptor = os.open(secrets, os.O_RDONLY)
    wrong = os.open(other, os.O_RDONLY)
    try:
        assert _read_as_nobody(secrets, descriptor) == (True, pem)
        ok, reason = _read_as_nobody(secrets, wrong)  # a descriptor of another file is not used
        assert not ok and "is not this file" in reason
    finally:
        os.close(descriptor)
        os.close(wrong)


def test_addon_text_keeps_the_path_and_outlives_keep_alives() -> None:
    settings = Settings.from_values({"api_listen": "0.0.0.0", "api_port": 10555,
                                     "keep_alive_time": 100})  # fmt: skip
    files = nginx_addon.render(settings)
    assert "server 127.0.0.1:10555;" in files[nginx_addon.UPSTREAMS_NAME]
    external = files[nginx_addon.EXTERNAL_NAME]
    assert 'location ~ "^/organizations/[a-z0-9-_]+/pushy/" {' in external
    assert 'location ~ "^/pushy/_status" {' in external
    assert "proxy_pass http://opscode_pushy;" in external
    assert "rewrite" not in external
    assert "proxy_buffering off;" in external
    timeouts = [int(line.split()[1].rstrip("s;")) for line in external.splitlines()
                if line.strip().startswith("proxy_read_timeout")]  # fmt: skip
    assert timeouts and all(timeout > 100 for timeout in timeouts)


def _nginx_dir(tmp_path: Path, http_extra: str = "") -> Path:
    nginx_dir = tmp_path / "nginx"
    (nginx_dir / "etc" / "addon.d").mkdir(parents=True)
    (nginx_dir / "etc" / "nginx.conf").write_text(
        f"pid {nginx_dir}/nginx.pid;\nerror_log {nginx_dir}/error.log;\n"
        "events { worker_connections 16; }\n"
        f"http {{\n  access_log off;\n  {http_extra}\n"
        f"  include {nginx_dir}/etc/addon.d/*_upstreams.conf;\n"
        f"  server {{\n    listen 127.0.0.1:1;\n"
        f"    include {nginx_dir}/etc/addon.d/*_external.conf;\n  }}\n}}\n"
    )
    return nginx_dir


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_addon_refused_by_nginx_t_is_taken_back(tmp_path: Path) -> None:
    # The Chef Server's config already defines the upstream name: nginx -t fails.
    nginx_dir = _nginx_dir(tmp_path, "upstream opscode_pushy { server 127.0.0.1:2; }")
    with pytest.raises(CommandFailed, match="nginx -t refused it"):
        nginx_addon.install(Settings.defaults(), nginx_dir)
    assert list(nginx_addon.addon_dir(nginx_dir).iterdir()) == []


def test_current_addon_files_are_left_alone(tmp_path: Path) -> None:
    nginx_dir = _nginx_dir(tmp_path)
    for name, text in nginx_addon.render(Settings.defaults()).items():
        (nginx_addon.addon_dir(nginx_dir) / name).write_text(text)
    # No write, no nginx -t, no reload (there is no nginx running to reload).
    assert nginx_addon.install(Settings.defaults(), nginx_dir) == []


def test_a_missing_addon_dir_is_a_clear_failure(tmp_path: Path) -> None:
    with pytest.raises(CommandFailed, match=r"addon\.d does not exist"):
        nginx_addon.install(Settings.defaults(), tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("127.0.0.1", "203.0.113.7", "203.0.113.7"),
        ("127.0.0.1", "203.0.113.7, 127.0.0.1", "203.0.113.7"),
        ("127.0.0.1", "198.51.100.1, 203.0.113.7", "203.0.113.7"),
        ("127.0.0.1", None, "127.0.0.1"),
        ("192.0.2.4", "203.0.113.7", "192.0.2.4"),  # not a trusted proxy: ignored
        ("127.0.0.1", "127.0.0.1", "127.0.0.1"),
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str) -> None:
    assert client_address(peer, forwarded, ["127.0.0.1", "::1"]) == expected


def test_search_root_of_an_organization_url(pem: str) -> None:
    http = ChefHTTP("https://chef.example:8443/organizations/acme", "admin", pem.encode())
    root = http.server_root()
    assert root is not None
    assert (root.server_url, root.base_path) == ("https://chef.example:8443", "")
    assert root.url("search/node") == "https://chef.example:8443/search/node"
    assert http.base_path == "/organizations/acme"
    assert ChefHTTP("https://chef.example", "admin", pem.encode()).server_root() is None


def test_run_script_opens_the_secrets_for_another_account(tmp_path: Path, pem: str) -> None:
    from pushd_ctl import layout, runit

    settings = load_settings(_host(tmp_path, RUNNING, {"chef-server": {"superuser_key": pem}}))

    def run_script(user: str | None) -> str:
        return runit.render_service(
            settings, layout.MAIN_SERVICE, config_path="/etc/server.rb", python="/opt/py",
            user=user, settings_digest="x",
        ).run  # fmt: skip

    opened = f"exec 3< {tmp_path / 'secrets.json'}\nexport PUSHD_CHEF_SECRETS_FD=3\n"
    assert opened in run_script("opscode")
    assert run_script("opscode").index("exec 3<") < run_script("opscode").index("chpst -u")
    assert "PUSHD_CHEF_SECRETS_FD" not in run_script(None)  # the invoking user reads it
