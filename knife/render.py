"""Everything `push-jobs` prints: knife's summary format, the node table, progress, events.

Public API:
    summary(data) -> str                  knife's default "summary" presenter (sorted `key: value`
                                          lines, nested values indented), e.g. for `job status`
    node_table(nodes_by_status, reasons=None) -> str   per-node table (NODE, STATUS[, REASON]),
                                          sorted by node name
    state_text(status, node_statuses) -> str   knife's progress text: "Voting.",
                                          "Running (X/Y in progress) ...", "Complete." ...
    progress_line(node_statuses, budget=None) -> str   rollout progress, e.g.
                                          "12/200 done, 10 running, 3 failed (budget 5)"
    rollout_budget(job) -> (is_rollout, budget)   from a job document: whether it uses
                                          max_concurrency/max_errors, and max_errors resolved
    Progress(stream, live=None, rollout=False, budget=None)   the `job start` progress: knife's
                                          dots and state lines, plus a live per-node count line
                                          when `live` (a TTY); a rollout job's running state is
                                          "Running: " + progress_line
        .update(status, node_statuses, tick=False) ; .finish(status, node_statuses) ; .close()
    event_line(event_name, data, with_job=False) -> str   one human line for `job watch`

knife prints the in-progress count as the number of distinct node statuses among
new/voting/running (a bug); this counts nodes in new/ready/running.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, TextIO

from pushd.rollout import resolve_errors

IN_PROGRESS_NODE_STATUSES = frozenset({"new", "ready", "running"})
# What uses up a rollout's error budget (docs/cli.md, pushd/broker/jobs.py).
FAILURE_NODE_STATUSES = frozenset({"failed", "crashed", "timed_out"})


def _is_singleton(value: Any) -> bool:
    return not isinstance(value, list | dict)


def _scalar(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


def summary(data: Any) -> str:
    """knife's text presenter: `key: value` lines, keys sorted and aligned, nesting indented."""
    out: list[str] = []
    if isinstance(data, dict):
        width = max((len(str(key)) for key in data), default=0) + 1
        for key in sorted(data, key=str):
            value = data[key]
            if isinstance(value, list) and len(value) == 1 and _is_singleton(value[0]):
                value = value[0]
            if _is_singleton(value):
                out.append(f"{(str(key) + ':').ljust(width)} {_scalar(value)}")
            else:
                out.append(f"{key}:")
                out.extend(f"  {line}" for line in summary(value).splitlines())
    elif isinstance(data, list):
        for index, item in enumerate(data):
            out.extend(summary(item).splitlines())
            if not _is_singleton(item) and index != len(data) - 1:
                out.append("")
    else:
        out.append(_scalar(data))
    return "\n".join(out) + ("\n" if out else "")


def node_table(
    nodes_by_status: Mapping[str, list[str]], reasons: Mapping[str, str] | None = None
) -> str:
    """`NODE  STATUS` rows for a job document's `nodes` object, sorted by node name.

    With `reasons` (the document's `node_reasons`, e.g. why a node nacked) a REASON column
    is added.
    """
    rows = sorted((name, status) for status, names in nodes_by_status.items() for name in names)
    if not rows:
        return ""
    width = max(len("NODE"), *(len(name) for name, _ in rows))
    if not reasons:
        lines = [f"{'NODE'.ljust(width)}  STATUS"]
        lines.extend(f"{name.ljust(width)}  {status}" for name, status in rows)
        return "\n".join(lines) + "\n"
    status_width = max(len("STATUS"), *(len(status) for _, status in rows))
    lines = [f"{'NODE'.ljust(width)}  {'STATUS'.ljust(status_width)}  REASON"]
    lines.extend(
        f"{name.ljust(width)}  {status.ljust(status_width)}  {reasons.get(name, '')}".rstrip()
        for name, status in rows
    )
    return "\n".join(lines) + "\n"


def state_text(status: str, node_statuses: Mapping[str, str]) -> str:
    """The progress text knife prints for a job status."""
    if status == "new":
        return "Initialized."
    if status == "voting":
        return "Voting."
    if status == "running":
        busy = sum(1 for s in node_statuses.values() if s in IN_PROGRESS_NODE_STATUSES)
        return f"Running ({busy}/{len(node_statuses)} in progress) ..."
    return status.capitalize() + "."


def progress_line(node_statuses: Mapping[str, str], budget: int | None = None) -> str:
    """`12/200 done, 10 running, 3 failed (budget 5)`: done = nodes that ended (any way),
    failed = failed + crashed + timed_out, budget = the job's max_errors (when it has one)."""
    counts = Counter(node_statuses.values())
    done = len(node_statuses) - sum(counts[s] for s in IN_PROGRESS_NODE_STATUSES)
    failed = sum(counts[s] for s in FAILURE_NODE_STATUSES)
    text = f"{done}/{len(node_statuses)} done, {counts['running']} running, {failed} failed"
    return text if budget is None else f"{text} (budget {budget})"


