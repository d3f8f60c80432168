"""Job list at scale (issue 19): ``GET .../pushy/jobs`` with 1,000,000 jobs in PostgreSQL.

    python bench/bench_joblist.py [--baseline-src DIR] [--jobs 1000000] [--other-jobs 100000]
        [--running 20] [--requests 200] [--deep-pages 500] [--runs 30]

Makes a fresh PostgreSQL database, provisions the server's organization (pushd_bench.server;
that also creates the schema), adds a second organization, COPYs `--jobs` finished jobs into
the first and `--other-jobs` into the second (joblist_data.py: status mix, created_at over 180
days, a job_options row each, 3 job_nodes rows for each of the newest 20,000 jobs), VACUUM
ANALYZE, starts the server (gunicorn + gevent, 2 workers, as bench_server), then COPYs
`--running` running jobs (after the broker's start-up recovery, which would finish them).

With `--baseline-src DIR` (a checkout of an earlier commit, e.g. ``git archive main``) a second
database with the same rows (same seeds; other org ids) gets the job indexes of schema 5
(migration 6 reversed, version 5) and a second server running DIR's pushd (PYTHONSAFEPATH=1,
PYTHONPATH=DIR); both servers run at once and every measurement below alternates between the
two, so the shared machine's load swings hit both alike. That is the A/B of this sitting:

    http        A: DIR's server on schema 5 (label _base)    B: this server on schema 6
                (and the floor, below, in the same turns)
    store,      A: DIR's store/jobs.py and api/documents.py  B: this code; both in this process
    render         (loaded from DIR) on B's database            on B's database: the code alone
    sql         the list's SQL as DIR's store writes it (_joined) and as this one does, each on
                schema 5 (_schema5: A's database) and schema 6: the query change and the
                indexes apart
    retention   store.prune_jobs' select on schema 5 (_schema5) and schema 6

Cases (signed GETs through the REST API, one keep-alive connection per server, one request at
a time, the cases and servers taken in turn), each at two page sizes, _1000 (no ?limit=: the
default page, jobs_page_limit, what knife reads) and _100 (``?limit=100``, a screenful):

    first_N             the newest page
    status_complete_N   ``?status=complete`` (90% of the jobs)
    status_crashed_N    ``?status=crashed`` (1.5%)
    deep_N              ``?cursor=C``, C the X-Next-Cursor after following `--deep-pages`
                        default pages (500: 500,000 jobs deep)
    deep_crashed_N      ``?status=crashed&cursor=C`` (C as for deep)
    status_running      ``?status=running`` (the `--running` jobs)

Layers, all in this sitting:

    http    the API (p50/p95/p99 over `--requests`; target: p95 < 50 ms)
    store   store.list_jobs in this process (the SQL and the rows made into JobSummary)
    render  the list's JSON from those summaries (documents.job_summary + json.dumps)
    sql     the store's own SQL (captured from peewee's log) alone through psycopg: EXPLAIN
            ANALYZE's execution time (sql_exec), and execute + fetchall (sql_fetch: the round
            trip and the rows made Python tuples)
    floor_http  gunicorn as the server runs it (2 gevent workers) answering a fixed body, this
            code's answer to the case (bench_floor_http.py's app): HTTP + gunicorn, no pushd;
            taken in turn with the http requests
    retention_sql  the retention select, EXPLAIN ANALYZE, cutoff 90 days (a backlog: half the
            jobs are older) and 400 days (nothing due)

Prints ``RESULT name=joblist_<layer>_<case>_p95 value=.. unit=ms p50=.. p99=..`` lines.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
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
PLANS_SHOWN = ("first_1000", "status_crashed_1000", "deep_crashed_1000")

# Migration 6 reversed (pushd/store/migrations.py): the baseline database's job indexes.
SCHEMA5_INDEXES = (
    "DROP INDEX jobs_org_status_created_id",
    "DROP INDEX jobs_updated_at",
    "CREATE INDEX jobs_org_status ON jobs (org_id, status)",
    "UPDATE schema_version SET version = 5",
)


def loadavg() -> str:
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99 (nearest rank) of `values`."""
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[min(len(ordered), max(1, math.ceil(p * len(ordered)))) - 1]

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99)}


def report(layer: str, case: str, values: list[float], **extra: Any) -> None:
    stats = percentiles(values)
    result(f"joblist_{layer}_{case}_p95", stats["p95"], "ms", p50=f"{stats['p50']:.2f}",
           p99=f"{stats['p99']:.2f}", n=len(values), **extra)


