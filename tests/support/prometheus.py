"""A real Prometheus (Debian's `prometheus` package) scraping test targets, and promtool.

    with running_prometheus(targets, tmp_path) as prom:   scrapes every target each 0.5 s
        prom.query("pushd_jobs_total") -> list[dict]      the PromQL instant vector
        prom.wait_for(promql, check, timeout) -> list     until check(vector) holds
    promtool(*args, stdin=None) -> CompletedProcess
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import free_port


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (scripts/install-deps installs Debian's prometheus)")
    return found


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), *args], input=stdin, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


class Prometheus:
    def __init__(self, port: int, log_path: Path) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = log_path

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            answer = json.load(response)
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def wait_for(
        self, promql: str, check: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        last: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                last = self.query(promql)
            except OSError:
                last = []
            if check(last):
                return last
            time.sleep(0.5)
        raise AssertionError(f"{promql}: {last} after {timeout}s; prometheus log:\n"
                             + self.log_path.read_text()[-3000:])


@contextmanager
def running_prometheus(targets: list[str], tmp_path: Path) -> Iterator[Prometheus]:
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # YAML is a superset of JSON
        "global": {"scrape_interval": "500ms", "scrape_timeout": "400ms"},
        "scrape_configs": [{"job_name": "pushd", "static_configs": [{"targets": targets}]}],
    }))
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [binary("prometheus"), f"--config.file={config}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
             "--web.enable-lifecycle"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    prom = Prometheus(port, log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{prom.base}/-/ready", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("prometheus did not start:\n"
                                         + log_path.read_text()[-3000:]) from None
                time.sleep(0.2)
        yield prom
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
