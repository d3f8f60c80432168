"""scripts/demo, the README's "run it" command, end to end in a scratch directory, as a new
operator would use it: the release notes' two transcripts, a whitelist entry added and applied
without restarting the node, and the printed removal command leaving nothing behind.

Runs the script without its dependency step (the suite has installed them).
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def _processes_naming(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in argv:
            found.append(f"{entry.name}: {argv}")
    return found


def _client_pids(demo_dir: Path) -> list[int]:
    return [int(p.split(":", 1)[0]) for p in _processes_naming(f"{demo_dir}/push-jobs-client.yml")]


def test_demo_transcripts_whitelist_reload_and_removal(tmp_path: Path) -> None:
    demo_dir = Path(tempfile.mkdtemp(prefix="pushd-demo-test-", dir="/tmp"))
    env = {**os.environ, "PUSHD_DEMO_DIR": str(demo_dir)}
    env.pop("PUSH_JOBS_SERVER_CONFIG", None)
    removal: list[str] = []
    try:
        demo = subprocess.run([str(REPO_ROOT / "scripts" / "demo"), "--skip-deps"], env=env,
                              capture_output=True, text=True, timeout=240)  # fmt: skip
        out = demo.stdout
        assert demo.returncode == 0, out[-3000:] + demo.stderr[-3000:]
        match = re.search(r"^  (\S+/scripts/demo --remove \S+)$", out, re.MULTILINE)
        assert match, out[-2000:]
        removal = shlex.split(match.group(1))

        # The demo ran both release-note transcripts and shows their output.
        assert "foobar\n\nThe release notes show:\n   foobar" in out
        env_dump = out.split('"print_execution_environment" node2', 1)[1]
        for line in ('"CHEF_PUSH_NODE_NAME"=>"demo-node"', '"USER"=>"daemon"', '"PWD"=>"/tmp"',
                     '"test"=>"foo"}'):
            assert line in env_dump, env_dump[:3000]
        # It says where the client's config is and how the client was started.
        assert f"config:  {demo_dir}/push-jobs-client.yml" in out
        assert re.search(rf"^started: nohup \S+ -m pushd_client.main -c {demo_dir}/push-jobs-client"
                         r"\.yml &$", out, re.MULTILINE)

        # Both keys are private to their owner.
        for key in (demo_dir / "demo-node.pem", demo_dir / ".chef" / "demo-admin.pem"):
            assert stat.S_IMODE(key.stat().st_mode) == 0o600, key

        # The transcripts as written (with the demo's node name), from the demo directory.
        def push_jobs(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "pushd_knife", *args], cwd=demo_dir,
                                  env=env, capture_output=True, text=True, timeout=90)  # fmt: skip

        first = push_jobs("job", "start", "--capture", "echo foobar", "demo-node")
        assert first.returncode == 0, first.stdout + first.stderr
        job_id = re.search(r"Job ID: ([0-9a-f]{32})", first.stdout).group(1)  # type: ignore[union-attr]
        shown = push_jobs("job", "output", "--channel", "stdout", job_id, "demo-node")
        assert (shown.returncode, shown.stdout) == (0, "foobar\n")
        second = push_jobs("job", "start", "--file", ".chef/knife.rb", "--capture", "--with-env",
                           '{"test": "foo"}', "--in-dir", "/tmp", "--as-user", "daemon",
                           "print_execution_environment", "demo-node")
        assert second.returncode == 0, second.stdout + second.stderr

        # Watching a quiet organization says at once that it is connected (the demo's server
        # keeps the default 15 s keepalive, which the watcher used to wait for).
        watch = push_jobs("job", "watch", "--wait-timeout", "4")
        assert (watch.returncode, watch.stderr) == (
            0, "Watching the organization's jobs (Ctrl-C to stop).\n")

        # The server's ctl finds the demo without --config once its env file is sourced.
        status = subprocess.run(["bash", "-c", f". {demo_dir}/env && exec {sys.executable}"
                                 " -m pushd_ctl status"], env=env, capture_output=True,
                                text=True, timeout=60)  # fmt: skip
        assert status.returncode == 0, status.stdout + status.stderr

        # A whitelist entry added to the file applies after the printed reload command.
        refused = push_jobs("job", "start", "greet", "demo-node")
        assert refused.returncode != 0 and "not_whitelisted" in refused.stdout
        pids = _client_pids(demo_dir)
        config = demo_dir / "push-jobs-client.yml"
        config.write_text(config.read_text() + "  greet: echo hello after the reload\n")
        reload = re.search(r"^  (pkill -USR1 .*)$", out, re.MULTILINE)
        assert reload, out[-2000:]
        subprocess.run(["bash", "-c", reload.group(1)], check=True, timeout=30)
        deadline = time.monotonic() + 30
        log = demo_dir / "push-jobs-client.log"
        while "whitelist entries" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        for _ in range(50):  # the reload also re-fetches the node's config: let it reconnect
            greet = push_jobs("job", "start", "--capture", "greet", "demo-node")
            if greet.returncode == 0:
                break
            time.sleep(0.5)
        assert greet.returncode == 0, greet.stdout + greet.stderr + log.read_text()[-2000:]
        assert _client_pids(demo_dir) == pids  # the same client process

        # The printed removal command leaves no process and no file of the demo.
        removed = subprocess.run(removal, env=env, capture_output=True, text=True, timeout=120)
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert "Left installed by scripts/install-deps" in removed.stdout
        removal = []
        assert not demo_dir.exists()
        assert _processes_naming(f"{demo_dir}/") == []
    finally:
        if removal:
            subprocess.run(removal, env=env, capture_output=True, timeout=120)
        subprocess.run(["rm", "-rf", str(demo_dir)], check=False)


def test_remove_refuses_a_directory_that_is_not_a_demo(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = subprocess.run([str(REPO_ROOT / "scripts" / "demo"), "--remove", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 1
    assert "is not a demo directory" in result.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"
