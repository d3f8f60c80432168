"""Bulk-load a job history into a pushd PostgreSQL database (for bench_joblist.py).

    load_jobs(params, org_id, count, *, days=180, seed=1, nodes_for_newest=0, nodes_per_job=3,
              status=None, end=None) -> Counter[JobStatus]
        `count` finished jobs of `org_id` through COPY (jobs, job_options and, for the newest
        `nodes_for_newest` jobs, `nodes_per_job` job_nodes rows each), created_at spread evenly
        (with jitter) over the `days` before `end` (default: now); returns the statuses written.
        With `status` every job gets that status and its updated_at is `end` (a few running
        jobs, loaded after the broker started so its start-up recovery leaves them alone).
    analyze(params) -> None      VACUUM ANALYZE of the job tables (statistics and the visibility
                                 map, as autovacuum leaves a table that has been loaded a while)

The rows look like what pushd writes: ids are the org's last 12 characters and 20 hex digits
(api/formats.new_job_id), every job has a job_options row (create_job writes one), timestamps
are naive UTC with microseconds. Status mix of finished jobs (STATUS_MIX): mostly complete, a
few percent each of quorum_failed, timed_out, aborted, crashed, halted. 30% capture output, 5%
carry an env, 1% a 4 KB job file.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from pushd.states import JobStatus, NodeStatus

STATUS_MIX: tuple[tuple[JobStatus, float], ...] = (
    (JobStatus.COMPLETE, 0.90),
    (JobStatus.QUORUM_FAILED, 0.03),
    (JobStatus.TIMED_OUT, 0.025),
    (JobStatus.ABORTED, 0.02),
    (JobStatus.CRASHED, 0.015),
    (JobStatus.HALTED, 0.01),
)
COMMANDS = ("chef-client", "chef-client", "chef-client", "restart-app", "deploy-web")
NODE_OUTCOME = {
    JobStatus.COMPLETE: NodeStatus.SUCCEEDED,
    JobStatus.QUORUM_FAILED: NodeStatus.UNAVAILABLE,
    JobStatus.TIMED_OUT: NodeStatus.TIMED_OUT,
    JobStatus.ABORTED: NodeStatus.ABORTED,
    JobStatus.CRASHED: NodeStatus.CRASHED,
    JobStatus.HALTED: NodeStatus.SKIPPED,
    JobStatus.RUNNING: NodeStatus.RUNNING,
}
JOB_FILE = "raw:" + "#!/bin/sh\necho deploying\n" * 160  # ~4 KB


def _connect(params: dict[str, Any]) -> Any:
    import psycopg

    return psycopg.connect(
        host=params["host"], port=params["port"], user=params["user"],
        password=params.get("password") or None, dbname=params["database"], autocommit=True,
    )


def load_jobs(
    params: dict[str, Any],
    org_id: str,
    count: int,
    *,
    days: float = 180.0,
    seed: int = 1,
    nodes_for_newest: int = 0,
    nodes_per_job: int = 3,
    status: JobStatus | None = None,
    end: datetime | None = None,
) -> Counter[JobStatus]:
    """COPY `count` jobs of `org_id` (see the module docstring)."""
    rng = random.Random(seed)
    end = (end or datetime.now(UTC)).replace(tzinfo=None)
    span = timedelta(days=days).total_seconds()
    step = span / max(count, 1)
    start = end - timedelta(seconds=span)
    statuses = [s for s, _ in STATUS_MIX]
    weights = [w for _, w in STATUS_MIX]
    prefix = org_id[-12:].lower()
    written: Counter[JobStatus] = Counter()
    node_rows: list[tuple[Any, ...]] = []
    with _connect(params) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY jobs (id, org_id, command, status, run_timeout, quorum, last_updated_by,"
            " requested_by, created_at, updated_at) FROM STDIN"
        ) as jobs_copy:
            options: list[tuple[Any, ...]] = []
            for index in range(count):
                job_id = (prefix + f"{rng.getrandbits(80):020x}").rjust(32, "0")
                created = start + timedelta(seconds=index * step + rng.random() * step)
                job_status = status or rng.choices(statuses, weights)[0]
                if status is None:
                    updated = created + timedelta(seconds=5 + rng.random() * 1800)
                else:
                    created = end - timedelta(seconds=(count - index) * 30)
                    updated = end
                quorum = rng.randint(1, 100)
                jobs_copy.write_row((
                    job_id, org_id, rng.choice(COMMANDS), int(job_status), 3600, quorum,
                    job_id, "pivotal-admin", created, updated,
                ))
                written[job_status] += 1
                roll = rng.random()
                options.append((
                    job_id,
                    '{"DEPLOY_ENV":"production"}' if roll < 0.05 else None,
                    roll < 0.30,
                    JOB_FILE if rng.random() < 0.01 else None,
                ))
                if index >= count - nodes_for_newest:
                    outcome = NODE_OUTCOME[job_status]
                    for node in range(nodes_per_job):
                        node_rows.append((job_id, org_id, f"node-{rng.randrange(10000):05d}"
                                          f"-{node}", int(outcome), created, updated))
        with cur.copy("COPY job_options (job_id, env, capture, job_file) FROM STDIN") as copy:
            for row in options:
                copy.write_row(row)
        if node_rows:
            with cur.copy(
                "COPY job_nodes (job_id, org_id, node_name, status, created_at, updated_at)"
                " FROM STDIN"
            ) as copy:
                for row in node_rows:
                    copy.write_row(row)
    return written


def analyze(params: dict[str, Any]) -> None:
    """VACUUM ANALYZE the tables the job list reads (see the module docstring)."""
    with _connect(params) as conn:
        for table in ("jobs", "job_options", "job_nodes"):
            conn.execute(f"VACUUM ANALYZE {table}")
