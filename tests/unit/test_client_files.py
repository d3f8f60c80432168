"""The client's files: state dir (job record, status), job data files and their directory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pushd_client.jobfile import (
    decode_file_spec,
    prepare_file_dir,
    remove_stale_job_files,
    write_job_file,
)
from pushd_client.process import group_alive, process_start_time
from pushd_client.statefile import JobRecord, StateDir, recover_orphan


def test_job_record_round_trip_and_private_modes(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    record = JobRecord("a" * 32, 123, 123, 456, "chef-client", 1.5)
    state.save_job(record)
    assert state.load_job() == record
    assert oct(os.stat(state.path).st_mode & 0o777) == "0o700"
    assert oct(os.stat(state.job_path).st_mode & 0o777) == "0o600"
    state.clear_job()
    assert state.load_job() is None


def test_corrupt_job_record_is_cleared_without_killing_anything(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.job_path.write_text("{not json")
    assert recover_orphan(state, grace=0.1) is None
    assert not state.job_path.exists()


def test_record_of_a_finished_job_is_reported_and_cleared(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    done = subprocess.Popen(["true"])
    done.wait()
    state.save_job(JobRecord("b" * 32, done.pid, done.pid, 1, "true", 0.0))
    record = recover_orphan(state, grace=0.1)
    assert record is not None and record.job_id == "b" * 32
    assert state.load_job() is None


def test_reused_pid_is_not_killed(tmp_path: Path) -> None:
    """A record whose pid now belongs to another process (other start time) is left alone."""
    bystander = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        state = StateDir(tmp_path)
        start = process_start_time(bystander.pid)
        assert start is not None
        state.save_job(JobRecord("c" * 32, bystander.pid, bystander.pid, start - 1, "x", 0.0))
        recover_orphan(state, grace=0.1)
        assert bystander.poll() is None and group_alive(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait()


def test_status_round_trip(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "s")
    assert state.read_status() is None
    state.write_status({"connection": "online", "pid": 1})
    assert state.read_status() == {"connection": "online", "pid": 1}


def test_file_specs() -> None:
    assert decode_file_spec("raw:hello", 100) == b"hello"
    assert decode_file_spec("base64:aGk=", 100) == b"hi"
    with pytest.raises(ValueError, match="raw:"):
        decode_file_spec("hello", 100)
    with pytest.raises(ValueError, match="more than"):
        decode_file_spec("raw:" + "x" * 101, 100)


def test_file_dir_must_be_private(tmp_path: Path) -> None:
    target = tmp_path / "files"
    prepare_file_dir(str(target))
    assert oct(os.stat(target).st_mode & 0o777) == "0o711"
    os.chmod(target, 0o777)
    with pytest.raises(ValueError, match="writable by other users"):
        prepare_file_dir(str(target))
    os.chmod(target, 0o711)
    os.chown(target, 65534, 65534)
    with pytest.raises(ValueError, match="owned by uid 65534"):
        prepare_file_dir(str(target))
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    with pytest.raises(ValueError, match="not a directory"):
        prepare_file_dir(str(link))


def test_job_file_owner_mode_and_stale_cleanup(tmp_path: Path) -> None:
    target = tmp_path / "files"
    prepare_file_dir(str(target))
    path = write_job_file(str(target), "d" * 32, b"data", 1, 1)
    info = os.stat(path)
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (1, 1, 0o600)
    assert Path(path).read_bytes() == b"data"
    (target / "unrelated").write_text("keep me")
    assert remove_stale_job_files(str(target)) == 1
    assert sorted(p.name for p in target.iterdir()) == ["unrelated"]
