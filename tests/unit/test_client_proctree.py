"""A job's process tree with real processes: the cgroup tree, the subreaper tree (in a child
Python process, since the subreaper flag is for the whole process) and recovery after a crash.

Every job command marks its processes with a fresh token in their argv; survivors are the live
processes carrying it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pushd_client.cgroup import CgroupError, JobCgroup, check_parent, is_job_cgroup, own_cgroup
from pushd_client.process import process_start_time
from pushd_client.proctree import (
    Containment,
    ContainmentError,
    boot_id,
    kill_tree_blocking,
    recovered_tree,
)

from pushd.errors import ConfigError


def escape_command(token: str) -> list[str]:
    """A shell that starts a process in a new session, a classic daemon (fork, setsid, fork),
    one with an empty environment, and waits on a fourth."""
    return [
        "/bin/sh", "-c",
        f"setsid sleep 1000.{token} & (setsid sh -c 'sleep 1001.{token} & exit 0' &);"
        f" (env -i setsid sleep 1002.{token} &) & sleep 1003.{token}",
    ]


def survivors(token: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if token.encode() in handle.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def wait_for(check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def argv_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().rstrip(b"\0").replace(b"\0", b" ").decode()
    except OSError:
        return ""


def all_up(token: str) -> bool:
    """Each of the four sleeps runs (by itself, not just named in the shell's command)."""
    running = {argv_of(pid) for pid in survivors(token)}
    return all(f"sleep {n}.{token}" in running for n in ("1000", "1001", "1002", "1003"))


@pytest.fixture
def token() -> Iterator[str]:
    value = str(secrets.randbelow(10**9)).zfill(9)
    yield value
    for pid in survivors(value):  # safety net for a failing run: only our own processes
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def cgroup_unavailable() -> str | None:
    try:
        check_parent(own_cgroup())
    except CgroupError as err:
        return str(err)
    return None


needs_cgroup = pytest.mark.skipif(cgroup_unavailable() is not None,
                                  reason=f"no cgroup v2 here: {cgroup_unavailable()}")


@needs_cgroup
def test_cgroup_tree_holds_and_kills_every_descendant(token: str) -> None:
    containment = Containment.select("cgroup")
    assert containment.mechanism == "cgroup"
    tree = containment.new_tree("job1")
    proc = subprocess.Popen(escape_command(token), preexec_fn=tree.preexec,
                            start_new_session=True)
    tree.started(proc.pid)
    path = tree.record()["cgroup"]
    try:
        wait_for(lambda: all_up(token))
        assert set(survivors(token)) <= set(tree.members())
        assert path.startswith(str(containment.cgroup_parent))
        assert kill_tree_blocking(tree, grace=1.0)
        proc.wait()
        assert survivors(token) == []
    finally:
        tree.signal(signal.SIGKILL)
        proc.wait()
        tree.release()
    assert not os.path.exists(path)


@needs_cgroup
def test_cgroup_recovery_after_a_crash_uses_the_recorded_path(token: str) -> None:
    tree = Containment.select("cgroup").new_tree("job2")
    proc = subprocess.Popen(escape_command(token), preexec_fn=tree.preexec,
                            start_new_session=True)
    tree.started(proc.pid)
    record = json.loads(json.dumps(tree.record()))  # as job.json keeps it
    try:
        wait_for(lambda: all_up(token))
        again = recovered_tree(record)  # a new client process, knowing only the record
        assert again is not None and again.alive()
        assert kill_tree_blocking(again, grace=1.0)
        again.release()
        proc.wait()
        assert survivors(token) == [] and not os.path.exists(record["cgroup"])
    finally:
        tree.signal(signal.SIGKILL)
        proc.wait()
        tree.release()


def test_recovery_refuses_a_path_that_is_not_a_job_cgroup(tmp_path: Path) -> None:
    assert recovered_tree({"mechanism": "cgroup", "cgroup": str(tmp_path)}) is None
    assert recovered_tree({"mechanism": "cgroup", "cgroup": "/sys/fs/cgroup"}) is None
    assert recovered_tree({"mechanism": "cgroup", "cgroup": "relative/pushd-job-x"}) is None
    assert not is_job_cgroup(str(tmp_path / "pushd-job-abc"))


def test_cgroup_mode_is_refused_where_it_cannot_work(tmp_path: Path) -> None:
    with pytest.raises(ContainmentError, match="not a cgroup v2 directory"):
        Containment.select("cgroup", str(tmp_path))


SUBREAPER_CLIENT = """
import json, os, sys, time
from pushd_client.proctree import Containment, is_child_subreaper, kill_tree_blocking
from pushd_client.process import UserSpec, spawn
argv, action, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
containment = Containment.select("subreaper")
assert containment.mechanism == "subreaper" and is_child_subreaper()
tree = containment.new_tree("job3")
leader = spawn(argv, user=UserSpec.current(), cwd="/", env={**os.environ, **tree.env},
               capture=False, preexec=tree.preexec)
tree.started(leader.pid)
token = argv[-1].rsplit(".", 1)[-1]
def argv_of(pid):
    try:
        return open(f"/proc/{pid}/cmdline").read().rstrip("\\0").replace("\\0", " ")
    except OSError:
        return ""
def up():
    running = {argv_of(pid) for pid in tree.members()}
    return all(f"sleep {n}.{token}" in running for n in ("1000", "1001", "1002", "1003"))
while not up():
    time.sleep(0.05)
with open(out, "w") as handle:
    json.dump(tree.record(), handle)
if action == "crash":
    os._exit(9)  # a crashed client: no cleanup at all
gone = kill_tree_blocking(tree, 1.0, leader)
tree.release()
zombies = [c for c in open(f"/proc/self/task/{os.getpid()}/children").read().split()
           if open(f"/proc/{c}/stat").read().split(")")[-1].split()[0] == "Z"]
print(json.dumps({"gone": gone, "zombies": zombies}))
"""


def run_subreaper_client(tmp_path: Path, token: str, action: str) -> tuple[dict, dict]:
    record_path = tmp_path / "record.json"
    done = subprocess.run(
        [sys.executable, "-c", SUBREAPER_CLIENT, json.dumps(escape_command(token)), action,
         str(record_path)],
        capture_output=True, text=True, timeout=60,
    )
    result = json.loads(done.stdout) if action != "crash" and done.returncode == 0 else {}
    assert action == "crash" or done.returncode == 0, done.stderr
    return result, json.loads(record_path.read_text())


def test_subreaper_tree_kills_every_descendant_and_reaps_them(
    tmp_path: Path, token: str
) -> None:
    result, record = run_subreaper_client(tmp_path, token, "kill")
    assert result == {"gone": True, "zombies": []}
    assert survivors(token) == []
    # The tree the client saw: the shell, the four sleeps (the one with no environment too).
    assert len(record["members"]) >= 5


def test_subreaper_recovery_after_a_crash_finds_members_and_token(
    tmp_path: Path, token: str
) -> None:
    _, record = run_subreaper_client(tmp_path, token, "crash")
    assert len(survivors(token)) >= 4, "the crashed client left its job running"
    tree = recovered_tree(record)
    assert tree is not None
    assert kill_tree_blocking(tree, grace=1.0)
    wait_for(lambda: survivors(token) == [])


def test_subreaper_recovery_spares_reused_pids_and_other_boots(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        start = process_start_time(bystander.pid)
        assert start is not None
        stale = {"mechanism": "subreaper", "token": "0" * 32, "boot_id": boot_id(),
                 "since": 0, "members": [[bystander.pid, start - 1]]}
        tree = recovered_tree(stale)
        assert tree is not None and not tree.alive()
        kill_tree_blocking(tree, grace=0.1)
        other_boot = {**stale, "members": [[bystander.pid, start]], "boot_id": "another"}
        assert recovered_tree(other_boot) is None
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_job_cgroup_is_created_uniquely_and_removed(tmp_path: Path) -> None:
    if cgroup_unavailable() is not None:
        pytest.skip(f"no cgroup v2 here: {cgroup_unavailable()}")
    parent = check_parent(own_cgroup())
    first, second = JobCgroup.create(parent, "same"), JobCgroup.create(parent, "same")
    try:
        assert first.path != second.path and is_job_cgroup(first.path)
        assert not first.populated() and first.pids() == []
    finally:
        assert first.remove() and second.remove()


def test_config_rejects_unknown_containment_and_relative_cgroup(tmp_path: Path) -> None:
    from pushd_client.config import load_config

    url = "chef_server_url: https://c/organizations/o\n"
    bad_mode = tmp_path / "a.yml"
    bad_mode.write_text(url + "job_containment: jail\n")
    with pytest.raises(ConfigError, match="job_containment must be one of"):
        load_config(str(bad_mode))
    relative = tmp_path / "b.yml"
    relative.write_text(url + "job_cgroup: pushd\n")
    with pytest.raises(ConfigError, match="job_cgroup must be an absolute path"):
        load_config(str(relative))
    good = tmp_path / "c.yml"
    good.write_text(url + "job_containment: subreaper\n")
    assert load_config(str(good)).job_containment == "subreaper"


def test_client_refuses_to_start_without_the_asked_containment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from pushd_client.main import main

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path = tmp_path / "client.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    config = tmp_path / "client.yml"
    config.write_text(
        "chef_server_url: https://c/organizations/o\n"
        f"job_containment: cgroup\njob_cgroup: {tmp_path}\nstate_dir: {tmp_path / 'state'}\n"
    )
    assert main(["-c", str(config), "-k", str(key_path), "-L", "STDERR"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"push-jobs-client: {config}: job_containment cgroup: {tmp_path} is not "
                       "a cgroup v2 directory")
