"""Prometheus metrics of the whole service (prometheus_client in multiprocess mode).

The API workers, the broker and the service's main process each write their samples to files in
one directory (``<run_dir>/metrics``); the broker serves ``/metrics`` on ``metrics_listen:
metrics_port`` from all of them (pushd.metrics.exposition), so a gunicorn worker that restarts
loses nothing and the numbers of every process add up. prometheus_client decides at import time
whether it is in multiprocess mode, from ``PROMETHEUS_MULTIPROC_DIR``: the main process calls
`prepare_directory` before anything imports it, and every process it starts inherits the
variable.

    METRICS_DIR_ENV                        "PROMETHEUS_MULTIPROC_DIR"
    prepare_directory(run_dir) -> Path     empties <run_dir>/metrics (a restart starts the
                                           counters at zero, as Prometheus expects) and sets the
                                           variable for this process and its children
    pushd.metrics.families                 every metric, defined once (names are a contract)
    pushd.metrics.exposition               serve(listen, port), process_exited(pid)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_directory(run_dir: str | os.PathLike[str]) -> Path:
    directory = Path(run_dir) / "metrics"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, mode=0o700)
    os.environ[METRICS_DIR_ENV] = str(directory)
    return directory