Times = dict[str, dict[str, list[float]]]  # {layer: {case: [ms, ...]}}


def interleaved(runs: int, cases: list[str], variants: list[str],
                measure: Callable[[str, str], dict[str, float]]) -> Times:
    """{layer: {case: [ms, ...]}}: `measure(case, variant)` -> {layer: ms} for each run, each
    case, each variant in turn (a load swing of the shared machine hits every variant alike)."""
    times: Times = {}
    for _ in range(runs):
        for case in cases:
            for variant in variants:
                for layer, value in measure(case, variant).items():
                    times.setdefault(layer, {}).setdefault(case, []).append(value)
    return times


def report_all(times: Times, **extra: Any) -> None:
    for layer, per_case in times.items():
        for case, values in per_case.items():
            report(layer, case, values, **extra)


# -- the servers -------------------------------------------------------------------------------


class Client:
    """One keep-alive connection; X-Ops headers signed once (valid for the 15-minute skew
    window; the query string is not signed, so one set serves every case)."""

    def __init__(self, server: PushdServer) -> None:
        self.port = server.api_port
        self.path = server.path("jobs")
        self.headers = {"Accept": "application/json",
                        **server.signed_headers("GET", self.path, b"")}
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def get(self, query: dict[str, str]) -> tuple[float, bytes, dict[str, str]]:
        target = self.path + ("?" + urlencode(query) if query else "")
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                self.conn.request("GET", target, headers=self.headers)
                response = self.conn.getresponse()
                body = response.read()
                break
            except (ConnectionError, http.client.HTTPException):
                # The server closed the idle keep-alive connection: again, on a new one.
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


@dataclass
class Side:
    """One database and its server: `label` "" (this code, schema 6) or "_base"."""

    label: str
    params: dict[str, Any]
    server: PushdServer
    org_id: str
    conn: Any
    client: Client
    cases: dict[str, dict[str, str]] = field(default_factory=dict)
    bodies: dict[str, bytes] = field(default_factory=dict)


def set_up(stack: contextlib.ExitStack, args: argparse.Namespace,
           baseline: Path | None) -> Side:
    """A database with the job history and a started server on it (see module docstring)."""
    import psycopg
    from pushd_bench.databases import postgres_database

    label = "_base" if baseline else ""
    params = stack.enter_context(postgres_database())
    settings = {"heartbeat_interval": 1000, "principal_cache_ttl": 60, "api_workers": 2,
                "metrics_port": 0}
    server = PushdServer(db_backend=("postgres", params), settings=settings, nodes=())
    stack.callback(server.cleanup)
    other_org = server.add_org("otherorg")
    conn = stack.enter_context(psycopg.connect(
        host=params["host"], port=params["port"], user=params["user"],
        dbname=params["database"], autocommit=True))
    if baseline:
        for statement in SCHEMA5_INDEXES:
            conn.execute(statement)
    started = time.monotonic()
    statuses = load_jobs(params, server.org_id, args.jobs, nodes_for_newest=20_000)
    load_jobs(params, other_org, args.other_jobs, seed=2)
    analyze(params)
    note(f"{label or 'this code'}: loaded {args.jobs} + {args.other_jobs} jobs in "
         f"{time.monotonic() - started:.0f} s: "
         f"{dict((s.wire, n) for s, n in statuses.most_common())}; job indexes: "
         + index_sizes(conn))
    saved = {name: os.environ.get(name) for name in ("PYTHONSAFEPATH", "PYTHONPATH")}
    if baseline:
        # The server's own processes import DIR's pushd (no cwd on sys.path).
        os.environ.update(PYTHONSAFEPATH="1", PYTHONPATH=str(baseline))
    try:
        server.start()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    load_jobs(params, server.org_id, args.running, seed=3, status=JobStatus.RUNNING,
              nodes_for_newest=args.running)
    client = Client(server)
    stack.callback(client.close)
    side = Side(label, params, server, server.org_id, conn, client)
    started = time.monotonic()
    cursor = follow(client, args.deep_pages)
    note(f"{label or 'this code'}: server up, {args.running} running jobs added, followed "
         f"{args.deep_pages} pages in {time.monotonic() - started:.1f} s; load {loadavg()}")
    for name, query in CASES.items():
        side.cases[name] = {**query, "cursor": cursor} if name.startswith("deep") else query
        _, body, headers = client.get(side.cases[name])
        side.bodies[name] = body
        note(f"{label or 'this code'} {name}: {len(json.loads(body))} jobs, {len(body)} bytes,"
             f" next cursor {'yes' if 'x-next-cursor' in headers else 'no'}")
    unpaged = client.get({})[1]
    note(f"GET without parameters: {len(json.loads(unpaged))} jobs (jobs_page_limit)")
    return side


