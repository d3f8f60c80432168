"""Serving the samples of every process of the service, and forgetting exited ones.

    serve(listen, port) -> MetricsServer | None   an HTTP thread answering /metrics in the
                                                 Prometheus text format; None (logged) when
                                                 the port cannot be bound or metrics are off
    MetricsServer.close()
    process_exited(pid)                           drop a dead process's live gauges

Runs in the broker process (pushd.broker.service): it is the one process that always lives as
long as the service and never forks. Outside multiprocess mode (tests running a broker in the
test process) it serves this process's own registry.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server

from pushd.metrics import METRICS_DIR_ENV

log = logging.getLogger(__name__)


@dataclass
class MetricsServer:
    server: Any
    thread: threading.Thread
    address: str

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def registry() -> CollectorRegistry:
    if not os.environ.get(METRICS_DIR_ENV):
        return REGISTRY
    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined)
    return combined


def serve(listen: str, port: int) -> MetricsServer | None:
    if not port:
        return None
    try:
        server, thread = start_http_server(port, addr=listen, registry=registry())
    except OSError as err:
        # The service keeps working without metrics; the operator sees why in the log.
        log.error("cannot serve metrics on %s:%d (%s); metrics are off until the broker "
                  "restarts", listen, port, err.strerror or err)
        return None
    address = f"http://{listen}:{port}/metrics"
    log.info("metrics at %s", address)
    return MetricsServer(server, thread, address)


def process_exited(pid: int) -> None:
    if os.environ.get(METRICS_DIR_ENV):
        multiprocess.mark_process_dead(pid)
