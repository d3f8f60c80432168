"""Every metric pushd exports, defined once. Names follow Prometheus conventions: one `pushd_`
prefix, base units (seconds), counters ending in `_total` (prometheus_client appends it), no
label whose values grow with the fleet (no node names, no job ids). Gauges say how the values
of several processes combine (`multiprocess_mode`): `livesum` drops a process that has exited.

Hot paths never touch these objects directly: the broker counts in plain integers and copies
them here once a second (pushd.broker.metrics); the API increments per request.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from pushd import __version__

BUILD_INFO = Gauge("pushd_build_info", "Always 1; the running pushd version in a label.",
                   ["version"], multiprocess_mode="max")

# -- broker ------------------------------------------------------------------------------------
NODES = Gauge("pushd_nodes", "Nodes the broker knows, by organization and availability.",
              ["org", "availability"], multiprocess_mode="livesum")
HEARTBEATS = Counter("pushd_heartbeats_received", "Node heartbeats accepted by the broker.")
FRAMES_DROPPED = Counter("pushd_frames_dropped",
                         "Node messages dropped by the broker, by reason (replay, stale, "
                         "bad_signature, too_large, unknown_sender, wrong_node, ...).",
                         ["reason"])
JOBS = Counter("pushd_jobs", "Jobs finished, by organization and final status.",
               ["org", "status"])
JOBS_RUNNING = Gauge("pushd_jobs_running", "Jobs voting or running, by organization.",
                     ["org"], multiprocess_mode="livesum")
JOB_DURATION = Histogram("pushd_job_duration_seconds",
                         "Time from a job's start (voting) to its end.",
                         buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400))
NODE_RUNS = Counter("pushd_node_runs", "Final node states of finished jobs (one per node).",
                    ["result"])
LOOP_LAG = Histogram("pushd_broker_loop_lag_seconds",
                     "How late the broker's periodic turns (server heartbeat, liveness, "
                     "housekeeping) started.",
                     buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
BROKER_RESTARTS = Counter("pushd_broker_restarts",
                          "Times the service restarted its broker after the broker exited.")

# -- API ---------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter("pushd_http_requests",
                        "HTTP requests answered, by method, route template and status code.",
                        ["method", "route", "code"])
HTTP_DURATION = Histogram("pushd_http_request_duration_seconds",
                          "Time to answer an HTTP request (an SSE stream: until its headers).",
                          ["method", "route"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
AUTH_FAILURES = Counter("pushd_auth_failures", "Requests refused by authentication or "
                        "authorization, by reason.", ["reason"])
SSE_STREAMS = Gauge("pushd_sse_streams", "Open server-sent event streams, by feed.", ["feed"],
                    multiprocess_mode="livesum")


def set_build_info() -> None:
    BUILD_INFO.labels(version=__version__).set(1)
