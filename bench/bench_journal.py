"""The journal alone: what writing one big job's transitions costs the broker and the database.

    python bench/bench_journal.py [--nodes 8000] [--jobs 3] [--turn 500] [--sqlite]

No server, no sockets: a fresh PostgreSQL database (``--sqlite``: a file), the job's rows as the
API writes them, and the broker's StoreJournal (its writer thread, the real store) fed the
transitions the job engine records for a job whose nodes all answer: per node ``ready`` +
``quorum_vote``, then ``running`` + ``run_start``, then ``succeeded`` + ``run_complete``, the
job-level ones between (``quorum_succeeded``, running, ``job_complete``), handed to the writer
`--turn` transitions at a time as the loop's turns do. Published payloads go nowhere. Per job:

    RESULT name=journal_job_seconds value=.. unit=s nodes=N     first record -> all written
    RESULT name=journal_writer_cpu value=.. unit=s nodes=N      this process's CPU (the writer
                                                                 thread; making the transitions
                                                                 is a small part of it)
    RESULT name=journal_database_cpu value=.. unit=s nodes=N    the database backends' CPU
    RESULT name=journal_us_per_node value=.. unit=us nodes=N    writer + database CPU / N

(medians over `--jobs` jobs, each on the same database, as a server's jobs are).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path

from pushd_bench.common import ProcessMeter, median, postgres_backends, result

from pushd import store
from pushd.broker.contracts import FeedEvent, Transition
from pushd.broker.journal import StoreJournal
from pushd.states import JobStatus, NodeStatus

ORG = "c" * 32


def transitions(job_id: str, nodes: list[str]) -> list[list[Transition]]:
    """The job's transitions in the three waves the engine records them."""
    def per_node(status: NodeStatus, event: str, data: dict[str, str]) -> list[Transition]:
        return [Transition(job_id, ORG, node_statuses={n: (status, None)},
                           events=[FeedEvent(event, {"node": n, **data})]) for n in nodes]

    voting = [Transition(job_id, ORG, JobStatus.VOTING, events=[FeedEvent("start", {})])]
    voting += per_node(NodeStatus.READY, "quorum_vote", {"status": "success"})
    running = [Transition(job_id, ORG, JobStatus.RUNNING,
                          events=[FeedEvent("quorum_succeeded", {})])]
    running += per_node(NodeStatus.RUNNING, "run_start", {})
    done = per_node(NodeStatus.SUCCEEDED, "run_complete", {"status": "success"})
    done.append(Transition(job_id, ORG, JobStatus.COMPLETE,
                           events=[FeedEvent("job_complete", {"status": "complete"})]))
    return [voting, running, done]


def one_job(journal: StoreJournal, number: int, nodes: int, turn: int,
            database: str | None) -> tuple[float, float, float]:
    job_id = f"{number:032x}"
    names = [f"emu-{i:05d}" for i in range(nodes)]
    store.create_job(ORG, job_id, "true", names, nodes, 3600, "bench")
    meter = ProcessMeter(os.getpid())

    def database_cpu() -> float:
        total = 0.0
        for pid in postgres_backends(database):
            with contextlib.suppress(OSError):
                total += ProcessMeter(pid).cpu_seconds()
        return total

    cpu0, db0, t0 = meter.cpu_seconds(), database_cpu(), time.monotonic()
    for wave in transitions(job_id, names):
        for start in range(0, len(wave), turn):
            for transition in wave[start:start + turn]:
                journal.record(transition)
            journal.flush()
            time.sleep(0.001)  # the loop's next turn
    if not journal.sync(600):
        raise RuntimeError("the journal did not finish")
    return time.monotonic() - t0, meter.cpu_seconds() - cpu0, database_cpu() - db0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=8000)
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--turn", type=int, default=500)
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()
    print(f"# load at start: {os.getloadavg()}", flush=True)
    with contextlib.ExitStack() as stack:
        if args.sqlite:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            store.open_database_params("sqlite", {"path": str(folder / "pushd.sqlite3")},
                                       migrate=True)
            database = None
        else:
            from pushd_bench.databases import postgres_database

            params = stack.enter_context(postgres_database())
            store.open_database_params("postgres", params, migrate=True)
            database = str(params["database"])
        stack.callback(store.close_database)
        journal = StoreJournal(store, lambda topic, payload: None)
        journal.start()
        stack.callback(journal.close, 30)
        runs = [one_job(journal, number, args.nodes, args.turn, database)
                for number in range(1, args.jobs + 1)]
    for number, (seconds, writer, db) in enumerate(runs, 1):
        print(f"# job {number}: {seconds:.2f} s, writer CPU {writer:.2f} s, database CPU "
              f"{db:.2f} s", flush=True)
    extra = {"nodes": args.nodes, "jobs": args.jobs, "turn": args.turn,
             "db": "sqlite" if args.sqlite else "postgres"}
    result("journal_job_seconds", median([r[0] for r in runs]), "s", **extra)
    result("journal_writer_cpu", median([r[1] for r in runs]), "s", **extra)
    result("journal_database_cpu", median([r[2] for r in runs]), "s", **extra)
    result("journal_us_per_node", median([(r[1] + r[2]) / args.nodes * 1e6 for r in runs]), "us",
           **extra)
    print(f"# load at end: {os.getloadavg()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
