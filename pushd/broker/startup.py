"""How the broker process starts: the server heartbeat first, everything else after it.

    run_broker(settings) -> int      build a BrokerConfig from settings, begin the start, then
                                     import and build the Broker, handle SIGTERM/SIGINT, run;
                                     used by ``python -m pushd.broker``. On SQLite it holds the
                                     file's server lock for its life (pushd.sqlite_lock) and
                                     returns 1 at once, logging why, while another server
                                     (another run_dir) holds it
    EarlyStart.begin(config)         keys, Curve bindings, incarnation id, the heartbeat socket
                                     and the start-up beacon, beating (beacon.py)
    early.abandon()                  on a failed start: beacon stopped, sockets closed

Why: a stock client judges the server offline after offline_threshold heartbeat intervals
without a server heartbeat (at 1 s heartbeats: 3 s), reopens its sockets and may fetch its
config again, which after a restart is the whole fleet at once. The silence a restart makes
runs from the old broker's last heartbeat to the new one's first, and in a 5,000-node restart
most of it was the new broker's start: importing the store, the job engine and the rest
(0.25 s on an idle machine, 0.7 s during the reconnection herd) and loading its state (0.3 s).
So this module imports only what the heartbeat needs (pyzmq, the RSA key, the protocol's
framing, the incarnation and Curve-binding files) and starts beating before `run_broker`
imports the rest (pushd.broker.service).

The incarnation id is decided here because the heartbeat carries it: kept from a clean stop
when the node config's fingerprint and the Curve bindings are as they were
(pushd.broker.incarnation), so the Curve bindings are read here too.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from pushd import sqlite_lock
from pushd.broker import incarnation
from pushd.broker.beacon import StartupBeacon
from pushd.broker.config import BrokerConfig
from pushd.broker.heartbeat_publisher import HeartbeatPublisher
from pushd.broker.zap import CurveGrants
from pushd.collector import quiet_collector
from pushd.db_params import database_params_from_settings
from pushd.heap import limit_fragmentation
from pushd.keys import ServerKeys, load_or_create_server_keys
from pushd.node_config import NodeConfigSettings

log = logging.getLogger(__name__)

STARTUP_BEATS_PER_INTERVAL = 4  # server heartbeats per interval right after a start


@dataclass
class EarlyStart:
    keys: ServerKeys
    grants: CurveGrants
    bindings_restored: int
    fingerprint: str | None  # of the nodes' config documents; None without settings
    incarnation_file: Path
    context: zmq.Context  # the broker's main context (the relay's publisher lives in it)
    heart: HeartbeatPublisher
    beacon: StartupBeacon

    @classmethod
    def begin(cls, config: BrokerConfig) -> EarlyStart:
        config.run_dir.mkdir(parents=True, exist_ok=True)
        keys = load_or_create_server_keys(config.data_dir / "keys")
        grants = CurveGrants(
            config.zap_window, state_file=config.data_dir / "broker" / "curve_clients.json"
        )
        restored = grants.restore(config.zap_window + config.recovery_grace)
        fingerprint = _config_fingerprint(config, keys)
        incarnation_file = config.data_dir / "broker" / incarnation.FILE_NAME
        resumed = (incarnation.resume(incarnation_file, fingerprint, restored)
                   if fingerprint is not None else incarnation.fresh())
        if resumed.kept:
            log.info("incarnation %s kept from the last clean stop: nodes reconnect without "
                     "fetching their config", resumed.id)
        context = zmq.Context(io_threads=max(1, config.zmq_io_threads))
        try:
            heart = HeartbeatPublisher(config, context, keys.rsa_private, resumed.id,
                                       resumed.next_sequence)
        except BaseException:
            context.destroy(linger=0)
            raise
        beacon = StartupBeacon(heart.beat, config.heartbeat_interval / STARTUP_BEATS_PER_INTERVAL)
        beacon.start()
        return cls(keys, grants, restored, fingerprint, incarnation_file, context, heart, beacon)

    def abandon(self) -> None:
        self.beacon.stop()
        self.heart.close()
        self.context.destroy(linger=0)


def _config_fingerprint(config: BrokerConfig, keys: ServerKeys) -> str | None:
    if config.settings is None:
        return None
    return NodeConfigSettings.from_settings(config.settings).fingerprint(
        keys.rsa_public_pem,
        None if config.disable_curve_encryption else keys.curve_public_z85,
    )


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
    try:
        # Imported only now, the heartbeat beating: see the module docstring.
        from pushd.broker.service import Broker

        broker = Broker(config, early)
    except BaseException:
        early.abandon()  # idempotent: a Broker that failed has abandoned it already
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
