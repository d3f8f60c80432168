"""The Debian packages built by omnibus/build-deb: metadata, contents, and a working install.

The packages are built once per module (about a minute: one wheelhouse from the configured
package index, then two virtualenvs installed from it with no index) and extracted into
temporary roots with ``dpkg-deb -x``. From the extracted server package, its own embedded
interpreter runs ``reconfigure`` and ``test`` on a temporary appliance: the packaged code, not
this checkout, serves a job end to end.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pushd import zmq_build
from tests.support.ports import free_ports

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_PREFIX = "opt/opscode-push-jobs-server"
CLIENT_PREFIX = "opt/push-jobs-client"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed"),
]


class Built:
    def __init__(self, out: Path) -> None:
        result = subprocess.run(
            [str(REPO_ROOT / "omnibus" / "build-deb"), "--out", str(out)],
            capture_output=True, text=True, timeout=540,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        debs = [Path(line) for line in result.stdout.split()]
        self.server = next(p for p in debs if p.name.startswith("opscode-push-jobs-server_"))
        self.client = next(p for p in debs if p.name.startswith("push-jobs-client_"))
        self.server_root = out / "server-root"
        self.client_root = out / "client-root"
        for deb, root in ((self.server, self.server_root), (self.client, self.client_root)):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
            subprocess.run(["dpkg-deb", "-e", str(deb), str(root / "DEBIAN")], check=True)


@pytest.fixture(scope="module")
def built() -> Iterator[Built]:
    out = Path(tempfile.mkdtemp(prefix="pushd-debs-"))
    out.chmod(0o755)  # the service may run as another account; it must reach the interpreter
    try:
        yield Built(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


def listing(deb: Path) -> dict[str, str]:
    """path -> the listing line of `dpkg-deb -c` (mode, owner, ..., link target)."""
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    entries = {}
    for line in out.splitlines():
        path = line.split(None, 5)[5].split(" -> ")[0].lstrip(".").rstrip("/")
        entries[path] = line
    return entries


def test_server_package_metadata(built: Built) -> None:
    assert field(built.server, "Package") == "opscode-push-jobs-server"
    assert field(built.server, "Version") == "0.1.0-1"
    depends = [d.strip() for d in field(built.server, "Depends").split(",")]
    assert "runit" in depends
    assert "python3.11" in depends
    assert field(built.server, "Architecture") == subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True
    ).stdout.strip()


def test_server_package_contents(built: Built) -> None:
    entries = listing(built.server)
    assert entries["/usr/bin/push-jobs-server-ctl"].endswith(
        f"-> /{SERVER_PREFIX}/bin/push-jobs-server-ctl"
    )
    assert entries[f"/{SERVER_PREFIX}/bin/push-jobs-server-ctl"].endswith(
        f"-> /{SERVER_PREFIX}/embedded/bin/push-jobs-server-ctl"
    )
    site = f"/{SERVER_PREFIX}/embedded/lib/python3.11/site-packages"
    for package in ("pushd", "pushd_ctl", "pushd_client", "falcon", "gunicorn", "gevent",
                    "peewee.py", "psycopg", "zmq", "nacl", "cryptography", "yaml"):  # fmt: skip
        assert any(path.startswith(f"{site}/{package}") for path in entries), package
    # pyzmq is pushd's build (omnibus/pyzmq/build-wheel: libzmq with small pipe chunks and
    # heap Curve handshake buffers).
    pyzmq = f"{site}/pyzmq-27.3.0{zmq_build.PUSHD_LABEL}.dist-info"
    assert any(path.startswith(pyzmq) for path in entries)
    assert all(line.split()[1] == "root/root" for line in entries.values())
    # Installed scripts name the installed interpreter, never the build's staging directory.
    script = built.server_root / SERVER_PREFIX / "embedded" / "bin" / "push-jobs-server-ctl"
    assert script.read_text().splitlines()[0] == f"#!/{SERVER_PREFIX}/embedded/bin/python"
    grep = subprocess.run(["grep", "-rlI", "pushd-deb.", str(built.server_root / "opt")],
                          capture_output=True, text=True)  # fmt: skip
    assert grep.stdout == ""


def test_postinst_tells_the_operator_to_reconfigure(built: Built) -> None:
    postinst = built.server_root / "DEBIAN" / "postinst"
    assert postinst.stat().st_mode & stat.S_IXUSR
    result = subprocess.run(["sh", str(postinst), "configure"], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0
    assert "push-jobs-server-ctl reconfigure" in result.stdout


def _owner(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return pwd.getpwuid(int(line.split()[1])).pw_name
    raise AssertionError(f"no Uid line for {pid}")


# How the packaged ctl is run: as the current user (root in CI: the service then runs as the
# account PUSH_JOBS_SERVER_USER names), or, when root, unprivileged as `nobody` owning the
# appliance directory (how an operator without root runs it).
MODES = ["as-invoker", "unprivileged"]


@pytest.mark.parametrize("mode", MODES)
def test_installed_ctl_reconfigures_and_passes_its_smoke_test(built: Built, mode: str) -> None:
    if mode == "unprivileged" and os.geteuid() != 0:
        pytest.skip("already unprivileged: the as-invoker case covers it")
    python = built.server_root / SERVER_PREFIX / "embedded" / "bin" / "python"
    help_text = subprocess.run([str(python), "-m", "pushd_ctl", "--help"], capture_output=True,
                               text=True, cwd="/", timeout=60)  # fmt: skip
    assert help_text.returncode == 0 and "reconfigure" in help_text.stdout

    root = Path(tempfile.mkdtemp(prefix="pushd-pkg-"))
    root.chmod(0o755)
    ports = free_ports(5)
    config = root / "opscode-push-jobs-server.rb"
    values = {"dir": str(root / "srv"), "log_directory": str(root / "log"),
              "etc_dir": str(root / "etc"), "api_port": ports[0],
              "server_heartbeat_port": ports[1], "command_port": ports[2],
              "unencrypted_command_port": ports[3], "metrics_port": ports[4],
              "zeromq_listen_address": "tcp://127.0.0.1"}  # fmt: skip
    config.write_text("".join(f"opscode_pushy_server['{k}'] = {json.dumps(v)}\n"
                              for k, v in values.items()))  # fmt: skip
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(root)}
    prefix: list[str] = []
    expected_user = pwd.getpwuid(os.geteuid()).pw_name
    if mode == "unprivileged":
        shutil.chown(root, "nobody", "nogroup")
        prefix = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]
        expected_user = "nobody"
    elif os.geteuid() == 0:
        env["PUSH_JOBS_SERVER_USER"] = "nobody"
        expected_user = "nobody"

    def ctl(*args: str) -> subprocess.CompletedProcess[str]:
        # cwd "/" so nothing of this checkout can be imported instead of the packaged code.
        return subprocess.run(
            [*prefix, str(python), "-m", "pushd_ctl", "--config", str(config), *args],
            capture_output=True, text=True, cwd="/", timeout=180, env=env,
        )  # fmt: skip

    try:
        reconfigure = ctl("reconfigure", "--timeout", "60")
        assert reconfigure.returncode == 0, reconfigure.stdout + reconfigure.stderr
        run_script = (root / "srv" / "service" / "opscode-pushy-server" / "run").read_text()
        assert f"{python} -m pushd.server" in run_script
        main_pid = int((root / "srv" / "service" / "opscode-pushy-server" / "pgid").read_text())
        assert _owner(main_pid) == expected_user
        smoke = ctl("test", "--timeout", "30")
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
        assert "Smoke test passed." in smoke.stdout
    finally:
        cleanse = ctl("cleanse", "--yes")
        shutil.rmtree(root, ignore_errors=True)
    assert cleanse.returncode == 0, cleanse.stdout + cleanse.stderr


def test_client_package(built: Built) -> None:
    assert field(built.client, "Package") == "push-jobs-client"
    assert "runit" in field(built.client, "Depends")
    entries = listing(built.client)
    assert entries["/usr/bin/push-jobs-client"].endswith(
        f"-> /{CLIENT_PREFIX}/bin/push-jobs-client"
    )
    for script in ("/etc/sv/push-jobs-client/run", "/etc/sv/push-jobs-client/log/run"):
        assert entries[script].startswith("-rwxr-xr-x"), entries[script]
    run = (built.client_root / "etc/sv/push-jobs-client/run").read_text()
    assert f"exec /{CLIENT_PREFIX}/bin/push-jobs-client -c /etc/chef/push-jobs-client.rb" in run
    site = f"/{CLIENT_PREFIX}/embedded/lib/python3.11/site-packages"
    # A node installs no server dependencies.
    for server_only in ("falcon", "gunicorn", "gevent", "peewee"):
        assert not any(p.startswith(f"{site}/{server_only}") for p in entries), server_only
    # Both packages install from one wheelhouse: every distribution of the client is the very
    # version the server carries.
    server_site = built.server_root / SERVER_PREFIX / "embedded/lib/python3.11/site-packages"
    client_site = built.client_root / CLIENT_PREFIX / "embedded/lib/python3.11/site-packages"
    client_dists = {d.name for d in client_site.glob("*.dist-info")}
    assert {"pushd-0.1.0.dist-info"} < client_dists
    assert client_dists <= {d.name for d in server_site.glob("*.dist-info")}
    python = built.client_root / CLIENT_PREFIX / "embedded" / "bin" / "python"
    version = subprocess.run([str(python), "-m", "pushd_client.main", "-v"],
                             capture_output=True, text=True, cwd="/", timeout=60)  # fmt: skip
    assert version.returncode == 0, version.stderr
