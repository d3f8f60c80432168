"""The job runner with real child processes: commit decision, execution, process-group control."""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pushd_client.process import group_alive
from pushd_client.runner import JobRunner, RunnerSettings
from pushd_client.statefile import StateDir, recover_orphan
from pushd_client.whitelist import Whitelist

from pushd.rbconfig import Regex

JOB = "a" * 20 + "0123456789ab"
JOB2 = "b" * 32


class Recorder:
    """Collects what the runner sends, as the connection layer would receive it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str | None, dict[str, Any]]] = []

    def __call__(self, msg_type: str, job_id: str | None, fields: dict[str, Any]) -> None:
        self.sent.append((msg_type, job_id, fields))

    def types(self) -> list[str]:
        return [t for t, _, _ in self.sent]

    def last(self) -> tuple[str, str | None, dict[str, Any]]:
        return self.sent[-1]


def drive(runner: JobRunner, until: Any, timeout: float = 15.0) -> None:
    """Run the runner's part of the event loop until `until()` holds."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "runner did not get there in time"
        fds = runner.watched_fds()
        wait = runner.poll_timeout() or 0.05
        if fds:
            readable, _, _ = select.select(fds, [], [], wait)
            for fd in readable:
                runner.on_readable(fd)
        else:
            time.sleep(wait)
        runner.tick()


FILES_ROOT = Path("/nonexistent")  # set per test by files_root(); make() puts file_dir there


@pytest.fixture(autouse=True)
def files_root() -> Iterator[Path]:
    """A 0711 directory outside pytest's tree for job data files.

    Jobs running as `daemon` must reach their data file; pytest's base temp dir is 0700, and a
    concurrently starting pytest session resets it to 0700 if we open it up.
    """
    global FILES_ROOT
    FILES_ROOT = Path(tempfile.mkdtemp(prefix="pushd-client-test-"))
    os.chmod(FILES_ROOT, 0o711)
    yield FILES_ROOT
    shutil.rmtree(FILES_ROOT, ignore_errors=True)


def make(tmp_path: Path, whitelist: dict, **overrides: Any) -> tuple[JobRunner, Recorder]:
    settings = RunnerSettings(
        node_name="node1",
        whitelist=Whitelist(whitelist),
        file_dir=str(FILES_ROOT / "files"),
        lockfile=str(tmp_path / "chef-client-running.pid"),
        kill_grace=overrides.pop("kill_grace", 1.0),
        **overrides,
    )
    recorder = Recorder()
    return JobRunner(settings, recorder, state_dir=StateDir(tmp_path / "state")), recorder


def run_job(runner: JobRunner, rec: Recorder, command: str, **options: Any) -> dict[str, Any]:
    runner.commit(JOB, command, options)
    assert rec.last()[0] == "ack_commit", rec.last()
    runner.run(JOB)
    assert rec.last()[0] == "ack_run", rec.last()
    drive(runner, lambda: runner.job_state == "idle")
    msg_type, job_id, fields = rec.last()
    assert job_id == JOB
    return {"type": msg_type, **fields}


def test_echo_job_succeeds_with_captured_output(tmp_path: Path) -> None:
    runner, rec = make(tmp_path, {"hello": "echo hello world"})
    result = run_job(runner, rec, "hello", capture=True)
    assert result == {"type": "succeeded", "stdout": "hello world\n", "stderr": ""}
    assert rec.types() == ["ack_commit", "ack_run", "succeeded"]


def test_failing_command_reports_failed_and_stderr(tmp_path: Path) -> None:
    runner, rec = make(
        tmp_path, {"fail": {"command_line": "echo oops >&2; exit 3", "shell": True}}
    )
    result = run_job(runner, rec, "fail", capture=True)
    assert result == {"type": "failed", "stdout": "", "stderr": "oops\n"}


def test_output_not_sent_unless_capture_asked(tmp_path: Path) -> None:
    runner, rec = make(tmp_path, {"hello": "echo hello"})
    assert run_job(runner, rec, "hello") == {"type": "succeeded"}


def test_command_runs_without_a_shell(tmp_path: Path) -> None:
    runner, rec = make(tmp_path, {"literal": "echo $HOME;id"})
    assert run_job(runner, rec, "literal", capture=True)["stdout"] == "$HOME;id\n"


