"""push-jobs-server-ctl's command line: help from docstrings, errors, exit codes (as a subprocess).

These need no running service: they check what an operator sees before anything is configured.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pushd_ctl.commands import COMMANDS, module_name

ISSUE_VERBS = {
    "reconfigure", "show-config", "start", "stop", "restart", "status", "tail", "once", "hup",
    "term", "int", "kill", "graceful-kill", "service-list", "cleanse", "uninstall", "test",
    "org-create", "org-list", "user-create", "user-list", "client-create", "client-list",
    "client-delete", "group-add", "group-list",
}  # fmt: skip


def ctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pushd_ctl", *args],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "server.rb"
    path.write_text(
        f"opscode_pushy_server['dir'] = '{tmp_path / 'srv'}'\n"
        f"opscode_pushy_server['log_directory'] = '{tmp_path / 'log'}'\n"
        f"opscode_pushy_server['etc_dir'] = '{tmp_path / 'etc'}'\n"
    )
    return path


def test_every_verb_of_the_issue_is_a_command_with_its_docstring_as_help() -> None:
    assert set(COMMANDS) >= ISSUE_VERBS
    listing = ctl("--help").stdout
    for name in COMMANDS:
        module = importlib.import_module(f"pushd_ctl.commands.{module_name(name)}")
        assert module.__doc__ and module.__doc__.strip(), name
        assert name in listing
    detail = ctl("cleanse", "--help").stdout
    assert "Asks for confirmation unless --yes" in detail


def test_config_error_names_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.rb"
    bad.write_text("# fine\nopscode_pushy_server['api_port'] = 'x'\n")
    result = ctl("--config", str(bad), "show-config")
    assert result.returncode == 2
    assert result.stderr.startswith(f"push-jobs-server-ctl: {bad}:2:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_config_file_is_an_error() -> None:
    result = ctl("--config", "/nonexistent/server.rb", "status")
    assert result.returncode == 2
    assert "/nonexistent/server.rb" in result.stderr


def test_config_from_the_environment(config: Path) -> None:
    env = {"PUSH_JOBS_SERVER_CONFIG": str(config), "PATH": "/usr/bin:/bin"}
    result = ctl("show-config", env=env)
    assert result.returncode == 0, result.stderr
    assert str(config.parent / "srv") in result.stdout


def test_show_config_masks_secrets(config: Path) -> None:
    config.write_text(config.read_text() + "postgresql['sql_password'] = 'hunter2'\n")
    result = ctl("--config", str(config), "show-config")
    assert result.returncode == 0
    assert "hunter2" not in result.stdout


def test_status_before_reconfigure_is_not_running(config: Path) -> None:
    result = ctl("--config", str(config), "status")
    assert result.returncode == 3
    assert result.stdout == (f"down: opscode-pushy-server: not configured: no service at"
                             f" {config.parent}/srv/service/opscode-pushy-server"
                             f" (config {config})\n")


def test_status_with_no_config_anywhere_says_where_it_looked(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PUSHD_CTL_STATE_DIR": str(tmp_path / "state")}
    result = ctl("status", env=env)
    assert result.returncode == 3
    assert "not configured" in result.stdout
    assert ("(no config file (no --config, $PUSH_JOBS_SERVER_CONFIG unset, none of"
            " /etc/opscode-push-jobs-server/opscode-push-jobs-server.rb") in result.stdout


def test_service_commands_before_reconfigure_say_so(config: Path) -> None:
    result = ctl("--config", str(config), "start")
    assert result.returncode == 1
    assert "run 'push-jobs-server-ctl reconfigure' first" in result.stderr


def test_unknown_service_is_a_usage_error(config: Path) -> None:
    result = ctl("--config", str(config), "status", "nginx")
    assert result.returncode == 2
    assert "unknown service 'nginx'" in result.stderr


def test_service_list(config: Path) -> None:
    assert ctl("--config", str(config), "service-list").stdout.split() == ["opscode-pushy-server"]


def test_show_config_diff_against_the_running_config(config: Path) -> None:
    from pushd_ctl import layout

    from pushd.config import load_settings

    assert "no running config" in ctl("--config", str(config), "show-config", "--diff").stdout
    running = layout.running_json_path(load_settings(config))
    running.parent.mkdir(parents=True)
    running.write_text(json.dumps(load_settings(config).as_dict(), default=str))
    assert ctl("--config", str(config), "show-config", "--diff").stdout == ""
    config.write_text(config.read_text() + "opscode_pushy_server['voting_timeout'] = 90\n"
                      "postgresql['sql_password'] = 'hunter2'\n")  # fmt: skip
    lines = ctl("--config", str(config), "show-config", "--diff").stdout.splitlines()
    assert "voting_timeout: 60 -> 90" in lines
    assert any(line.startswith("postgresql.sql_password: null -> ") for line in lines)
    assert "hunter2" not in "\n".join(lines)


def test_without_runit_the_error_says_so(config: Path, tmp_path: Path) -> None:
    layout_dir = tmp_path / "srv" / "service" / "opscode-pushy-server"
    layout_dir.mkdir(parents=True)  # as if reconfigure had written it
    env = {"PATH": str(tmp_path / "empty-bin")}
    result = subprocess.run([sys.executable, "-m", "pushd_ctl", "--config", str(config), "start"],
                            capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "push-jobs-server-ctl: runit is not installed (no sv/runsvdir on PATH): "
        "apt-get install runit"
    )
