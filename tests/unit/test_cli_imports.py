"""The CLI runs on a workstation without the server's packages: importing and running it must
not pull in falcon, gunicorn, gevent or peewee, even indirectly."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import pushd_knife.main, pushd_knife.commands, pushd_knife.follow, pushd_knife.sse
from pushd_knife.main import main
loaded = {name.split('.')[0] for name in sys.modules}
forbidden = {'falcon', 'gunicorn', 'gevent', 'peewee', 'requests'} & loaded
assert not forbidden, forbidden
"""


def test_cli_imports_no_server_packages() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


def test_cli_runs_as_a_module() -> None:
    result = subprocess.run([sys.executable, "-m", "pushd_knife", "job", "start"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("ERROR: No job specified.\n")
