"""Job list at scale (issue 19): ``GET .../pushy/jobs`` with 1,000,000 jobs in PostgreSQL.

    python bench/bench_joblist.py [--jobs 1000000] [--other-jobs 100000] [--running 20]
        [--requests 200] [--deep-pages 500] [--sql-runs 30] [--ab-indexes] [--ab-query]

Makes a fresh PostgreSQL database, provisions the server's organization (pushd_bench.server;
that also creates the schema), adds a second organization, COPYs `--jobs` finished jobs into
the first and `--other-jobs` into the second (joblist_data.py: status mix, created_at over 180
days, a job_options row each, 3 job_nodes rows for each of the newest 20,000 jobs), VACUUM
ANALYZE, starts the server (gunicorn + gevent, 2 workers, as bench_server), then COPYs
`--running` running jobs (after the broker's start-up recovery, which would finish them).

Cases (each a signed GET through the REST API, one keep-alive connection, one request at a
time, the cases taken in turn so a load swing of the shared machine hits them alike), each at
two page sizes, _1000 (no ?limit=: the default page, jobs_page_limit, what knife reads) and
_100 (``?limit=100``, a screenful):

    first_N             the newest page
    status_complete_N   ``?status=complete`` (90% of the jobs)
    status_crashed_N    ``?status=crashed`` (1.5%)
    deep_N              ``?cursor=C``, C the X-Next-Cursor after following `--deep-pages`
                        default pages (500: 500,000 jobs deep)
    deep_crashed_N      ``?status=crashed&cursor=C`` (C as for deep)
    status_running      ``?status=running`` (the `--running` jobs)

Each case is timed in layers, all in this sitting:

    http   the API (p50/p95/p99 over `--requests`; target: p95 < 50 ms)
    store  store.list_jobs in this process (the SQL and the rows made into JobSummary)
    render the list's JSON from those summaries (documents.job_summary + json.dumps)
    sql    the store's own SQL (captured from peewee's log) alone through psycopg: EXPLAIN
           ANALYZE's execution time, and execute + fetchall (round trip, rows to Python)
    floor  the same gunicorn (2 gevent workers) answering a fixed body of the same bytes as
           the case's answer (bench_floor_http.py's app): HTTP + gunicorn, no pushd

The retention query (store.prune_jobs' select of a batch) is timed with EXPLAIN ANALYZE for a
cutoff of 90 days (a backlog) and 400 days (nothing due). With `--ab-indexes` the http, sql and
retention figures are taken again with the job indexes of schema 5 (migration 6's dropped,
jobs_org_status back: label _schema5), then with schema 6's (_schema6), on the same data and
server. With `--ab-query` the sql layer is also timed for the list's SQL as it was before issue
19 (joined_sql: the join under the LIMIT, the file read; label _joined, and _joined_schema5 with
--ab-indexes). Run with PYTHONSAFEPATH=1 PYTHONPATH=<a checkout of another commit> it measures
that commit's pushd (server and store) with this benchmark (no --ab-* then). Prints
``RESULT name=joblist_<layer>_<case>_p95 value=.. unit=ms ...`` lines (p50, p99 alongside).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from pushd_bench.common import machine, note, raise_nofile, result
from pushd_bench.joblist_data import analyze, load_jobs
from pushd_bench.server import PushdServer

from pushd.states import JobStatus

PAGE_SIZES = ("1000", "100")  # the default (jobs_page_limit), what knife reads; a screenful
CASES: dict[str, dict[str, str]] = {"status_running": {"status": "running"}}
for _size in PAGE_SIZES:
    for _name, _query in (("first", {}), ("status_complete", {"status": "complete"}),
                          ("status_crashed", {"status": "crashed"}), ("deep", {}),
                          ("deep_crashed", {"status": "crashed"})):
        # The default page is asked for without ?limit=, as knife does.
        CASES[f"{_name}_{_size}"] = {**_query, **({"limit": _size} if _size != "1000" else {})}
DEEP_CASES = tuple(name for name in CASES if name.startswith("deep"))
PLANS_SHOWN = ("status_crashed_1000", "deep_crashed_1000")

# The job indexes before migration 6 and after it (pushd/store/migrations.py), for --ab-indexes.
SCHEMA5_INDEXES = (
    "DROP INDEX IF EXISTS jobs_org_status_created_id",
    "DROP INDEX IF EXISTS jobs_updated_at",
    "CREATE INDEX IF NOT EXISTS jobs_org_status ON jobs (org_id, status)",
)
SCHEMA6_INDEXES = (
    "CREATE INDEX IF NOT EXISTS jobs_org_status_created_id"
    " ON jobs (org_id, status, created_at DESC, id DESC)",
    "CREATE INDEX IF NOT EXISTS jobs_updated_at ON jobs (updated_at)",
    "DROP INDEX IF EXISTS jobs_org_status",
)


def loadavg() -> str:
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99 (nearest rank) of `values` in ms."""
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered) + 0.5) - 1))]

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99)}


