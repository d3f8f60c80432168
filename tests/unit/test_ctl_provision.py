"""What reconfigure provisions (ctl/provision.py): directories, keys, schema, ownership."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
from pushd_ctl import layout, provision

from pushd.settings import Settings


def make_settings(root: Path) -> Settings:
    values = {"dir": root / "srv", "log_directory": root / "log", "etc_dir": root / "etc"}
    return Settings.from_values({name: str(path) for name, path in values.items()})


def test_directories_keys_and_schema_are_created_once(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    created = provision.ensure_directories(settings)
    assert Path(settings.get("data_dir")) in created
    assert Path(settings.get("data_dir")).stat().st_mode & 0o077 == 0
    assert provision.ensure_directories(settings) == []
    assert provision.ensure_server_keys(settings) is True
    key = layout.keys_dir(settings) / "pushy_priv.pem"
    before = key.read_bytes()
    assert provision.ensure_server_keys(settings) is False
    assert key.read_bytes() == before
    first = provision.ensure_database(settings)
    assert first[0] is None and first[1] >= 1
    assert provision.ensure_database(settings) == (first[1], first[1])


@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
def test_hand_over_gives_state_to_the_account_but_keeps_the_service_dir_roots(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    provision.ensure_directories(settings)
    provision.ensure_database(settings)
    service = layout.service_path(settings, layout.MAIN_SERVICE)
    (service / "log").mkdir(parents=True)
    (service / "run").write_text("#!/bin/sh\n")
    provision.hand_over(settings, "nobody")
    nobody = pwd.getpwnam("nobody").pw_uid
    assert Path(settings.get("data_dir")).stat().st_uid == nobody
    assert Path(settings.get("sqlite_path")).stat().st_uid == nobody
    assert Path(settings.get("log_directory")).stat().st_uid == nobody
    assert Path(settings.get("service_dir")).stat().st_uid == 0
    assert (service / "run").stat().st_uid == 0
