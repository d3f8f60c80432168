"""Exit codes of `push-jobs` and the mapping from a finished job document to one.

Public API:
    OK, ERROR, USAGE, NODES_FAILED, QUORUM_FAILED, TIMED_OUT, ABORTED, CRASHED, WAIT_TIMEOUT,
    INTERRUPTED                      the documented codes (docs/cli.md has the table)
    CliError(message, code=ERROR)    raised anywhere in the CLI; main() prints it as one line
    job_exit_code(job, strict=False) -> int   the code for a finished job document
    MEANINGS, meaning(code) -> str   one line per code, as docs/cli.md's table says it

knife exits 1 for every failure; `push-jobs` keeps 0 and 1 with knife's meaning (0: the job
completed and every node succeeded, nacked or was unavailable; 1: the CLI could not do what
was asked) and gives each way a job can end badly its own code so scripts can tell them apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

OK = 0
ERROR = 1  # configuration, connection, HTTP or server-side validation error
USAGE = 2  # bad command line (argparse's own code)
NODES_FAILED = 3  # job complete (or halted), but a node failed, crashed, timed out ...
QUORUM_FAILED = 4  # not enough nodes committed; nothing ran
TIMED_OUT = 5  # the job hit its run_timeout on the server
ABORTED = 6  # the job was aborted (push-jobs job abort)
CRASHED = 7  # the server lost the job (restart or internal failure)
WAIT_TIMEOUT = 8  # --wait-timeout expired; the job is still going on the server
INTERRUPTED = 130  # Ctrl-C; the job is still going on the server

# Node outcomes that do not fail a completed job, as knife decides (nacked and unavailable
# nodes are refusals, not failures). `--strict` drops the last two.
ACCEPTABLE_NODE_STATUSES = frozenset({"succeeded", "nacked", "unavailable"})
STRICT_NODE_STATUSES = frozenset({"succeeded"})

_JOB_STATUS_CODES = {
    "quorum_failed": QUORUM_FAILED,
    "timed_out": TIMED_OUT,
    "aborted": ABORTED,
    "crashed": CRASHED,
    # Rollout control: the error budget ran out. Nodes failed, so it exits like a completed
    # job with failed nodes (docs/cli.md).
    "halted": NODES_FAILED,
}


# What `job start` and `job watch` print on stderr when a job ends with a non-zero code, so a
# reader need not look the number up (docs/cli.md "Exit codes" says the same).
MEANINGS = {
    OK: "the job completed and every node succeeded, was nacked or unavailable",
    ERROR: "the CLI could not do what was asked",
    USAGE: "bad command line",
    NODES_FAILED: "the job completed but a node failed, crashed, timed out or was aborted",
    QUORUM_FAILED: "quorum_failed: not enough nodes committed, nothing ran",
    TIMED_OUT: "timed_out: the job hit its run timeout",
    ABORTED: "aborted: the job was aborted",
    CRASHED: "crashed: the server lost the job",
    WAIT_TIMEOUT: "--wait-timeout passed; the job is still going on the server",
    INTERRUPTED: "interrupted; the job is still going on the server",
}


def meaning(code: int) -> str:
    return MEANINGS.get(code, "unknown exit code")


class CliError(Exception):
    """A failure to report as one line on stderr, exiting with `code`."""

    def __init__(self, message: str, code: int = ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def job_exit_code(job: Mapping[str, Any], *, strict: bool = False) -> int:
    """Exit code for a finished job document (`GET .../pushy/jobs/ID`).

    A `halted` job (error budget exceeded) exits NODES_FAILED. A job whose status is
    `complete` exits OK when every node key of `nodes` is acceptable
    (knife's rule), else NODES_FAILED; the other terminal statuses have their own codes.
    """
    status = str(job.get("status", ""))
    if status in _JOB_STATUS_CODES:
        return _JOB_STATUS_CODES[status]
    if status != "complete":
        # Not finished (or a status this CLI does not know): never report success for it.
        return ERROR
    allowed = STRICT_NODE_STATUSES if strict else ACCEPTABLE_NODE_STATUSES
    nodes = job.get("nodes") or {}
    for node_status, names in nodes.items():
        if names and node_status not in allowed:
            return NODES_FAILED
    return OK
