"""A Chef Server host stand-in built from real parts, for tests of pushd installed on one.

    chef_server_host_stand_in(root) -> contextmanager yielding ChefServerHostStandIn
        Debian's nginx (its own prefix and config under `root`, run as a non-daemon child) laid
        out like Chef Server's: ``<nginx.dir>/etc/nginx.conf`` serving TLS on a free loopback
        port with a self-signed certificate (made with `cryptography`), including
        ``<nginx.dir>/etc/addon.d/*_upstreams.conf`` in ``http`` and ``*_external.conf`` in the
        server block, everything else proxied to a real ``goiardi --use-auth`` standing in for
        erchef. It writes ``chef-server-running.json`` and ``private-chef-secrets.json`` (the
        superuser ``pivotal``, a goiardi admin user, and its key; a PostgreSQL superuser
        password, STAND_IN_PG_PASSWORD) under ``root/etc-opscode``.
        Skips when nginx or goiardi is not installed.
    ChefServerHostStandIn
        url                     https://127.0.0.1:PORT (nginx)
        cert_path               the self-signed certificate (PEM), for knife's trusted_certs
        nginx_dir, addon_dir, conf_path, running_json, secrets_json
        goiardi                 tests.support.goiardi.GoiardiServer (erchef)
        nginx_test() -> CompletedProcess    ``nginx -t`` on the stand-in's config
        get(path, headers=None) -> (status, body bytes)    an unsigned GET through nginx
        log_text() -> str       nginx's error log and stdout
        access_log() -> str     nginx's access log (one line per request, status included)

Only loopback addresses are used; nginx's temp paths, pid and logs live under `root`.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.support.goiardi import GoiardiServer, running_goiardi
from tests.support.ports import free_port

STARTUP_TIMEOUT = 15.0
SUPERUSER = "pivotal"
STAND_IN_PG_PASSWORD = "stand-in-db-superuser-password"


def make_self_signed(cert_path: Path, key_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)


def nginx_conf(nginx_dir: Path, port: int, erchef_port: int) -> str:
    """Chef Server's layout, reduced to what matters here (see its nginx.conf.erb and
    nginx_chef_api_lb.conf.erb): add-on includes in `http` and in the API server block."""
    etc, var = nginx_dir / "etc", nginx_dir / "var"
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return f"""# Chef Server host stand-in (tests), laid out like Chef Server's nginx.conf
{user}daemon off;
worker_processes 1;
pid {var}/nginx.pid;
error_log {var}/error.log info;
events {{ worker_connections 256; }}
http {{
  access_log {var}/access.log;
  client_body_temp_path {var}/client_body;
  proxy_temp_path {var}/proxy;
  fastcgi_temp_path {var}/fastcgi;
  uwsgi_temp_path {var}/uwsgi;
  scgi_temp_path {var}/scgi;
  include {etc}/addon.d/*_upstreams.conf;
  upstream opscode_erchef {{ server 127.0.0.1:{erchef_port}; }}
  server {{
    listen 127.0.0.1:{port} ssl;
    server_name 127.0.0.1;
    ssl_certificate {etc}/ca/127.0.0.1.crt;
    ssl_certificate_key {etc}/ca/127.0.0.1.key;
    client_max_body_size 250m;
    include {etc}/addon.d/*_external.conf;
    location / {{
      proxy_pass http://opscode_erchef;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto https;
    }}
  }}
}}
"""


@dataclass
class ChefServerHostStandIn:
    url: str
    port: int
    cert_path: Path
    nginx_dir: Path
    running_json: Path
    secrets_json: Path
    goiardi: GoiardiServer
    process: subprocess.Popen[bytes]
    stdout_path: Path

    @property
    def addon_dir(self) -> Path:
        return self.nginx_dir / "etc" / "addon.d"

    @property
    def conf_path(self) -> Path:
        return self.nginx_dir / "etc" / "nginx.conf"

    def nginx_test(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [shutil.which("nginx") or "nginx", "-t", "-c", str(self.conf_path)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        context = ssl.create_default_context(cafile=str(self.cert_path))
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def access_log(self) -> str:
        try:
            return (self.nginx_dir / "var" / "access.log").read_text(errors="replace")
        except OSError:
            return ""

    def log_text(self) -> str:
        parts = []
        for path in (self.nginx_dir / "var" / "error.log", self.stdout_path):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)


def _serving(port: int, process: subprocess.Popen[bytes], pid_file: Path) -> bool:
    # nginx writes its pid file once it holds its sockets: then the port is nginx's own.
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(OSError, ValueError):
            if int(pid_file.read_text()) == process.pid:
                with socket.create_connection(("127.0.0.1", port), 0.5):
                    return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def chef_server_host_stand_in(root: Path) -> Iterator[ChefServerHostStandIn]:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)  # fmt: skip
    if nginx is None:
        pytest.skip("nginx is not installed")
    with running_goiardi(root / "erchef") as goiardi:
        superuser_key = goiardi.create_user(SUPERUSER, admin=True)
        nginx_dir = root / "opscode" / "nginx"
        for sub in ("etc/addon.d", "etc/ca", "var"):
            (nginx_dir / sub).mkdir(parents=True, exist_ok=True)
        cert_path = nginx_dir / "etc" / "ca" / "127.0.0.1.crt"
        make_self_signed(cert_path, nginx_dir / "etc" / "ca" / "127.0.0.1.key")
        erchef_port = int(goiardi.url.rsplit(":", 1)[1])
        etc_opscode = root / "etc-opscode"
        etc_opscode.mkdir(parents=True, exist_ok=True)
        running_json = etc_opscode / "chef-server-running.json"
        secrets_json = etc_opscode / "private-chef-secrets.json"
        # The machine's PostgreSQL trusts local connections: the password is there to be kept
        # out of pushd's files, not to be checked.
        secrets_json.write_text(json.dumps({
            "chef-server": {"superuser_key": superuser_key},
            "postgresql": {"db_superuser_password": STAND_IN_PG_PASSWORD},
        }))  # fmt: skip
        secrets_json.chmod(0o600)
        for attempt in range(3):
            port = free_port()
            (nginx_dir / "etc" / "nginx.conf").write_text(nginx_conf(nginx_dir, port, erchef_port))
            running_json.write_text(json.dumps({"private_chef": {
                "topology": "standalone",
                "lb": {"api_fqdn": "127.0.0.1"},
                "user": {"username": "opscode"},
                "nginx": {"dir": str(nginx_dir), "ssl_port": port},
                "postgresql": {"vip": "127.0.0.1", "port": 5432, "db_superuser": "root",
                               "username": "postgres"},
                "opscode-erchef": {"listen": "127.0.0.1", "port": erchef_port},
            }}, indent=2))  # fmt: skip
            stdout_path = nginx_dir / "var" / f"nginx-{attempt}.out"
            with open(stdout_path, "wb") as out:
                process = subprocess.Popen(
                    [nginx, "-c", str(nginx_dir / "etc" / "nginx.conf")],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                )
            host = ChefServerHostStandIn(
                url=f"https://127.0.0.1:{port}", port=port, cert_path=cert_path,
                nginx_dir=nginx_dir, running_json=running_json, secrets_json=secrets_json,
                goiardi=goiardi, process=process, stdout_path=stdout_path,
            )  # fmt: skip
            try:
                if _serving(port, process, nginx_dir / "var" / "nginx.pid"):
                    yield host
                    return
            finally:
                if process.poll() is None:
                    process.terminate()  # nginx: fast shutdown
                    try:
                        process.wait(10)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait(5)
        raise RuntimeError(f"nginx did not start:\n{host.log_text()}")
