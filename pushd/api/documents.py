"""JSON documents of jobs, in the original's shapes (original-server.md 5.5, 5.6).

    job_summary(job) -> dict      an element of ``GET .../jobs``: id, command, status,
                                  run_timeout, created_at, updated_at, and when set user, dir,
                                  env, ``capture_output: true``, ``file_specified: true``.
    job_document(job, *, include_file=False) -> dict
                                  ``GET .../jobs/ID``: the summary plus ``nodes`` ({status:
                                  [names]}, only statuses that have nodes), ``node_reasons``
                                  ({node: reason}) when any node gave a reason, and with
                                  `include_file` the file itself instead of ``file_specified``.
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


def _options(job: Any) -> dict[str, Any]:
    options = job.options
    return {
        "job_user": options.job_user,
        "dir": options.dir,
        "env": options.env,
        "capture": options.capture,
        "job_file": options.job_file,
    }


def job_summary(job: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": job.id,
        "command": job.command,
        "status": _status_name(job.status, JobStatus),
        "run_timeout": job.run_timeout,
        "created_at": rfc1123(job.created_at),
        "updated_at": rfc1123(job.updated_at),
    }
    options = _options(job)
    if options.get("job_user") is not None:
        doc["user"] = options["job_user"]
    if options.get("dir") is not None:
        doc["dir"] = options["dir"]
    if options.get("env") is not None:
        doc["env"] = options["env"]
    if options.get("capture"):
        doc["capture_output"] = True
    if options.get("job_file") is not None:
        doc["file_specified"] = True
    return doc


def job_document(job: Any, *, include_file: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {"nodes": _nodes_by_status(job)}
    doc.update(job_summary(job))
    reasons = _reasons(job)
    if reasons:
        doc["node_reasons"] = reasons
    if include_file and doc.pop("file_specified", False):
        doc["file"] = _options(job)["job_file"]
    return doc


def _nodes_by_status(job: Any) -> dict[str, list[str]]:
    return {
        _status_name(status, NodeStatus): list(names)
        for status, names in job.nodes_by_status().items()
        if names
    }


def _reasons(job: Any) -> dict[str, str]:
    return {node: reason for node, reason in job.node_reasons().items() if reason}
