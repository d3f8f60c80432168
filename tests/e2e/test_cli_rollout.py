"""Rollout control end to end (issue 17): `push-jobs job start --max-concurrency/--max-errors`,
`job status`, `job watch` and `job rerun` as subprocesses against a real pushd server and real
push-jobs-client nodes (the module world of test_cli_push_jobs: node1..node3)."""

from __future__ import annotations

import json

import pytest
from pushd_knife import exitcodes

from tests.e2e.test_cli_push_jobs import World, _job_id, world  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slow


def feed_events(w: World, job_id: str) -> list[tuple[str, dict]]:
    stream = w.server.stream(f"job_status_feed/{job_id}")
    try:
        return [(e.name, e.data) for e in stream.rest(timeout=30) if e.name != "summary"]
    finally:
        stream.close()


def test_one_at_a_time_outlasts_run_timeout_without_timing_out(world: World) -> None:  # noqa: F811
    # Three 1 s runs, one at a time, with a 2 s run_timeout: the nodes waiting their turn (the
    # real client, `committed`) are neither timed out nor lost, and the job completes.
    result = world.cli("job", "start", "--max-concurrency", "1", "--timeout", "2",
                       "sleep_short", "node1", "node2", "node3")
    assert result.returncode == exitcodes.OK, result.stdout + result.stderr
    job_id = _job_id(result)
    job = world.job(job_id)
    assert job["status"] == "complete" and job["max_concurrency"] == 1
    assert job["nodes"] == {"succeeded": ["node1", "node2", "node3"]}
    running: set[str] = set()
    for name, data in feed_events(world, job_id):
        if name == "run_start":
            running.add(data["node"])
            assert len(running) == 1, "two nodes ran at once"
        elif name == "run_complete":
            running.discard(data["node"])
    assert "Running: " in result.stdout  # the rollout progress replaces knife's count


def test_error_budget_halts_and_exits_like_failed_nodes_then_rerun(world: World) -> None:  # noqa: F811
    result = world.cli("job", "start", "--max-concurrency", "1", "--max-errors", "0",
                       "fail", "node1", "node2", "node3")
    assert result.returncode == exitcodes.NODES_FAILED, result.stdout + result.stderr
    job_id = _job_id(result)
    job = world.job(job_id)
    assert job["status"] == "halted"
    assert job["nodes"] == {"failed": ["node1"], "skipped": ["node2", "node3"]}
    assert "node2  skipped" in result.stdout
    assert result.stderr.startswith("exit 3: ")

    status = world.cli("job", "status", job_id)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0] == "3/3 done, 0 running, 1 failed (budget 0)"

    watch = world.cli("job", "watch", job_id)
    assert watch.returncode == exitcodes.NODES_FAILED
    lines = watch.stdout.splitlines()
    assert any(" halted " in line for line in lines)  # the feed's `halted` event
    end = lines.index(f"Job {job_id}: halted")
    assert lines[end + 1] == "3/3 done, 0 running, 1 failed (budget 0)"

    rerun = world.cli("job", "rerun", job_id, "--failed", "--json")
    assert rerun.returncode == exitcodes.NODES_FAILED, rerun.stdout + rerun.stderr
    again = json.loads(rerun.stdout)
    assert again["rerun_of"] == job_id and again["status"] == "halted"
    assert again["nodes"] == {"failed": ["node1"], "skipped": ["node2", "node3"]}
    assert _job_id(rerun, "stderr") == again["id"]

    named = world.cli("job", "rerun", job_id, "node3", "--nowait")
    assert named.returncode == 0, named.stderr
    new_id = _job_id(named)
    assert world.job(new_id)["rerun_of"] == job_id


def test_bad_rollout_flags_are_usage_errors(world: World) -> None:  # noqa: F811
    before = len(world.server.request("GET", "jobs").json())
    for flag, value in (("--max-concurrency", "0"), ("--max-concurrency", "x%"),
                        ("--max-errors", "-1")):
        result = world.cli("job", "start", flag, value, "echo foobar", "node1")
        assert result.returncode == exitcodes.USAGE, result.stdout + result.stderr
        assert len(result.stderr.splitlines()) == 1 and "must be a" in result.stderr
    both = world.cli("job", "rerun", "0" * 32, "--all", "node1")
    assert both.returncode == exitcodes.USAGE
    assert len(world.server.request("GET", "jobs").json()) == before
