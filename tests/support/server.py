"""The tests' name for the server harness, pushd_bench.server (see its docstring): it lives in that
installed package because the benchmarks start their servers with it too, and nothing installed
may import tests/. This module adds the pytest fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pushd_bench.server import (
    ADMIN_USER,
    NORMAL_USER,
    ORG_NAME,
    HeartbeatListener,
    PushdServer,
    Response,
    SseEvent,
    SseStream,
    load_private_key_cached,
    running_server,
)

__all__ = [
    "ADMIN_USER", "NORMAL_USER", "ORG_NAME", "HeartbeatListener", "PushdServer", "Response",
    "SseEvent", "SseStream", "load_private_key_cached", "pushd_server", "running_server",
]


@pytest.fixture
def pushd_server() -> Iterator[PushdServer]:
    """A fresh server on SQLite with nodes node1 and node2, stopped after the test."""
    with running_server() as server:
        yield server
