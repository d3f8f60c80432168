"""The node agent: one event loop for the server connection, the job and the signals.

Public API:

    Agent(config: ClientConfig, client_key: RSAPrivateKey, *, rng=None, hostname=None,
          reload_config=None)
        raises proctree.ContainmentError when `job_containment` cannot be had on this host
        (it also makes this process a child subreaper when that is the mechanism)
        .run() -> int          blocks until SIGTERM/SIGINT/SIGQUIT (or .stop()); returns 0
        .stop()                ask the loop to end (safe from a signal handler: sets a flag)
        .reconfigure_soon()    what SIGUSR1 does
    PROBE_SECONDS, SEND_FAILURES_BEFORE_RECONNECT

One loop, one pyzmq poller over: the SUB socket (server heartbeats, RSA-signed), the DEALER
socket (commands; Curve unless the server offers none and allow_unencrypted is set; every frame
HMAC-signed), a signal wakeup pipe, the job's output pipes and the pipe of the config fetch.
Signal handlers do nothing; the wakeup pipe carries the signal numbers into the loop, which acts
on them. The config fetch (HTTP + RSA, up to 5 s per attempt) runs on a short-lived worker
thread that shares nothing with the loop but its result, so a slow server never delays the
job's output, kill timers or heartbeats.

Connection life:
  fetch config (signed REST, `ccpk`) -> open SUB + DEALER -> send a heartbeat at once -> the
  server must answer on the command socket within PROBE_SECONDS (its `abort` or `ack`),
  otherwise (wrong Curve key, blocked port, load balancer) -> reconfigure.
  Online/offline follows the stock thresholds: offline after more than `offline_threshold`
  heartbeat intervals without a server heartbeat (then reconfigure), online again after more
  than `online_threshold` server heartbeats. A new server incarnation id -> online at once, a
  result the server may have missed sent again and a heartbeat (job id and state) sent on the
  current link right away (the server re-attaches running jobs only for a few intervals after a
  restart), then a reconfigure after a random splay within one interval. `lifetime` ->
  reconfigure at 90-100 % of it. SIGUSR1 -> re-read the config file (whitelist, job
  environment, lock and kill settings apply to the next job; a file that does not load is
  logged and the previous settings kept) and reconfigure now; SIGHUP -> reopen the log file and
  do the same.
  SEND_FAILURES_BEFORE_RECONNECT failed sends in a row -> reconnect after a backoff delay; one
  failed send only brings the deadline forward to 60 s (never pushes it back).
  Failed config fetches are retried with exponential backoff and full jitter, capped at
  `max_reconnect_delay`, forever: a server that is down at start-up is reached when it comes
  up. A running job is kept across reconnects; its heartbeats carry its job id and state.

Replies the job runner produces while no command socket exists are kept (up to
MAX_PENDING_REPLIES) and sent once a connection is up. A job's final message (`succeeded`,
`failed`, `aborted`) that the socket refused (queue full) is kept and goes, in order, before
anything else sent later on that connection or the next one (a later heartbeat or reply must not
overtake it). One that was sent on a connection then replaced because it looked broken (offline,
failed sends or probe, server restart) with no server message arriving after it and within
RESEND_FINAL_WITHIN seconds is sent again on the new connection before its first heartbeat, or
on the same connection when the restarted server is heard: it may have died in the old queue.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from pushd_client.backoff import Backoff, Deadline
from pushd_client.config import ClientConfig
from pushd_client.configfetch import FetchedConfig, FetchError, fetch_config
from pushd_client.environment import login_base
from pushd_client.jobfile import remove_stale_job_files
from pushd_client.proctree import Containment
from pushd_client.runner import JobRunner, RunnerSettings
from pushd_client.statefile import StateDir, recover_orphan

from pushd.chefauth import load_private_key_file
from pushd.errors import ConfigError, ProtocolError
from pushd.keys import curve_keypair
from pushd.protocol.frames import decode, encode, encode_body
from pushd.protocol.limits import MAX_SERVER_MESSAGE_BYTES
from pushd.protocol.messages import (
    NodeIdentity,
    ServerMessage,
    node_heartbeat,
    node_output,
    node_reply,
    node_result,
    parse_server_message,
)

log = logging.getLogger("pushd_client.agent")

PROBE_SECONDS = 4.0
SEND_FAILURES_BEFORE_RECONNECT = 3
SEND_FAILURE_RECONFIGURE_DELAY = 60.0
MAX_INBOUND_MESSAGE = MAX_SERVER_MESSAGE_BYTES  # the API refuses a job whose commit is larger
MAX_PENDING_REPLIES = 16
STATUS_WRITE_INTERVAL = 1.0
RESEND_FINAL_WITHIN = 120.0
FINAL_TYPES = frozenset({"succeeded", "failed", "aborted"})
MAX_POLL_SECONDS = 1.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


class _Link:
    """The sockets of one connection attempt, and what we learnt about the server on them."""

    def __init__(
        self, context: zmq.Context[Any], fetched: FetchedConfig, curve: tuple[str, str] | None
    ) -> None:
        cfg = fetched.node_config
        self.config = cfg
        self.session_key = fetched.session_key
        self.encrypted = curve is not None
        self.sub = context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.MAXMSGSIZE, MAX_INBOUND_MESSAGE)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(cfg.out_addr)
        self.dealer = context.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.setsockopt(zmq.RCVHWM, 0)
        # A few heartbeats at most: a burst of stale ones hurts a server that just restarted.
        self.dealer.setsockopt(zmq.SNDHWM, 3)
        self.dealer.setsockopt(zmq.MAXMSGSIZE, MAX_INBOUND_MESSAGE)
        if curve is not None:
            public, secret = curve
            assert cfg.curve_public_key is not None
            self.dealer.curve_serverkey = cfg.curve_public_key.encode("ascii")
            self.dealer.curve_publickey = public.encode("ascii")
            self.dealer.curve_secretkey = secret.encode("ascii")
        self.dealer.connect(cfg.command_addr)
        self.sequence = 0
        self.command_seen = False
        self.last_command_at = 0.0
        # The last result/aborted sent on this link and when: re-sent on the next link when
        # the server may never have seen it (see Agent._reconfigure).
        self.last_final: tuple[str, str | None, dict[str, Any]] | None = None
        self.last_final_at = 0.0
        # Results the socket refused (queue full): they go, in order, before anything else is
        # sent on this link, or on the next link if this one is replaced.
        self.refused_finals: list[tuple[str, str | None, dict[str, Any]]] = []
        self.heartbeat_sequences: dict[str, int] = {}

    def close(self) -> None:
        self.sub.close(linger=0)
        self.dealer.close(linger=0)


class _FetchTask:
    """One config fetch on a worker thread, so a slow server never stalls the loop.

    The thread only does the HTTP request and the RSA decryption; it hands its one result over
    by setting `result` and then writing a byte to `notify_fd`, which the loop polls.
    """

    def __init__(
        self, config: ClientConfig, client_key: RSAPrivateKey, curve_public: str, notify_fd: int
    ) -> None:
        self.result: FetchedConfig | FetchError | None = None
        self._notify_fd = notify_fd
        self._thread = threading.Thread(
            target=self._run, args=(config, client_key, curve_public), daemon=True,
            name="config-fetch",
        )
        self._thread.start()

    def _run(self, config: ClientConfig, client_key: RSAPrivateKey, curve_public: str) -> None:
        try:
            self.result = fetch_config(config, client_key, curve_public)
        except FetchError as err:
            self.result = err
        except Exception as err:  # a bug must still end the fetch, or we would wait forever
            self.result = FetchError(f"config fetch failed: {err!r}")
        with contextlib.suppress(OSError):
            os.write(self._notify_fd, b"!")


def runner_settings(config: ClientConfig) -> RunnerSettings:
    """The part of the client config the job runner reads (reloaded on SIGUSR1/SIGHUP)."""
    return RunnerSettings(
        node_name=config.node_name,
        whitelist=config.whitelist_object,
        file_dir=config.file_dir,
        allowed_overwritable_env_vars=config.allowed_overwritable_env_vars,
        max_body_size=config.max_body_size,
        lockfile=config.effective_lockfile,
        kill_grace=config.kill_grace,
        default_run_timeout=config.default_run_timeout,
        login_environment=config.job_environment == "login",
    )


def job_base_env(config: ClientConfig) -> dict[str, str]:
    """What a job's environment starts from (see pushd_client.environment)."""
    if config.job_environment == "login":
        return login_base(os.environ, config.job_env)
    return {**os.environ, **config.job_env}


