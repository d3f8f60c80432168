"""The subcommands of `push-jobs` (argument parsing lives in main.py).

Public API (each takes the parsed argparse namespace, an `Io` and a ChefHTTP factory, and
returns the exit code):
    Io(stdout, stderr)                       where output goes (tests pass StringIO/BytesIO)
    job_start(args, io, connect) -> int      --follow-output: the output as it comes
    job_list(args, io, connect) -> int
    job_status(args, io, connect) -> int
    job_output(args, io, connect) -> int     one node as is; all/several under headers;
                                             --follow: lines as they come (`node1: line`
                                             when several nodes show), the job's exit rule
    job_abort(args, io, connect) -> int
    job_watch(args, io, connect) -> int      one job's events (for `output`: each node's
                                             last line); without a job, the org feed
    job_rerun(args, io, connect) -> int      a new job on the failed/all/named nodes, followed
    node_status(args, io, connect) -> int
    dashboard(args, io, connect) -> int      a one-time dashboard login URL: printed
                                             (`--print-url`) or opened in the browser
    search_nodes(http, query) -> list[str]   Chef search (`GET search/node?q=...`), paged

`connect()` returns a ChefHTTP for the configured server; it is only called once the command
line is known to be valid, so usage errors never need a configuration.
"""

from __future__ import annotations

import json
import queue as queue_module
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, TextIO

from pushd_knife import exitcodes
from pushd_knife.chefhttp import ApiError, ChefHTTP, segment
from pushd_knife.exitcodes import CliError
from pushd_knife.follow import Follower, JobTracker, job_path
from pushd_knife.jobspec import build_job_body, encode_file, parse_env, unique_nodes
from pushd_knife.liveoutput import OutputPrinter
from pushd_knife.render import (
    Progress,
    event_line,
    node_table,
    progress_line,
    rollout_budget,
    summary,
)
from pushd_knife.sse import (
    FEED_CONNECTED,
    FEED_ENDED,
    FEED_UNAVAILABLE,
    Event,
    FeedReader,
    wait_for,
)

Connect = Callable[[], ChefHTTP]
SEARCH_PAGE = 1000
MAX_SEARCH_NODES = 100_000
MAX_LISTED_JOBS = 1_000_000
NO_NODES = ("No nodes to run job on. Specify nodes as arguments or use -s to specify a search"
            " query.")
V2_ONLY_FLAGS = (("env", "--with-env"), ("file", "--file"), ("dir", "--in-dir"),
                 ("user", "--as-user"), ("capture_output", "--capture"))
ROLLOUT_FLAGS = (("max_concurrency", "--max-concurrency"), ("max_errors", "--max-errors"))


@dataclass
class Io:
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)

    def binary_stdout(self) -> IO[bytes]:
        buffer = getattr(self.stdout, "buffer", None)
        if buffer is None:
            raise CliError("stdout has no binary buffer")
        return buffer

    def binary_stderr(self) -> IO[bytes]:
        buffer = getattr(self.stderr, "buffer", None)
        if buffer is None:
            raise CliError("stderr has no binary buffer")
        return buffer


def _print(stream: TextIO, text: str = "") -> None:
    stream.write(text + "\n")
    stream.flush()


def _dump_json(stream: TextIO, document: Any) -> None:
    _print(stream, json.dumps(document, indent=2, sort_keys=True))


# -- search -----------------------------------------------------------------------------------

def search_nodes(http: ChefHTTP, query: str) -> list[str]:
    """Node names matching a Chef search query, all pages.

    A single-tenant Chef server (Chef 11 API, e.g. goiardi) answers paths under
    /organizations/NAME it does not route with an empty 200; its search lives at the root."""
    names: list[str] = []
    start = 0
    while True:
        params = {"q": query, "start": start, "rows": SEARCH_PAGE}
        try:
            response = http.request("GET", "search/node", params=params)
            root = http.server_root()
            if start == 0 and not response.body.strip() and root is not None:
                http = root
                response = http.request("GET", "search/node", params=params)
            result = response.json()
        except ApiError as exc:
            raise CliError(f"search for nodes failed ({exc.status}): {exc.message}") from None
        rows = result.get("rows") if isinstance(result, dict) else None
        if not isinstance(rows, list):
            raise CliError(f"search for nodes failed: unexpected answer {str(result)[:200]}")
        for row in rows:
            if isinstance(row, dict):
                name = row.get("name") or (row.get("data") or {}).get("name")
                if isinstance(name, str):
                    names.append(name)
        start += len(rows)
        total = result.get("total", 0)
        if not rows or start >= (total if isinstance(total, int) else 0) \
                or len(names) >= MAX_SEARCH_NODES:
            return names