def index_sizes(conn: Any) -> str:
    rows = conn.execute(
        "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes"
        " WHERE relname = 'jobs' ORDER BY indexrelname").fetchall()
    return ", ".join(f"{name} {size / 2**20:.0f} MiB" for name, size in rows)


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


def measure_http(sides: list[Side], requests: int) -> None:
    """Every case from every server and from the floor gunicorn (serving this code's answers
    as fixed bodies), in turn."""
    from pushd_bench.bench_floor_http import serve, wait_listening
    from pushd_bench.ports import free_ports

    by_label = {side.label: side for side in sides}
    port = free_ports(1)[0]
    with tempfile.TemporaryDirectory(prefix="pushd-joblist-floor-") as directory:
        floor = serve(Path(directory), port, sides[0].bodies)
        try:
            wait_listening(port)
            floor_conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for side in sides:
                side.client.reconnect()

            def fetch(case: str, label: str) -> dict[str, float]:
                if label != "floor":
                    side = by_label[label]
                    return {"http" + label: side.client.get(side.cases[case])[0]}
                started = time.perf_counter()
                floor_conn.request("GET", "/" + case, headers={"Accept": "application/json"})
                response = floor_conn.getresponse()
                body = response.read()
                if response.status != 200 or len(body) != len(sides[0].bodies[case]):
                    raise RuntimeError(f"floor GET /{case}: {response.status}")
                return {"floor_http": (time.perf_counter() - started) * 1000}

            cases, labels = list(CASES), [*by_label, "floor"]
            interleaved(3, cases, labels, fetch)  # warm every worker
            note(f"http: {requests} requests per case from each server and the floor, "
                 f"load {loadavg()}")
            times = interleaved(requests, cases, labels, fetch)
            floor_conn.close()
        finally:
            floor.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
            try:
                floor.wait(10)
            except subprocess.TimeoutExpired:
                floor.kill()
                floor.wait(10)
    report_all(times, load=loadavg().replace(" ", "/"))


# -- the store, in this process ----------------------------------------------------------------


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


def list_sql(list_jobs: Callable[..., Any], org_id: str,
             query: dict[str, str]) -> tuple[str, Any]:
    """The job query `list_jobs` runs for `query`."""
    with captured_sql() as capture:
        list_jobs(org_id, **store_arguments(query))
    found = [q for q in capture.queries if re.search(r'\bFROM "?jobs\b', q[0])]
    if not found:
        raise RuntimeError(f"no job query captured: {capture.queries}")
    return found[-1]


def load_baseline(src: Path) -> tuple[ModuleType, ModuleType]:
    """(store/jobs.py, api/documents.py) of the checkout `src`, as modules of their own on top
    of this pushd (their imports resolve here; documents gets src's rfc1123)."""

    def load(name: str, relative: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, src / relative)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    times = load("baseline_times", "pushd/store/times.py")
    jobs = load("baseline_jobs", "pushd/store/jobs.py")
    documents = load("baseline_documents", "pushd/api/documents.py")
    documents.rfc1123 = times.rfc1123  # type: ignore[attr-defined]
    return jobs, documents


def measure_store(side: Side, variants: dict[str, tuple[Callable[..., Any],
                                                         Callable[[Any], Any]]],
                  runs: int) -> None:
    note(f"store/render: {runs} runs per case and variant, load {loadavg()}")

    def measure(case: str, label: str) -> dict[str, float]:
        list_jobs, job_summary = variants[label]
        started = time.perf_counter()
        jobs, _ = list_jobs(side.org_id, **store_arguments(side.cases[case]))
        made = time.perf_counter()
        json.dumps([job_summary(job) for job in jobs])
        done = time.perf_counter()
        return {"store" + label: (made - started) * 1000, "render" + label: (done - made) * 1000}

    cases, labels = list(CASES), list(variants)
    interleaved(2, cases, labels, measure)
    report_all(interleaved(runs, cases, labels, measure))