class Agent:
    """See the module docstring."""

    def __init__(
        self,
        config: ClientConfig,
        client_key: RSAPrivateKey,
        *,
        rng: random.Random | None = None,
        hostname: str | None = None,
        reload_config: Callable[[], ClientConfig] | None = None,
    ) -> None:
        # First (nothing to undo): ContainmentError when job_containment asks for what this
        # host cannot give.
        self.containment = Containment.select(config.job_containment, config.job_cgroup)
        self.config = config
        # Reads the config file again (with the command line's overrides) on SIGUSR1/SIGHUP.
        self._reload_config = reload_config
        self.client_key = client_key
        self.rng = rng or random.Random()
        self.identity = NodeIdentity(
            node=config.node_name,
            client=hostname or socket.gethostname(),
            org=config.organization,
            incarnation_id=str(uuid.uuid4()),
        )
        self.curve = curve_keypair()
        self.context: zmq.Context[Any] = zmq.Context()
        self.link: _Link | None = None
        self.state_dir = StateDir(config.state_dir)
        self.runner = JobRunner(
            runner_settings(config),
            self._send_reply,
            state_dir=self.state_dir,
            measure=self._measure,
            base_env=job_base_env(config),
            containment=self.containment,
        )
        self.runner.on_change = self._status_changed
        self.backoff = Backoff(base=1.0, cap=config.max_reconnect_delay, rng=self.rng)
        self.reconfigure_at = Deadline()
        self.pending: deque[tuple[str, str | None, dict[str, Any]]] = deque(
            maxlen=MAX_PENDING_REPLIES
        )
        self._stopping = False
        self._online = False
        self._offline_counter = 0
        self._online_counter = 0
        self._next_heartbeat = 0.0
        self._probe_deadline = 0.0
        self._send_failures = 0
        self.output_chunks_sent = 0
        self.output_chunks_dropped = 0
        self._last_server_heartbeat: float | None = None
        self._server_incarnation: str | None = None
        self._reconnects = 0
        self._last_error: str | None = None
        self._status_dirty = True
        self._status_written = 0.0
        self._status_failed = False
        # Set when the connection looked broken (offline, failed sends, failed probe, server
        # restart): only then may a result sent on the old link be lost and worth re-sending.
        self._connection_trouble = False
        self._wakeup_r, self._wakeup_w = os.pipe()
        self._fetch_r, self._fetch_w = os.pipe()
        for fd in (self._wakeup_r, self._wakeup_w, self._fetch_r, self._fetch_w):
            os.set_blocking(fd, False)
        self._fetch: _FetchTask | None = None

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        self._stopping = True

    def reconfigure_soon(self) -> None:
        self.reconfigure_at.bring_forward(time.monotonic())

    # --------------------------------------------------------------------- loop
    def run(self) -> int:
        previous = self._install_signals()
        try:
            orphan = recover_orphan(self.state_dir, self.config.kill_grace)
            if orphan is not None:
                log.warning(
                    "job=%s was running when the previous client stopped (pid %d); ended it",
                    orphan.job_id, orphan.pid,
                )
                self.runner.adopt_orphan(orphan)
            removed = remove_stale_job_files(self.config.file_dir)
            if removed:
                log.info("removed %d data file(s) left by earlier jobs in %s", removed,
                         self.config.file_dir)
            log.info(
                "starting: node %s, org %s, server %s, incarnation %s",
                self.config.node_name, self.config.organization, self.config.chef_server_url,
                self.identity.incarnation_id,
            )
            log.info("job processes are contained by %s", self.containment.describe())
            self.reconfigure_at.bring_forward(time.monotonic())
            while not self._stopping:
                self._iterate()
            self._shutdown()
        finally:
            self._restore_signals(previous)
        return 0

    def _iterate(self) -> None:
        now = time.monotonic()
        if self.reconfigure_at.due(now) and self._fetch is None:
            self.reconfigure_at.clear()
            self._start_fetch()
        poller = zmq.Poller()
        poller.register(self._wakeup_r, zmq.POLLIN)
        poller.register(self._fetch_r, zmq.POLLIN)
        if self.link is not None:
            poller.register(self.link.sub, zmq.POLLIN)
            poller.register(self.link.dealer, zmq.POLLIN)
        for fd in self.runner.watched_fds():
            poller.register(fd, zmq.POLLIN)
        timeout = self._poll_timeout(now)
        events = dict(poller.poll(int(timeout * 1000)))
        if self._wakeup_r in events:
            self._handle_signals()
        if self._fetch_r in events:
            self._finish_fetch()
        if self.link is not None:
            link = self.link
            if link.sub in events:
                self._drain(link, link.sub, self._on_server_heartbeat)
            if self.link is link and link.dealer in events:
                self._drain(link, link.dealer, self._on_command)
        for fd in self.runner.watched_fds():
            if fd in events:
                self.runner.on_readable(fd)
        self.runner.tick()
        self._timers(time.monotonic())
        self._write_status()

    def _poll_timeout(self, now: float) -> float:
        candidates = [MAX_POLL_SECONDS]
        if self.reconfigure_at.at is not None and self._fetch is None:
            candidates.append(self.reconfigure_at.at - now)
        if self.link is not None:
            candidates.append(self._next_heartbeat - now)
            if not self.link.command_seen:
                candidates.append(self._probe_deadline - now)
        runner_timeout = self.runner.poll_timeout()
        if runner_timeout is not None:
            candidates.append(runner_timeout)
        return max(0.0, min(candidates))

    # ----------------------------------------------------------------- signals
    def _install_signals(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}

        def note(signum: int, frame: object) -> None:
            # Nothing here: the wakeup fd already carries `signum` into the loop.
            pass

        for signum in (*STOP_SIGNALS, signal.SIGUSR1, signal.SIGHUP, signal.SIGCHLD):
            previous[signum] = signal.signal(signum, note)
        previous[-1] = signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        return previous

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        signal.set_wakeup_fd(previous.pop(-1))
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _handle_signals(self) -> None:
        try:
            data = os.read(self._wakeup_r, 256)
        except BlockingIOError:
            return
        for signum in data:
            if signum in STOP_SIGNALS:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                self._stopping = True
            elif signum == signal.SIGUSR1:
                log.info("received SIGUSR1, reloading the config file and reconfiguring")
                self._reload_local_config()
                self.reconfigure_at.bring_forward(time.monotonic())
            elif signum == signal.SIGHUP:
                # logrotate's convention: reopen the log file (FileHandler reopens on its next
                # write once closed), and fetch the config again as SIGUSR1 does.
                for handler in logging.getLogger().handlers:
                    if isinstance(handler, logging.FileHandler):
                        handler.close()
                log.info("received SIGHUP, log file reopened, reloading the config file")
                self._reload_local_config()
                self.reconfigure_at.bring_forward(time.monotonic())

    def _reload_local_config(self) -> None:
        """Apply the config file's job settings to the next job; keep the old ones on error."""
        if self._reload_config is None:
            return
        try:
            fresh = self._reload_config()
        except ConfigError as err:
            log.error("config not reloaded, keeping the previous settings: %s", err)
            self._last_error = f"config not reloaded: {err}"
            self._status_dirty = True
            return
        # Connection settings (server URL, node name, key) are read at each fetch from
        # self.config; the runner's settings take effect for the next job it is offered.
        if (fresh.job_containment, fresh.job_cgroup) != (self.config.job_containment,
                                                         self.config.job_cgroup):
            # The subreaper flag and the cgroup parent are chosen once, before any job runs.
            log.warning("job_containment and job_cgroup take effect at the next start")
        self.config = fresh
        self.runner.reconfigure(runner_settings(fresh), job_base_env(fresh))
        log.info("reloaded %s: %d whitelist entries", fresh.source, len(fresh.whitelist))

    # ------------------------------------------------------------- connecting
    def _start_fetch(self) -> None:
        self._reconnects += 1
        try:  # pick up a rotated client key, as the stock client's periodic reload does
            self.client_key = load_private_key_file(self.config.client_key)
        except (OSError, ValueError) as err:
            log.warning("cannot reload client key %s (%s); using the one loaded before",
                        self.config.client_key, err)
        log.debug("fetching the push jobs config")
        self._fetch = _FetchTask(self.config, self.client_key, self.curve[0], self._fetch_w)

    def _finish_fetch(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._fetch_r, 64)
        task, self._fetch = self._fetch, None
        if task is None or task.result is None:
            return
        self._reconfigure(task.result)

    def _reconfigure(self, fetched: FetchedConfig | FetchError) -> None:
        if isinstance(fetched, FetchError):
            err = fetched
            delay = self.backoff.next_delay()
            self._last_error = str(err)
            level = logging.ERROR if err.permanent else logging.WARNING
            log.log(level, "could not download push jobs config: %s; retrying in %.1fs",
                    err, delay)
            self.reconfigure_at.bring_forward(time.monotonic() + delay)
            self._status_dirty = True
            return
        cfg = fetched.node_config
        if cfg.curve_public_key is None and not self.config.allow_unencrypted:
            delay = self.backoff.next_delay()
            self._last_error = (
                "the server offers no Curve key (1.x protocol); set allow_unencrypted true "
                "to talk to it unencrypted"
            )
            log.error("%s; retrying in %.1fs", self._last_error, delay)
            self.reconfigure_at.bring_forward(time.monotonic() + delay)
            self._status_dirty = True
            return
        if self.link is not None:
            self._keep_unconfirmed_final(self.link)
            self.link.close()
        self._connection_trouble = False
        curve = self.curve if cfg.curve_public_key is not None else None
        self.link = _Link(self.context, fetched, curve)
        self.runner.body_limit = min(self.config.max_body_size, cfg.max_body_size or 65536)
        # Live output only to a server that said it takes `output` messages.
        self.runner.live_output = cfg.output
        now = time.monotonic()
        self._online = True  # the REST call just worked
        self._offline_counter = self._online_counter = 0
        self._send_failures = 0
        self._probe_deadline = now + PROBE_SECONDS
        self._server_incarnation = cfg.incarnation_id
        lifetime = cfg.lifetime * (1.0 - self.rng.uniform(0.0, 0.1))
        self.reconfigure_at.clear()  # what asked for this reconfigure has been served
        self.reconfigure_at.bring_forward(now + lifetime)
        log.info(
            "connected to %s / %s (%s), heartbeat every %gs, server incarnation %s",
            cfg.out_addr, cfg.command_addr, "curve" if curve else "UNENCRYPTED 1.x mode",
            cfg.interval, cfg.incarnation_id,
        )
        self._status_dirty = True
        # Replies first: a server re-attaching a running job takes the result before it
        # hears an idle heartbeat (which would tell it the result was lost).
        while self.pending and self.link is not None:
            self._send_reply(*self.pending.popleft())
        self._send_heartbeat()
        self._next_heartbeat = now + cfg.interval

    def _keep_unconfirmed_final(self, old: _Link) -> None:
        """Queue the old link's last result again if the server may not have received it.

        A result sent while the server was going away sits in the old socket's queue and is
        lost when the socket closes. Without an acknowledgement in the protocol, "nothing came
        back on the command channel since, and it is recent" is the best evidence we have. A
        duplicate result only makes the server abort-and-recover the node once.
        """
        for msg_type, job_id, fields in old.refused_finals:
            log.info("job=%s %s was refused by the old socket; sending it on the new one",
                     job_id, msg_type)
            self.pending.append((msg_type, job_id, fields))
        if self._final_unconfirmed(old):
            assert old.last_final is not None
            msg_type, job_id, _ = old.last_final
            log.info("job=%s %s may not have reached the server; sending it again", job_id,
                     msg_type)
            self.pending.append(old.last_final)

    def _final_unconfirmed(self, link: _Link) -> bool:
        """The link's last result was handed to the socket, but with connection trouble since
        and no server message after it (see _keep_unconfirmed_final)."""
        if link.last_final is None or link.last_final in link.refused_finals:
            return False
        recent = time.monotonic() - link.last_final_at < RESEND_FINAL_WITHIN
        return recent and self._connection_trouble and link.last_command_at < link.last_final_at

    # -------------------------------------------------------------- receiving
    def _drain(self, link: _Link, sock: zmq.Socket[Any], handler: Any) -> None:
        for _ in range(100):  # bounded per poll round so the job and timers keep running
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if self.link is not link:
                return
            try:
                handler(link, frames)
            except Exception:
                # A bug handling one message must not take the node (and its job) down.
                log.exception("error while handling a message; message dropped")

    def _on_server_heartbeat(self, link: _Link, frames: list[bytes]) -> None:
        cfg = link.config
        try:
            body = decode(frames, key=cfg.public_key, max_skew=cfg.max_message_skew)
            message = parse_server_message(body)
        except ProtocolError as err:
            log.warning("dropped a message on the heartbeat channel: %s", err)
            return
        if message.type != "heartbeat" or message.incarnation_id is None:
            log.warning("dropped a %s message on the heartbeat channel", message.type)
            return
        last = link.heartbeat_sequences.get(message.incarnation_id)
        if last is not None and message.sequence <= last:
            log.warning("dropped a replayed server heartbeat (sequence %d)", message.sequence)
            return
        link.heartbeat_sequences[message.incarnation_id] = message.sequence
        self._last_server_heartbeat = time.time()
        self._offline_counter = 0
        if not self._online:
            self._online_counter += 1
            if self._online_counter > cfg.online_threshold:
                self._online = True
                log.info("server heartbeats are back: considering the server online")
        if message.incarnation_id != self._server_incarnation:
            splay = self.rng.uniform(0.0, cfg.interval)
            log.info(
                "server restarted (incarnation %s -> %s); reconfiguring in %.1fs",
                self._server_incarnation, message.incarnation_id, splay,
            )
            self._server_incarnation = message.incarnation_id
            self._connection_trouble = True
            self.reconfigure_at.bring_forward(time.monotonic() + splay)
            self._report_to_restarted_server(link)
        self._status_dirty = True

    def _report_to_restarted_server(self, link: _Link) -> None:
        """A restarted server is up: tell it at once, on the current link, what we are doing.

        The server re-attaches a running job only if the node heartbeats it within a few
        heartbeat intervals of the restart, and ends a re-attached node's session when it stays
        silent for as long. Waiting for the online threshold (a client that went offline while
        the server was down) or for the config fetch (the API may come up later than the
        broker) can take longer than that, and the job is then `crashed`. The link's sockets
        have already reconnected by themselves (the server keeps its Curve key, our Curve
        binding and our session key across restarts), so we heartbeat now, after resending a
        result the server may have missed: an idle heartbeat before it reads as a lost result.
        """
        self._online = True
        self._offline_counter = self._online_counter = 0
        final = link.last_final if self._final_unconfirmed(link) else None
        if self._send_refused_finals(link) and final is not None:
            log.info("job=%s %s may not have reached the restarted server; sending it again",
                     final[1], final[0])
            self._send_reply(*final)
        self._send_heartbeat()
        self._next_heartbeat = time.monotonic() + link.config.interval

    def _on_command(self, link: _Link, frames: list[bytes]) -> None:
        try:
            body = decode(
                frames, key=link.session_key, max_body_size=MAX_INBOUND_MESSAGE,
                max_skew=link.config.max_message_skew,
            )
        except ProtocolError as err:
            log.warning("dropped a message on the command channel: %s", err)
            return
        link.last_command_at = time.monotonic()
        if not link.command_seen:
            link.command_seen = True
            self.backoff.reset()
            self._last_error = None
            log.info("command channel is up")
            self._status_dirty = True
        try:
            message = parse_server_message(body)
        except ProtocolError as err:
            job_id = body.get("job_id")
            log.warning("job=%s dropped a malformed %r message: %s", job_id, body.get("type"),
                        err)
            if body.get("type") == "commit":
                job = job_id if isinstance(job_id, str) and len(job_id) <= 64 else None
                self._send_reply("nack_commit", job, {"reason": "bad_message"})
            return
        self._dispatch(message)

    def _dispatch(self, message: ServerMessage) -> None:
        if message.type == "commit":
            log.info("job=%s received commit %r", message.job_id, message.command)
            self.runner.commit(
                message.job_id,
                message.command,
                {
                    "user": message.user,
                    "dir": message.directory,
                    "env": message.env,
                    "file": message.file,
                    "capture": message.capture,
                    "run_timeout": message.run_timeout,
                },
            )
        elif message.type == "run":
            log.info("job=%s received run", message.job_id)
            self.runner.run(message.job_id, message.run_timeout)
        elif message.type == "abort":
            log.info("job=%s received abort", self.runner.job_id)
            self.runner.abort()
        elif message.type == "ack":
            log.debug("received ack")
        else:
            log.warning("ignored a %s message on the command channel", message.type)

    # ---------------------------------------------------------------- sending
    def _body(
        self, msg_type: str, job_id: str | None, fields: dict[str, Any], sequence: int
    ) -> dict[str, Any]:
        if msg_type in ("succeeded", "failed"):
            dropped = fields.get("truncated") or {}
            return node_result(
                self.identity,
                succeeded=msg_type == "succeeded",
                sequence=sequence,
                job_id=job_id,
                stdout=fields.get("stdout"),
                stderr=fields.get("stderr"),
                stdout_dropped=int(dropped.get("stdout", 0)),
                stderr_dropped=int(dropped.get("stderr", 0)),
            )
        return node_reply(
            self.identity, msg_type, sequence=sequence, job_id=job_id, reason=fields.get("reason")
        )

    def _measure(self, msg_type: str, job_id: str | None, fields: dict[str, Any]) -> int:
        return len(encode_body(self._body(msg_type, job_id, fields, 2**31)))

    def _send_reply(
        self, msg_type: str, job_id: str | None, fields: dict[str, Any]
    ) -> bool | None:
        if msg_type == "output":
            return self._send_output(job_id, fields)
        link = self.link
        if link is None:
            log.info("job=%s not connected: %s kept until the connection is up", job_id,
                     msg_type)
            self.pending.append((msg_type, job_id, fields))
            return None
        message = (msg_type, job_id, fields)
        if link.refused_finals and not self._send_refused_finals(link):
            # The queue is still full: this one would be refused as well.
            if msg_type in FINAL_TYPES:
                self._keep_refused(link, message)
            else:
                log.warning("job=%s %s not sent: command socket queue full", job_id, msg_type)
            return None
        self._send_now(link, message)
        return None

    def _send_now(self, link: _Link, message: tuple[str, str | None, dict[str, Any]]) -> bool:
        msg_type, job_id, fields = message
        link.sequence += 1
        body = self._body(msg_type, job_id, fields, link.sequence)
        if msg_type in FINAL_TYPES:
            link.last_final = message
            link.last_final_at = time.monotonic()
        sent = self._transmit(link, body, f"job={job_id} sent {msg_type}"
                              + (f" ({fields['reason']})" if fields.get("reason") else ""))
        if not sent and msg_type in FINAL_TYPES:
            self._keep_refused(link, message)
        return sent

    def _send_output(self, job_id: str | None, fields: dict[str, Any]) -> bool:
        """A live chunk: best effort. False when it was not sent (no connection, a refused
        result waiting, a full queue): the runner keeps its bytes and sends them later (the
        result carries the output anyway). Never sent to a server that did not advertise
        `output`, never counted as a failed send (a slow broker must not make the client
        reconnect over output), never ahead of a refused result."""
        link = self.link
        if (link is None or job_id is None or link.config.output is None
                or link.refused_finals):
            self.output_chunks_dropped += 1
            return False
        link.sequence += 1
        body = node_output(self.identity, sequence=link.sequence, job_id=job_id,
                           channel=fields["channel"], offset=fields["offset"],
                           data=fields["data"])
        try:
            frames = encode(body, hmac_key=link.session_key,
                            max_body_size=link.config.max_body_size or 65536)
            link.dealer.send_multipart(frames, zmq.NOBLOCK)
        except ProtocolError as err:
            log.warning("job=%s output chunk not sent: %s", job_id, err)
            return True  # the same chunk would fail again
        except zmq.Again:
            self.output_chunks_dropped += 1
            return False
        self.output_chunks_sent += 1
        return True

    @staticmethod
    def _keep_refused(link: _Link, message: tuple[str, str | None, dict[str, Any]]) -> None:
        link.refused_finals.append(message)
        if len(link.refused_finals) > MAX_PENDING_REPLIES:
            dropped = link.refused_finals.pop(0)
            log.error("job=%s %s dropped: too many results waiting", dropped[1], dropped[0])

    def _send_refused_finals(self, link: _Link) -> bool:
        """Send the results the socket refused earlier, in order; True if none is left.

        They go before anything else: the server reads an idle heartbeat, or another job's
        reply, from a node it thinks is still running a job as that job's result being lost.
        """
        waiting, link.refused_finals = link.refused_finals, []
        for index, message in enumerate(waiting):
            if not self._send_now(link, message):  # put back by _send_now
                link.refused_finals.extend(waiting[index + 1:])
                return False
        return True

    def _send_heartbeat(self) -> None:
        link = self.link
        if link is None:
            return
        if link.refused_finals and not self._send_refused_finals(link):
            return  # the queue is still full
        link.sequence += 1
        body = node_heartbeat(
            self.identity, sequence=link.sequence, job_id=self.runner.job_id,
            job_state=self.runner.job_state,
        )
        self._transmit(link, body, None)

    def _transmit(self, link: _Link, body: dict[str, Any], what: str | None) -> bool:
        """Sign and queue `body`; False only when the socket refused it (queue full). A body
        that cannot be encoded is logged and counts as handled: sending it again cannot help."""
        limit = link.config.max_body_size or 65536
        try:
            frames = encode(body, hmac_key=link.session_key, max_body_size=limit)
        except ProtocolError as err:
            if body.get("type") not in ("succeeded", "failed") or "stdout" not in body:
                log.error("%s: not sent, %s", what or "heartbeat", err)
                return True  # nothing to retry: the same message would fail again
            # Never lose an outcome over its output: send it without the output instead.
            log.error("%s: output dropped, %s", what, err)
            body = {k: v for k, v in body.items() if k not in ("stdout", "stderr", "truncated")}
            frames = encode(body, hmac_key=link.session_key)
        try:
            link.dealer.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            self._send_failures += 1
            log.warning(
                "%s: command socket queue full (%d in a row)", what or "heartbeat",
                self._send_failures,
            )
            now = time.monotonic()
            if body.get("type") in FINAL_TYPES:
                # A job's outcome must not wait for the 60 s deadline: reconnect soon; the new
                # link sends it again (_keep_unconfirmed_final).
                self._connection_trouble = True
                self.reconfigure_at.bring_forward(now + 2 * link.config.interval)
            if self._send_failures >= SEND_FAILURES_BEFORE_RECONNECT:
                self._connection_failed(
                    f"{self._send_failures} sends in a row found the command socket full"
                    + ("" if link.command_seen else self._NO_ANSWER_HINT)
                )
            else:
                self.reconfigure_at.bring_forward(now + SEND_FAILURE_RECONFIGURE_DELAY)
            return False
        self._send_failures = 0
        if what:
            log.info("%s", what)
        return True

    _NO_ANSWER_HINT = " (Curve key refused, port blocked or a proxy in the way?)"

    def _connection_failed(self, reason: str) -> None:
        """Reconnect after a backoff delay; say why in the log and the status file."""
        delay = self.backoff.next_delay()
        self._last_error = reason
        self._connection_trouble = True
        log.warning("%s; reconnecting in %.1fs", reason, delay)
        self._probe_deadline = float("inf")
        self._send_failures = 0
        self.reconfigure_at.bring_forward(time.monotonic() + delay)
        self._status_dirty = True

    # ----------------------------------------------------------------- timers
    def _timers(self, now: float) -> None:
        link = self.link
        if link is None:
            return
        cfg = link.config
        if not link.command_seen and link.encrypted and now >= self._probe_deadline:
            self._connection_failed(
                f"no messages received on the command port in {PROBE_SECONDS:g}s"
                + self._NO_ANSWER_HINT
            )
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + cfg.interval
            if self._online:
                if self._offline_counter > cfg.offline_threshold:
                    self._online = False
                    self._online_counter = 0
                    self._connection_trouble = True
                    delay = self.backoff.next_delay()
                    log.warning(
                        "server has missed %d heartbeats in a row: offline; reconnecting in "
                        "%.1fs", self._offline_counter, delay,
                    )
                    self.reconfigure_at.bring_forward(now + delay)
                    self._status_dirty = True
                else:
                    self._offline_counter += 1
                    self._send_heartbeat()

    # ----------------------------------------------------------------- status
    def _status_changed(self) -> None:
        self._status_dirty = True

    def status(self) -> dict[str, Any]:
        link = self.link
        if link is None:
            connection = "connecting"
        elif not link.command_seen and link.encrypted:
            connection = "handshaking"
        else:
            connection = "online" if self._online else "offline"
        return {
            "pid": os.getpid(),
            "node_name": self.config.node_name,
            "organization": self.config.organization,
            "chef_server_url": self.config.chef_server_url,
            "client_incarnation": self.identity.incarnation_id,
            "connection": connection,
            "encrypted": None if link is None else link.encrypted,
            "last_server_heartbeat": self._last_server_heartbeat,
            "server_incarnation": self._server_incarnation,
            "reconnects": self._reconnects,
            "containment": self.containment.mechanism,
            "last_error": self._last_error,
            "job": self.runner.describe(),
            "updated_at": time.time(),
        }

    def _write_status(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and (not self._status_dirty or now - self._status_written
                          < STATUS_WRITE_INTERVAL):
            return
        try:
            self.state_dir.write_status(self.status())
        except OSError as err:
            if not self._status_failed:  # once, not every second
                log.error("cannot write status file %s: %s", self.state_dir.status_path, err)
            self._status_failed = True
        else:
            self._status_failed = False
        self._status_dirty = False
        self._status_written = now

    # --------------------------------------------------------------- shutdown
    def _shutdown(self) -> None:
        self.runner.shutdown()
        if self.link is not None:
            # Give the final `aborted` a moment to leave before the socket goes.
            with contextlib.suppress(zmq.ZMQError):
                self.link.dealer.setsockopt(zmq.LINGER, 500)
            self.link.dealer.close(linger=500)
            self.link.sub.close(linger=0)
            self.link = None
        status = self.status()
        status["connection"] = "stopped"
        with contextlib.suppress(OSError):
            self.state_dir.write_status(status)
        self.context.term()
        # A fetch still running writes to its pipe once; it is a daemon thread and may outlive
        # these descriptors, so leave the fetch pipe open (its write end is non-blocking).
        os.close(self._wakeup_r)
        os.close(self._wakeup_w)
        log.info("stopped")
