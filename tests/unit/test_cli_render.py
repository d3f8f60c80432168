"""Output of push-jobs: knife's summary format, progress, node table, exit codes."""

from __future__ import annotations

import io

from pushd_knife.exitcodes import (
    ABORTED,
    CRASHED,
    ERROR,
    NODES_FAILED,
    OK,
    QUORUM_FAILED,
    TIMED_OUT,
    job_exit_code,
)
from pushd_knife.render import Progress, event_line, node_table, state_text, summary

JOB = {
    "command": "chef-client",
    "created_at": "Tue, 04 Sep 2012 23:01:02 GMT",
    "env": {},
    "id": "3b82aa27e7b8d53c0d55ac3d7db0cfa5",
    "nodes": {"failed": ["node1"]},
    "run_timeout": 3600,
    "status": "complete",
    "updated_at": "Tue, 04 Sep 2012 23:01:09 GMT",
}


def test_summary_is_knifes_sorted_aligned_text() -> None:
    assert summary(JOB) == (
        "command:     chef-client\n"
        "created_at:  Tue, 04 Sep 2012 23:01:02 GMT\n"
        "env:\n"
        "id:          3b82aa27e7b8d53c0d55ac3d7db0cfa5\n"
        "nodes:\n"
        "  failed: node1\n"
        "run_timeout: 3600\n"
        "status:      complete\n"
        "updated_at:  Tue, 04 Sep 2012 23:01:09 GMT\n"
    )


def test_summary_lists_and_booleans() -> None:
    text = summary({"nodes": {"succeeded": ["a", "b"]}, "capture_output": True})
    assert text == "capture_output: true\nnodes:\n  succeeded:\n    a\n    b\n"
    jobs = summary([{"id": "1", "status": "complete"}, {"id": "2", "status": "voting"}])
    assert jobs == "id:     1\nstatus: complete\n\nid:     2\nstatus: voting\n"


def test_state_text_as_knife_with_a_correct_count() -> None:
    assert state_text("voting", {"a": "new"}) == "Voting."
    nodes = {"a": "running", "b": "running", "c": "succeeded", "d": "ready"}
    # knife would say 2/4 here (distinct statuses), three nodes are really in progress.
    assert state_text("running", nodes) == "Running (3/4 in progress) ..."
    assert state_text("complete", nodes) == "Complete."
    assert state_text("quorum_failed", nodes) == "Quorum_failed."
    assert state_text("timed_out", nodes) == "Timed_out."


def test_plain_progress_reproduces_knifes_transcript() -> None:
    out = io.StringIO()
    progress = Progress(out, live=False)
    running = {"node1": "running"}
    progress.update("running", running, tick=True)
    for _ in range(5):
        progress.update("running", running, tick=True)
    progress.update("complete", {"node1": "failed"})  # an event between ticks prints nothing
    progress.finish("complete", {"node1": "failed"})
    assert out.getvalue() == ".Running (1/1 in progress) ...\n......Complete.\n"


def test_plain_progress_fast_job_is_one_dot_then_complete() -> None:
    out = io.StringIO()
    progress = Progress(out, live=False)
    progress.finish("complete", {"node1": "succeeded"})
    assert out.getvalue() == ".Complete.\n"


def test_live_progress_rewrites_one_count_line() -> None:
    out = io.StringIO()
    progress = Progress(out, live=True)
    progress.update("voting", {"a": "new", "b": "new"})
    progress.update("running", {"a": "running", "b": "ready"})
    progress.update("running", {"a": "succeeded", "b": "running"}, tick=True)
    progress.finish("complete", {"a": "succeeded", "b": "failed"})
    text = out.getvalue()
    assert "Voting.\n" in text
    assert "Running.\n" in text
    assert "\r\x1b[K  [0s] 2 nodes: 1 running, 1 succeeded" in text
    assert text.endswith("Complete.\n")
    assert "." * 2 not in text.replace("...", "")  # no knife dots on a terminal


def test_node_table_sorted_by_node() -> None:
    table = node_table({"succeeded": ["web2", "web1"], "nacked": ["db-long-name"]})
    assert table == (
        "NODE          STATUS\n"
        "db-long-name  nacked\n"
        "web1          succeeded\n"
        "web2          succeeded\n"
    )
    assert node_table({}) == ""
    with_reasons = node_table({"succeeded": ["web1"], "nacked": ["db"]}, {"db": "not_whitelisted"})
    assert with_reasons == (
        "NODE  STATUS     REASON\n"
        "db    nacked     not_whitelisted\n"
        "web1  succeeded\n"
    )


def test_event_lines() -> None:
    stamp = "2014-07-10 05:10:40.995958Z"
    assert event_line("quorum_vote", {"timestamp": stamp, "node": "n1", "status": "success"}) \
        == f"{stamp}  quorum_vote      n1 success"
    line = event_line("start", {"timestamp": stamp, "command": "echo", "node_count": 2,
                                "quorum": 2, "run_timeout": 300, "user": "rebecca"})
    assert line == (f"{stamp}  start            command='echo' nodes=2 quorum=2 run_timeout=300"
                    " by=rebecca")
    assert event_line("job_complete", {"timestamp": stamp, "status": "complete"}).endswith(
        "job_complete     complete")
    org = event_line("job_complete", {"timestamp": stamp, "job": "j1", "status": "complete"},
                     with_job=True)
    assert org == f"{stamp}  j1  job_complete     complete"


def test_exit_code_mapping() -> None:
    def job(status: str, **nodes: list[str]) -> dict:
        return {"status": status, "nodes": nodes}

    assert job_exit_code(job("complete", succeeded=["a"])) == OK
    assert job_exit_code(job("complete", succeeded=["a"], nacked=["b"], unavailable=["c"])) == OK
    assert job_exit_code(job("complete", succeeded=["a"], nacked=["b"]), strict=True) \
        == NODES_FAILED
    for bad in ("failed", "crashed", "timed_out", "aborted"):
        assert job_exit_code(job("complete", succeeded=["a"], **{bad: ["b"]})) == NODES_FAILED
    assert job_exit_code(job("quorum_failed", was_ready=["a"], nacked=["b"])) == QUORUM_FAILED
    assert job_exit_code(job("timed_out", timed_out=["a"])) == TIMED_OUT
    assert job_exit_code(job("aborted", aborted=["a"])) == ABORTED
    assert job_exit_code(job("crashed", crashed=["a"])) == CRASHED
    assert job_exit_code(job("running", running=["a"])) == ERROR
    assert len({OK, ERROR, NODES_FAILED, QUORUM_FAILED, TIMED_OUT, ABORTED, CRASHED}) == 7