def test_not_whitelisted_is_nacked_with_reason(tmp_path: Path) -> None:
    runner, rec = make(tmp_path, {Regex("echo (\\w+)"): "echo \\1"})
    runner.commit(JOB, "echo hi; reboot", {})
    assert rec.last() == ("nack_commit", JOB, {"reason": "not_whitelisted"})
    assert runner.job_state == "idle"


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"user": "no-such-user-here"}, "bad_user"),
        ({"dir": "/no/such/dir"}, "bad_dir"),
        # Relative dirs would run relative to the client's own directory (issue 12); "client"
        # and ".." both exist relative to where the tests run.
        ({"dir": "client"}, "bad_dir"),
        ({"dir": ".."}, "bad_dir"),
        ({"dir": ""}, "bad_dir"),
        ({"user": "u" * 33}, "bad_user"),
        ({"file": "text:hello"}, "bad_file"),
        ({"file": "base64:!!!"}, "bad_file"),
        ({"env": {"BAD NAME": "x"}}, "bad_env"),
    ],
)
def test_bad_options_are_nacked_with_reason(
    tmp_path: Path, options: dict[str, Any], reason: str
) -> None:
    runner, rec = make(tmp_path, {"true": "true"})
    runner.commit(JOB, "true", options)
    assert rec.last() == ("nack_commit", JOB, {"reason": reason})
    assert runner.job_state == "idle"


def test_busy_node_nacks_and_keeps_the_pending_job(tmp_path: Path) -> None:
    runner, rec = make(tmp_path, {"whoami": "id -un", "true": "true"})
    runner.commit(JOB, "whoami", {"capture": True})
    runner.commit(JOB2, "true", {"user": "nobody", "capture": False})
    assert rec.last() == ("nack_commit", JOB2, {"reason": "busy"})
    assert runner.job_state == "committed" and runner.job_id == JOB
    runner.run(JOB)
    drive(runner, lambda: runner.job_state == "idle")
    assert rec.last() == ("succeeded", JOB, {"stdout": "root\n", "stderr": ""})


def test_run_for_another_job_is_nacked(tmp_path: Path) -> None:
    runner, rec = make(tmp_path, {"true": "true"})
    runner.run(JOB)
    assert rec.last() == ("nack_run", JOB, {"reason": "not_committed"})


def test_exec_failure_is_nacked(tmp_path: Path) -> None:
    runner, rec = make(tmp_path, {"missing": "/no/such/binary"})
    runner.commit(JOB, "missing", {})
    runner.run(JOB)
    assert rec.last() == ("nack_run", JOB, {"reason": "exec_failed"})
    assert runner.job_state == "idle"


def test_user_dir_env_and_file(tmp_path: Path) -> None:
    script = (
        "id -un; id -Gn; pwd; echo $FOO; echo $HOME $USER $LOGNAME;"
        ' cat "$CHEF_PUSH_JOB_FILE"; echo; stat -c "%a %U" "$CHEF_PUSH_JOB_FILE";'
        ' echo "$CHEF_PUSH_JOB_FILE"; echo $CHEF_PUSH_NODE_NAME $CHEF_PUSH_JOB_ID'
    )
    runner, rec = make(tmp_path, {"probe": {"command_line": script, "shell": True}})
    result = run_job(
        runner, rec, "probe", capture=True, user="daemon", dir="/tmp",
        env={"FOO": "bar"}, file="base64:c2VjcmV0IGRhdGE=",
    )
    assert result["type"] == "succeeded", result
    lines = result["stdout"].splitlines()
    assert lines[0] == "daemon"
    assert "daemon" in lines[1].split()
    assert lines[2:6] == ["/tmp", "bar", "/usr/sbin daemon daemon", "secret data"]
    assert lines[6] == "600 daemon"
    job_file = lines[7]
    assert job_file.startswith(str(FILES_ROOT / "files") + "/pushy_file-" + JOB)
    assert lines[8] == f"node1 {JOB}"
    assert not os.path.exists(job_file), "the data file must be removed after the job"
    assert oct(os.stat(FILES_ROOT / "files").st_mode & 0o777) == "0o711"


