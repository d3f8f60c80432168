"""Job and job-node states, numbered exactly as the original's database (original-server.md 4.1).

Stdlib only: the node client and the CLI import this module too.
"""

from __future__ import annotations

from enum import IntEnum


class JobStatus(IntEnum):
    """`jobs.status`; the integers are the original `job_status` table ids."""

    VOTING = 0
    RUNNING = 1
    COMPLETE = 2
    QUORUM_FAILED = 3
    ABORTED = 4
    NEW = 5
    TIMED_OUT = 6
    CRASHED = 7
    # pushd: the error budget (`max_errors`) was exceeded; nodes not yet started were skipped.
    HALTED = 8

    @property
    def wire(self) -> str:
        """The lowercase name used in REST bodies and feed events."""
        return self.name.lower()

    @classmethod
    def from_wire(cls, name: str) -> JobStatus:
        return cls[name.upper()]


class NodeStatus(IntEnum):
    """`job_nodes.status`; the integers are the original's."""

    NEW = 0
    READY = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4
    ABORTED = 5
    UNAVAILABLE = 6
    NACKED = 7
    FAULTY = 8
    WAS_READY = 9
    CRASHED = 10
    TIMED_OUT = 11
    # pushd: never started because the job's error budget ran out first.
    SKIPPED = 12

    @property
    def wire(self) -> str:
        return self.name.lower()

    @classmethod
    def from_wire(cls, name: str) -> NodeStatus:
        return cls[name.upper()]


TERMINAL_JOB_STATUSES = frozenset(
    {
        JobStatus.COMPLETE,
        JobStatus.QUORUM_FAILED,
        JobStatus.ABORTED,
        JobStatus.TIMED_OUT,
        JobStatus.CRASHED,
        JobStatus.HALTED,
    }
)
ACTIVE_JOB_STATUSES = frozenset({JobStatus.NEW, JobStatus.VOTING, JobStatus.RUNNING})

ACTIVE_NODE_STATUSES = frozenset({NodeStatus.NEW, NodeStatus.READY, NodeStatus.RUNNING})
TERMINAL_NODE_STATUSES = frozenset(set(NodeStatus) - ACTIVE_NODE_STATUSES)

# Node statuses that knife (and `push-jobs job start`) accept in a job counted as a success.
ACCEPTABLE_NODE_OUTCOMES = frozenset(
    {NodeStatus.SUCCEEDED, NodeStatus.NACKED, NodeStatus.UNAVAILABLE}
)


class ClientJobState:
    """`job_state` values a node reports in its heartbeats."""

    IDLE = "idle"
    COMMITTED = "committed"
    RUNNING = "running"
    ALL = frozenset({IDLE, COMMITTED, RUNNING})
