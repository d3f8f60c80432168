"""The floor for the API benchmark: gunicorn + gevent serving a fixed job document, no app logic.

    python bench/bench_floor_http.py [--threads 8] [--seconds 5] [--runs 5]

Runs gunicorn the way the server runs it (2 gevent workers, keep-alive) with a WSGI app that
answers every GET with the same bytes: a job document with 100 node statuses, the size of the
one `bench_api.py` reads. No authentication, no database, no Falcon. The client is
`bench_api.get_rate` (the same `--threads` keep-alive connections for `--seconds`), so the two
figures differ only by what pushd does per request. Prints medians over `--runs`:

    RESULT name=floor_http_get_rate value=.. unit=req/s threads=T
    RESULT name=floor_http_get_latency_p50 value=.. unit=ms threads=T
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = '''
import json
import os

BODY = json.dumps({
    "id": "0" * 32, "command": "chef-client", "status": "complete", "run_timeout": 3600,
    "created_at": "Tue, 24 Nov 2026 08:00:00 GMT", "updated_at": "Tue, 24 Nov 2026 08:00:01 GMT",
    "nodes": {"succeeded": ["emu-%05d" % i for i in range(100)]},
}).encode()


# Other fixed bodies by path (serve(bodies=...)): bench_joblist.py's job-list pages.
BODIES = {}
if os.environ.get("PUSHD_FLOOR_BODIES"):
    for name in os.listdir(os.environ["PUSHD_FLOOR_BODIES"]):
        with open(os.path.join(os.environ["PUSHD_FLOOR_BODIES"], name), "rb") as handle:
            BODIES["/" + name] = handle.read()


def app(environ, start_response):
    body = BODIES.get(environ.get("PATH_INFO"), BODY)
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def serve(directory: Path, port: int,
          bodies: dict[str, bytes] | None = None) -> subprocess.Popen[bytes]:
    """gunicorn on `port` serving the fixed job document at every path, or at ``/NAME`` the
    bytes `bodies` gives for NAME (a plain file name)."""
    (directory / "floor_app.py").write_text(APP)
    env = dict(os.environ)
    if bodies:
        folder = directory / "bodies"
        folder.mkdir(exist_ok=True)
        for name, body in bodies.items():
            (folder / name).write_bytes(body)
        env["PUSHD_FLOOR_BODIES"] = str(folder)
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--chdir", str(directory), "--workers", "2",
         "--worker-class", "gevent", "--worker-connections", "2000", "--keep-alive", "5",
         "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "floor_app:app"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env,
    )


def wait_listening(port: int, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not listen on {port} within {timeout} s")


def main() -> int:
    from pushd_bench.bench_api import get_rate
    from pushd_bench.common import machine, median, result
    from pushd_bench.ports import free_ports

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"# machine: {machine()}", flush=True)
    port = free_ports(1)[0]
    with tempfile.TemporaryDirectory(prefix="pushd-floor-http-") as directory:
        server = serve(Path(directory), port)
        try:
            wait_listening(port)
            get_rate(port, "/", {}, args.threads, 1.0)  # warm up the workers
            runs = [get_rate(port, "/", {"Accept": "application/json"}, args.threads,
                             args.seconds) for _ in range(args.runs)]
        finally:
            server.terminate()
            server.wait(10)
    result("floor_http_get_rate", median([r[0] for r in runs]), "req/s", threads=args.threads,
           runs=args.runs, all=",".join(f"{r[0]:.0f}" for r in runs))
    result("floor_http_get_latency_p50", median([r[1] for r in runs]), "ms",
           threads=args.threads)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
