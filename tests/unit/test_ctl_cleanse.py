"""cleanse's question on a terminal (in-process, with nothing running): only "yes" deletes."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest
from pushd_ctl.commands import cleanse
from pushd_ctl.context import CommandFailed, Context


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def appliance(tmp_path: Path) -> Path:
    config = tmp_path / "server.rb"
    config.write_text(
        f"opscode_pushy_server['dir'] = '{tmp_path / 'srv'}'\n"
        f"opscode_pushy_server['log_directory'] = '{tmp_path / 'log'}'\n"
        f"opscode_pushy_server['etc_dir'] = '{tmp_path / 'etc'}'\n"
    )
    for sub in ("srv/data", "log", "etc"):
        (tmp_path / sub).mkdir(parents=True)
    (tmp_path / "srv/data/pushd.sqlite3").write_text("data")
    (tmp_path / "etc/opscode-push-jobs-server-running.json").write_text("{}")
    (tmp_path / "etc/keep-me").write_text("not ours")
    return config


@pytest.mark.parametrize("answer", ["no\n", "\n", "y\n"])
def test_anything_but_yes_deletes_nothing(tmp_path: Path, answer: str) -> None:
    out = io.StringIO()
    ctx = Context(str(appliance(tmp_path)), stdout=out, stdin=Terminal(answer))
    with pytest.raises(CommandFailed, match="not confirmed"):
        cleanse.run(ctx, argparse.Namespace(yes=False))
    assert "Type 'yes' to continue" in out.getvalue()
    assert f"  {tmp_path / 'srv'}" in out.getvalue()
    assert (tmp_path / "srv/data/pushd.sqlite3").exists()


def test_yes_deletes_the_appliance_but_not_the_config(tmp_path: Path) -> None:
    config = appliance(tmp_path)
    ctx = Context(str(config), stdout=io.StringIO(), stdin=Terminal("yes\n"))
    assert cleanse.run(ctx, argparse.Namespace(yes=False)) == 0
    assert not (tmp_path / "srv").exists()
    assert not (tmp_path / "log").exists()
    assert not (tmp_path / "etc/opscode-push-jobs-server-running.json").exists()
    assert (tmp_path / "etc/keep-me").exists()
    assert config.exists()


def test_refuses_to_delete_a_system_directory(tmp_path: Path) -> None:
    config = tmp_path / "server.rb"
    config.write_text("opscode_pushy_server['log_directory'] = '/var/log'\n")
    ctx = Context(str(config), stdout=io.StringIO(), stdin=Terminal("yes\n"))
    with pytest.raises(CommandFailed, match="refusing to delete /var/log"):
        cleanse.run(ctx, argparse.Namespace(yes=True))