def test_job_file_unreadable_by_other_users(tmp_path: Path) -> None:
    runner, rec = make(
        tmp_path,
        {"peek": {"command_line": 'cat "$CHEF_PUSH_JOB_FILE" >/dev/null', "shell": True}},
    )
    runner.commit(JOB, "peek", {"user": "daemon", "file": "raw:private"})
    runner.run(JOB)
    path = None
    for name in os.listdir(FILES_ROOT / "files"):
        path = FILES_ROOT / "files" / name
    assert path is not None
    other = os.fork()
    if other == 0:  # a different unprivileged user tries to read it
        os.setgid(65534)
        os.setuid(65534)
        try:
            with open(path) as handle:
                handle.read()
        except PermissionError:
            os._exit(0)
        os._exit(1)
    _, status = os.waitpid(other, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    drive(runner, lambda: runner.job_state == "idle")
    assert rec.last()[0] == "succeeded"


def test_client_variables_cannot_be_overridden_and_path_is_protected(tmp_path: Path) -> None:
    runner, rec = make(tmp_path, {"env": "env"})
    result = run_job(
        runner, rec, "env", capture=True,
        env={"CHEF_PUSH_JOB_ID": "forged", "CHEF_PUSH_NODE_NAME": "other", "PATH": "/evil",
             "LD_PRELOAD": "/evil.so", "MY_VAR": "ok"},
    )
    env = dict(line.split("=", 1) for line in result["stdout"].splitlines() if "=" in line)
    assert env["CHEF_PUSH_JOB_ID"] == JOB
    assert env["CHEF_PUSH_NODE_NAME"] == "node1"
    assert env["PATH"] != "/evil" and env["CHEF_PUSH_ENV_PATH"] == "/evil"
    assert "LD_PRELOAD" not in env and env["CHEF_PUSH_ENV_LD_PRELOAD"] == "/evil.so"
    assert env["MY_VAR"] == "ok"


def test_allowed_overwritable_env_vars(tmp_path: Path) -> None:
    runner, rec = make(tmp_path, {"env": "env"}, allowed_overwritable_env_vars=("foo",))
    result = run_job(runner, rec, "env", capture=True, env={"foo": "1", "bar": "2"})
    env = dict(line.split("=", 1) for line in result["stdout"].splitlines() if "=" in line)
    assert env["foo"] == "1" and env["CHEF_PUSH_ENV_bar"] == "2" and "bar" not in env


def test_lock_held_by_another_process_nacks(tmp_path: Path) -> None:
    lock_path = tmp_path / "chef-client-running.pid"
    lock_path.write_text("4242\n")
    runner, rec = make(tmp_path, {"chef-client": {"command_line": "true", "lock": True}})
    with open(lock_path, "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        runner.commit(JOB, "chef-client", {})
        assert rec.last() == ("nack_commit", JOB, {"reason": "lock_held"})
    assert lock_path.read_text() == "4242\n", "the pid file must not be truncated"


def test_lock_is_held_for_the_run_and_released(tmp_path: Path) -> None:
    lock_path = tmp_path / "job.lock"
    runner, rec = make(
        tmp_path, {"locked": {"command_line": "sleep 0.5", "lock": str(lock_path)}}
    )
    runner.commit(JOB, "locked", {})
    runner.run(JOB)

    def try_lock() -> bool:
        with open(lock_path, "a") as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

    assert not try_lock(), "the lock must be held while the job runs"
    drive(runner, lambda: runner.job_state == "idle")
    assert rec.last()[0] == "succeeded"
    assert try_lock(), "the lock must be released after the job"


def pgid_of(runner: JobRunner) -> int:
    info = runner.describe()
    return int(info["pid"])


def test_abort_kills_the_whole_group_before_reporting(tmp_path: Path) -> None:
    runner, rec = make(tmp_path, {"sleepy": {"command_line": "sleep 100 & sleep 100",
                                             "shell": True}})
    runner.commit(JOB, "sleepy", {})
    runner.run(JOB)
    pgid = pgid_of(runner)
    time.sleep(0.2)
    assert group_alive(pgid)
    runner.abort()
    assert rec.last()[0] == "ack_run", "aborted must wait until the group is gone"
    drive(runner, lambda: runner.job_state == "idle")
    assert rec.last() == ("aborted", JOB, {"reason": "abort_requested"})
    assert not group_alive(pgid)


def test_group_ignoring_term_is_killed_after_grace(tmp_path: Path) -> None:
    runner, rec = make(
        tmp_path,
        {"stubborn": {"command_line": "trap '' TERM; sleep 100 & sleep 100", "shell": True}},
        kill_grace=0.5,
    )
    runner.commit(JOB, "stubborn", {})
    runner.run(JOB)
    pgid = pgid_of(runner)
    time.sleep(0.2)
    runner.abort()
    drive(runner, lambda: runner.job_state == "idle")
    assert rec.last() == ("aborted", JOB, {"reason": "abort_requested"})
    assert not group_alive(pgid)


def test_run_timeout_kills_the_group(tmp_path: Path) -> None:
    runner, rec = make(tmp_path, {"sleep": "sleep 100"})
    runner.commit(JOB, "sleep", {"run_timeout": 1})
    runner.run(JOB)
    pgid = pgid_of(runner)
    drive(runner, lambda: runner.job_state == "idle")
    assert rec.last() == ("aborted", JOB, {"reason": "run_timeout"})
    assert not group_alive(pgid)


def test_leftover_children_are_ended_before_the_result(tmp_path: Path) -> None:
    runner, rec = make(tmp_path, {"bg": {"command_line": "sleep 100 & echo started",
                                         "shell": True}})
    runner.commit(JOB, "bg", {"capture": True})
    runner.run(JOB)
    pgid = pgid_of(runner)
    drive(runner, lambda: runner.job_state == "idle")
    assert rec.last() == ("succeeded", JOB, {"stdout": "started\n", "stderr": ""})
    assert not group_alive(pgid)


def test_shutdown_kills_and_reports(tmp_path: Path) -> None:
    runner, rec = make(tmp_path, {"sleep": "sleep 100"})
    runner.commit(JOB, "sleep", {})
    runner.run(JOB)
    pgid = pgid_of(runner)
    runner.shutdown()
    assert rec.last() == ("aborted", JOB, {"reason": "shutdown"})
    assert not group_alive(pgid)


def test_large_output_arrives_truncated(tmp_path: Path) -> None:
    script = "i=0; while [ $i -lt 3000 ]; do echo line $i; echo err $i >&2; i=$((i+1)); done"
    runner, rec = make(tmp_path, {"big": {"command_line": script, "shell": True}},
                       max_body_size=4000)
    result = run_job(runner, rec, "big", capture=True)
    assert result["type"] == "succeeded"
    assert result["stdout"].endswith("line 2999\n") and result["stderr"].endswith("err 2999\n")
    total = sum(len(f"line {i}\n") for i in range(3000))
    assert f"of {total} bytes dropped" in result["stdout"].splitlines()[0]
    assert result["truncated"]["stdout"] > 0 and result["truncated"]["stderr"] > 0
    assert len(result["stdout"]) + len(result["stderr"]) < 4000


def test_invalid_utf8_output_does_not_break_the_result(tmp_path: Path) -> None:
    runner, rec = make(tmp_path, {"bin": "printf 'a\\377b'"})
    result = run_job(runner, rec, "bin", capture=True)
    assert result == {"type": "succeeded", "stdout": "a\ufffdb", "stderr": ""}


def test_restarted_client_kills_and_reports_the_orphan(tmp_path: Path) -> None:
    runner, _ = make(tmp_path, {"sleepy": {"command_line": "sleep 100 & sleep 100",
                                             "shell": True}})
    runner.commit(JOB, "sleepy", {})
    runner.run(JOB)
    pgid = pgid_of(runner)
    # The client dies here without cleaning up; a new one starts with the same state dir.
    state_dir = StateDir(tmp_path / "state")
    record = recover_orphan(state_dir, grace=1.0)
    assert record is not None and record.job_id == JOB and record.pgid == pgid
    assert not group_alive(pgid)
    assert state_dir.load_job() is None
    fresh, fresh_rec = make(tmp_path, {})
    fresh.adopt_orphan(record)
    fresh.abort()
    assert fresh_rec.last() == ("aborted", JOB, {"reason": "client_restarted"})
    fresh.abort()
    assert fresh_rec.last() == ("aborted", None, {"reason": "abort_requested"})
    os.waitpid(pgid, 0)  # the first runner's child, which this test process still parents
    del runner


def test_abort_while_committed_releases_and_reports(tmp_path: Path) -> None:
    runner, rec = make(tmp_path, {"true": "true"})
    runner.commit(JOB, "true", {})
    runner.abort()
    assert rec.last() == ("aborted", JOB, {"reason": "abort_requested"})
    assert runner.job_state == "idle"
    assert signal.SIGTERM  # keep the import meaningful for readers: groups get TERM first
