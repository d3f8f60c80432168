"""The broker's Prometheus samples (pushd.metrics.families), kept off its hot paths.

    BrokerMetrics(org_names, drops, counters, node_counts, running_jobs)
        .refresh()                      once a second from the loop: copies what the loop
                                        counted in plain integers (heartbeats, drops by reason)
                                        and sets the node and running-job gauges
        .job_finished(org_id, status, tally, duration)
        .loop_lag(seconds)
        .serve(listen, port) / .close() the /metrics listener (pushd.metrics.exposition)

A heartbeat costs the broker one integer increment (`counters["heartbeats"] += 1`); the
prometheus_client objects, whose updates write to a shared memory-mapped file in multiprocess
mode, are touched once a second however many nodes there are.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from typing import Any

from pushd.metrics import exposition, families

AVAILABILITIES = ("available", "unavailable")
# The reasons a node message is dropped (pushd.errors.ProtocolError codes the broker meets),
# exported at 0 from the start so rate() and alerts see a series before the first drop.
DROP_REASONS = ("bad_frames", "bad_header", "bad_json", "bad_message", "bad_signature",
                "replay", "stale", "too_large", "unknown_sender", "wrong_node")
# (org_id, "available" | "unavailable") -> nodes
NodeCounts = Callable[[], Mapping[tuple[str, str], int]]


class BrokerMetrics:
    def __init__(
        self,
        *,
        org_names: Mapping[str, str],
        drops: collections.Counter[str],
        counters: collections.Counter[str],
        node_counts: NodeCounts,
        running_jobs: Callable[[], Mapping[str, int]],
    ) -> None:
        self._org_names = org_names
        self._drops = drops
        self._counters = counters
        self._node_counts = node_counts
        self._running_jobs = running_jobs
        self._copied: collections.Counter[str] = collections.Counter()
        self._copied_heartbeats = 0
        self._node_labels: set[tuple[str, str]] = set()
        self._job_labels: set[str] = set()
        self._server: exposition.MetricsServer | None = None
        families.set_build_info()
        for reason in DROP_REASONS:
            families.FRAMES_DROPPED.labels(reason=reason)

    def _org(self, org_id: str) -> str:
        return self._org_names.get(org_id, org_id)

    def refresh(self) -> None:
        heartbeats = self._counters["heartbeats"]
        if heartbeats > self._copied_heartbeats:
            families.HEARTBEATS.inc(heartbeats - self._copied_heartbeats)
            self._copied_heartbeats = heartbeats
        for reason, count in self._drops.items():
            if count > self._copied[reason]:
                families.FRAMES_DROPPED.labels(reason=reason).inc(count - self._copied[reason])
                self._copied[reason] = count
        # Every organization the broker knows gets its series, at 0 when empty: a dashboard
        # then shows 0, not "no data".
        orgs = set(self._org_names.values())
        nodes = dict.fromkeys(((org, a) for org in orgs for a in AVAILABILITIES), 0)
        for (org_id, availability), count in self._node_counts().items():
            nodes[(self._org(org_id), availability)] = count
        for labels in self._node_labels - nodes.keys():
            families.NODES.labels(*labels).set(0)
        for labels, count in nodes.items():
            families.NODES.labels(*labels).set(count)
        self._node_labels |= nodes.keys()
        running = dict.fromkeys(orgs, 0)
        for org_id, count in self._running_jobs().items():
            running[self._org(org_id)] = count
        for org in self._job_labels - running.keys():
            families.JOBS_RUNNING.labels(org=org).set(0)
        for org, count in running.items():
            families.JOBS_RUNNING.labels(org=org).set(count)
        self._job_labels |= running.keys()

    def job_finished(
        self, org_id: str, status: str, tally: Mapping[Any, int], duration: float | None
    ) -> None:
        families.JOBS.labels(org=self._org(org_id), status=status).inc()
        if duration is not None:
            families.JOB_DURATION.observe(duration)
        for node_status, count in tally.items():
            if count > 0:
                families.NODE_RUNS.labels(result=getattr(node_status, "wire", node_status)).inc(
                    count
                )

    def loop_lag(self, seconds: float) -> None:
        families.LOOP_LAG.observe(max(0.0, seconds))

    def serve(self, listen: str, port: int) -> None:
        self._server = exposition.serve(listen, port)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
