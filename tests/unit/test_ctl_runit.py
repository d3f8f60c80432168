"""Rendering and writing runit service directories (ctl/runit.py), and running the scripts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pushd_ctl import layout, runit

from pushd.settings import Settings


def make_settings(root: Path, **extra: object) -> Settings:
    return Settings.from_values(
        {"dir": str(root / "srv"), "log_directory": str(root / "log"), **extra}
    )


def render(settings: Settings, user: str | None = None) -> runit.ServiceFiles:
    return runit.render_service(
        settings, layout.MAIN_SERVICE, config_path="/etc/x y/server.rb",
        python="/opt/py/bin/python", user=user, settings_digest=runit.settings_digest(settings),
    )  # fmt: skip


def test_run_script_execs_the_server_with_quoted_config(tmp_path: Path) -> None:
    files = render(make_settings(tmp_path))
    assert files.run.startswith("#!/bin/sh\n")
    assert 'ulimit -n "$(ulimit -Hn)"' in files.run
    assert files.run.rstrip().endswith(
        "exec setsid /opt/py/bin/python -m pushd.server --config '/etc/x y/server.rb'"
    )
    assert "chpst" not in files.run  # same user as the invoking one


def test_another_user_runs_through_chpst(tmp_path: Path) -> None:
    files = render(make_settings(tmp_path), user="opscode-test-nobody")
    assert "exec setsid chpst -u opscode-test-nobody /opt/py/bin/python" in files.run
    assert "chpst -u opscode-test-nobody svlogd -tt" in files.log_run


def test_log_rotation_settings_reach_svlogd_config(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, log_rotation={"file_maxbytes": 5000, "num_to_keep": 3}
    )
    files = render(settings)
    assert files.log_config == "s5000\nn3\n"
    assert f"svlogd -tt {tmp_path / 'log'}" in files.log_run


def test_a_settings_change_changes_the_run_script(tmp_path: Path) -> None:
    before = render(make_settings(tmp_path))
    after = render(make_settings(tmp_path, heartbeat_interval=2000))
    assert before.run != after.run
    assert render(make_settings(tmp_path)).run == before.run


def test_write_service_reports_only_real_changes(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    files = render(settings)
    first = runit.write_service(settings, layout.MAIN_SERVICE, files)
    assert first == runit.WriteResult(service_changed=True, log_changed=True)
    root = layout.service_path(settings, layout.MAIN_SERVICE)
    assert os.access(root / "run", os.X_OK) and os.access(root / "log" / "run", os.X_OK)
    assert runit.write_service(settings, layout.MAIN_SERVICE, files) == runit.WriteResult(
        False, False
    )
    rotated = render(make_settings(tmp_path, log_rotation={"num_to_keep": 2}))
    assert runit.write_service(settings, layout.MAIN_SERVICE, rotated) == runit.WriteResult(
        False, True
    )
    down = runit.write_service(settings, layout.MAIN_SERVICE, rotated, enabled=False)
    assert down.service_changed and (root / "down").exists()
    assert not list(root.glob(".run.*"))  # no temp files left behind


def test_finish_script_takes_the_orphans_of_a_killed_main_process(tmp_path: Path) -> None:
    """The scripts themselves, run by sh: a child left by the session's leader is reaped."""
    settings = make_settings(tmp_path)
    layout.service_path(settings, layout.MAIN_SERVICE).mkdir(parents=True)
    files = render(settings)
    finish = tmp_path / "finish"
    finish.write_text(files.finish)
    # A session whose leader dies at once, leaving a child that ignores nothing.
    leader = subprocess.Popen(
        ["setsid", sys.executable, "-c",
         "import subprocess,sys; subprocess.Popen(['sleep','300']); sys.exit(0)"],
    )  # fmt: skip
    leader.wait(10)
    pgid_file = layout.service_path(settings, layout.MAIN_SERVICE) / "pgid"
    pgid_file.write_text(f"{leader.pid}\n")
    orphans = subprocess.run(["pgrep", "-g", str(leader.pid)], capture_output=True, text=True)
    assert orphans.stdout.split(), "the orphan should exist before finish runs"
    assert subprocess.run(["sh", str(finish)], timeout=30).returncode == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = subprocess.run(["pgrep", "-g", str(leader.pid)], capture_output=True, text=True)
        if not left.stdout.split():
            break
        time.sleep(0.1)
    assert not left.stdout.split()
    assert not pgid_file.exists()


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "10.1.2.3"])
def test_status_url_uses_loopback_for_wildcards(address: str, tmp_path: Path) -> None:
    url = layout.status_url(make_settings(tmp_path, api_listen=address))
    host = "10.1.2.3" if address == "10.1.2.3" else "127.0.0.1"
    assert url == f"http://{host}:10003/_status"


@pytest.mark.parametrize("content", ["", "abc", "-5", "1", "01", "0", "12 34"])
def test_finish_script_ignores_a_pgid_it_cannot_trust(tmp_path: Path, content: str) -> None:
    """Nothing is signalled for a missing, malformed, or everything-meaning (-1) group id."""
    settings = make_settings(tmp_path)
    service = layout.service_path(settings, layout.MAIN_SERVICE)
    service.mkdir(parents=True)
    (service / "pgid").write_text(content)
    finish = tmp_path / "finish"
    finish.write_text(render(settings).finish)
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        result = subprocess.run(["sh", "-x", str(finish)], capture_output=True, text=True,
                                timeout=30)  # fmt: skip
        assert result.returncode == 0
        assert "kill -TERM" not in result.stderr
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
