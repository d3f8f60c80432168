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
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import falcon

log = logging.getLogger(__name__)

BROKER_TIMEOUT = 3.0


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
    from pushd.broker.control_client import BrokerClient
    from pushd.identity import make_principal_source
    from pushd.keys import load_or_create_server_keys

    store.open_database(settings)
    keys = load_or_create_server_keys(server_keys_dir(settings))
    run_dir = Path(settings.get("run_dir"))
    context = zmq.Context.instance()
    client = BrokerClient(run_dir, timeout=BROKER_TIMEOUT, zmq_module=zmq, context=context)
    hub = EventHub(zmq, context, f"ipc://{run_dir}/events.sock")
    hub.start()
    app = create_app(
        settings,
        store,
        make_principal_source(settings),
        BrokerGateway(client.request),
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
