"""Re-running a job (issue 17): ``POST .../pushy/jobs/ID/rerun``.

    parse_rerun_request(body: bytes) -> str | list[str]
        ``{"nodes": "failed" | "all" | [names]}``; an empty body means "failed". Raises
        JobValidationError (400 with its message).
    rerun_plan(job, selection) -> (nodes, quorum, options)
        the nodes, quorum and job options of the new job; raises JobValidationError when the
        selection names no node or a node the job does not have, RerunConflict (409) when
        "failed" is asked of a job that has not finished.

The new job has the same command, run_timeout and options (user, dir, env, file, capture,
voting_timeout, max_concurrency, max_errors: a percentage is re-resolved against the new node
set) and records ``rerun_of``. Quorum: a job that needed every node needs every node of the
re-run; a smaller quorum is kept, capped at the re-run's node count.
"""

from __future__ import annotations

import json
from typing import Any

from pushd.api.validation import JobValidationError
from pushd.states import TERMINAL_JOB_STATUSES, JobStatus, NodeStatus

RERUN_NODES = "nodes must be \"failed\", \"all\" or a list of node names"
RERUN_KEYS = "invalid key supplied (expected only \"nodes\")"


class RerunConflict(ValueError):
    """The job cannot be re-run that way now (409)."""


def parse_rerun_request(body: bytes) -> str | list[str]:
    if not body.strip():
        return "failed"
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise JobValidationError("request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise JobValidationError("request body must be a JSON object")
    if set(doc) - {"nodes"}:
        raise JobValidationError(RERUN_KEYS)
    nodes = doc.get("nodes", "failed")
    if nodes in ("failed", "all"):
        return str(nodes)
    if (
        isinstance(nodes, list)
        and nodes
        and all(isinstance(name, str) and name for name in nodes)
        and len(set(nodes)) == len(nodes)
    ):
        return list(nodes)
    raise JobValidationError(RERUN_NODES)


def rerun_plan(job: Any, selection: str | list[str]) -> tuple[list[str], int, dict[str, Any]]:
    statuses = {node.name: node.status for node in job.nodes}
    if selection == "all":
        nodes = list(statuses)
    elif selection == "failed":
        if JobStatus(job.status) not in TERMINAL_JOB_STATUSES:
            raise RerunConflict(f"job '{job.id}' has not finished; its failed nodes are not known")
        nodes = [name for name, status in statuses.items() if status != NodeStatus.SUCCEEDED]
        if not nodes:
            raise JobValidationError(f"job '{job.id}' has no failed nodes to re-run")
    else:
        unknown = [name for name in selection if name not in statuses]
        if unknown:
            raise JobValidationError(f"node '{unknown[0]}' is not a node of job '{job.id}'")
        nodes = list(selection)
    quorum = len(nodes) if job.quorum >= len(statuses) else min(job.quorum, len(nodes))
    opts = job.options
    options: dict[str, Any] = {
        "job_user": opts.job_user,
        "dir": opts.dir,
        "env": opts.env,
        "capture": opts.capture,
        "job_file": opts.job_file,
        "voting_timeout": opts.voting_timeout,
        "max_concurrency": opts.max_concurrency,
        "max_errors": opts.max_errors,
        "rerun_of": job.id,
    }
    return nodes, quorum, options
