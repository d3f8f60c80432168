"""JSON documents of jobs, in the original's shapes (original-server.md 5.5, 5.6).

    job_summary(job) -> dict      an element of ``GET .../jobs``: id, command, status,
                                  run_timeout, created_at, updated_at, and when set user, dir,
                                  env, ``capture_output: true``, ``file_specified: true``.
    job_document(job, *, include_file=False) -> dict
                                  ``GET .../jobs/ID``: the summary plus ``nodes`` ({status:
                                  [names]}, only statuses that have nodes), ``node_reasons``
                                  ({node: reason}) when any node gave a reason, and with
                                  `include_file` the file itself instead of ``file_specified``.

Rollout control (issue 17), only in jobs that use it, so other documents keep their shape:
the summary carries ``max_concurrency`` / ``max_errors`` as given (int or "N%") and
``rerun_of``; the document adds ``node_counts``: {status: n} for every node status (``skipped``
included, zeros kept) plus ``waiting``: the nodes `ready` while the job is `running`, i.e.
voted yes and not started: with `max_concurrency` those waiting their turn (and, for the
moment between `run` and `ack_run`, a node just started).
`job` is the store's job view.
"""

from __future__ import annotations

from typing import Any

from pushd.api.formats import rfc1123
from pushd.states import JobStatus, NodeStatus


def _status_name(value: Any, kind: type[JobStatus] | type[NodeStatus]) -> str:
    if isinstance(value, str):
        return value
    return kind(int(value)).wire


def job_summary(job: Any) -> dict[str, Any]:
    # Runs for every job of a list page (1,000 by default): attributes are read directly.
    doc: dict[str, Any] = {
        "id": job.id,
        "command": job.command,
        "status": _status_name(job.status, JobStatus),
        "run_timeout": job.run_timeout,
        "created_at": rfc1123(job.created_at),
        "updated_at": rfc1123(job.updated_at),
    }
    options = job.options
    if options.job_user is not None:
        doc["user"] = options.job_user
    if options.dir is not None:
        doc["dir"] = options.dir
    if options.env is not None:
        doc["env"] = options.env
    if options.capture:
        doc["capture_output"] = True
    if job.file_specified:
        doc["file_specified"] = True
    if options.max_concurrency is not None:
        doc["max_concurrency"] = options.max_concurrency
    if options.max_errors is not None:
        doc["max_errors"] = options.max_errors
    if options.rerun_of is not None:
        doc["rerun_of"] = options.rerun_of
    return doc


def job_document(job: Any, *, include_file: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {"nodes": _nodes_by_status(job)}
    doc.update(job_summary(job))
    reasons = _reasons(job)
    if reasons:
        doc["node_reasons"] = reasons
    if include_file and doc.pop("file_specified", False):
        doc["file"] = job.options.job_file
    if "max_concurrency" in doc or "max_errors" in doc:
        doc["node_counts"] = _node_counts(doc["nodes"], doc["status"])
    return doc


def _node_counts(nodes: dict[str, list[str]], status: str) -> dict[str, int]:
    counts = {state.wire: len(nodes.get(state.wire, ())) for state in NodeStatus}
    counts["waiting"] = counts["ready"] if status == JobStatus.RUNNING.wire else 0
    return counts


def _nodes_by_status(job: Any) -> dict[str, list[str]]:
    return {
        _status_name(status, NodeStatus): list(names)
        for status, names in job.nodes_by_status().items()
        if names
    }


def _reasons(job: Any) -> dict[str, str]:
    return {node: reason for node, reason in job.node_reasons().items() if reason}
