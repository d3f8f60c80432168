"""Several real processes sharing one store at once (the broker writes, API workers create/read)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from pushd import store
from pushd.states import JobStatus, NodeStatus

ORG = "a" * 32
REPO = Path(__file__).resolve().parents[2]

# An "API worker": creates jobs and reads them back.
API_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pushd import store
    kind, params, prefix = json.loads(sys.argv[1])
    store.open_database_params(kind, params, migrate=True)
    for i in range(40):
        job_id = f"{prefix}{i:031d}"
        store.create_job("a" * 32, job_id, "uptime", ["n1", "n2", "n3"], 3, 60, "alice")
        assert store.get_job("a" * 32, job_id) is not None
        store.list_jobs("a" * 32, limit=5)
    store.close_database()
    print("ok")
    """
)

# A "broker": drives one job through states while writing events, transition by transition.
BROKER_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pushd import store
    from pushd.states import JobStatus, NodeStatus
    kind, params, job_id = json.loads(sys.argv[1])
    store.open_database_params(kind, params, migrate=True)
    ids = []
    for i in range(40):
        with store.transaction():
            status = JobStatus.VOTING if i % 2 else JobStatus.RUNNING
            store.set_job_status("a" * 32, job_id, status)
            store.set_node_statuses("a" * 32, job_id, {"n1": NodeStatus.READY})
            ids += store.append_events([("a" * 32, job_id, "quorum_vote", {"i": i})])
    store.set_job_status("a" * 32, job_id, JobStatus.COMPLETE)
    store.close_database()
    print(json.dumps(ids))
    """
)


def run_all(scripts: list[tuple[str, list]]) -> list[str]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, json.dumps(args)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for script, args in scripts
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(out.strip())
    return outputs


def test_api_workers_and_broker_write_concurrently(db_backend: tuple[str, dict]) -> None:
    kind, params = db_backend
    store.open_database_params(kind, params, migrate=True)
    try:
        broker_job = "f" * 32
        store.create_job(ORG, broker_job, "uptime", ["n1"], 1, 60, "alice")
        store.close_database()

        outputs = run_all(
            [
                (API_SCRIPT, [kind, params, "1"]),
                (API_SCRIPT, [kind, params, "2"]),
                (BROKER_SCRIPT, [kind, params, broker_job]),
            ]
        )
        assert outputs[0] == outputs[1] == "ok"
        event_ids = json.loads(outputs[2])

        store.open_database_params(kind, params)
        jobs, _ = store.list_jobs(ORG)
        assert len(jobs) == 81
        job = store.get_job(ORG, broker_job)
        assert job is not None and job.status is JobStatus.COMPLETE
        assert job.node_status("n1") is NodeStatus.READY
        events = store.job_events_after(ORG, broker_job)
        assert [event.id for event in events] == event_ids
        assert [event.data["i"] for event in events] == list(range(40))
        for prefix in "12":
            job = store.get_job(ORG, f"{prefix}{39:031d}")
            assert job is not None and job.nodes_by_status() == {"new": ["n1", "n2", "n3"]}
    finally:
        store.close_database()
