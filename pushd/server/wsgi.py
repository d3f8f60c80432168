"""Builds the API application inside a gunicorn worker (after gevent has patched the process).

    build_worker_app(settings) -> falcon.App
        Opens the database for this worker, makes the principal source, a broker control client
        on a green zmq context, the events hub, loads the server's public key, and calls
        `pushd.api.app.create_app`. With the local principal source and a
        `principal_cache_ttl` of 0 every request runs inside one store connection (its identity
        lookups query the store every time). Otherwise a request takes a pooled connection only
        when it queries the store (each store function takes one and gives it back: see
        `pushd.store.db.store_function`), so a request answered from the identity cache (a
        node's config fetch in the steady state) costs no pool checkout and its round trip.
    server_keys_dir(settings) -> Path        where the server's RSA and Curve keys live
    StartingBrokerWait(call, started_file, bound=STARTING_WAIT)
        wraps the control client's ``request``: a request that gets no answer
        (`BrokerUnavailable`, after BROKER_TIMEOUT) is sent again while the broker is starting:
        the supervisor recorded a start less than `bound` seconds ago and this worker has had
        no answer since. So a config fetch that arrives while a (re)started broker loads does
        not get a 503 (the stock client waits about two minutes after one), while a broker that
        was up and stopped answering still gives a 503 after BROKER_TIMEOUT.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import falcon

log = logging.getLogger(__name__)

BROKER_TIMEOUT = 3.0
# Seconds after a broker start during which a worker that has had no answer from it yet keeps
# asking instead of answering 503 (its start takes well under a second on an idle machine).
STARTING_WAIT = 10.0


def server_keys_dir(settings: Any) -> Path:
    return Path(settings.get("data_dir")) / "keys"


class StoreConnectionMiddleware:
    """Holds one pooled connection per request when asked to, and returns what is left open.

    With ``eager`` every request checks a connection out up front and keeps it to the end, so
    its several queries share one checkout (each PostgreSQL checkout pings with ``SELECT 1``).
    Without it nothing is checked out up front: store functions take and give back their own,
    and a request answered from caches (a config fetch with the identity cached) makes no
    round trip at all; `process_response` is then only the safety net behind them.
    """

    def __init__(self, connection: Callable[[], Any], database: Callable[[], Any], *,
                 eager: bool) -> None:
        self._connection = connection
        self._database = database
        self._eager = eager

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._eager:
            manager = self._connection()
            manager.__enter__()
            req.context.store_connection = manager

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        manager = getattr(req.context, "store_connection", None)
        if manager is not None:
            req.context.store_connection = None
            manager.__exit__(None, None, None)
            return
        database = self._database()
        if database is not None and not database.is_closed() and not database.in_transaction():
            database.close()


class StartingBrokerWait:
    def __init__(
        self,
        call: Callable[[dict[str, Any]], dict[str, Any]],
        started_file: Path,
        bound: float = STARTING_WAIT,
    ) -> None:
        self._call = call
        self._started_file = started_file
        self._bound = bound
        self._answered_at = 0.0  # wall clock of this worker's last answer from a broker

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        from pushd.broker.control_client import BrokerUnavailable

        while True:
            try:
                reply = self._call(request)
            except BrokerUnavailable:
                if not self._starting():
                    raise
                log.info("the broker is starting; asking again (%s)", request.get("op"))
                continue
            self._answered_at = time.time()
            return reply

    def _starting(self) -> bool:
        from pushd.server.supervisor import read_started_file

        started = read_started_file(self._started_file)
        if started is None or started <= self._answered_at:
            return False
        return time.time() - started < self._bound


def holds_connection_per_request(settings: Any) -> bool:
    """Without an identity cache, the local source queries on every request: share a checkout."""
    local = (settings.get("principal_source") or "local") == "local"
    return local and not settings.get("principal_cache_ttl")


def build_worker_app(settings: Any) -> falcon.App:
    import zmq.green as zmq

    from pushd import store
    from pushd.api.app import create_app
    from pushd.api.broker import BrokerGateway
    from pushd.api.events import EventHub
    from pushd.broker.control_mux import MultiplexedBrokerClient
    from pushd.identity import make_principal_source
    from pushd.keys import load_or_create_server_keys
    from pushd.server.supervisor import started_file_path

    store.open_database(settings)
    keys = load_or_create_server_keys(server_keys_dir(settings))
    run_dir = Path(settings.get("run_dir"))
    context: zmq.Context[Any] = zmq.Context.instance()
    # One control connection per worker, whatever its concurrency (control_mux says why).
    client = MultiplexedBrokerClient(run_dir, timeout=BROKER_TIMEOUT, context=context)
    hub = EventHub(zmq, context, f"ipc://{run_dir}/events.sock")
    hub.start()
    app = create_app(
        settings,
        store,
        make_principal_source(settings),
        BrokerGateway(StartingBrokerWait(client.request, started_file_path(run_dir))),
        events=hub,
        server_public_key_pem=keys.rsa_public_pem,
        middleware=[
            StoreConnectionMiddleware(
                store.connection,
                lambda: store.database_proxy.obj,
                eager=holds_connection_per_request(settings),
            )
        ],
    )
    return app