# -- job start --------------------------------------------------------------------------------

def _post_job(http: ChefHTTP, body: dict[str, Any], io: Io) -> dict[str, Any]:
    """POST the job; fall back to the v1 body only when a 1.x server rejects the v2 keys."""
    try:
        return http.post_json("pushy/jobs", body)
    except ApiError as exc:
        # A 1.x server refuses the 2.x keys with exactly this message (knife-push #32). knife
        # fell back on any 400, which hid real validation errors (#50, #51): not here.
        if exc.status != 400 or exc.message != "invalid key supplied":
            raise CliError(f"the server refused the job: {exc.message}") from None
    rollout = [flag for key, flag in ROLLOUT_FLAGS if key in body]
    if rollout:
        # A server without rollout control: dropping the limits would run on every node at once.
        raise CliError(
            f"the server refused the job: invalid key supplied; {', '.join(rollout)} need a"
            " pushd server with rollout control"
        )
    used = [flag for key, flag in V2_ONLY_FLAGS if body.get(key)]
    if used:
        raise CliError(
            f"the server refused the job: invalid key supplied (a Push Jobs 1.x server?);"
            f" {', '.join(used)} need Push Jobs 2.x"
        )
    _print(io.stderr, "WARNING: Falling back to Push Jobs v1 mode.")
    v1_body = {key: body[key] for key in ("command", "nodes", "quorum", "run_timeout")
               if key in body}
    try:
        return http.post_json("pushy/jobs", v1_body)
    except ApiError as exc:
        raise CliError(f"the server refused the job: {exc.message}") from None


def job_id_from(answer: dict[str, Any]) -> str:
    uri = answer.get("uri") if isinstance(answer, dict) else None
    job_id = answer.get("id") if isinstance(answer, dict) else None
    if isinstance(uri, str) and uri.rstrip("/"):
        return uri.rstrip("/").rsplit("/", 1)[-1]
    if isinstance(job_id, str) and job_id:
        return job_id
    raise CliError(f"the server accepted the job but did not say its id: {str(answer)[:200]}")


def _interrupted(io: Io, job_id: str) -> int:
    _print(io.stderr,
           f"Interrupted. Job {job_id} continues on the server: follow it with"
           f" `push-jobs job watch {job_id}`, stop it with `push-jobs job abort {job_id}`.")
    return exitcodes.INTERRUPTED


def job_start(args: Any, io: Io, connect: Connect) -> int:
    if not args.command:
        raise CliError("No job specified.", exitcodes.USAGE)
    env = parse_env(args.with_env) if args.with_env is not None else {}
    file_value = encode_file(args.file) if args.file is not None else None
    if args.timeout is not None and args.timeout < 0:
        raise CliError("--timeout must be a positive number of seconds", exitcodes.USAGE)
    if not args.search and not args.nodes:
        raise CliError(NO_NODES)
    http = connect()
    if args.search:
        if args.nodes:
            _print(io.stderr, "WARNING: node names given with --search are ignored")
        nodes = search_nodes(http, args.search)
    else:
        nodes = list(args.nodes)
    nodes = unique_nodes(nodes)
    if not nodes:
        raise CliError(NO_NODES)
    follow_output = getattr(args, "follow_output", False)
    body = build_job_body(args.command, nodes, quorum=args.quorum, run_timeout=args.timeout,
                          file=file_value, capture=args.capture or follow_output, env=env,
                          directory=args.in_dir, user=args.as_user,
                          max_concurrency=args.max_concurrency, max_errors=args.max_errors)
    answer = _post_job(http, body, io)
    rollout = rollout_budget({**body, "nodes": {"new": nodes}})
    return _started(args, io, http, answer, rollout)


