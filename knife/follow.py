"""Following a job to its end: through the job feed, falling back to polling.

Public API:
    TERMINAL_JOB_STATUSES                 job statuses after which nothing changes
    JobTracker(job)                       status + per-node statuses of one job
        .apply_event(event) -> bool       update from a feed event (True when something changed)
        .replace(job)                     update from a polled job document
        .finished -> bool
    Follower(http, job_id, *, poll_interval=1.0, wait_timeout=None, use_feed=True,
             on_change=None, on_tick=None, on_event=None)
        .run() -> dict                    the final job document (GET after the end, the truth)
        raises CliError(code=WAIT_TIMEOUT) when wait_timeout passes; KeyboardInterrupt passes
        through (the caller explains that the job continues on the server)

The job document's `nodes` is `{status: [names]}`; the feed's events move single nodes. The
final answer always comes from `GET .../pushy/jobs/ID`, whatever the feed said.
"""

from __future__ import annotations

import queue as queue_module
import time
from collections.abc import Callable, Mapping
from typing import Any

from pushd_knife.chefhttp import ApiError, ChefHTTP, segment
from pushd_knife.exitcodes import WAIT_TIMEOUT, CliError
from pushd_knife.sse import FEED_ENDED, FEED_UNAVAILABLE, Event, FeedReader, wait_for

TERMINAL_JOB_STATUSES = frozenset(
    {"complete", "quorum_failed", "timed_out", "aborted", "crashed", "halted"}
)

# quorum_vote statuses -> the node's new status (section 4.3 of the server reference).
_VOTE_RESULT = {
    "success": "ready",
    "failure": "nacked",
    "lost_availibility": "unavailable",
    "lost_availability": "unavailable",
    "down": "unavailable",
    "voting_timeout": "unavailable",
    "client_died_while_voting": None,  # the node was already terminal: unchanged
    "unexpected_commit": None,
}
_RUN_RESULT = {
    "success": "succeeded",
    "failure": "failed",
    "crashed": "crashed",
    "run_nacked": "failed",
    "run_nacked_while_running": "failed",
    "client_died_while_running": None,
    "timed_out": "timed_out",
    "aborted": "aborted",
}
# Transient failures while polling are retried for this long before giving up.
POLL_RETRY_SECONDS = 60.0


def job_path(job_id: str) -> str:
    return f"pushy/jobs/{segment(job_id)}"


def nodes_of(job: Mapping[str, Any]) -> dict[str, str]:
    """{node name: status} from a job document's `nodes` object."""
    result: dict[str, str] = {}
    for status, names in (job.get("nodes") or {}).items():
        for name in names or []:
            result[str(name)] = str(status)
    return result


class JobTracker:
    def __init__(self, job: Mapping[str, Any]) -> None:
        self.status = str(job.get("status", "new"))
        self.nodes = nodes_of(job)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_JOB_STATUSES

    def replace(self, job: Mapping[str, Any]) -> bool:
        before = (self.status, dict(self.nodes))
        self.status = str(job.get("status", self.status))
        self.nodes = nodes_of(job) or self.nodes
        return before != (self.status, self.nodes)

    def _set_node(self, name: Any, status: str | None) -> bool:
        if status is None or not isinstance(name, str) or self.nodes.get(name) == status:
            return False
        self.nodes[name] = status
        return True

    def apply_event(self, event: Event) -> bool:
        data = event.json()
        name = event.name
        if name == "summary":
            return self.replace(data)
        if name == "start":
            if self.status == "new":
                self.status = "voting"
                return True
            return False
        if name == "quorum_vote":
            changed = self._set_node(data.get("node"), _VOTE_RESULT.get(str(data.get("status"))))
            if self.status == "new":
                self.status = "voting"
                changed = True
            return changed
        if name == "quorum_succeeded":
            self.status = "running"
            return True
        if name == "run_start":
            changed = self._set_node(data.get("node"), "running")
            if self.status in ("new", "voting"):
                self.status = "running"
                changed = True
            return changed
        if name == "run_complete":
            return self._set_node(data.get("node"), _RUN_RESULT.get(str(data.get("status"))))
        if name == "halted":
            # Error budget exceeded: every node still waiting its turn is skipped (a node sent
            # `run` a moment ago may look skipped until the final GET says otherwise).
            for node, node_status in self.nodes.items():
                if node_status == "ready":
                    self.nodes[node] = "skipped"
            return True
        if name == "job_complete":
            status = str(data.get("status") or "complete")
            if status == "success":
                status = "complete"
            self.status = status
            if status == "quorum_failed":
                for node, node_status in self.nodes.items():
                    if node_status == "ready":
                        self.nodes[node] = "was_ready"
            return True
        return False


