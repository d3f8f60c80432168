"""pushd's /metrics scraped by a real Prometheus, checked with promtool, across a worker and a
broker restart (the multiprocess files keep the API's counters and drop the dead broker's
gauges)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.prometheus import promtool, running_prometheus
from tests.support.server import PushdServer, running_server

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server() -> Iterator[PushdServer]:
    with running_server(nodes=("node1", "node2"), settings={"metrics_port": free_port()}) as srv:
        yield srv


def _metrics_url(server: PushdServer) -> str:
    return f"http://127.0.0.1:{server.settings.get('metrics_port')}/metrics"


def _exposition(server: PushdServer) -> str:
    with urllib.request.urlopen(_metrics_url(server), timeout=5) as response:
        return response.read().decode()


def _value(vector: list[dict], **labels: str) -> float:
    return sum(float(sample["value"][1]) for sample in vector
               if all(sample["metric"].get(k) == v for k, v in labels.items()))  # fmt: skip


def _wait(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.2)


def _run_job(server: PushdServer, nodes: list[str], command: str = "true") -> str:
    resp = server.request("POST", "jobs", {"command": command, "nodes": nodes})
    assert resp.status == 201, resp.body
    job_id = str(resp.json()["uri"]).rsplit("/", 1)[-1]
    _wait(lambda: server.request("GET", f"jobs/{job_id}").json()["status"]
          in ("complete", "quorum_failed"))
    return job_id


def _worker_pids(server: PushdServer) -> list[int]:
    main = server._process.pid if server._process else 0
    pids = []
    for pid in server._children(main):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # gone since it was listed (the worker a test just killed)
            continue
        if b"pushd.broker" not in cmdline and b"supervisor" not in cmdline:
            pids.append(pid)
    return pids


def test_prometheus_sees_jobs_nodes_and_requests(server: PushdServer, tmp_path: Path) -> None:
    server.peer("node1")
    server.wait_available("node1")
    _run_job(server, ["node1"])
    _run_job(server, ["node1", "node2"])  # node2 never connects: quorum_failed
    refused = server.request("GET", "jobs", sign=False)  # no X-Ops headers: refused
    assert refused.status in (400, 401)
    target = _metrics_url(server).removeprefix("http://").removesuffix("/metrics")
    with running_prometheus([target], tmp_path) as prom:
        org = server.org_name
        prom.wait_for(f'pushd_jobs_total{{org="{org}"}}',
                      lambda v: _value(v, status="complete") >= 1
                      and _value(v, status="quorum_failed") >= 1)
        prom.wait_for(f'pushd_nodes{{org="{org}",availability="available"}}',
                      lambda v: _value(v) == 1)
        prom.wait_for("pushd_node_runs_total", lambda v: _value(v, result="succeeded") >= 1)
        prom.wait_for("pushd_heartbeats_received_total", lambda v: _value(v) > 0)
        requests = prom.wait_for('pushd_http_requests_total{method="POST"}',
                                 lambda v: _value(v, code="201") >= 2)
        routes = {sample["metric"]["route"] for sample in requests}
        assert routes == {"/organizations/{org}/pushy/jobs"}  # a template, never a raw path
        prom.wait_for("pushd_auth_failures_total", lambda v: _value(v) >= 1)
        prom.wait_for("pushd_job_duration_seconds_count", lambda v: _value(v) >= 2)
        prom.wait_for("pushd_build_info", lambda v: len(v) == 1)
        up = prom.query('up{job="pushd"}')
        assert _value(up) == 1
        # Every query of the shipped Grafana dashboard parses and names metrics that exist.
        exposition = _exposition(server)
        for expr in _dashboard_queries():
            prom.query(expr.replace("$org", ".*"))  # a PromQL error fails here
            for name in re.findall(r"\bpushd_[a-z_]+", expr):
                family = re.sub(r"_(bucket|count|sum)$", "", name)
                assert f"# TYPE {family} " in exposition, (name, expr)


def _dashboard_queries() -> list[str]:
    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_alert_rules_pass_promtool() -> None:
    checked = promtool("check", "rules", str(REPO / "docs" / "prometheus-alerts.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout


def test_promtool_accepts_the_exposition(server: PushdServer) -> None:
    text = _exposition(server)
    assert "pushd_broker_loop_lag_seconds_bucket" in text
    checked = promtool("check", "metrics", stdin=text)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_open_sse_streams_are_counted_while_open(server: PushdServer) -> None:
    def streams(feed: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in _exposition(server).splitlines()
                   if line.startswith(f'pushd_sse_streams{{feed="{feed}"}}'))  # fmt: skip

    assert streams("org") == 0
    first, second = server.stream("job_status_feed"), server.stream("job_status_feed")
    _wait(lambda: streams("org") == 2)
    first.close()
    second.close()
    _wait(lambda: streams("org") == 0)


def test_counters_survive_a_worker_restart_and_a_broker_restart(server: PushdServer) -> None:
    def total(prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in _exposition(server).splitlines()
                   if line.startswith(prefix))  # fmt: skip

    for _ in range(5):
        server.request("GET", "node_states")
    before = total("pushd_http_requests_total{")
    workers = _worker_pids(server)
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)  # gunicorn starts another; the dead one's counts stay
    _wait(lambda: len(_worker_pids(server)) == 2 and workers[0] not in _worker_pids(server))
    assert total("pushd_http_requests_total{") >= before

    metrics_dir = Path(server.settings.get("run_dir")) / "metrics"
    broker = server.broker_pid()
    _wait(lambda: bool(list(metrics_dir.glob(f"gauge_live*_{broker}.db"))))  # its node gauge
    dead = server.kill_broker()
    server.wait_for_broker(timeout=30)
    _wait(lambda: total("pushd_broker_restarts_total ") == 1)
    assert total("pushd_http_requests_total{") >= before
    # The dead broker's live gauges (nodes, running jobs) left the sums with it: only the
    # new broker's view is counted, not both.
    assert not list(metrics_dir.glob(f"gauge_live*_{dead}.db"))
