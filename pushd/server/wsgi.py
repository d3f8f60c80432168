"""Builds the API application inside a gunicorn worker (after gevent has patched the process).

    build_worker_app(settings) -> falcon.App
        Opens the database for this worker, makes the principal source, a broker control client
        on a green zmq context, the events hub, loads the server's public key, and calls
        `pushd.api.app.create_app`. A request takes a pooled database connection only when it
        queries the store (each store function takes one and gives it back: see
        `pushd.store.db.store_function`), so a request answered from the identity cache (a
        node's config fetch in the steady state) costs no pool checkout and its liveness
        round trip.
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
    """Returns to the pool any connection a request greenlet left open.

    Nothing is checked out up front: a checkout from the PostgreSQL pool costs a ``SELECT 1``
    round trip, which a request answered from caches does not need. Store functions take
    and give back their own connection; this is the safety net behind them.
    """

    def __init__(self, database: Callable[[], Any]) -> None:
        self._database = database

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        database = self._database()
        if database is not None and not database.is_closed() and not database.in_transaction():
            database.close()


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
        middleware=[StoreConnectionMiddleware(lambda: store.database_proxy.obj)],
    )
    return app
