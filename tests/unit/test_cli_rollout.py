"""The CLI's side of rollout control (issue 17): the progress line, the budget from a job
document, `halted` exiting like failed nodes, flag checks and the feed tracker."""

from __future__ import annotations

import pytest
from pushd_knife import exitcodes
from pushd_knife.exitcodes import CliError
from pushd_knife.follow import TERMINAL_JOB_STATUSES, JobTracker
from pushd_knife.jobspec import build_job_body, parse_rollout_flag
from pushd_knife.render import Progress, progress_line, rollout_budget
from pushd_knife.sse import Event


def statuses(**counts: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for status, n in counts.items():
        for i in range(n):
            out[f"{status}{i}"] = status
    return out


def test_progress_line_as_the_issue_writes_it() -> None:
    nodes = statuses(succeeded=9, failed=2, crashed=1, running=10, ready=178)
    assert progress_line(nodes, 5) == "12/200 done, 10 running, 3 failed (budget 5)"
    assert progress_line(nodes) == "12/200 done, 10 running, 3 failed"
    assert progress_line(statuses(skipped=2, timed_out=1)) == "3/3 done, 0 running, 1 failed"


def test_budget_is_resolved_from_the_job_document() -> None:
    job = {"max_errors": "10%", "nodes": {"new": [f"n{i}" for i in range(15)]}}
    assert rollout_budget(job) == (True, 1)  # 10% of 15, rounded down
    assert rollout_budget({"max_concurrency": 3, "nodes": {}}) == (True, None)
    assert rollout_budget({"nodes": {"succeeded": ["a"]}}) == (False, None)


def test_halted_exits_like_failed_nodes() -> None:
    assert exitcodes.job_exit_code({"status": "halted", "nodes": {"failed": ["a"]}}) == (
        exitcodes.NODES_FAILED)
    assert "halted" in TERMINAL_JOB_STATUSES


def test_flags_are_checked_before_sending() -> None:
    body = build_job_body("x", ["a", "b"], max_concurrency="50%", max_errors="0")
    assert (body["max_concurrency"], body["max_errors"]) == ("50%", 0)
    assert "max_concurrency" not in build_job_body("x", ["a"])
    with pytest.raises(CliError) as info:
        parse_rollout_flag("0", "max_concurrency")
    assert info.value.code == exitcodes.USAGE
    assert info.value.message == ("--max-concurrency 0: max_concurrency must be a positive"
                                  " integer or a percentage like '10%'")


def test_tracker_marks_waiting_nodes_skipped_on_halted() -> None:
    tracker = JobTracker({"status": "running", "nodes": {"ready": ["b", "c"], "running": ["a"]}})
    assert tracker.apply_event(Event("halted", "7", '{"failed": 1, "max_errors": 0, "skipped": 2}'))
    assert tracker.nodes == {"a": "running", "b": "skipped", "c": "skipped"}


def test_progress_shows_the_rollout_line_while_running() -> None:
    import io

    out = io.StringIO()
    progress = Progress(out, live=False, rollout=True, budget=1)
    progress.update("running", statuses(running=1, ready=2), tick=True)
    progress.finish("halted", statuses(failed=2, skipped=1))
    assert out.getvalue() == ".Running: 0/3 done, 1 running, 0 failed (budget 1)\n.Halted.\n"
