"""The benchmarks' A/B arms: a server the harness starts runs the pushd first on PYTHONPATH.

Every A/B in bench/RESULTS.md puts an arm (a git worktree) first on PYTHONPATH and starts the
server with pushd_bench.server from the repository root. `python -m` puts its working directory
on sys.path before PYTHONPATH, so until the harness set PYTHONSAFEPATH every arm's server ran
the checkout's code (found 2026-12-06). Here the "arm" is a copy of this checkout's pushd that
writes its process id to a file when imported: the server's main process and its broker must
both have imported the copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pushd_bench.server import REPO_ROOT

from tests.support.server import running_server


def make_arm(root: Path, marker: Path) -> Path:
    arm = root / "arm"
    shutil.copytree(REPO_ROOT / "pushd", arm / "pushd",
                    ignore=shutil.ignore_patterns("__pycache__"))
    init = arm / "pushd" / "__init__.py"
    init.write_text(init.read_text() + (
        "\nimport os as _os\n"
        f"with open({str(marker)!r}, 'a') as _marker:\n"
        "    _marker.write(f'{_os.getpid()}\\n')\n"
    ))
    return arm


def test_the_server_and_its_broker_import_the_arm_on_pythonpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported-by"
    monkeypatch.setenv("PYTHONPATH", str(make_arm(tmp_path, marker)))
    with running_server() as server:
        importers = {int(pid) for pid in marker.read_text().split()} if marker.exists() else set()
        assert server.main_pid() in importers, "the server ran the checkout's pushd"
        assert server.broker_pid() in importers, "the broker ran the checkout's pushd"
