"""The broker process: one thread, one pyzmq poller loop owning every ZeroMQ socket.

    broker = Broker(config)          keys and heartbeat first (early_start.EarlyStart), then the
                                     database, state and the other sockets (BrokerConfig)
    broker.run()                     serve until stop(); returns after closing everything
    broker.stop()                    thread-safe; the loop exits within ~0.1 s
    broker.counters                  collections.Counter of dropped messages by reason, of
                                     messages handled ("accepted", "sent") and of refused
                                     Curve handshakes ("zap_refused")
    broker.incarnation_id            this broker run's id: new at a start, so stock clients
                                     re-fetch their config, unless a clean stop saved one and
                                     nothing in their config changed (pushd.broker.incarnation)
    Broker(config, early)            the same, its start begun by startup.run_broker: the
                                     heartbeat is beating before this module is imported

Sockets (addresses from the config):

    PUB    {listen}:{server_heartbeat_port}   RSA-signed server heartbeat every interval, four
                                              per interval in the first offline_threshold
                                              intervals and while the broker still loads
                                              (beacon.py), one more at shutdown; in a context of
                                              its own (with heartbeat_process: published by a
                                              relay process, heartbeat_relay.py, from a PUB
                                              over ipc)
    ROUTER {listen}:{command_port}            CurveZMQ server; ZAP (zap.py) binds each
                                              connection to the (org, node) it was admitted for
    ROUTER {listen}:{unencrypted_command_port} only when allow_unencrypted (1.x clients)
    REP    inproc://zeromq.zap.01             the ZAP handler, bound before the Curve socket
    ROUTER ipc://{run_dir}/control.sock       control requests from API workers (control.py)
    PUB    ipc://{run_dir}/events.sock        feed wake-ups, after the events are in the database

Each command ROUTER queues at most COMMAND_RCVHWM messages per connection: an overloaded broker
pushes back through TCP instead of growing its memory. A turn handles command messages for at
most TURN_BUDGET seconds before due timers (the server heartbeat) and the control socket run.
A big job's fan-out is one such timer per turn (a slice of at most jobs.FANOUT_SLICE nodes and
FANOUT_BUDGET seconds), so control requests are answered between slices.

Liveness is judged fairly (see _check_liveness and _account_turn): before judging, the broker
reads what waits in the command sockets (bounded by LIVENESS_DRAIN_BUDGET; if it cannot catch up
it postpones the judgement and logs one line); a loop turn longer than half a heartbeat interval
moves every node's deadline by its length, and one long enough for stock clients to judge the
server offline holds every judgement until they can have come back. Per-node connect,
availability and offline lines are DEBUG; an INFO summary with counts is logged every
COUNTS_LOG_PERIOD seconds.

Inbound command frames go through, in order: frame count (3 with the identity), size, header,
JSON, sender key (session key by body org+node), HMAC, timestamp skew, message schema
(heartbeats and plain job replies through their fast paths, heartbeat_sequence and
reply_sequence, which check the fields the broker reads by parse_node_message's rules), the
connection's binding (Curve User-Id must name the same org and node), then a replay check (the
`sequence` must increase per connection; the stock client restarts at 1 on a new socket, which
is a new ZMQ identity). Anything failing is dropped and counted under its reason; nothing a
peer sends can raise out of the loop.

Outbound (`send`, the Outbox of the tracker and the engine): every message gets the node's next
outbound sequence and the current RFC 1123 timestamp first, then the message's fields, and is
signed with the node's session key. A job hands one commit (then one run) dict for all its
nodes; its JSON is encoded once and only the sequence and timestamp are encoded per node, so a
dict passed to `send` must not be changed afterwards.

Durability: the node tracker and job engine (nodes.py, jobs.py) run in memory; once per loop
turn their transitions go to the journal's writer thread, which commits them before publishing
the events (control requests wait for it before answering). At start the broker
marks `voting` jobs crashed, re-attaches `running` jobs (nodes get `recovery_grace` to show up
still running them, and a node that did is not judged offline before the grace is over) and
starts `new` jobs (starts.py: during the grace of a restart, once those of their nodes that were
online when the broker stopped are available again; nodes never waited for start at once).
A `start_job` request is answered at once; the job's nodes are read and its commits sent over
the following turns, a bounded slice per turn (starts.py, jobs.py).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any, cast

import zmq

from pushd import store
from pushd.broker import incarnation
from pushd.broker.config import BrokerConfig
from pushd.broker.contracts import Address, FeedEvent, JobSpec, NodeRef, Transition
from pushd.broker.control import ControlHandler
from pushd.broker.control_client import (
    control_address,
    control_path,
    events_address,
    events_path,
)
from pushd.broker.early_start import STARTUP_BEATS_PER_INTERVAL, EarlyStart
from pushd.broker.heartbeat_publisher import LISTEN_BACKLOG
from pushd.broker.jobs import FANOUT_BUDGET, JobEngine
from pushd.broker.journal import StoreJournal
from pushd.broker.memory import Chores, MallocTrim
from pushd.broker.metrics import BrokerMetrics
from pushd.broker.nodes import NodeTracker
from pushd.broker.retention import JobRetention
from pushd.broker.starts import JobStarts
from pushd.broker.timers import TimerQueue
from pushd.broker.zap import ZAP_ENDPOINT, answer_zap, user_id_ref
from pushd.cluster.doorbell import Doorbell
from pushd.cluster.mailer import Mailer
from pushd.cluster.relay import REMOTE, ClusterRelay
from pushd.errors import ProtocolError
from pushd.identity import generation
from pushd.protocol.frames import (
    build_header,
    encode_body,
    open_frames,
    verify_signature,
)
from pushd.protocol.messages import (
    heartbeat_sequence,
    parse_node_message,
    reply_sequence,
)
from pushd.protocol.signing import HMAC_SHA256, hmac_sign
from pushd.protocol.timestamps import check_skew, format_timestamp
from pushd.rollout import resolve_concurrency, resolve_errors
from pushd.states import JobStatus, NodeStatus

log = logging.getLogger(__name__)

CURVE = "curve"
LEGACY = "legacy"
MAX_MESSAGES_PER_TURN = 2000
# Seconds of command messages one turn may handle before due timers (the server heartbeat)
# and the control socket get their turn; at most a quarter of the heartbeat interval. When
# every turn ended with a synchronous journal flush (a database transaction), 50 ms made a
# 1,000-node job complete in ~1.2-2.0 s instead of ~0.8 s (bench_dispatch, A/B); the flush is
# now a hand-off to the writer thread and a shorter budget has not been measured since. A
# server heartbeat up to 0.25 s late is well inside what stock clients tolerate (3 intervals).
TURN_BUDGET = 0.25
_SEND_MORE = zmq.NOBLOCK | zmq.SNDMORE
# Before judging liveness the broker reads what waits in the command sockets, for at most this
# long (and at most a quarter of the heartbeat interval); if it cannot catch up, it postpones
# the judgement instead of convicting nodes whose heartbeats sit unread.
LIVENESS_DRAIN_BUDGET = 0.5
# Per-connection receive queue of the command ROUTERs (ZMQ_RCVHWM, messages). A node sends one
# heartbeat per interval plus a handful of job messages per job (ack_commit, ack_run, result,
# aborted), so 32 queued messages are half a minute of one node's traffic at 1 s heartbeats:
# far more than any turn takes. Beyond that the broker is overloaded: libzmq stops reading
# that connection (TCP pushes back to the node; nothing queued is dropped) instead of growing
# the broker's memory without bound (bench/results-2026-11-24/
# RESULTS-shared-cores.md "8,000 nodes": 1 GB -> 3.2 GB).
COMMAND_RCVHWM = 32
COUNTS_LOG_PERIOD = 10.0  # seconds between the INFO summaries of node connects/availability
POLL_CAP = 0.1  # seconds: how quickly stop() is noticed
DROP_LOG_PERIOD = 5.0
CONTROL_MAX_BYTES = 1024 * 1024
CONTROL_SYNC_TIMEOUT = 2.0  # seconds a control request waits for the journal's writer
CLUSTER_INBOX = "inproc://pushd-cluster-inbox"  # doorbell thread -> loop
PRESENCE_PERIOD = 0.5  # seconds between writes of the held nodes that changed
EXIT_FENCED = 3  # the broker's exit status when it lost its cluster lease
LAST_BEAT_LINGER_MS = 200  # how long the last heartbeat at shutdown may take to go out
JOURNAL_CLOSE_TIMEOUT = 10.0  # seconds shutdown waits for the journal (database outage)


class Broker:
    def __init__(self, config: BrokerConfig, early: EarlyStart | None = None) -> None:
        """`early`: the start begun by run_broker, the heartbeat already beating; begun here
        when not given (pushd.broker.early_start)."""
        self.config = config
        self.counters: collections.Counter[str] = collections.Counter()
        self.drops: collections.Counter[str] = collections.Counter()  # by reason, for metrics
        self._org_names: dict[str, str] = {}  # org id -> name, for metric labels
        self._stopping = threading.Event()
        self._drop_log_at = 0.0
        # Loop stalls credited to liveness (_account_turn): time of turns longer than half a
        # heartbeat interval (a big job's turn, a slow database) does not count as silence.
        self._stall_credit = 0.0
        self._stall_threshold = config.heartbeat_interval / 2
        self._turn_budget = min(TURN_BUDGET, config.heartbeat_interval / 4)
        self._liveness_drain_budget = min(LIVENESS_DRAIN_BUDGET, config.heartbeat_interval / 4)
        self._liveness_postponed = 0
        self._postponed_log_at = 0.0
        self._judge_after = 0.0  # monotonic time before which nobody is judged (after a stall)
        self._admissions = 0

        self.exit_status = 0
        self.timers = TimerQueue()
        # What the server heartbeat needs (keys, the Curve bindings that decide whether the
        # incarnation id is kept, the heartbeat socket) came first, and the heartbeat is going
        # out from a thread until the loop runs: the rest of the start (database, session keys,
        # jobs) is not part of a restart's silence (pushd.broker.startup says why).
        self._early = early if early is not None else EarlyStart.begin(config)
        self.keys = self._early.keys
        self.grants = self._early.grants
        self._restarted = self._early.bindings_restored > 0
        self._heart = self._early.heart
        self._beacon = self._early.beacon
        self._context = self._early.context
        self._sockets: dict[str, zmq.Socket] = {}
        try:
            self._load(config)
        except BaseException:
            self._close_sockets()
            store.close_database()
            raise

    @property
    def incarnation_id(self) -> str:
        return self._heart.incarnation_id

    def _load(self, config: BrokerConfig) -> None:
        """The rest of the start, while the beacon beats: database, state, sockets, jobs."""
        if config.database is not None:
            kind, params = config.database
            store.open_database_params(kind, params, migrate=True)
        else:
            store.open_database(config.settings, migrate=True)
        # PostgreSQL: this broker is a member of the cluster of servers sharing the database.
        self.member = config.member_name
        clustered = store.dialect() == "postgres"
        self.mailer = Mailer(self.member) if clustered else None

        # Session keys: (org_name, node) -> (org_id, key) for inbound; (org_id, node) -> key out.
        self._keys_by_name: dict[tuple[str, str], tuple[str, bytes]] = {}
        self._keys_by_ref: dict[NodeRef, bytes] = {}
        for (org_name, node), (org_id, key) in store.load_session_keys().items():
            self.remember_session_key(org_name, org_id, node, key)
        self._out_sequence: dict[NodeRef, int] = {}
        # send(): the timestamp text of the current second, the last message's encoded tail.
        self._stamp_second = -1
        self._stamp = ""
        self._tail_cache: tuple[dict[str, Any], dict[str, Any], bytes] | None = None
        self._in_sequence: dict[Address, int] = {}
        # Nodes heard from since the last known-nodes flush; their times are the tracker's.
        self._seen_since_flush: set[NodeRef] = set()
        self._known_writer: threading.Thread | None = None

        self.journal = StoreJournal(
            store, self._publish, output_max_bytes=config.output_max_bytes,
            # In the writer thread when it is idle: purging old jobs, and giving freed heap
            # memory back to the kernel once a minute (pushd.broker.memory).
            housekeeping=Chores(_retention(config), MallocTrim()),
            cluster=store.cluster if clustered else None,
        )
        self.tracker = NodeTracker(
            self, self.timers, rehab_interval=config.rehab_timer,
            offline_after=config.offline_after, reattach_hold=config.recovery_grace,
            liveness_clock=self._liveness_now,
        )
        self.relay = (
            ClusterRelay(self.member, self.tracker, self, self.mailer, self.timers,
                         recovery_grace=config.recovery_grace)
            if self.mailer is not None else None
        )
        self.engine = JobEngine(
            self, self.timers, self.journal, self.relay or self.tracker,
            server_name=config.server_name,
            fanout_budget=min(FANOUT_BUDGET, self._turn_budget),  # a slice per turn, bounded
        )
        if self.relay is not None:
            self.relay.attach(self.engine)
            self.tracker.attach(self.relay)
        else:
            self.tracker.attach(self.engine)
        self.doorbell = (
            Doorbell(
                self.member, store.database_params_from_settings(config.settings)[1]
                if config.database is None else config.database[1],
                config.cluster_lease, self._deliver_from_doorbell,
                lambda: generation.bump(config.run_dir),
                info={"host": config.server_name, "api_port": config.api_port,
                      "heartbeat_port": config.server_heartbeat_port,
                      "command_port": config.command_port},
            )
            if self.relay is not None else None
        )
        self._inbox_push: dict[int, zmq.Socket] = {}  # per doorbell thread (one)
        self.engine.output_gate.max_bytes = config.output_max_bytes
        self.metrics = BrokerMetrics(
            org_names=self._org_names, drops=self.drops, counters=self.counters,
            node_counts=self.tracker.availability_counts,
            running_jobs=self.engine.live_jobs_by_org,
        )
        self.engine.on_finished = self.metrics.job_finished
        self.control = ControlHandler(self)
        self._open_sockets()
        self._grace_until = (
            self.timers.now() + config.recovery_grace if self._restarted else 0.0
        )
        # Nodes last seen this long before the newest last-seen time of their org were
        # online when the broker stopped: `new` jobs wait for them during the grace.
        self.starts = JobStarts(
            self.timers, store, self.tracker, self._start_new,
            grace_until=self._grace_until,
            window=config.offline_after + config.known_nodes_flush_interval
            + config.heartbeat_interval,
        )
        if self.doorbell is not None:
            # Registered before reading its jobs: from here on no member takes them over
            # (see store.cluster.take_over), so what it reads is its own.
            self.doorbell.join()
        self._recover_jobs()

    # -- sockets ------------------------------------------------------------------------------

    def _open_sockets(self) -> None:
        cfg = self.config
        ctx = self._context
        listen = cfg.zeromq_listen_address.rstrip("/")

        zap = ctx.socket(zmq.REP)
        zap.linger = 0
        zap.bind(ZAP_ENDPOINT)  # before the Curve socket: without a handler libzmq admits all
        self._sockets["zap"] = zap

        command = ctx.socket(zmq.ROUTER)
        command.linger = 0
        if not cfg.disable_curve_encryption:
            command.curve_server = True
            command.curve_secretkey = self.keys.curve_secret_z85.encode()
            command.zap_domain = b"pushd"
        command.setsockopt(zmq.MAXMSGSIZE, 4 * cfg.max_body_size + 4096)
        command.rcvhwm = COMMAND_RCVHWM
        command.setsockopt(zmq.BACKLOG, LISTEN_BACKLOG)
        command.bind(f"{listen}:{cfg.command_port}")
        self._sockets[CURVE] = command

        if cfg.allow_unencrypted or cfg.disable_curve_encryption:
            # The API sends clients without Curve here (config endpoint, legacy mode).
            legacy = ctx.socket(zmq.ROUTER)
            legacy.linger = 0
            legacy.setsockopt(zmq.MAXMSGSIZE, 4 * cfg.max_body_size + 4096)
            legacy.rcvhwm = COMMAND_RCVHWM
            legacy.setsockopt(zmq.BACKLOG, LISTEN_BACKLOG)
            legacy.bind(f"{listen}:{cfg.unencrypted_command_port}")
            self._sockets[LEGACY] = legacy

        control = ctx.socket(zmq.ROUTER)
        control.linger = 0
        control.setsockopt(zmq.MAXMSGSIZE, CONTROL_MAX_BYTES)
        control.bind(control_address(cfg.run_dir))
        self._sockets["control"] = control

        events = ctx.socket(zmq.PUB)
        events.linger = 0
        events.bind(events_address(cfg.run_dir))
        self._sockets["events"] = events

        if self.relay is not None:
            inbox = ctx.socket(zmq.PULL)
            inbox.linger = 0
            inbox.bind(CLUSTER_INBOX)
            self._sockets["cluster"] = inbox

        # Whoever can connect to control.sock can admit Curve keys and read session keys: only
        # this service's user may, whatever the umask the broker was started with.
        for path in (control_path(cfg.run_dir), events_path(cfg.run_dir)):
            os.chmod(path, 0o600)

    def _close_sockets(self) -> None:
        self._close_loop_sockets()
        self._early.close()  # the beacon, the heartbeat and the context

    def _close_loop_sockets(self) -> None:
        """Every socket the loop made: all but the heartbeat's, which EarlyStart owns."""
        for socket in self._sockets.values():
            socket.close(0)
        self._sockets.clear()

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        cfg = self.config
        poller = zmq.Poller()
        handlers = {
            self._sockets["zap"]: self._on_zap,
            self._sockets[CURVE]: lambda: self._on_command(CURVE),
            self._sockets["control"]: self._on_control,
        }
        if LEGACY in self._sockets:
            handlers[self._sockets[LEGACY]] = lambda: self._on_command(LEGACY)
        if "cluster" in self._sockets:
            handlers[self._sockets["cluster"]] = self._on_cluster
        clock = time.monotonic
        for socket in handlers:
            poller.register(socket, zmq.POLLIN)
        self._beacon.stop()  # the loop beats from here on, on the socket the beacon used
        self._schedule_heartbeats()
        self._every(cfg.liveness_period, self._check_liveness)
        self._every(1.0, self._housekeeping)
        self._every(cfg.known_nodes_flush_interval, self._flush_known_nodes)
        self._every(cfg.session_key_reload_interval, self._reload_session_keys)
        self._every(COUNTS_LOG_PERIOD, self._log_node_counts)
        log.info(
            "broker %s serving: heartbeat %d, command %d%s (%d server heartbeats while starting)",
            self.incarnation_id, cfg.server_heartbeat_port, cfg.command_port,
            f", unencrypted {cfg.unencrypted_command_port}" if cfg.allow_unencrypted else "",
            self._beacon.beats,
        )
        self._every(1.0, self.metrics.refresh)
        self.metrics.serve(cfg.metrics_listen, cfg.metrics_port)
        self.journal.start()  # its writer thread owns the events socket from now on
        if self.relay is not None and self.mailer is not None and self.doorbell is not None:
            self._every(PRESENCE_PERIOD, self.relay.publish_presence, first=0.0)
            self.mailer.start()
            self.doorbell.start()
            log.info("cluster member %s (lease %.0f s)", self.member, cfg.cluster_lease)
        relay = self.relay
        try:
            while not self._stopping.is_set():
                timeout = self.timers.next_delay(POLL_CAP)
                ready = poller.poll(int(timeout * 1000))  # what pyzmq does with a float
                started = clock()
                for socket, _ in ready:
                    handlers[socket]()
                self.timers.run_due()
                self.journal.flush()  # hand-off to the journal's writer thread, no waiting
                if relay is not None:
                    relay.flush()  # and the turn's mail to the cluster's mailer thread
                self._account_turn(clock() - started)
        finally:
            self._shutdown()

    def stop(self) -> None:
        self._stopping.set()

    def _liveness_now(self) -> float:
        """The clock liveness is judged on: monotonic time minus the loop's credited stalls."""
        return self.timers.now() - self._stall_credit

    def _account_turn(self, busy: float) -> None:
        # A turn this long delayed reading heartbeats and sending the server heartbeat: extend
        # every liveness deadline by it. A stock client that missed more than offline_threshold
        # server heartbeats has judged the server offline and stops heartbeating until it has
        # heard more than online_threshold of them again: hold every judgement that long.
        if busy <= self._stall_threshold:
            return
        cfg = self.config
        self._stall_credit += busy
        self.counters["stalls"] += 1
        hold = 0.0
        if busy > (cfg.offline_threshold - 1) * cfg.heartbeat_interval:
            # Messages read after the stall count as sent when it began, so a client that
            # went quiet is "silent" from then; it speaks again only online_threshold + 1
            # server heartbeats (and one tick of its own) later: judge nobody before it could
            # have, with one interval to spare.
            hold = (cfg.online_threshold + 3) * cfg.heartbeat_interval
            self._judge_after = max(self._judge_after, self.timers.now() + hold)
        log.info("loop turn took %.2f s; liveness deadlines extended by it%s", busy,
                 f", no node judged offline for {hold:.1f} s" if hold else "")

    def _save_incarnation(self, bindings_saved: bool) -> None:
        if self._early.fingerprint is None or not bindings_saved or \
                self.exit_status == EXIT_FENCED:
            return
        # + 1: the last heartbeat _shutdown sends after this takes the current number, and a
        # client drops a heartbeat whose sequence it has seen (a replay).
        incarnation.save(
            self._early.incarnation_file,
            incarnation.Incarnation(self.incarnation_id, next_sequence=self._heart.sequence + 1),
            self._early.fingerprint, self.grants.bound_count,
        )

    def _shutdown(self) -> None:
        log.info("broker stopping")
        if self.doorbell is not None and self.mailer is not None:
            # A clean stop ends the lease at once: another member takes over the jobs this
            # one coordinated now, not a lease later (a fenced member has no lease to end).
            self.doorbell.stop(leave=self.exit_status != EXIT_FENCED)
            self.mailer.idle(2.0)
            self.mailer.stop()
        try:
            self.journal.close(JOURNAL_CLOSE_TIMEOUT)
            self._flush_known_nodes(wait=True)
            self._save_incarnation(self.grants.save(force=True))
        except Exception:
            log.exception("error while saving state at shutdown")
        self.tracker.shutdown()
        self.engine.shutdown()
        self._close_loop_sockets()
        try:
            self.metrics.close()
            store.close_database()
        except Exception:
            log.exception("error while closing at shutdown")
        # A node judges the server offline after offline_threshold intervals without a server
        # heartbeat, and a stock client then reopens its sockets (a second connection herd
        # after a restart, and a config re-fetch for those not answered within ~4 s). So the
        # last heartbeat is the stop's last act: the saving above (~1.5 s with 5,000 nodes)
        # and the closing are then out of the silence a restart makes.
        self._early.close(last_beat_linger_ms=LAST_BEAT_LINGER_MS)
        log.info("broker stopped")

    def _every(self, period: float, fn: Any, first: float | None = None) -> None:
        # On a fixed cadence, not `period` after the last run: a late turn does not push every
        # later server heartbeat back (stock clients count them). After a stall longer than a
        # period the next tick runs at once, then the cadence resumes from there.
        due = self.timers.now() + (period if first is None else first)

        def tick() -> None:
            nonlocal due
            self.metrics.loop_lag(self.timers.now() - due)
            try:
                fn()
            finally:
                now = self.timers.now()
                due = max(due + period, now)
                self.timers.call_later(due - now, tick)

        self.timers.call_later(due - self.timers.now(), tick)

    # -- inbound command messages -------------------------------------------------------------

    def _on_command(self, kind: str) -> None:
        # The poller saw the socket readable: the first receive cannot come back empty.
        self._drain(kind, MAX_MESSAGES_PER_TURN, self._turn_budget, ready=True)

    def _drain(self, kind: str, limit: int, budget: float, *, ready: bool = False) -> bool:
        """Handle up to `limit` queued messages for at most `budget` seconds; True when the
        socket was emptied."""
        socket = self._sockets[kind]
        recv = socket.recv
        handle = self._handle_one
        deadline = time.monotonic() + budget
        if ready:
            try:
                identity = recv(zmq.NOBLOCK)
            except zmq.Again:
                return True
            handle(kind, identity, recv)
            # Usually that was the only message: asking is cheaper than a raised zmq.Again.
            if not cast(int, socket.get(zmq.EVENTS)) & zmq.POLLIN:  # pyzmq: int | bytes
                return True
            limit -= 1
        for count in range(1, limit + 1):
            try:
                identity = recv(zmq.NOBLOCK)
            except zmq.Again:
                return True
            handle(kind, identity, recv)
            if not count & 15 and time.monotonic() >= deadline:
                return False
        return False

    def _handle_one(self, kind: str, identity: bytes, recv: Any) -> None:
        """Receive the rest of the message whose identity frame was just read, and handle it.

        Frame by frame rather than recv_multipart: ~3 us less per message (recv_multipart asks
        RCVMORE through getsockopt after every frame). A ROUTER always delivers the identity
        with at least one frame after it, and the parts of a message arrive together."""
        header = recv(zmq.NOBLOCK, copy=False)
        body = recv(zmq.NOBLOCK, copy=False) if header.more else None
        extra = 0
        if body is not None:
            more = body.more
            while more:
                more = recv(zmq.NOBLOCK, copy=False).more
                extra += 1
        try:
            if body is None or extra:
                count = 2 if body is None else 3 + extra
                raise ProtocolError("bad_frames", f"{count} frames")
            self._handle_command(kind, identity, header.bytes, body)
        except ProtocolError as err:
            self._drop(err.reason, err.detail)
        except Exception:
            # Never let one message stop the loop; a bug here is logged and counted.
            log.exception("error handling a command message")
            self.counters["internal_error"] += 1

    def _handle_command(
        self, kind: str, identity: bytes, header: bytes, frame: zmq.Frame
    ) -> None:
        envelope = open_frames([header, frame.bytes], max_body_size=self.config.max_body_size)
        body = envelope.body
        org_name, node = body.get("org"), body.get("node")
        if not isinstance(org_name, str) or not isinstance(node, str):
            raise ProtocolError("unknown_sender", "no org/node")
        found = self._keys_by_name.get((org_name, node))
        if found is None:
            raise ProtocolError("unknown_sender", f"{org_name}/{node}")
        org_id, key = found
        verify_signature(envelope, key)
        timestamp = body.get("timestamp")
        if timestamp is None:
            raise ProtocolError("bad_message", "no timestamp")
        check_skew(timestamp, max_skew=self.config.max_message_skew)
        # Heartbeats are nearly all the traffic: check just the fields the broker reads. Plain
        # job replies (a big job's acks and results) pass the same checks parse_node_message
        # makes without building its NodeMessage; anything else gets the full validation.
        heartbeat = body.get("type") == "heartbeat"
        if heartbeat:
            sequence = heartbeat_sequence(body)
        else:
            fast = reply_sequence(body)
            sequence = parse_node_message(body).sequence if fast is None else fast
        if kind == CURVE and not self.config.disable_curve_encryption:
            user_id = cast(str, frame.get("User-Id"))  # a metadata property is text
            if user_id_ref(user_id or "") != (org_id, node):
                raise ProtocolError("wrong_node", f"{user_id} spoke for {org_id}:{node}")
        address = (kind, identity)
        last = self._in_sequence.get(address)
        if last is not None and sequence <= last:
            raise ProtocolError("replay", f"sequence {sequence} after {last}")
        self._in_sequence[address] = sequence
        ref = (org_id, node)
        previous = self.tracker.address(ref)
        if previous is not None and previous != address:
            self._in_sequence.pop(previous, None)
        self.counters["accepted"] += 1
        if heartbeat:
            self.counters["heartbeats"] += 1
        self._seen_since_flush.add(ref)
        self.tracker.on_message(ref, address, body)

    def _drop(self, reason: str, detail: str) -> None:
        self.counters[reason] += 1
        self.drops[reason] += 1
        self.counters["dropped"] += 1
        now = time.monotonic()
        if now >= self._drop_log_at:
            self._drop_log_at = now + DROP_LOG_PERIOD
            log.warning("dropped a command message (%s: %s); drops so far: %s", reason,
                        detail[:200], self.drop_counts())
        else:
            log.debug("dropped a command message (%s: %s)", reason, detail[:200])

    def drop_counts(self) -> dict[str, int]:
        return {k: v for k, v in self.counters.items()
                if k not in ("accepted", "sent", "heartbeats")}

    # -- outbound (Outbox for the tracker and the engine) ----------------------------------------

    def send(self, ref: NodeRef, address: Address, message: dict[str, Any]) -> None:
        """Stamp `message` with the node's next sequence and the time, sign it and send it.

        The caller must not change `message` after passing it: the job engine hands the same
        commit/run dict for every node of a job and its JSON is encoded once (see _stamped).
        """
        if address is not None and address[0] == REMOTE and self.relay is not None:
            self.relay.forward(ref, address, message)  # a node another member holds
            return
        key = self._keys_by_ref.get(ref)
        if key is None or address is None:
            return
        kind, identity = address
        socket = self._sockets.get(kind)
        if socket is None:
            return
        sequence = self._out_sequence.get(ref, 0) + 1
        self._out_sequence[ref] = sequence
        raw = self._stamped(sequence, message)
        header = build_header(HMAC_SHA256, hmac_sign(key, raw))
        try:
            # Frame by frame: what send_multipart does, without its per-call checks.
            socket.send(identity, _SEND_MORE)
            socket.send(header, _SEND_MORE)
            socket.send(raw, zmq.NOBLOCK)
            self.counters["sent"] += 1
        except zmq.ZMQError as err:
            log.info("could not send %s to %s/%s: %s", message.get("type"), *ref, err)

    def _stamped(self, sequence: int, message: dict[str, Any]) -> bytes:
        """The JSON of ``{"sequence", "timestamp", **message}``, as encode_body makes it.

        A job's fan-out sends one message dict to thousands of nodes: only the sequence and
        the timestamp differ, so the rest is encoded once and reused while the same (and
        unchanged) dict comes back; the RFC 1123 text is formatted once a second."""
        now = int(time.time())
        if now != self._stamp_second:
            self._stamp_second = now
            self._stamp = format_timestamp(now)
        if not message or "sequence" in message or "timestamp" in message:
            return encode_body({"sequence": sequence, "timestamp": self._stamp, **message})
        cached = self._tail_cache
        if cached is None or cached[0] is not message or cached[1] != message:
            # Holding `message` keeps its id from being reused by another dict.
            tail = b"," + encode_body(message)[1:]
            cached = self._tail_cache = (message, dict(message), tail)
        return f'{{"sequence":{sequence},"timestamp":"{self._stamp}"'.encode() + cached[2]

    def _schedule_heartbeats(self) -> None:
        # Right after a start the nodes' SUB sockets are still reconnecting (a PUB drops what it
        # sends before a subscriber is back: 10,000 connections take seconds), and a node that
        # hears no server heartbeat for offline_threshold intervals judges the server offline
        # (see _shutdown). So during the first offline_threshold intervals a heartbeat goes out
        # every quarter interval: each node hears one soon after its reconnection. Extra
        # heartbeats only bring a client online sooner.
        cfg = self.config
        quick = STARTUP_BEATS_PER_INTERVAL
        for k in range(1, quick * cfg.offline_threshold):
            if k % quick:  # the regular cadence sends the others
                self.timers.call_later(k * cfg.heartbeat_interval / quick,
                                       self._heart.beat)
        self._every(cfg.heartbeat_interval, self._heart.beat, first=0.0)

    def _publish(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        # Called by the journal only: from its writer thread once that runs, which then is the
        # one thread using the events socket (the loop uses it only before, for recovery).
        # A feed wake-up comes as bytes ({"id": N}), a cluster wake-up as a dict.
        try:
            # Frame by frame, flags computed once: send_multipart ORs zmq's enum flags in
            # Python per frame.
            socket = self._sockets["events"]
            socket.send(topic.encode(), _SEND_MORE)
            socket.send(payload if isinstance(payload, bytes) else json.dumps(payload).encode(),
                        zmq.NOBLOCK)
        except zmq.ZMQError as err:
            log.warning("could not publish an event on %s: %s", topic, err)

    # -- ZAP and control --------------------------------------------------------------------------

    def _on_zap(self) -> None:
        # Every pending handshake per wake-up: a reconnect storm queues thousands of them.
        socket = self._sockets["zap"]
        while True:
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            reply = answer_zap(frames, self.grants)
            if reply[2] != b"200":
                self.counters["zap_refused"] += 1
            socket.send_multipart(reply)

    def _deliver_from_doorbell(self, item: dict[str, Any]) -> None:
        """Called in the doorbell's thread: hand `item` to the loop (its own PUSH socket)."""
        thread = threading.get_ident()
        push = self._inbox_push.get(thread)
        if push is None:
            push = self._inbox_push[thread] = self._context.socket(zmq.PUSH)
            push.linger = 0
            push.connect(CLUSTER_INBOX)
        push.send(json.dumps(item).encode())

    def _on_cluster(self) -> None:
        socket = self._sockets["cluster"]
        relay = self.relay
        assert relay is not None
        for _ in range(1000):
            try:
                item = json.loads(socket.recv(zmq.NOBLOCK))
            except zmq.Again:
                return
            op = item.get("op")
            try:
                if op == "mail":
                    relay.on_mail(item["sender"], item["messages"])
                elif op == "events":
                    self.journal.wake_remote(item["topics"])
                elif op == "members":
                    relay.on_members(item["live"], item["gone"])
                elif op == "adopt":
                    self._adopt_jobs(item["member"], [job for _, job in item["jobs"]])
                elif op == "fenced":
                    log.error("cluster lease lost: %s; stopping (the supervisor restarts "
                              "this broker, which joins the cluster afresh)", item["why"])
                    self.exit_status = EXIT_FENCED
                    self.stop()
            except Exception:
                log.exception("cluster item %r failed", op)

    def _adopt_jobs(self, member: str, job_ids: list[str]) -> None:
        """Jobs of an expired member are this broker's now: recover them as after a restart
        of their coordinator, and tell every member who runs them."""
        assert self.relay is not None
        if not job_ids:
            return
        self._recover_jobs(store.incomplete_jobs(job_ids=job_ids), during_loop=True)
        self.relay.adopted(job_ids)
        log.info("took over %d job(s) of member %s", len(job_ids), member)

    def _on_control(self) -> None:
        socket = self._sockets["control"]
        for _ in range(100):
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 2:
                continue
            recorded = self.journal.recorded
            reply = self.control.handle(frames[-1])
            if self.journal.recorded != recorded:
                # Persist what the request changed before answering: an API worker that got
                # "ok" for an abort must read `aborted` from the store. Only then: an admit or
                # node_states must not wait for a big job's writes. Bounded: the API gives up
                # after 3 s.
                self.journal.sync(CONTROL_SYNC_TIMEOUT)
            try:
                socket.send_multipart([frames[0], reply], zmq.NOBLOCK)
            except zmq.ZMQError as err:
                log.info("could not answer a control request: %s", err)

    # -- used by the control handler ---------------------------------------------------------------

    def known_session_key(self, org_name: str, org_id: str, node: str) -> bytes | None:
        """The node's session key if the broker holds it (for the same org id), else None."""
        found = self._keys_by_name.get((org_name, node))
        if found is None or found[0] != org_id:
            return None
        return found[1]

    def count_admission(self) -> None:
        """An `admit` was answered (logged in the periodic node summary, not one line each)."""
        self._admissions += 1

    def remember_session_key(self, org_name: str, org_id: str, node: str, key: bytes) -> None:
        self._keys_by_name[(org_name, node)] = (org_id, key)
        self._org_names[org_id] = org_name
        self._keys_by_ref[(org_id, node)] = key

    def start_job_from_store(self, org_id: str, job_id: str) -> str:
        """Start a `new` job; returns "started", "live", "not_found" or "already_finished".

        Answers without waiting: the job's nodes are loaded and its commits fanned out over
        the next loop turns (starts.py, the engine's slices), so a 100,000-node job does not
        keep the control socket (node_states, admit) waiting."""
        if self.engine.is_live(job_id):
            return "live" if self.engine.org_of(job_id) == org_id else "not_found"
        starting = self.starts.org_of(job_id)
        if starting is not None:
            return "live" if starting == org_id else "not_found"
        summary = store.get_job_summary(org_id, job_id)
        if summary is None:
            return "not_found"
        if summary.status != JobStatus.NEW:
            return "already_finished" if summary.status not in (JobStatus.VOTING,
                                                                  JobStatus.RUNNING) else "live"
        self.starts.begin(summary)
        return "started"

    def _start_new(self, summary: Any, names: list[str]) -> None:
        """Start a stored `new` job; one the engine cannot even take ends `crashed` (the
        engine ends those it took itself), so an accepted job never stays `new`."""
        try:
            spec = self._spec_of(summary, names)
        except Exception as err:
            log.exception("job %s cannot be started; crashed", summary.id)
            reason = f"internal error while starting the job ({type(err).__name__}: {err})"
            reason = reason.encode("utf-8", "backslashreplace").decode("utf-8")[:1024]
            t = Transition(summary.id, summary.org_id, JobStatus.CRASHED)
            t.node_statuses = {name: (NodeStatus.CRASHED, reason) for name in names}
            t.events.append(FeedEvent("job_complete", {"status": "crashed", "reason": reason}))
            self.journal.record(t)
            return
        if self.relay is not None:
            self.relay.learn_presence(spec.org_id, names)
        self.engine.start(spec)

    def abort_job(self, org_id: str, job_id: str) -> str:
        """Abort a job; returns "aborted", "not_found" or "already_finished"."""
        if self.engine.is_live(job_id):
            if self.engine.org_of(job_id) != org_id:
                return "not_found"
            self.engine.abort(job_id)
            return "aborted"
        if self.starts.org_of(job_id) == org_id:
            self.starts.cancel(job_id)  # still loading or held after a restart
        view = store.get_job(org_id, job_id)
        if view is None:
            return "not_found"
        if view.status != JobStatus.NEW:
            return "already_finished"
        # Accepted but not started yet: it ends before any node hears of it.
        t = Transition(job_id, org_id, JobStatus.ABORTED)
        t.node_statuses = {n.name: (NodeStatus.ABORTED, None) for n in view.nodes}
        t.events.append(FeedEvent("job_complete", {"status": "aborted"}))
        self.journal.record(t)  # written before the answer (see _on_control)
        return "aborted"

    def known_node_names(self, org_id: str) -> dict[str, datetime | None]:
        names: dict[str, datetime | None] = dict(store.known_nodes(org_id))
        for _, node in self.tracker.known(org_id):
            names.setdefault(node, None)
        if self.relay is not None:
            for node in store.cluster.presence(org_id):
                names.setdefault(node, None)
        return names

    def held_elsewhere(self, org_id: str, names: list[str]) -> dict[str, tuple[str, bool]]:
        """Nodes among `names` that another live cluster member holds -> (member, available)."""
        if self.relay is None:
            return {}
        local = [name for name in names if not self.tracker.is_online((org_id, name))]
        if not local:
            return {}
        found = store.cluster.presence(org_id, local)
        return {name: where for name, where in found.items() if where[0] != self.member}

    # -- startup recovery ------------------------------------------------------------------------

    def _spec_of(
        self, view: Any, names: list[str], statuses: dict[str, NodeStatus] | None = None
    ) -> JobSpec:
        """The JobSpec of a store JobSummary/JobView; `statuses` None: every node `new`."""
        options = view.options
        voting_timeout = getattr(options, "voting_timeout", None) or self.config.voting_timeout
        return JobSpec(
            job_id=view.id,
            org_id=view.org_id,
            command=view.command,
            nodes=names,
            quorum=view.quorum if view.quorum is not None else len(names),
            run_timeout=view.run_timeout if view.run_timeout is not None
            else self.config.default_running_timeout,
            voting_timeout=float(voting_timeout),
            requestor=view.requested_by,
            job_user=options.job_user,
            dir=options.dir,
            env=options.env,
            file=options.job_file,
            capture=bool(options.capture),
            status=view.status,
            node_statuses=dict(statuses) if statuses is not None else {},
            max_concurrency=resolve_concurrency(
                getattr(options, "max_concurrency", None), len(names)
            ),
            max_errors=resolve_errors(getattr(options, "max_errors", None), len(names)),
        )

    def _recover_jobs(self, views: list[Any] | None = None, *, during_loop: bool = False) -> None:
        """Take up stored active jobs: this broker's at its start (all of them on SQLite, its
        own in a cluster), or `views`, jobs taken over from a gone member."""
        grace = self.config.recovery_grace
        now_utc = datetime.now(UTC).replace(tzinfo=None)
        if views is None:
            views = store.incomplete_jobs(self.member if self.relay is not None else None)
        for view in views:
            if view.status == JobStatus.NEW:
                # Started now, or once its returning nodes are back (starts.py).
                self.starts.begin(view, [n.name for n in view.nodes])
            elif view.status == JobStatus.VOTING:
                log.info("job %s was voting when the broker stopped: crashed", view.id)
                t = Transition(view.id, view.org_id, JobStatus.CRASHED)
                t.node_statuses = {
                    n.name: (NodeStatus.CRASHED, None)
                    for n in view.nodes
                    if n.status == NodeStatus.RUNNING
                }
                t.events.append(FeedEvent("job_complete", {"status": "crashed"}))
                self.journal.record(t)
            else:
                spec = self._spec_of(
                    view, [n.name for n in view.nodes], {n.name: n.status for n in view.nodes}
                )
                if self.relay is not None:
                    self.relay.learn_presence(spec.org_id, spec.nodes)
                elapsed = (now_utc - view.updated_at).total_seconds()
                self.engine.recover(spec, spec.run_timeout - elapsed, grace)
        if not during_loop:
            self.journal.sync()  # no writer thread yet: written here, before the loop starts

    # -- periodic ---------------------------------------------------------------------------------

    def _check_liveness(self) -> None:
        # Judge only on what the nodes sent: read what waits unread first. A broker that cannot
        # catch up within the budget postpones the judgement to the next check.
        drained = True
        for kind in (CURVE, LEGACY):
            if kind in self._sockets and not self._drain(
                kind, 1_000_000, self._liveness_drain_budget
            ):
                drained = False
        if not drained:
            self._liveness_postponed += 1
            self.counters["liveness_postponed"] += 1
            now = time.monotonic()
            if self._liveness_postponed == 1 or now >= self._postponed_log_at:
                self._postponed_log_at = now + DROP_LOG_PERIOD
                log.info("liveness check postponed: command messages still queued after %.2f s "
                         "of reading (%d check(s) in a row)", self._liveness_drain_budget,
                         self._liveness_postponed)
            return
        if self._liveness_postponed:
            log.info("liveness judged again after %d postponed check(s)",
                     self._liveness_postponed)
            self._liveness_postponed = 0
        if self.timers.now() < self._judge_after:
            return
        self.tracker.check_liveness()
        if len(self._in_sequence) > 2 * self.tracker.session_count + 1000:
            live = {self.tracker.address(ref) for ref in list(self._keys_by_ref)}
            self._in_sequence = {a: s for a, s in self._in_sequence.items() if a in live}

    def forget_session_key(self, org_id: str, node: str) -> bool:
        """Drop a node's session key (deleted from the store) and end its session now."""
        ref = (org_id, node)
        if self._keys_by_ref.pop(ref, None) is None:
            return False
        self._keys_by_name = {
            name: value for name, value in self._keys_by_name.items()
            if not (name[1] == node and value[0] == org_id)
        }
        log.info("session key of %s/%s was deleted; closing its session", *ref)
        self.tracker.end_session(ref)
        return True

    def _reload_session_keys(self) -> None:
        """Follow the store: a key deleted there (`client delete`) stops working here, and the
        node's session ends, so a deleted client cannot keep talking on an open connection."""
        try:
            stored = store.load_session_keys()
        except Exception:
            log.exception("could not reload session keys")
            return
        current = {(org_id, node): key for (_, node), (org_id, key) in stored.items()}
        for ref in [ref for ref in self._keys_by_ref if ref not in current]:
            log.info("session key of %s/%s was deleted; closing its session", *ref)
            self.tracker.end_session(ref)
        self._keys_by_name = {name: value for name, value in stored.items()}
        self._keys_by_ref = current

    def _housekeeping(self) -> None:
        self._heart.check()
        self.grants.save()  # at most every CurveGrants.save_period (zap.py)
        self.grants.sweep()

    def _log_node_counts(self) -> None:
        counts = self.tracker.take_counts()
        if self._admissions:
            counts["admitted"], self._admissions = self._admissions, 0
        if counts:
            log.info("nodes in the last %.0f s: %s; online now: %d", COUNTS_LOG_PERIOD,
                     ", ".join(f"{n} {k}" for k, n in sorted(counts.items())),
                     self.tracker.session_count)

    def _flush_known_nodes(self, *, wait: bool = False) -> None:
        """Record the last-seen times of the nodes heard from since the last flush.

        The write runs on a thread of its own (or inline with `wait`, at shutdown): on SQLite
        it waits for the database's write lock, up to busy_timeout (15 s) while an API worker
        writes a 100,000-node job, and the loop must answer control requests meanwhile. A
        flush still writing when the next is due is left alone; the next tick takes it all."""
        writer = self._known_writer
        if writer is not None and writer.is_alive():
            if not wait:
                return
            writer.join()
        if not self._seen_since_flush:
            return
        seen, self._seen_since_flush = self._seen_since_flush, set()
        by_org: dict[str, dict[str, datetime]] = {}
        for ref in seen:
            when = self.tracker.status(ref).last_seen
            if when is None:
                continue
            org_id, node = ref
            by_org.setdefault(org_id, {})[node] = datetime.fromtimestamp(when, UTC).replace(
                tzinfo=None
            )
        if wait:
            self._write_known_nodes(by_org, len(seen))
            return
        self._known_writer = threading.Thread(
            target=self._write_known_nodes, args=(by_org, len(seen)), name="known-nodes",
            daemon=True,
        )
        self._known_writer.start()

    @staticmethod
    def _write_known_nodes(by_org: dict[str, dict[str, datetime]], count: int) -> None:
        try:
            for org_id, nodes in by_org.items():
                store.touch_known_nodes(org_id, nodes)
        except Exception:
            log.exception("could not record last-seen times of %d nodes", count)


def _retention(config: BrokerConfig) -> JobRetention | None:
    if config.job_retention_days < 1:
        return None
    return JobRetention(store, config.job_retention_days, batch=config.retention_batch,
                        interval=config.retention_interval)
