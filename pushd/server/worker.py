"""The API's gunicorn worker: gunicorn's gevent worker with a prompt graceful stop.

    PushdGeventWorker      used as gunicorn's ``worker_class`` by pushd.server.main

gunicorn's `GeventWorker` notices a SIGTERM (graceful stop: runit's ``sv stop``/``restart``)
only at its next one-second tick, then checks every second whether its requests are done, and
SSE streams (which never end by themselves) hold it for the whole ``graceful_timeout``. A
restart of the service therefore kept the API away for 1-2 s, or 5 s with a stream open, and the
broker is stopped only after the workers. This worker differs only in its stop:

- it checks for the stop every STOP_CHECK seconds (it still tells the arbiter it is alive once
  a second);
- once stopped it stops accepting, ends its SSE streams at once (their connections are closed,
  as gunicorn closes them when the graceful timeout runs out; their clients reconnect with
  ``Last-Event-ID`` and lose nothing: feeds replay from the store), ends the keep-alive
  connections that wait for their next request (their read sees end of file: the client's
  next request goes to the new server), closes each connection after its request in flight,
  and waits for those requests, checking every STOP_CHECK seconds, up to
  ``graceful_timeout``; what is still running then is ended as gunicorn ends it.

A response is a stream when its ``Content-Type`` is ``text/event-stream``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

import gevent
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn.sock import ssl_context
from gunicorn.workers.ggevent import GeventWorker

STOP_CHECK = 0.05  # seconds between checks for a stop request, then for requests to finish
NOTIFY_EVERY = 1.0  # seconds between "alive" notifications to the arbiter (gunicorn's own)
EVENT_STREAM = "text/event-stream"


class PushdGeventWorker(GeventWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Greenlet -> its client socket, for every open connection; the greenlets inside a
        # request; those serving an SSE response (a greenlet handles one request at a time).
        self._connections: dict[Any, Any] = {}
        self._busy: set[Any] = set()
        self._streams: set[Any] = set()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app = self.wsgi
        streams = self._streams

        def tracking_app(
            environ: MutableMapping[str, Any], start_response: Callable[..., Any]
        ) -> Iterable[bytes]:
            def start(status: str, headers: Iterable[tuple[str, str]], *exc_info: Any) -> Any:
                for name, value in headers:
                    if name.lower() == "content-type" and value.startswith(EVENT_STREAM):
                        streams.add(gevent.getcurrent())
                        break
                return start_response(status, headers, *exc_info)

            return app(environ, start)

        self.wsgi = tracking_app

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        current = gevent.getcurrent()
        self._connections[current] = client
        try:
            super().handle(listener, client, addr)
        finally:
            self._connections.pop(current, None)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        current = gevent.getcurrent()
        self._busy.add(current)
        try:
            handled = super().handle_request(listener_name, req, sock, addr)
        finally:
            self._busy.discard(current)
            self._streams.discard(current)
        if not self.alive:
            # Stopping: no next request on this connection (gunicorn's handle() closes it).
            raise StopIteration
        return handled

    def run(self) -> None:
        servers = [self._serve(listener) for listener in self.sockets]
        last_notify = 0.0
        while self.alive:
            now = time.monotonic()
            if now - last_notify >= NOTIFY_EVERY:
                self.notify()
                last_notify = now
            gevent.sleep(STOP_CHECK)
        try:
            self._stop_gracefully(servers)
        except Exception:  # as gunicorn's worker: the process is going anyway
            self.log.exception("error while stopping")

    def _serve(self, listener: Any) -> StreamServer:
        listener.setblocking(1)
        ssl_args: dict[str, Any] = {"ssl_context": ssl_context(self.cfg)} if self.cfg.is_ssl else {}
        pool = Pool(self.worker_connections)
        server = StreamServer(
            listener, handle=lambda client, addr: self.handle(listener, client, addr),
            spawn=pool, **ssl_args,
        )
        if self.cfg.workers > 1:
            server.max_accept = 1
        server.start()
        return server

    def _stop_gracefully(self, servers: list[StreamServer]) -> None:
        for server in servers:
            server.close()  # stop accepting
        self._end_idle_connections()
        deadline = time.monotonic() + self.cfg.graceful_timeout
        last_notify = time.monotonic()
        while time.monotonic() < deadline:
            # (No server is without a pool: _serve gives each one.)
            if all(
                server.pool is None or server.pool.free_count() == server.pool.size
                for server in servers
            ):
                return
            if time.monotonic() - last_notify >= NOTIFY_EVERY:
                self.notify()
                last_notify = time.monotonic()
            gevent.sleep(STOP_CHECK)
        self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
        for server in servers:
            server.stop(timeout=1)

    def _end_idle_connections(self) -> None:
        """End SSE streams (they never finish by themselves) and idle keep-alive connections."""
        for greenlet, client in list(self._connections.items()):
            if greenlet in self._streams:
                # GreenletExit at the stream's wait; handle_request then closes the connection.
                greenlet.kill(block=False)
            elif greenlet not in self._busy:
                try:
                    client.shutdown(socket.SHUT_RD)  # its wait for a next request sees EOF
                except OSError:
                    pass