def _started(
    args: Any, io: Io, http: Any, answer: dict[str, Any],
    rollout: tuple[bool, int | None] = (False, None),
) -> int:
    """After a job was created: print its id, then follow it unless --nowait."""
    job_id = job_id_from(answer)
    progress_stream = io.stderr if args.json else io.stdout
    _print(progress_stream, f"Started.  Job ID: {job_id}")
    if args.nowait:
        if args.json:
            uri = answer.get("uri") or http.url(job_path(job_id))
            _dump_json(io.stdout, {"id": job_id, "uri": uri})
        return exitcodes.OK
    try:
        if getattr(args, "follow_output", False):
            return _follow_output(args, io, http, job_id, [], ("stdout", "stderr"))
        return _follow_started_job(args, io, http, job_id, progress_stream, rollout)
    except KeyboardInterrupt:
        # Ctrl-C between "Started." and the follower (a busy machine makes that window real).
        return _interrupted(io, job_id)


def _follow_started_job(
    args: Any, io: Io, http: Any, job_id: str, progress_stream: Any,
    rollout: tuple[bool, int | None] = (False, None),
) -> int:
    progress = Progress(progress_stream, rollout=rollout[0], budget=rollout[1])
    follower = Follower(
        http, job_id,
        poll_interval=args.poll_interval,
        wait_timeout=args.wait_timeout,
        use_feed=not args.no_feed,
        on_change=lambda t: progress.update(t.status, t.nodes),
        on_tick=lambda t: progress.update(t.status, t.nodes, tick=True),
    )
    try:
        final = follower.run()
    except KeyboardInterrupt:
        progress.close()
        return _interrupted(io, job_id)
    except CliError:
        progress.close()
        raise
    tracker = follower.tracker or JobTracker(final)
    progress.finish(tracker.status, tracker.nodes)
    if args.json:
        _dump_json(io.stdout, final)
    else:
        io.stdout.write(summary(final))
        table = node_table(final.get("nodes") or {}, final.get("node_reasons"))
        if table:
            _print(io.stdout)
            io.stdout.write(table)
        io.stdout.flush()
    return _exit_for(final, io, strict=args.strict)


def _exit_for(job: dict[str, Any], io: Io, *, strict: bool) -> int:
    """The job's exit code; when it is not 0, a line on stderr says what it means."""
    code = exitcodes.job_exit_code(job, strict=strict)
    if code != exitcodes.OK:
        _print(io.stderr, f"exit {code}: {exitcodes.meaning(code)}")
    return code


# -- other job commands ----------------------------------------------------------------------

def job_list(args: Any, io: Io, connect: Connect) -> int:
    params: dict[str, Any] = {}
    if args.status:
        params["status"] = args.status
    if args.limit is not None:
        params["limit"] = args.limit
    http = connect()
    jobs: list[Any] = []
    while True:
        response = http.request("GET", "pushy/jobs", params=params or None)
        page = response.json()
        if not isinstance(page, list):
            raise CliError(f"unexpected answer listing jobs: {str(page)[:200]}")
        jobs.extend(page)
        # The server pages with X-Next-Cursor; without --limit, list everything like knife.
        cursor = response.headers.get("x-next-cursor")
        if args.limit is not None or not cursor or not page or len(jobs) >= MAX_LISTED_JOBS:
            break
        params = {**params, "cursor": cursor}
    _show(io, jobs, as_json=args.json)
    return exitcodes.OK


def _show(io: Io, value: Any, *, as_json: bool) -> None:
    """`value` (a job or a job list) as JSON or as knife's summary."""
    if as_json:
        _dump_json(io.stdout, value)
    else:
        io.stdout.write(summary(value))
        io.stdout.flush()


