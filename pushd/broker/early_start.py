"""The first part of the broker's start: what the server heartbeat needs, and the heartbeat.

    EarlyStart.begin(config)         keys, Curve bindings, incarnation id, the heartbeat socket
                                     and the start-up beacon, beating (beacon.py)
    early.close(last_beat_linger_ms=None)
                                     beacon stopped, heartbeat socket and context closed;
                                     on a failed start and at the stop (which sends one last
                                     heartbeat, after the context's end). Idempotent.
    STARTUP_BEATS_PER_INTERVAL       the beacon's (and the loop's first intervals') cadence

Imports only what the heartbeat needs (pyzmq, the RSA key, the protocol's framing, the
incarnation and Curve-binding files): pushd.broker.startup runs this before it imports the
store and the loop (it says why). The incarnation id is decided here because the heartbeat
carries it: kept from a clean stop when the node config's fingerprint and the Curve bindings are
as they were (pushd.broker.incarnation), so the Curve bindings are read here too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import zmq

from pushd.broker import incarnation
from pushd.broker.beacon import StartupBeacon
from pushd.broker.config import BrokerConfig
from pushd.broker.heartbeat_publisher import HeartbeatPublisher
from pushd.broker.zap import CurveGrants
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

    def close(self, *, last_beat_linger_ms: int | None = None) -> None:
        """Stop the beacon, close the heartbeat socket, destroy the context (every socket the
        broker made in it too). Idempotent: a failed start and a stop both end here; a stop
        passes `last_beat_linger_ms` for one last heartbeat, as late as it can go."""
        self.beacon.stop()  # before its socket closes (a no-op once the loop has taken over)
        if last_beat_linger_ms is not None:
            if self.heart.has_own_context:
                # libzmq ends every node's connection in the context's term(): 0.2-1.0 s of a
                # 5,000-node restart that followed the last heartbeat until it went first here
                # (the silence nodes hear fell by ~0.7 s: bench/RESULTS.md, eighth session).
                # With the relay, the heartbeat goes through this context: it must wait.
                self.context.destroy(linger=0)
            self.heart.beat()
            # With a linger: at 0 libzmq drops what is still queued (this heartbeat).
            self.heart.close(linger_ms=last_beat_linger_ms)
        self.heart.close()  # a no-op after the last heartbeat's close
        # destroy, not term: a socket whose bind failed (port taken) was never handed to
        # anyone to close, and term() would wait for it forever.
        self.context.destroy(linger=0)


def _config_fingerprint(config: BrokerConfig, keys: ServerKeys) -> str | None:
    if config.settings is None:
        return None
    return NodeConfigSettings.from_settings(config.settings).fingerprint(
        keys.rsa_public_pem,
        None if config.disable_curve_encryption else keys.curve_public_z85,
    )
