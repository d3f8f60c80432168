"""Builds the API application inside a gunicorn worker (after gevent has patched the process).

    build_worker_app(settings) -> falcon.App
        Opens the database for this worker, makes the principal source, a broker control client
        on a green zmq context, the events hub, loads the server's public key, and calls
        `pushd.api.app.create_app`. Every request runs inside a store connection.
    server_keys_dir(settings) -> Path        where the server's RSA and Curve keys live
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import falcon

log = logging.getLogger(__name__)

BROKER_TIMEOUT = 3.0


def server_keys_dir(settings: Any) -> Path:
    return Path(settings.get("data_dir")) / "keys"


class StoreConnectionMiddleware:
    """One database connection per request greenlet, returned to the pool afterwards."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
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
        middleware=[StoreConnectionMiddleware(store.connection)],
    )
    return app