class Follower:
    def __init__(
        self,
        http: ChefHTTP,
        job_id: str,
        *,
        poll_interval: float = 1.0,
        wait_timeout: float | None = None,
        use_feed: bool = True,
        on_change: Callable[[JobTracker], None] | None = None,
        on_tick: Callable[[JobTracker], None] | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.http = http
        self.job_id = job_id
        self.poll_interval = max(0.05, poll_interval)
        self.wait_timeout = wait_timeout
        self.use_feed = use_feed
        self.on_change = on_change or (lambda tracker: None)
        self.on_tick = on_tick or (lambda tracker: None)
        self.on_event = on_event or (lambda event: None)
        self.tracker: JobTracker | None = None
        self.feed_active = False  # True while events come from the feed (not polling)

    def _get_job(self) -> dict[str, Any]:
        """GET the job, retrying transient failures (server restarting) for a while."""
        give_up = time.monotonic() + POLL_RETRY_SECONDS
        delay = 0.5
        while True:
            try:
                job = self.http.get_json(job_path(self.job_id))
                if not isinstance(job, dict):
                    raise CliError(f"unexpected answer for job {self.job_id}: {job!r:.200}")
                return job
            except ApiError as exc:
                if exc.status < 500 or time.monotonic() > give_up:
                    raise
            except CliError:
                if time.monotonic() > give_up:
                    raise
            time.sleep(delay)
            delay = min(5.0, delay * 2)

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        deadline = None if self.wait_timeout is None else started + self.wait_timeout
        tracker = JobTracker(self._get_job())
        self.tracker = tracker
        events: queue_module.Queue[Any] = queue_module.Queue()
        reader: FeedReader | None = None
        if self.use_feed and not tracker.finished:
            reader = FeedReader(self.http, f"pushy/job_status_feed/{segment(self.job_id)}", events)
            reader.start()
            self.feed_active = True
        try:
            next_tick = time.monotonic() + self.poll_interval
            while not tracker.finished:
                if deadline is not None and time.monotonic() >= deadline:
                    raise CliError(
                        f"stopped waiting after {self.wait_timeout:g}s; job {self.job_id} is"
                        f" still {tracker.status} on the server", WAIT_TIMEOUT)
                until = next_tick if deadline is None else min(next_tick, deadline)
                if reader is not None:
                    item = wait_for(events, until)
                    if item is FEED_UNAVAILABLE or item is FEED_ENDED:
                        # Either the server has no feed or the stream closed: poll from now on.
                        reader = None
                        self.feed_active = False
                        if tracker.replace(self._get_job()):
                            self.on_change(tracker)
                    elif isinstance(item, Event):
                        self.on_event(item)
                        if tracker.apply_event(item):
                            self.on_change(tracker)
                else:
                    time.sleep(max(0.0, until - time.monotonic()))
                    if tracker.replace(self._get_job()):
                        self.on_change(tracker)
                now = time.monotonic()
                if now >= next_tick and not tracker.finished:
                    # One tick per interval even while events stream in; never a burst of
                    # catch-up ticks after a slow request.
                    next_tick = max(next_tick + self.poll_interval, now)
                    self.on_tick(tracker)
        finally:
            self.feed_active = False
            if reader is not None:
                reader.stop()
        final = self._get_job()
        tracker.replace(final)
        return final
