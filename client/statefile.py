"""Files the client keeps in its state directory: the running job, and the operator status.

Public API:

    StateDir(path)                         creates the directory (0700) on first write
        .save_job(record: JobRecord)       atomically, 0600; when a job's process starts, and
                                           again when its recorded tree changes
        .clear_job()                       when the job's process tree is gone
        .load_job() -> JobRecord | None    what a previous client process left behind
        .write_status(status: dict)        status.json, atomically (read by --status)
        .read_status() -> dict | None
        .job_path / .status_path
    JobRecord(job_id, pid, pgid, start_time, command, started_at, tree=None)
        start_time: the leader's start time from /proc (clock ticks), so a pid reused by an
        unrelated process is not mistaken for the job. tree: JobTree.record() (proctree): the
        job's cgroup, or its subreaper members and token.
    recover_orphan(state_dir, grace) -> JobRecord | None
        Called at start-up: if the previous client left a job record, end what still runs of
        that job (its recorded tree, then its process group: TERM, grace, KILL), clear the
        record, and return it so the caller can report the job as aborted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pushd_client.process import group_alive, kill_group_blocking, process_start_time
from pushd_client.proctree import kill_tree_blocking, recovered_tree

MAX_STATE_FILE = 64 * 1024
log = logging.getLogger("pushd_client.statefile")


@dataclass(frozen=True)
class JobRecord:
    """The running job as saved in job.json."""

    job_id: str
    pid: int
    pgid: int
    start_time: int | None
    command: str
    started_at: float
    tree: dict[str, Any] | None = None


class StateDir:
    """The client's private state directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.job_path = self.path / "job.json"
        self.status_path = self.path / "status.json"

    def _ensure(self) -> None:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _write(self, target: Path, document: dict[str, Any]) -> None:
        self._ensure()
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=self.path)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, sort_keys=True)
                handle.write("\n")
            os.chmod(tmp, 0o644 if target == self.status_path else 0o600)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @staticmethod
    def _read(target: Path) -> dict[str, Any] | None:
        try:
            with open(target, "rb") as handle:
                raw = handle.read(MAX_STATE_FILE + 1)
        except OSError:  # missing, or unreadable: either way nothing we can act on
            return None
        if len(raw) > MAX_STATE_FILE:
            return None
        try:
            document = json.loads(raw)
        except ValueError:
            return None
        return document if isinstance(document, dict) else None

    def save_job(self, record: JobRecord) -> None:
        self._write(self.job_path, asdict(record))

    def clear_job(self) -> None:
        """Remove the job record; OSError other than "already gone" propagates."""
        with contextlib.suppress(FileNotFoundError):
            self.job_path.unlink()

    def load_job(self) -> JobRecord | None:
        document = self._read(self.job_path)
        if document is None:
            return None
        try:
            return JobRecord(
                job_id=str(document["job_id"]),
                pid=int(document["pid"]),
                pgid=int(document["pgid"]),
                start_time=None if document.get("start_time") is None
                else int(document["start_time"]),
                command=str(document.get("command", "")),
                started_at=float(document.get("started_at", 0.0)),
                tree=document["tree"] if isinstance(document.get("tree"), dict) else None,
            )
        except (KeyError, TypeError, ValueError):
            return None

    def write_status(self, status: dict[str, Any]) -> None:
        self._write(self.status_path, status)

    def read_status(self) -> dict[str, Any] | None:
        return self._read(self.status_path)


def recover_orphan(state_dir: StateDir, grace: float) -> JobRecord | None:
    """Kill and clear the job a previous client process left running (see module docstring)."""
    record = state_dir.load_job()
    if record is None:
        with contextlib.suppress(OSError):
            state_dir.clear_job()  # absent or unreadable: nothing we can safely kill
        return None
    tree = None if record.tree is None else recovered_tree(record.tree)
    if tree is not None:
        if not kill_tree_blocking(tree, grace):
            log.error("job=%s processes %s survived SIGKILL", record.job_id, tree.members())
        tree.release()
    leader_is_ours = (
        record.start_time is None or process_start_time(record.pid) == record.start_time
    )
    # The leader may be gone while its children live on in the group; a reused pid with a
    # different start time in the same group number is not ours, so leave that alone.
    ours = leader_is_ours or process_start_time(record.pid) is None
    if record.pgid > 1 and ours and group_alive(record.pgid):  # never group 0: our own
        kill_group_blocking(record.pgid, grace)
    with contextlib.suppress(OSError):
        state_dir.clear_job()
    return record
