"""reconfigure, run as root for a service account (`nobody`) that cannot use what the service
needs, says so in one line naming the account and the path, exits non-zero and starts nothing.

Only root runs a service as another account; as anyone else the service runs as the caller and
there is nothing to check, so these tests need root (the test machine's sandbox is root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_ports

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another account")
ACCOUNT = "nobody"


@pytest.fixture
def base() -> Iterator[Path]:
    # Under /tmp with 0755, not under pytest's 0700 tmp_path: `nobody` may enter it.
    root = Path(tempfile.mkdtemp(prefix="pushd-access-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        if (root / "server.rb").exists():  # stop whatever a regression would have started
            ctl(root / "server.rb", "cleanse", "--yes")
        shutil.rmtree(root, ignore_errors=True)


def write_config(base: Path, state: Path, mode: int) -> Path:
    ports = free_ports(4)
    config = base / "server.rb"
    config.write_text(
        f"opscode_pushy_server['dir'] = '{state / 'srv'}'\n"
        f"opscode_pushy_server['log_directory'] = '{state / 'log'}'\n"
        f"opscode_pushy_server['etc_dir'] = '{base / 'etc'}'\n"
        f"opscode_pushy_server['api_port'] = {ports[0]}\n"
        f"opscode_pushy_server['server_heartbeat_port'] = {ports[1]}\n"
        f"opscode_pushy_server['command_port'] = {ports[2]}\n"
        f"opscode_pushy_server['unencrypted_command_port'] = {ports[3]}\n"
        "opscode_pushy_server['zeromq_listen_address'] = 'tcp://127.0.0.1'\n"
    )
    config.chmod(mode)
    return config


def ctl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PUSH_JOBS_SERVER_USER": ACCOUNT}
    return subprocess.run(
        [sys.executable, "-m", "pushd_ctl", "--config", str(config), *args],
        capture_output=True, text=True, timeout=120, env=env, input="",
    )  # fmt: skip


def test_an_unreadable_config_file_names_the_file_and_the_account(base: Path) -> None:
    config = write_config(base, base, 0o600)  # root's, 0600: nobody cannot read it
    result = ctl(config, "reconfigure")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"push-jobs-server-ctl: reconfigure: service account '{ACCOUNT}' cannot read the config "
        f"file {config} (permission denied); the service could not start"
    ]
    assert "started runsvdir" not in result.stdout


def test_a_state_directory_the_account_cannot_reach_names_it_and_the_account(
    base: Path,
) -> None:
    private = base / "private"
    private.mkdir(mode=0o700)  # root's: nobody cannot enter it, so nor the dir below
    config = write_config(base, private, 0o644)
    result = ctl(config, "reconfigure")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"push-jobs-server-ctl: reconfigure: service account '{ACCOUNT}' cannot write dir "
        f"{private / 'srv'} (cannot enter {private}); the service could not start"
    ]
    assert "started runsvdir" not in result.stdout
