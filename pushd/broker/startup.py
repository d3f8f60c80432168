"""How the broker process starts: the server heartbeat first, everything else after it.

    run_broker(settings) -> int      build a BrokerConfig from settings, begin the start, then
                                     import and build the Broker, handle SIGTERM/SIGINT, run;
                                     used by ``python -m pushd.broker``. On SQLite it holds the
                                     file's server lock for its life (pushd.sqlite_lock) and
                                     returns 1 at once, logging why, while another server
                                     (another run_dir) holds it

The start in two parts: first `EarlyStart.begin` (early_start.py), with light imports only,
gets the server heartbeat out; only then is pushd.broker.service imported and the Broker built.

Why: a stock client judges the server offline after offline_threshold heartbeat intervals
without a server heartbeat (at 1 s heartbeats: 3 s), reopens its sockets and may fetch its
config again, which after a restart is the whole fleet at once. The silence a restart makes
runs from the old broker's last heartbeat to the new one's first, and in a 5,000-node restart
most of it was the new broker's start: importing the store, the job engine and the rest
(0.25 s on an idle machine, 0.7 s during the reconnection herd) and loading its state (0.3 s).
So this module and early_start.py import only what the heartbeat needs, and the heartbeat
beats before `run_broker` imports the rest (pushd.broker.service).
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from pushd import sqlite_lock
from pushd.broker.config import BrokerConfig
from pushd.broker.early_start import EarlyStart
from pushd.collector import quiet_collector
from pushd.db_params import database_params_from_settings
from pushd.heap import limit_fragmentation
from pushd.zmq_build import describe, stock_warning

log = logging.getLogger(__name__)


def run_broker(settings: Any) -> int:
    """Run the broker until SIGTERM/SIGINT (main thread only). Returns the exit status."""
    config = settings if isinstance(settings, BrokerConfig) else BrokerConfig.from_settings(
        settings
    )
    try:  # SQLite serves one server: refused while another server's broker holds the file
        server_lock = sqlite_lock.hold_database(
            config.database or database_params_from_settings(config.settings), config.run_dir
        )
    except sqlite_lock.ServerLockHeld as err:
        log.error("not starting: %s", err)
        return 1
    limit_fragmentation()  # before libzmq's buffers exist (pushd.heap says why)
    early = EarlyStart.begin(config)
    warning = stock_warning()  # after the first heartbeat: reading metadata takes milliseconds
    if warning:
        log.warning("%s", warning)
    else:
        log.info("%s", describe())
    try:
        # Imported only now, the heartbeat beating: see the module docstring.
        from pushd.broker.service import Broker

        broker = Broker(config, early)
    except BaseException:
        early.close()  # idempotent: a Broker that failed has closed it already
        raise
    quiet_collector()  # after start-up's objects exist (pushd.collector says why)

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        broker.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    broker.run()
    if server_lock is not None:
        server_lock.release()
    return broker.exit_status