def report(layer: str, case: str, values: list[float], **extra: Any) -> dict[str, float]:
    stats = percentiles(values)
    result(f"joblist_{layer}_{case}_p95", stats["p95"], "ms", p50=f"{stats['p50']:.2f}",
           p99=f"{stats['p99']:.2f}", n=len(values), **extra)
    return stats


class Client:
    """One keep-alive connection; X-Ops headers signed once (valid for the 15-minute skew
    window; the query string is not signed, so one set serves every case)."""

    def __init__(self, server: PushdServer) -> None:
        self.port = server.api_port
        self.path = server.path("jobs")
        self.headers = {"Accept": "application/json",
                        **server.signed_headers("GET", self.path, b"")}
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def get(self, query: dict[str, str], path: str | None = None) -> tuple[float, bytes,
                                                                         dict[str, str]]:
        target = (path or self.path) + ("?" + urlencode(query) if query else "")
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                self.conn.request("GET", target, headers=self.headers)
                response = self.conn.getresponse()
                body = response.read()
                break
            except (ConnectionError, http.client.HTTPException):
                # The server closed the idle keep-alive connection (between phases): again,
                # on a new one (not timed).
                self.reconnect()
                if attempt == 2:
                    raise
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"GET {target}: HTTP {response.status} {body[:300]!r}")
        return elapsed, body, {k.lower(): v for k, v in response.getheaders()}

    def reconnect(self) -> None:
        self.conn.close()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def close(self) -> None:
        self.conn.close()


def follow(client: Client, pages: int) -> str:
    """The X-Next-Cursor after `pages` default pages."""
    cursor: str | None = None
    for _ in range(pages):
        _, _, headers = client.get({"cursor": cursor} if cursor else {})
        cursor = headers.get("x-next-cursor")
        if cursor is None:
            raise RuntimeError("the list ended before --deep-pages pages")
    assert cursor is not None
    return cursor


