"""What the dashboard shows, as plain data: the same dicts feed the HTML and the JSON API.

    duration_text(seconds) -> str               '4s', '2m 05s', '1h 02m', '3d 04h'
    job_row(job, counts, now) -> dict           id, command, requester, status, counts
                                                ({node status: n}), age, duration, active
    job_detail(store, org_id, job, now) -> dict job_row plus nodes [{name, status, reason}],
                                                options and outputs {node: {stdout, stderr,
                                                truncated}} (each channel cut to OUTPUT_SHOWN,
                                                the first NODES_WITH_OUTPUT nodes by name)
    JOB_STATUSES: the status names the list filter offers
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pushd.states import ACTIVE_JOB_STATUSES, JobStatus

JOB_STATUSES = tuple(status.wire for status in JobStatus)
OUTPUT_SHOWN = 65536
NODES_WITH_OUTPUT = 200


def duration_text(seconds: float) -> str:
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def job_row(job: Any, counts: dict[str, int], now: datetime) -> dict[str, Any]:
    status = JobStatus(job.status)
    active = status in ACTIVE_JOB_STATUSES
    end = now if active else job.updated_at
    return {
        "id": job.id,
        "command": job.command,
        "requester": job.requested_by or job.last_updated_by,
        "status": status.wire,
        "counts": dict(sorted(counts.items())),
        "age": duration_text((now - job.created_at).total_seconds()),
        "duration": duration_text((end - job.created_at).total_seconds()),
        "active": active,
    }


def _options(job: Any) -> dict[str, Any]:
    options = job.options
    return {
        "run_timeout": job.run_timeout,
        "quorum": job.quorum,
        "user": options.job_user,
        "dir": options.dir,
        "env": options.env,
        "capture_output": bool(options.capture),
        "file": "attached" if options.job_file is not None else None,
    }


def _cut(text: str | None) -> str | None:
    if text is None or len(text) <= OUTPUT_SHOWN:
        return text
    return text[:OUTPUT_SHOWN] + f"\n[... {len(text) - OUTPUT_SHOWN} more characters]"


def job_detail(store: Any, org_id: str, job: Any, now: datetime) -> dict[str, Any]:
    counts: dict[str, int] = {}
    nodes = []
    for node in job.nodes:
        counts[node.status.wire] = counts.get(node.status.wire, 0) + 1
        nodes.append({"name": node.name, "status": node.status.wire, "reason": node.reason})
    doc = job_row(job, counts, now)
    doc["nodes"] = nodes
    doc["options"] = _options(job)
    outputs: dict[str, dict[str, Any]] = {}
    if job.options.capture:
        shown = store.job_outputs(org_id, job.id, limit=NODES_WITH_OUTPUT)
        for node, record in shown.items():
            outputs[node] = {
                "stdout": _cut(record.stdout),
                "stderr": _cut(record.stderr),
                "truncated": record.truncated,
            }
    doc["outputs"] = outputs
    return doc
