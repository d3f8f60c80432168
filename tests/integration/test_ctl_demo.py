"""scripts/demo, the README's "run it" command, end to end in a temporary directory.

Runs the script without its dependency step (the suite has installed them), checks that the job
ran on the local node and printed its output, then stops the node and cleanses the appliance.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_demo_runs_a_job_on_a_local_node_and_prints_its_output() -> None:
    demo_dir = Path(tempfile.mkdtemp(prefix="pushd-demo-test-", dir="/tmp"))
    env = {**os.environ, "PUSHD_DEMO_DIR": str(demo_dir)}
    result = subprocess.run([str(REPO_ROOT / "scripts" / "demo"), "--skip-deps"], env=env,
                            capture_output=True, text=True, timeout=240)  # fmt: skip
    try:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "The API answers at http://127.0.0.1:" in result.stdout
        assert "not yet:" not in result.stdout  # every part exists now
        assert "status:         complete" in result.stdout
        assert "succeeded: demo-node" in result.stdout
        output = result.stdout.split("Output of demo-node:", 1)[1]
        assert output.lstrip().startswith("hello from pushd")
    finally:
        match = re.search(r"push-jobs-client running \(pid (\d+)\)", result.stdout)
        if match:
            try:
                os.kill(int(match.group(1)), signal.SIGTERM)
            except ProcessLookupError:
                pass
        subprocess.run(
            [sys.executable, "-m", "pushd_ctl", "--config",
             str(demo_dir / "opscode-push-jobs-server.rb"), "cleanse", "--yes"],
            capture_output=True, timeout=120,
        )  # fmt: skip
        subprocess.run(["rm", "-rf", str(demo_dir)], check=False)