def measure_sql(statements: dict[str, tuple[Any, dict[str, tuple[str, Any]]]],
                runs: int) -> dict[str, dict[str, str]]:
    """{label: (conn, {case: (sql, params)})}: EXPLAIN ANALYZE execution time and execute +
    fetchall time of each, interleaved; returns the last plans."""
    note(f"sql: {runs} runs per case and variant, load {loadavg()}")
    plans: dict[str, dict[str, str]] = {label: {} for label in statements}

    def measure(case: str, label: str) -> dict[str, float]:
        conn, by_case = statements[label]
        sql, params = by_case[case]
        plan = [row[0] for row in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql,
                                               params).fetchall()]
        plans[label][case] = "\n".join(plan)
        started = time.perf_counter()
        conn.execute(sql, params).fetchall()
        elapsed = (time.perf_counter() - started) * 1000
        return {"sql_exec" + label: float(plan[-1].split(":")[1].split()[0]),
                "sql_fetch" + label: elapsed}

    cases, labels = list(CASES), list(statements)
    interleaved(2, cases, labels, measure)
    report_all(interleaved(runs, cases, labels, measure))
    return plans


def retention_sql(prune_jobs: Callable[..., Any]) -> tuple[str, Any]:
    """store.prune_jobs' select of the oldest finished jobs (a cutoff nothing is older than,
    so nothing is deleted)."""
    with captured_sql() as capture:
        prune_jobs(datetime(2000, 1, 1), limit=100)
    return next(q for q in capture.queries if q[0].lstrip().upper().startswith("SELECT"))


def measure_retention(conns: dict[str, Any], sql: str, params: Any) -> None:
    for case, days in (("backlog", 90), ("nothing_due", 400)):
        cutoff = (datetime.now(UTC) - timedelta(days=days)).replace(tzinfo=None)
        values = [cutoff if isinstance(v, datetime) else v for v in params]
        times: dict[str, list[float]] = {label: [] for label in conns}
        plans: dict[str, list[str]] = {}
        for _ in range(7):
            for label, conn in conns.items():
                plans[label] = [r[0] for r in conn.execute("EXPLAIN ANALYZE " + sql,
                                                           values).fetchall()]
                times[label].append(float(plans[label][-1].split(":")[1].split()[0]))
        for label, values_ in times.items():
            report("retention_sql" + label, case, values_[2:], cutoff_days=days)
            note(f"retention plan{label} ({case}):\n" + "\n".join(plans[label]))


# -- the run -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="a checkout of the commit to compare with (both run at once)")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--other-jobs", type=int, default=100_000)
    parser.add_argument("--running", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--deep-pages", type=int, default=500)
    parser.add_argument("--runs", type=int, default=30, help="of the store and sql layers")
    args = parser.parse_args()
    from pushd import store
    from pushd.api.documents import job_summary
    from pushd.store.migrations import LATEST_VERSION

    raise_nofile()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    baseline = args.baseline_src.resolve() if args.baseline_src else None
    note(f"machine: {machine()}; load at start {loadavg()}; this code: schema {LATEST_VERSION}, "
         f"pushd from {Path(store.__file__).parents[1]}; baseline: {baseline}")
    with contextlib.ExitStack() as stack:
        new = set_up(stack, args, None)
        sides = [new]
        if baseline:
            sides.append(set_up(stack, args, baseline))
        measure_http(sides, args.requests)

        # In this process: the store bound to each database in turn to capture its SQL, then
        # to this code's database for the store and render layers.
        variants: dict[str, tuple[Callable[..., Any], Callable[[Any], Any]]] = {
            "": (store.list_jobs, job_summary)}
        forms = {"": store.list_jobs}
        if baseline:
            base_jobs, base_documents = load_baseline(baseline)
            variants["_base"] = (base_jobs.list_jobs, base_documents.job_summary)
            forms["_joined"] = base_jobs.list_jobs
        statements: dict[str, tuple[Any, dict[str, tuple[str, Any]]]] = {}
        for side in reversed(sides):
            store.open_database_params("postgres", side.params, pool_size=2)
            schema = "_schema5" if side.label else ""
            for form, list_jobs in forms.items():
                statements[form + schema] = (side.conn, {
                    case: list_sql(list_jobs, side.org_id, query)
                    for case, query in side.cases.items()})
            prune = retention_sql(store.prune_jobs)
            if side is new:
                measure_store(side, variants, args.runs)
            else:
                store.close_database()
        stack.callback(store.close_database)
        for label, (_conn, by_case) in statements.items():
            note("SQL{} of status_crashed_1000: {} {!r}".format(
                label, *by_case["status_crashed_1000"]))
        plans = measure_sql(statements, args.runs)
        for label, by_case in plans.items():
            for case in PLANS_SHOWN:
                note(f"plan{label} of {case}:\n{by_case[case]}")
        note("retention SQL: {} {!r}".format(*prune))
        measure_retention({("_schema5" if side.label else ""): side.conn for side in sides},
                          *prune)
        note(f"load at end {loadavg()}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