def rollout_budget(job: Mapping[str, Any]) -> tuple[bool, int | None]:
    """(the job uses rollout control, its max_errors as a node count or None)."""
    rollout = job.get("max_concurrency") is not None or job.get("max_errors") is not None
    max_errors = job.get("max_errors")
    if not isinstance(max_errors, int | str) or isinstance(max_errors, bool):
        return rollout, None
    total = sum(len(names or ()) for names in (job.get("nodes") or {}).values())
    try:
        return rollout, resolve_errors(max_errors, total)
    except ValueError:
        return rollout, None


def _counts_text(node_statuses: Mapping[str, str]) -> str:
    counts = Counter(node_statuses.values())
    order = ["new", "ready", "running", "succeeded", "failed", "nacked", "unavailable",
             "was_ready", "crashed", "timed_out", "aborted", "skipped"]
    parts = [f"{counts[name]} {name}" for name in order if counts.get(name)]
    parts.extend(f"{n} {name}" for name, n in sorted(counts.items()) if name not in order)
    return ", ".join(parts)


class Progress:
    """Progress of a followed job, knife-style.

    Plain output (not a TTY, knife's look): one `.` per tick and the state text whenever it
    changes, e.g. `.Running (1/1 in progress) ...` then `......Complete.`.
    On a TTY (`live=True`): state lines when the phase changes, and below them one line
    rewritten in place with the per-node counts and elapsed time.
    """

    def __init__(
        self, stream: TextIO, live: bool | None = None, *, rollout: bool = False,
        budget: int | None = None,
    ) -> None:
        self.stream = stream
        self.rollout = rollout
        self.budget = budget
        if live is None:
            isatty = getattr(stream, "isatty", None)
            live = bool(isatty and isatty())
        self.live = live
        self.started = time.monotonic()
        self._last_text: str | None = "Initialized."
        self._last_phase: str | None = "new"
        self._live_shown = False

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _clear_live(self) -> None:
        if self._live_shown:
            self._write("\r\x1b[K")
            self._live_shown = False

    def update(self, status: str, node_statuses: Mapping[str, str], tick: bool = False) -> None:
        if self.live:
            self._update_live(status, node_statuses)
            return
        text = self._text(status, node_statuses)
        changed = text != self._last_text
        if tick:
            self._write(".")
        if changed and tick:
            self._write(text + "\n")
            self._last_text = text

    def finish(self, status: str, node_statuses: Mapping[str, str]) -> None:
        """Show the final state (always ends the progress with a newline)."""
        if self.live:
            self._update_live(status, node_statuses)
            self._clear_live()
            return
        text = self._text(status, node_statuses)
        self._write(".")
        if text != self._last_text:
            self._write(text + "\n")
            self._last_text = text
        else:
            self._write("\n")

    def _text(self, status: str, node_statuses: Mapping[str, str]) -> str:
        if self.rollout and status == "running":
            return "Running: " + progress_line(node_statuses, self.budget)
        return state_text(status, node_statuses)

    def close(self) -> None:
        """Leave the cursor on a fresh line (after Ctrl-C or an error)."""
        if self.live:
            self._clear_live()
        else:
            self._write("\n")

    def _update_live(self, status: str, node_statuses: Mapping[str, str]) -> None:
        phase = status
        if phase != self._last_phase:
            self._clear_live()
            text = state_text(status, node_statuses)
            if status == "running":
                text = "Running."
            self._write(text + "\n")
            self._last_phase = phase
        if status in ("new", "voting", "running"):
            elapsed = int(time.monotonic() - self.started)
            counts = _counts_text(node_statuses)
            if self.rollout:
                counts = progress_line(node_statuses, self.budget) + "; " + counts
            self._write(f"\r\x1b[K  [{elapsed}s] {len(node_statuses)} nodes: {counts}")
            self._live_shown = True


def _field(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    return "" if value is None else str(value)


def event_line(event_name: str, data: Mapping[str, Any], *, with_job: bool = False) -> str:
    """One line for a feed event: `<timestamp>  [<job id>  ]<event>  <details>`.

    `with_job` (the org feed) puts the event's `job` field after the timestamp.
    """
    stamp = _field(data, "timestamp")
    if with_job:
        stamp = f"{stamp}  {_field(data, 'job') or '-'}"
        data = {key: value for key, value in data.items() if key != "job"}
    if event_name == "start":
        detail = (f"command={data.get('command')!r} nodes={_field(data, 'node_count')}"
                  f" quorum={_field(data, 'quorum')} run_timeout={_field(data, 'run_timeout')}"
                  f" by={_field(data, 'user')}")
    elif event_name in ("quorum_vote", "run_complete"):
        detail = f"{_field(data, 'node')} {_field(data, 'status')}"
    elif event_name in ("run_start", "rehab"):
        detail = _field(data, "node")
    elif event_name == "job_complete":
        detail = _field(data, "status")
    elif event_name == "summary":
        detail = f"status={_field(data, 'status')}"
    else:
        detail = " ".join(f"{k}={v}" for k, v in data.items() if k != "timestamp")
    return f"{stamp}  {event_name:<16} {detail}".rstrip()