def round_robin(cases: dict[str, dict[str, str]], requests: int,
                fetch: Callable[[str, dict[str, str]], float]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(requests):
        for name, query in cases.items():
            times[name].append(fetch(name, query))
    return times


def measure_http(client: Client, cases: dict[str, dict[str, str]], requests: int,
                 label: str) -> dict[str, dict[str, float]]:
    note(f"http{label}: {requests} requests per case, load {loadavg()}")
    client.reconnect()
    round_robin(cases, 3, lambda name, query: client.get(query)[0])  # warm every worker
    times = round_robin(cases, requests, lambda name, query: client.get(query)[0])
    return {name: report("http" + label, name, values, load=loadavg().replace(" ", "/"))
            for name, values in times.items()}


# -- the store's SQL ---------------------------------------------------------------------------


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.queries: list[tuple[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, tuple) and len(record.msg) == 2:
            self.queries.append(record.msg)


@contextlib.contextmanager
def captured_sql() -> Iterator[_Capture]:
    """The (sql, params) peewee runs meanwhile (its DEBUG log)."""
    logger = logging.getLogger("peewee")
    handler = _Capture()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def store_arguments(query: dict[str, str]) -> dict[str, Any]:
    return {
        "limit": int(query.get("limit", "1000")),
        "status": JobStatus.from_wire(query["status"]) if "status" in query else None,
        "before": query.get("cursor"),
    }


def list_sql(store: Any, org_id: str, query: dict[str, str]) -> tuple[str, Any]:
    with captured_sql() as capture:
        store.list_jobs(org_id, **store_arguments(query))
    found = [q for q in capture.queries if '"jobs"' in q[0] or " jobs " in q[0]]
    if not found:
        raise RuntimeError(f"no job query captured: {capture.queries}")
    return found[-1]


def joined_sql(org_id: str, query: dict[str, str]) -> tuple[str, Any]:
    """The list's SQL before issue 19 (for --ab-query): jobs joined to their options under
    the LIMIT, the job file read, the status as IN (...)."""
    import peewee

    from pushd.store import get_database
    from pushd.store.jobs import decode_cursor
    from pushd.store.models import Job, JobOption

    arguments = store_arguments(query)
    columns = (Job.id, Job.org_id, Job.command, Job.status, Job.run_timeout, Job.quorum,
               Job.requested_by, Job.last_updated_by, Job.created_at, Job.updated_at,
               JobOption.job_id, JobOption.job_user, JobOption.dir, JobOption.env,
               JobOption.capture, JobOption.job_file, JobOption.voting_timeout,
               JobOption.max_concurrency, JobOption.max_errors, JobOption.rerun_of)
    select = (Job.select(*columns)
              .join(JobOption, peewee.JOIN.LEFT_OUTER, on=(JobOption.job_id == Job.id))
              .where(Job.org_id == org_id))
    if arguments["status"] is not None:
        select = select.where(Job.status.in_([int(arguments["status"])]))
    if arguments["before"] is not None:
        created_at, job_id = decode_cursor(arguments["before"])
        select = select.where(peewee.Tuple(Job.created_at, Job.id)
                              < peewee.Tuple(created_at, job_id))
    select = select.order_by(Job.created_at.desc(), Job.id.desc()).limit(arguments["limit"] + 1)
    sql, params = get_database().get_sql_context().sql(select).query()
    return sql, params


def measure_store(store: Any, org_id: str, cases: dict[str, dict[str, str]],
                  runs: int) -> None:
    from pushd.api.documents import job_summary

    note(f"store/render: {runs} runs per case, load {loadavg()}")
    for name, query in cases.items():
        arguments = store_arguments(query)
        fetch, render = [], []
        for _ in range(runs + 2):
            started = time.perf_counter()
            jobs, _ = store.list_jobs(org_id, **arguments)
            made = time.perf_counter()
            json.dumps([job_summary(job) for job in jobs])
            done = time.perf_counter()
            fetch.append((made - started) * 1000)
            render.append((done - made) * 1000)
        report("store", name, fetch[2:], rows=len(jobs))
        report("render", name, render[2:], rows=len(jobs))


def measure_sql(conn: Any, statements: dict[str, tuple[str, Any]], runs: int,
                label: str) -> dict[str, str]:
    """EXPLAIN ANALYZE execution times and execute+fetchall times; returns the last plans."""
    note(f"sql{label}: {runs} runs per case, load {loadavg()}")
    plans = {}
    for name, (sql, params) in statements.items():
        executed, round_trip = [], []
        plan: list[str] = []
        for index in range(runs + 2):
            plan = [row[0] for row in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql,
                                                   params).fetchall()]
            started = time.perf_counter()
            conn.execute(sql, params).fetchall()
            elapsed = (time.perf_counter() - started) * 1000
            if index >= 2:
                executed.append(float(plan[-1].split(":")[1].split()[0]))
                round_trip.append(elapsed)
        report("sql_exec" + label, name, executed)
        report("sql_fetch" + label, name, round_trip)
        plans[name] = "\n".join(plan)
    return plans


def retention_sql(store: Any) -> tuple[str, Any]:
    """store.prune_jobs' select of the oldest finished jobs (a cutoff nothing is older than,
    so nothing is deleted)."""
    with captured_sql() as capture:
        store.prune_jobs(datetime(2000, 1, 1), limit=100)
    return next(q for q in capture.queries if q[0].lstrip().upper().startswith("SELECT"))


def measure_retention(conn: Any, sql: str, params: Any, label: str) -> None:
    for case, days in (("backlog", 90), ("nothing_due", 400)):
        cutoff = (datetime.now(UTC) - timedelta(days=days)).replace(tzinfo=None)
        values = [cutoff if isinstance(v, datetime) else v for v in params]
        times = []
        plan: list[str] = []
        for _ in range(7):
            plan = [r[0] for r in conn.execute("EXPLAIN ANALYZE " + sql, values).fetchall()]
            times.append(float(plan[-1].split(":")[1].split()[0]))
        report("retention_sql" + label, case, times[2:], cutoff_days=days)
        note(f"retention plan{label} ({case}):\n" + "\n".join(plan))


# -- the floor ---------------------------------------------------------------------------------


def measure_floor(bodies: dict[str, bytes], requests: int) -> None:
    from pushd_bench.bench_floor_http import serve, wait_listening
    from pushd_bench.ports import free_ports

    port = free_ports(1)[0]
    with tempfile.TemporaryDirectory(prefix="pushd-joblist-floor-") as directory:
        server = serve(Path(directory), port, bodies)
        try:
            wait_listening(port)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

            def fetch(name: str, _query: dict[str, str]) -> float:
                started = time.perf_counter()
                conn.request("GET", "/" + name, headers={"Accept": "application/json"})
                response = conn.getresponse()
                body = response.read()
                if response.status != 200 or len(body) != len(bodies[name]):
                    raise RuntimeError(f"floor GET /{name}: {response.status}")
                return (time.perf_counter() - started) * 1000

            cases = {name: {} for name in bodies}
            note(f"floor: {requests} requests per body, load {loadavg()}")
            round_robin(cases, 3, fetch)
            times = round_robin(cases, requests, fetch)
            conn.close()
        finally:
            server.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)
    for name, values in times.items():
        report("floor_http", name, values, bytes=len(bodies[name]))


