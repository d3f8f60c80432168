"""The service's main process: ``python -m pushd.server --config FILE``.

It loads the settings, refuses a SQLite database another server serves and, on PostgreSQL,
makes the server's key files the cluster's (`_join`; see pushd.sqlite_lock and
pushd.cluster_keys), then starts the broker subprocess (``python -m pushd.broker --config
FILE``) under a `BrokerSupervisor`, which restarts it when it dies, first: the broker's start
(its own imports, schema check, keys, sockets) is the longest path of a restart, and nodes judge
the server offline after a few heartbeat intervals of silence. Meanwhile it brings the database
schema up to date (migrations take a lock, so this and the broker's own check may overlap) and
runs gunicorn's arbiter (embedded through `gunicorn.app.base.BaseApplication`) with
`api_workers` gevent workers (`pushd.server.worker.PushdGeventWorker`) bound to
``api_listen:api_port``; each worker builds the app with `pushd.server.wsgi.build_worker_app`
after gevent has patched it. SIGTERM (or SIGINT) stops the workers, then the broker; the process
exits when the arbiter does (the broker is stopped on every way out), so runit restarts the
whole service if the arbiter itself dies.

    main(argv=None) -> int
    PushdApplication(settings, config_path, supervisor)     the embedded gunicorn application
    gunicorn_options(settings) -> dict                      what is set on gunicorn's config

Exit status: 0 after a clean stop, 2 for a configuration error, a database that cannot be
reached or a SQLite file another server serves (printed as one line).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from pushd.errors import ConfigError, PushdError
from pushd.heap import limit_fragmentation
from pushd.server.accesslog import ACCESS_LOG_FORMAT
from pushd.server.supervisor import BrokerSupervisor, broker_command, started_file_path

log = logging.getLogger("pushd.server")

# How long a worker told to stop gives its requests in flight (SSE streams, which never end by
# themselves, are ended at once: see pushd.server.worker).
GRACEFUL_TIMEOUT = 5


def gunicorn_options(settings: Any) -> dict[str, Any]:
    return {
        "bind": [f"{settings.get('api_listen')}:{settings.get('api_port')}"],
        "workers": int(settings.get("api_workers")),
        # gunicorn's gevent worker with a prompt graceful stop (see pushd.server.worker).
        "worker_class": "pushd.server.worker.PushdGeventWorker",
        "worker_connections": 2000,
        "timeout": 30,
        "graceful_timeout": GRACEFUL_TIMEOUT,
        "keepalive": 5,
        "proc_name": "pushd-api",
        "errorlog": "-",
        "loglevel": "info",
        # One line per request on stdout (svlogd), the client's address taken from
        # X-Forwarded-For when the peer is a trusted proxy (the Chef Server's nginx).
        "accesslog": "-",
        "access_log_format": ACCESS_LOG_FORMAT,
        "logger_class": "pushd.server.accesslog.ProxyAwareLogger",
        # The control socket would default to a path shared by every gunicorn of the user.
        "control_socket_disable": True,
        "preload_app": False,
    }


class PushdApplication(BaseApplication):
    def __init__(
        self, settings: Any, config_path: str | None, supervisor: BrokerSupervisor
    ) -> None:
        self._settings = settings
        self._config_path = config_path
        self._supervisor = supervisor
        super().__init__()

    def load_config(self) -> None:
        known = self.cfg.settings
        for name, value in gunicorn_options(self._settings).items():
            if name in known:
                self.cfg.set(name, value)
        supervisor = self._supervisor

        def on_exit(server: Any) -> None:
            supervisor.stop()

        def child_exit(server: Any, worker: Any) -> None:
            # A worker's live gauges (open SSE streams) leave the sums with it; its counters stay.
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                from pushd.metrics.exposition import process_exited

                process_exited(worker.pid)

        self.cfg.set("on_exit", on_exit)
        self.cfg.set("child_exit", child_exit)

    def load(self) -> Any:
        # Runs in the worker, after the gevent worker class has called monkey.patch_all().
        from pushd.server.wsgi import build_worker_app

        return build_worker_app(self._settings)


def _make_directories(settings: Any) -> None:
    for name in ("run_dir", "log_directory", "data_dir"):
        try:
            path = settings.get(name)
        except (KeyError, LookupError):
            continue
        if path:
            Path(path).mkdir(parents=True, exist_ok=True)


def _join(settings: Any) -> None:
    """Before the broker and the workers start: refuse a SQLite file another server serves
    (pushd.sqlite_lock); on PostgreSQL make the key files the cluster's (pushd.cluster_keys),
    which needs the schema, so the database is migrated first there."""
    from pushd import sqlite_lock

    sqlite_lock.check_settings(settings)
    if settings.get("postgresql.enable"):
        from pushd.cluster_keys import ensure_server_keys

        ensure_server_keys(settings, migrate=True)


def _migrate(settings: Any) -> None:
    from pushd import store

    store.open_database(settings, migrate=True)
    store.close_database()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pushd.server", description="The pushd service's main process."
    )
    parser.add_argument("--config", help="the opscode-push-jobs-server.rb file")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    limit_fragmentation()  # inherited by the forked API workers (pushd.heap says why)
    from pushd.config import find_config_file, load_settings

    try:
        config_path = find_config_file(args.config)
        settings = load_settings(config_path)
        _make_directories(settings)
        _join(settings)
    except (ConfigError, PushdError, OSError) as err:
        print(f"pushd: {err}", file=sys.stderr)
        return 2
    on_broker_exit = _start_metrics(settings)
    supervisor = BrokerSupervisor(
        _broker_command(config_path),
        env=_broker_env(config_path),
        started_file=started_file_path(settings.get("run_dir")),
        on_exit=on_broker_exit,
    )
    supervisor.start()
    try:
        try:
            _migrate(settings)
        except (ConfigError, PushdError, OSError) as err:
            print(f"pushd: {err}", file=sys.stderr)
            return 2
        PushdApplication(settings, str(config_path) if config_path else None, supervisor).run()
    finally:
        supervisor.stop()  # a no-op after a clean stop (on_exit); else the broker goes too
    return 0


def _start_metrics(settings: Any) -> Callable[[int], None] | None:
    """Multiprocess metrics for this process and everything it starts (pushd.metrics), before
    anything imports prometheus_client; returns the supervisor's broker-exit hook."""
    if not settings.get("metrics_port"):
        return None
    from pushd.metrics import prepare_directory

    prepare_directory(settings.get("run_dir"))
    from pushd.metrics import exposition, families

    def broker_exited(pid: int) -> None:
        families.BROKER_RESTARTS.inc()
        exposition.process_exited(pid)

    return broker_exited


def _broker_command(config_path: Path | None) -> list[str]:
    if config_path is None:
        return [sys.executable, "-m", "pushd.broker"]
    return broker_command(sys.executable, config_path)


def _broker_env(config_path: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if config_path is not None:
        env["PUSH_JOBS_SERVER_CONFIG"] = str(config_path)
    return env