def _get_job(http: ChefHTTP, job_id: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        return http.get_json(job_path(job_id), params)
    except ApiError as exc:
        if exc.status == 404:
            raise CliError(f"job {job_id} not found") from None
        raise


def job_status(args: Any, io: Io, connect: Connect) -> int:
    params = {"include_file": "true"} if args.include_file else None
    job = _get_job(connect(), args.job_id, params)
    rollout, budget = rollout_budget(job)
    if rollout and not args.json:
        # Rollout jobs lead with the progress line; other jobs print exactly as knife does.
        _print(io.stdout, progress_line(_node_statuses(job), budget))
    _show(io, job, as_json=args.json)
    return exitcodes.OK


def _node_statuses(job: dict[str, Any]) -> dict[str, str]:
    return {name: str(status) for status, names in (job.get("nodes") or {}).items()
            for name in names or ()}


def job_rerun(args: Any, io: Io, connect: Connect) -> int:
    if args.nodes and (args.failed or args.all):
        raise CliError("give either --failed, --all or node names, not both", exitcodes.USAGE)
    selection: Any = unique_nodes(args.nodes) if args.nodes else ("all" if args.all else "failed")
    http = connect()
    try:
        answer = http.post_json(f"{job_path(args.job_id)}/rerun", {"nodes": selection})
    except ApiError as exc:
        if exc.status == 404 and "not found" in exc.message and args.job_id in exc.message:
            raise CliError(f"job {args.job_id} not found") from None
        raise CliError(f"cannot re-run job {args.job_id}: {exc.message}") from None
    new_id = job_id_from(answer)
    rollout = rollout_budget(_get_job(http, new_id)) if not args.nowait else (False, None)
    return _started(args, io, http, answer, rollout)


def _fetch_output(http: ChefHTTP, job_id: str, node: str, channel: str) -> bytes:
    path = f"{job_path(job_id)}/output/{segment(node)}/{channel}"
    try:
        return http.request("GET", path, accept="application/octet-stream").body
    except ApiError as exc:
        if exc.status == 404:
            raise CliError(_why_no_output(http, job_id, node, channel)) from None
        raise


def _why_no_output(http: ChefHTTP, job_id: str, node: str, channel: str) -> str:
    """Why the server has no output for (job, node): it says only "not found"."""
    job = _get_job(http, job_id)  # CliError "job X not found" when there is no such job
    nodes = {name for names in (job.get("nodes") or {}).values() for name in names}
    if node not in nodes:
        return f"node {node} is not part of job {job_id}"
    if not job.get("capture_output"):
        return f"no {channel} for node {node} in job {job_id}: the job was started without" \
            " --capture"
    if job.get("status") in ("new", "voting", "running"):
        return f"no {channel} for node {node} in job {job_id} yet: the job is {job['status']}"
    return f"no {channel} for node {node} in job {job_id}: the node sent none"


def job_output(args: Any, io: Io, connect: Connect) -> int:
    """One node: its bytes unchanged (knife). None: every node of the job; several: each,
    under a `==> NODE <==` header; a node without output is reported and makes the exit 1."""
    if args.channel not in ("stdout", "stderr"):
        raise CliError("Invalid Format please enter stdout or stderr", exitcodes.USAGE)
    http = connect()
    if getattr(args, "follow", False):
        return _follow_output(args, io, http, args.job_id, unique_nodes(args.nodes),
                              (args.channel,))
    out = io.binary_stdout()
    if len(args.nodes) == 1:
        out.write(_fetch_output(http, args.job_id, args.nodes[0], args.channel))
        out.flush()
        return exitcodes.OK
    nodes = unique_nodes(args.nodes) or sorted(
        name for names in (_get_job(http, args.job_id).get("nodes") or {}).values()
        for name in names
    )
    missing = written = 0
    for node in nodes:
        try:
            data = _fetch_output(http, args.job_id, node, args.channel)
        except CliError as exc:
            missing += 1
            io.stdout.flush()
            _print(io.stderr, f"ERROR: {exc.message}")
            continue
        header = ("\n" if written else "") + f"==> {node} <==\n"
        out.write(header.encode() + data + (b"" if not data or data.endswith(b"\n") else b"\n"))
        out.flush()
        written += 1
    return exitcodes.ERROR if missing else exitcodes.OK


def _job_nodes(job: dict[str, Any]) -> list[str]:
    return sorted(name for names in (job.get("nodes") or {}).values() for name in names)


def _follow_output(args: Any, io: Io, http: Any, job_id: str, nodes: list[str],
                   channels: tuple[str, ...]) -> int:
    """Print the job's output as it comes (the feed's `output` events), then what the feed did
    not carry, and exit with the job's exit rule. `node1: ` prefixes when several nodes show."""
    job = _get_job(http, job_id)
    shown = nodes or _job_nodes(job)
    out = io.binary_stdout()
    err = io.binary_stderr() if "stderr" in channels and "stdout" in channels else out
    printer = OutputPrinter(out, err, nodes=nodes or None, channels=channels,
                            prefix=len(shown) > 1)
    follower = Follower(http, job_id, poll_interval=args.poll_interval,
                        wait_timeout=args.wait_timeout, use_feed=True,
                        on_event=printer.on_event)
    try:
        final = follower.run()
    except KeyboardInterrupt:
        return _interrupted(io, job_id)
    printer.finish(http, job_id, nodes or _job_nodes(final))
    return _exit_for(final, io, strict=args.strict)


def job_abort(args: Any, io: Io, connect: Connect) -> int:
    http = connect()
    try:
        answer = http.post_json(f"{job_path(args.job_id)}/abort", {})
    except ApiError as exc:
        if exc.status == 404:
            raise CliError(f"job {args.job_id} not found") from None
        raise CliError(f"cannot abort job {args.job_id}: {exc.message}") from None
    if args.json:
        _dump_json(io.stdout, answer)
    else:
        status = answer.get("status") if isinstance(answer, dict) else None
        suffix = f" (status: {status})" if status else ""
        _print(io.stdout, f"Abort requested for job {args.job_id}{suffix}.")
    return exitcodes.OK


def _event_printer(io: Io, as_json: bool) -> Callable[[Event], None]:
    last_lines: dict[str, str] = {}

    def show(event: Event) -> None:
        data = event.json()
        if as_json:
            _print(io.stdout, json.dumps({"id": event.id, "event": event.name, "data": data},
                                         sort_keys=True))
        elif event.name == "output":
            # Each running node's last line, not its whole output (`job output --follow`).
            line = last_line(data.get("data"))
            node = str(data.get("node"))
            if line is not None and last_lines.get(node) != line:
                last_lines[node] = line
                _print(io.stdout, event_line("output", {
                    "timestamp": data.get("timestamp"), "node": node, "last_line": line}))
        else:
            _print(io.stdout, event_line(event.name, data))
    return show


def last_line(text: Any) -> str | None:
    """The last non-blank line of an output chunk (at most 200 characters), else None."""
    if not isinstance(text, str):
        return None
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else None


def _replay_finished(http: ChefHTTP, job_id: str, show: Callable[[Event], None],
                     timeout: float) -> None:
    """Print the full history of a finished job from its feed (best effort)."""
    events: queue_module.Queue[Any] = queue_module.Queue()
    reader = FeedReader(http, f"pushy/job_status_feed/{segment(job_id)}", events, max_failures=2)
    reader.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            item = wait_for(events, deadline)
            if item is None or item is FEED_ENDED or item is FEED_UNAVAILABLE:
                return
            if isinstance(item, Event):
                show(item)
    finally:
        reader.stop()


def _watch_org(http: ChefHTTP, io: Io, args: Any) -> int:
    """Follow the organization's feed (jobs starting and finishing) until Ctrl-C."""
    events: queue_module.Queue[Any] = queue_module.Queue()
    reader = FeedReader(http, "pushy/job_status_feed", events, end_events=frozenset())
    reader.start()
    deadline = (time.monotonic() + args.wait_timeout) if args.wait_timeout else float("inf")
    announced = False
    try:
        while True:
            item = wait_for(events, min(deadline, time.monotonic() + 3600))
            if item is FEED_CONNECTED and not announced:
                _print(io.stderr, "Watching the organization's jobs (Ctrl-C to stop).")
                announced = True
            elif item is FEED_UNAVAILABLE:
                raise CliError(f"the organization feed is not available: {reader.last_error}")
            elif isinstance(item, Event):
                data = item.json()
                if args.json:
                    _print(io.stdout, json.dumps({"id": item.id, "event": item.name,
                                                  "data": data}, sort_keys=True))
                else:
                    _print(io.stdout, event_line(item.name, data, with_job=True))
            if time.monotonic() >= deadline:
                return exitcodes.OK
    except KeyboardInterrupt:
        return exitcodes.OK
    finally:
        reader.stop()


def job_watch(args: Any, io: Io, connect: Connect) -> int:
    http = connect()
    if args.job_id is None:
        return _watch_org(http, io, args)
    job = _get_job(http, args.job_id)
    show = _event_printer(io, args.json)
    tracker = JobTracker(job)
    rollout, budget = rollout_budget(job)
    if tracker.finished:
        _replay_finished(http, args.job_id, show, timeout=30.0)
        final = job
    else:
        def on_change(current: JobTracker) -> None:
            # Events are printed as they come; only a polled job (no feed) prints its states.
            if not follower.feed_active:
                nodes = ", ".join(f"{n} {s}" for n, s in sorted(current.nodes.items()))
                _print(io.stdout, f"{time.strftime('%H:%M:%S')}  {current.status}: {nodes}")
            elif rollout and not args.json and current.status not in ("new", "voting"):
                # A rollout job: where it stands after each event of its running phase.
                _print(io.stdout, "  " + progress_line(current.nodes, budget))

        follower = Follower(http, args.job_id, poll_interval=args.poll_interval,
                            wait_timeout=args.wait_timeout, use_feed=True,
                            on_change=on_change, on_event=show)
        try:
            final = follower.run()
        except KeyboardInterrupt:
            return _interrupted(io, args.job_id)
    if not args.json:
        table = node_table(final.get("nodes") or {}, final.get("node_reasons"))
        _print(io.stdout, f"Job {args.job_id}: {final.get('status')}")
        if rollout:
            _print(io.stdout, progress_line(_node_statuses(final), budget))
        if table:
            io.stdout.write(table)
            io.stdout.flush()
    return _exit_for(final, io, strict=args.strict)


# -- node status ------------------------------------------------------------------------------

def node_status(args: Any, io: Io, connect: Connect) -> int:
    http = connect()
    names: list[str] = []
    for item in args.nodes:
        if ":" in item:
            names.extend(search_nodes(http, item))
        else:
            names.append(item)
    if args.search:
        names.extend(search_nodes(http, args.search))
    if not args.nodes and not args.search:
        states = http.get_json("pushy/node_states")
        rows = states if isinstance(states, list) else []
    else:
        rows = [http.get_json(f"pushy/node_states/{segment(name)}")
                for name in unique_nodes(names)]
    if args.json:
        _dump_json(io.stdout, rows)
        return exitcodes.OK
    for row in rows:
        if isinstance(row, dict):
            _print(io.stdout, f"{row.get('node_name')}\t{row.get('availability')}")
    return exitcodes.OK


def dashboard(
    args: Any, io: Io, connect: Connect, *, opener: Callable[[str], bool] | None = None
) -> int:
    """Ask the server for a one-time login URL (valid 60 s, single use) and open or print it."""
    http = connect()
    try:
        answer = http.post_json("pushy/dashboard/login", {})
    except ApiError as exc:
        if exc.status == 404:
            raise CliError("this server has no dashboard (login URL endpoint: 404)") from None
        raise CliError(f"cannot get a dashboard login URL: {exc.message}") from None
    url = answer.get("url") if isinstance(answer, dict) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise CliError(f"the server answered no login URL: {answer!r}")
    if args.json:
        _dump_json(io.stdout, answer)
        return exitcodes.OK
    if args.print_url:
        _print(io.stdout, url)
        return exitcodes.OK
    if opener is None:
        import webbrowser

        opener = webbrowser.open
    if opener(url):
        _print(io.stderr, "Opened the dashboard in your browser (the link works once, for 60 s).")
    else:
        _print(io.stderr, "Could not start a browser; open this link (once, within 60 s):")
        _print(io.stdout, url)
    return exitcodes.OK