# -- the run -----------------------------------------------------------------------------------


def index_sizes(params: dict[str, Any]) -> str:
    import psycopg

    with psycopg.connect(host=params["host"], port=params["port"], user=params["user"],
                         dbname=params["database"]) as conn:
        rows = conn.execute(
            "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes"
            " WHERE relname = 'jobs' ORDER BY indexrelname").fetchall()
    return ", ".join(f"{name} {size / 2**20:.0f} MiB" for name, size in rows)


def set_indexes(conn: Any, statements: tuple[str, ...]) -> None:
    started = time.monotonic()
    for statement in statements:
        conn.execute(statement)
    conn.execute("ANALYZE jobs")
    note(f"indexes set in {time.monotonic() - started:.1f} s: {'; '.join(statements)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--other-jobs", type=int, default=100_000)
    parser.add_argument("--running", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--deep-pages", type=int, default=500)
    parser.add_argument("--sql-runs", type=int, default=30)
    parser.add_argument("--ab-indexes", action="store_true",
                        help="also measure http and sql with schema 5's job indexes")
    parser.add_argument("--ab-query", action="store_true",
                        help="also measure the list's SQL as it was before issue 19 "
                        "(joined_sql), with schema 6's and schema 5's indexes")
    args = parser.parse_args()
    import psycopg
    from pushd_bench.databases import postgres_database

    from pushd import store
    from pushd.store.migrations import LATEST_VERSION

    raise_nofile()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    note(f"machine: {machine()}; load at start {loadavg()}; schema {LATEST_VERSION}; "
         f"pushd from {Path(store.__file__).parents[1]}")
    settings = {"heartbeat_interval": 1000, "principal_cache_ttl": 60, "api_workers": 2,
                "metrics_port": 0}
    with contextlib.ExitStack() as stack:
        params = stack.enter_context(postgres_database())
        server = PushdServer(db_backend=("postgres", params), settings=settings, nodes=())
        stack.callback(server.cleanup)
        other_org = server.add_org("otherorg")
        started = time.monotonic()
        statuses = load_jobs(params, server.org_id, args.jobs, nodes_for_newest=20_000)
        load_jobs(params, other_org, args.other_jobs, seed=2)
        analyze(params)
        note(f"loaded {args.jobs} + {args.other_jobs} jobs in {time.monotonic() - started:.0f} "
             f"s: {dict((s.wire, n) for s, n in statuses.most_common())}")
        note("job indexes: " + index_sizes(params))
        server.start()
        load_jobs(params, server.org_id, args.running, seed=3, status=JobStatus.RUNNING,
                  nodes_for_newest=args.running)
        note(f"server up, {args.running} running jobs added; load {loadavg()}")
        conn = stack.enter_context(psycopg.connect(
            host=params["host"], port=params["port"], user=params["user"],
            dbname=params["database"], autocommit=True))
        client = Client(server)
        stack.callback(client.close)
        cases = {name: dict(query) for name, query in CASES.items()}
        started = time.monotonic()
        cursor = follow(client, args.deep_pages)
        note(f"followed {args.deep_pages} pages in {time.monotonic() - started:.1f} s")
        for name in DEEP_CASES:
            cases[name]["cursor"] = cursor
        bodies = {}
        for name, query in cases.items():
            _, body, headers = client.get(query)
            rows = len(json.loads(body))
            note(f"{name}: {rows} jobs, {len(body)} bytes, next cursor "
                 f"{'yes' if 'x-next-cursor' in headers else 'no'}")
            bodies[name] = body
        unpaged = client.get({})[1]
        note(f"GET without parameters: {len(json.loads(unpaged))} jobs (jobs_page_limit)")

        measure_http(client, cases, args.requests, "")
        store.open_database_params("postgres", params, pool_size=2)
        stack.callback(store.close_database)
        org_id = server.org_id
        measure_store(store, org_id, cases, args.sql_runs)
        statements = {name: list_sql(store, org_id, query) for name, query in cases.items()}
        note("SQL of first: {} {!r}".format(*statements["first_1000"]))
        plans = measure_sql(conn, statements, args.sql_runs, "")
        for name, plan in plans.items():
            note(f"plan of {name}:\n{plan}")
        prune = retention_sql(store)
        note("retention SQL: {} {!r}".format(*prune))
        measure_retention(conn, prune[0], prune[1], "")
        measure_floor(bodies, args.requests)
        joined = {name: joined_sql(org_id, query) for name, query in cases.items()}
        if args.ab_query:
            note("joined SQL of status_crashed: {} {!r}".format(*joined["status_crashed_1000"]))
            plans = measure_sql(conn, joined, args.sql_runs, "_joined")
            for name in PLANS_SHOWN:
                note(f"plan_joined of {name}:\n{plans[name]}")
        if args.ab_indexes:
            for label, statements_ in (("_schema5", SCHEMA5_INDEXES),
                                       ("_schema6", SCHEMA6_INDEXES)):
                set_indexes(conn, statements_)
                measure_http(client, cases, args.requests, label)
                plans = measure_sql(conn, statements, args.sql_runs, label)
                for name in PLANS_SHOWN:
                    note(f"plan{label} of {name}:\n{plans[name]}")
                if args.ab_query and label == "_schema5":
                    plans = measure_sql(conn, joined, args.sql_runs, "_joined" + label)
                    for name in PLANS_SHOWN:
                        note(f"plan_joined{label} of {name}:\n{plans[name]}")
                measure_retention(conn, prune[0], prune[1], label)
        note(f"load at end {loadavg()}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
