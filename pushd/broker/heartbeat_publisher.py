"""The server heartbeat: its PUB socket and the signed message on it.

    heart = HeartbeatPublisher(config, context, rsa_private, incarnation_id, next_sequence)
        binds {listen}:{server_heartbeat_port} (in a ZeroMQ context of its own), or with
        `heartbeat_process` starts the relay process (heartbeat_relay.py) and connects to it
    heart.beat()             one RSA-signed heartbeat, NOBLOCK (a warning if it cannot go out)
    heart.has_own_context    True unless published through the relay (the broker's context)
    heart.sequence           the sequence number the next beat carries
    heart.check()            restart the relay process if it died (once a second)
    heart.close(linger_ms=0) close the socket (what is still queued may go out for linger_ms),
                             the relay and the socket's own context. Idempotent.

One thread at a time: the start-up beacon's (beacon.py) until the broker's loop runs, then the
loop's. Kept free of the broker's heavier imports (the store, the job engine) so the heartbeat
can go out before they are loaded (startup.py).
"""

from __future__ import annotations

import logging
import os
import platform

import zmq
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from pushd.broker.config import BrokerConfig
from pushd.broker.heartbeat_relay import INBOUND_NAME, HeartbeatRelay
from pushd.protocol.frames import encode
from pushd.protocol.messages import server_heartbeat

log = logging.getLogger(__name__)

# Listen backlog of the TCP sockets nodes connect to (ZMQ_BACKLOG; the kernel caps it at
# net.core.somaxconn, 4096 on current kernels). libzmq's default of 100 makes a herd of
# reconnecting nodes lose SYNs and wait for the kernel's 1 s, 3 s, 7 s... retransmits: 200
# bare Curve connects took 1.07 s at 100 and 0.10 s at 4096 (bench/bench_floor_fanout.py).
LISTEN_BACKLOG = 4096


class HeartbeatPublisher:
    def __init__(self, config: BrokerConfig, context: zmq.Context, rsa_private: RSAPrivateKey,
                 incarnation_id: str, next_sequence: int) -> None:
        self.incarnation_id = incarnation_id
        self.sequence = next_sequence
        self._rsa_private = rsa_private
        self._hostname = platform.node() or config.server_name  # the original sends its host
        self._own_context: zmq.Context[zmq.Socket[bytes]] | None = None
        self.relay: HeartbeatRelay | None = None
        listen = config.zeromq_listen_address.rstrip("/")
        address = f"{listen}:{config.server_heartbeat_port}"
        if config.heartbeat_process:
            # Published by a process of its own: the broker then holds one descriptor per node.
            self.relay = HeartbeatRelay(context, config.run_dir, address, backlog=LISTEN_BACKLOG)
            self._socket: zmq.Socket | None = self.relay.publisher
            try:
                self.relay.start()
            except BaseException:
                self.relay.close()
                raise
            os.chmod(config.run_dir / INBOUND_NAME, 0o600)
            return
        # In a context of its own, so its own I/O thread: after a restart the nodes' SUB sockets
        # reconnect while the command port's I/O thread is busy with thousands of Curve
        # handshakes; queued behind those, a node heard its first server heartbeat late enough
        # to judge the server offline.
        self._own_context = zmq.Context(io_threads=1)
        try:
            pub = self._own_context.socket(zmq.PUB)
            pub.linger = 0
            pub.setsockopt(zmq.BACKLOG, LISTEN_BACKLOG)
            pub.bind(address)
        except BaseException:
            self._own_context.destroy(linger=0)
            raise
        self._socket = pub

    @property
    def has_own_context(self) -> bool:
        """True when the heartbeat socket is in a context of its own (not the relay's, which
        publishes through the broker's context)."""
        return self._own_context is not None

    def beat(self) -> None:
        if self._socket is None:
            return
        body = server_heartbeat(sequence=self.sequence, server=self._hostname,
                                incarnation_id=self.incarnation_id)
        self.sequence += 1
        frames = encode(body, rsa_private_key=self._rsa_private)
        try:
            self._socket.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as err:
            log.warning("could not publish the server heartbeat: %s", err)

    def check(self) -> None:
        if self.relay is not None:
            self.relay.check()

    def close(self, linger_ms: int = 0) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            # With a linger: at 0 libzmq drops what is still queued (the last heartbeat).
            socket.close(linger=linger_ms)
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        if self._own_context is not None:
            self._own_context.destroy(linger=0)  # waits for the closed socket's linger
            self._own_context = None
