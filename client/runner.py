"""The job runner: one job at a time, from `commit` to its final report.

Public API:

    JobRunner(settings: RunnerSettings, send: Send, *, state_dir: StateDir | None = None,
              measure: Measure | None = None, clock=time.monotonic,
              containment: Containment | None = None)
        containment: how each job's process tree is held (pushd_client.proctree); default
        Containment.select("auto"), which makes this process a child subreaper when it
        cannot create cgroups.
        send(type, job_id, fields) is called for every reply (`ack_commit`, `nack_commit`,
        `ack_run`, `nack_run`, `succeeded`, `failed`, `aborted`); the caller adds the common
        fields, signs and sends. `fields` holds `reason` on nacks and `aborted`, and
        `stdout`/`stderr` (+ truncation fields) on results when capture was asked.
        measure(type, job_id, fields) -> int is the encoded body size, used to fit output
        into `settings.max_body_size` (default: the JSON size plus a margin for the rest).
    .commit(job_id, command, options)   options: the commit message's user, dir, env, file,
                                        capture, run_timeout (seconds)
    .run(job_id, run_timeout=None)      run_timeout (seconds) from the run message, if any,
                                        replaces the commit's
    .abort(reason="abort_requested")    server `abort`; the reply comes once the tree is gone
    .shutdown()                         blocking: kill the job's tree, report `aborted`
    .adopt_orphan(record)               a job a previous client process left behind: the next
                                        server `abort` while idle is answered with its job id
    .job_state -> "idle" | "committed" | "running"      for heartbeats
    .job_id -> str | None
    .watched_fds() -> list[int]         output pipes to poll for reading
    .on_readable(fd)
    .tick()                             reap, enforce run_timeout, escalate TERM -> KILL
    .poll_timeout() -> float | None     how soon tick() needs to run again (seconds)
    .describe() -> dict                 for the status file
    .body_limit -> int                  result body budget (settings.max_body_size at first)
    .live_output -> OutputCapability | None   set by the agent from the server's config: when
                                        set, a job that captures output also reports it while
                                        it runs, as send("output", job_id, {"channel",
                                        "offset", "data"}) within the advertised bounds
                                        (pushd_client.output.LiveStream); None: only the result.
                                        A chunk send() could not send (it returned False) is
                                        taken again later, from the same offset
    RunnerSettings(node_name, whitelist, file_dir, allowed_overwritable_env_vars,
                   max_body_size, lockfile, kill_grace, default_run_timeout,
                   max_output_bytes, max_file_bytes)
    NackReason: BUSY, NOT_WHITELISTED, LOCK_HELD, BAD_USER, BAD_DIR, BAD_FILE, BAD_ENV,
                BAD_JOB_ID, NOT_COMMITTED, EXEC_FAILED, INTERNAL_ERROR
    AbortReason: REQUESTED, RUN_TIMEOUT, SHUTDOWN, CLIENT_RESTARTED

The commit decision follows the stock order (busy, lock, whitelist, user, dir, file), adds a
`reason`, and never touches the pending job when a commit is refused. The lock of a whitelist
entry is taken at commit and held until the job's tree is gone. The command runs in its own
session and in its own process tree (a cgroup, or below the subreaper client: proctree), which
also holds what it starts in other sessions or by double forks. Abort, run_timeout and shutdown
TERM the whole tree, wait `kill_grace` seconds, then KILL it, and `aborted` is sent only once
nothing in the tree runs. When the command exits on its own, processes it left behind are ended
the same way before the result is sent. The job record (statefile) names the tree, so that a
client started after a crash can end it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pushd_client.environment import build_job_env, validate_job_env
from pushd_client.jobfile import (
    decode_file_spec,
    prepare_file_dir,
    remove_job_file,
    write_job_file,
)
from pushd_client.output import LiveStream, TailBuffer, fit_output
from pushd_client.process import JobProcess, UserSpec, process_start_time, spawn
from pushd_client.proctree import Containment, ContainmentError, JobTree, kill_tree_blocking
from pushd_client.statefile import JobRecord, StateDir
from pushd_client.whitelist import ResolvedCommand, Whitelist

from pushd.protocol.config import OutputCapability
from pushd.protocol.limits import MAX_JOB_FILE_BYTES, MAX_USER_LENGTH

log = logging.getLogger("pushd_client.runner")

# Returns False only for an `output` chunk that was not sent (no connection, queue full): the
# stream then resumes from that chunk later. Anything else's return value is ignored.
Send = Callable[[str, "str | None", dict[str, Any]], "bool | None"]
Measure = Callable[[str, "str | None", dict[str, Any]], int]

JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
KILL_WAIT = 5.0  # after SIGKILL, how long before we log that the tree refuses to die
TICK_WHILE_BUSY = 0.1
# How often a running job's record is refreshed (a subreaper tree's members; walking a large
# tree every tick would cost more than the gap it closes: recovery also finds the job's token).
RECORD_INTERVAL = 1.0


class NackReason:
    """`reason` values of nack_commit / nack_run (a pushd addition the server stores)."""

    BUSY = "busy"
    NOT_WHITELISTED = "not_whitelisted"
    LOCK_HELD = "lock_held"
    BAD_USER = "bad_user"
    BAD_DIR = "bad_dir"
    BAD_FILE = "bad_file"
    BAD_ENV = "bad_env"
    BAD_JOB_ID = "bad_job_id"
    NOT_COMMITTED = "not_committed"
    EXEC_FAILED = "exec_failed"
    INTERNAL_ERROR = "internal_error"


class AbortReason:
    """`reason` values of aborted."""

    REQUESTED = "abort_requested"
    RUN_TIMEOUT = "run_timeout"
    SHUTDOWN = "shutdown"
    CLIENT_RESTARTED = "client_restarted"


@dataclass(frozen=True)
class RunnerSettings:
    """What the runner needs from the client config (see pushd_client.config for meanings)."""

    node_name: str
    whitelist: Whitelist
    file_dir: str
    allowed_overwritable_env_vars: tuple[str, ...] | None = None
    max_body_size: int = 63000
    lockfile: str = "/var/chef/cache/chef-client-running.pid"
    kill_grace: float = 10.0
    default_run_timeout: float = 86400.0
    max_output_bytes: int = 1024 * 1024
    max_file_bytes: int = MAX_JOB_FILE_BYTES
    # True: the job gets a login-like environment instead of the client's (job_environment).
    login_environment: bool = False


@dataclass
class _Job:
    job_id: str
    command: str
    resolved: ResolvedCommand
    user: UserSpec
    cwd: str
    env: dict[str, str]
    file_content: bytes | None
    capture: bool
    run_timeout: float
    lock_fd: int | None
    file_path: str | None = None
    process: JobProcess | None = None
    tree: JobTree | None = None
    record: JobRecord | None = None  # as last saved in the state dir
    recorded_at: float = 0.0
    started: float = 0.0
    deadline: float = 0.0
    stdout: TailBuffer = field(default_factory=lambda: TailBuffer(0))
    stderr: TailBuffer = field(default_factory=lambda: TailBuffer(0))
    # Set once the job is being ended: the message to send when the tree is gone.
    final: tuple[str, dict[str, Any]] | None = None
    kill_stage: str = ""  # "", "term", "kill"
    kill_deadline: float = 0.0
    # Live output per channel (only when capturing and the server takes `output`).
    live: dict[str, LiveStream] = field(default_factory=dict)


class _Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _default_measure(msg_type: str, job_id: str | None, fields: dict[str, Any]) -> int:
    # The common fields (node, org, timestamp, incarnation...) add well under 512 bytes.
    return len(json.dumps(fields).encode("utf-8")) + 512


class JobRunner:
    """See the module docstring."""

    def __init__(
        self,
        settings: RunnerSettings,
        send: Send,
        *,
        state_dir: StateDir | None = None,
        measure: Measure | None = None,
        clock: Callable[[], float] = time.monotonic,
        base_env: Mapping[str, str] | None = None,
        containment: Containment | None = None,
    ) -> None:
        self.settings = settings
        self.containment = containment or Containment.select("auto")
        self._send = send
        self._state_dir = state_dir
        self._measure = measure or _default_measure
        self._clock = clock
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._job: _Job | None = None
        self._orphan: JobRecord | None = None
        # Largest result body; the agent lowers it to the server's max_body_size when smaller.
        self.body_limit = settings.max_body_size
        self.live_output: OutputCapability | None = None
        self.on_change: Callable[[], None] = lambda: None

    def reconfigure(self, settings: RunnerSettings, base_env: Mapping[str, str]) -> None:
        """New settings from a reloaded config file, for the jobs offered from now on.

        A job already committed or running keeps the command it resolved; the node name
        and file dir are the daemon's for its whole life (the server knows it by that name).
        """
        self.settings = dataclasses.replace(
            settings, node_name=self.settings.node_name, file_dir=self.settings.file_dir,
            max_body_size=self.settings.max_body_size,
        )
        self._base_env = dict(base_env)

    # ----------------------------------------------------------------- state
    @property
    def job_state(self) -> str:
        if self._job is None:
            return "idle"
        return "running" if self._job.process is not None else "committed"

    @property
    def job_id(self) -> str | None:
        return None if self._job is None else self._job.job_id

    def describe(self) -> dict[str, Any]:
        job = self._job
        if job is None:
            return {"state": "idle"}
        info: dict[str, Any] = {
            "state": self.job_state,
            "job_id": job.job_id,
            "command": job.command,
            "user": job.user.name,
        }
        if job.process is not None:
            info.update(pid=job.process.pid, running_for=round(self._clock() - job.started, 1))
        if job.final is not None:
            info["stopping"] = job.final[0]
        return info

    def adopt_orphan(self, record: JobRecord) -> None:
        self._orphan = record

    # ---------------------------------------------------------------- commit
    def commit(self, job_id: object, command: object, options: Mapping[str, Any]) -> None:
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
            log.warning("job=%r commit refused: invalid job id", job_id)
            self._send("nack_commit", None, {"reason": NackReason.BAD_JOB_ID})
            return
        if self._job is not None:
            log.warning(
                "job=%s commit refused: busy with job %s (%s)", job_id, self._job.job_id,
                self.job_state,
            )
            self._send("nack_commit", job_id, {"reason": NackReason.BUSY})
            return
        try:
            job = self._accept(job_id, command, options)
        except _Refused as refused:
            log.warning("job=%s commit refused (%s): %s", job_id, refused.reason, refused.detail)
            self._send("nack_commit", job_id, {"reason": refused.reason})
            return
        self._job = job
        log.info(
            "job=%s committed: %r as %s in %s", job_id, job.resolved.command_line,
            job.user.name, job.cwd,
        )
        self._send("ack_commit", job_id, {})
        self.on_change()

    def _accept(self, job_id: str, command: object, options: Mapping[str, Any]) -> _Job:
        if not isinstance(command, str) or not command:
            raise _Refused(NackReason.NOT_WHITELISTED, "no command given")
        resolved = self.settings.whitelist.resolve(command)
        lock_fd = None
        if resolved is not None and resolved.lock:
            lock_fd = self._take_lock(resolved.lock)
        try:
            if resolved is None:
                raise _Refused(NackReason.NOT_WHITELISTED, f"{command!r} is not in the whitelist")
            return self._check_options(job_id, command, resolved, options, lock_fd)
        except BaseException:
            _release_lock(lock_fd)
            raise

    def _take_lock(self, lock: bool | str) -> int | None:
        path = self.settings.lockfile if lock is True else str(lock)
        try:
            # No O_TRUNC: the file may be chef-client's pid file.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            log.info("lock %s: directory missing, nothing can hold it", path)
            return None
        except OSError as err:
            raise _Refused(NackReason.LOCK_HELD, f"cannot open lock {path}: {err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise _Refused(NackReason.LOCK_HELD, f"lock {path} is held") from None
            raise _Refused(NackReason.LOCK_HELD, f"cannot lock {path}: {err}") from None
        return fd

    def _check_options(
        self,
        job_id: str,
        command: str,
        resolved: ResolvedCommand,
        options: Mapping[str, Any],
        lock_fd: int | None,
    ) -> _Job:
        user_name = options.get("user")
        if user_name is None:
            user = UserSpec.current()
        else:
            if not isinstance(user_name, str) or not 0 < len(user_name) <= MAX_USER_LENGTH:
                raise _Refused(NackReason.BAD_USER, f"user {user_name!r:.80} is not a name")
            try:
                user = UserSpec.lookup(user_name)
            except KeyError:
                raise _Refused(NackReason.BAD_USER, f"no such user {user_name!r}") from None
            if not user.can_switch_to():
                raise _Refused(NackReason.BAD_USER, f"this daemon cannot run jobs as {user_name}")
        cwd = options.get("dir")
        if cwd is None:
            cwd = user.home if os.path.isdir(user.home) else "/"
        elif not isinstance(cwd, str) or not os.path.isabs(cwd):
            # A relative dir would run relative to this daemon's own directory.
            raise _Refused(NackReason.BAD_DIR, f"{cwd!r:.200} is not an absolute path")
        elif not os.path.isdir(cwd):
            raise _Refused(NackReason.BAD_DIR, f"{cwd!r:.200} is not a directory")
        file_content = None
        file_spec = options.get("file")
        if file_spec is not None:
            if not isinstance(file_spec, str):
                raise _Refused(NackReason.BAD_FILE, "file must be a string")
            try:
                file_content = decode_file_spec(file_spec, self.settings.max_file_bytes)
            except ValueError as err:
                raise _Refused(NackReason.BAD_FILE, str(err)) from None
        try:
            env = validate_job_env(options.get("env"))
        except ValueError as err:
            raise _Refused(NackReason.BAD_ENV, str(err)) from None
        run_timeout = options.get("run_timeout")
        if not isinstance(run_timeout, int | float) or isinstance(run_timeout, bool) \
                or run_timeout <= 0:
            run_timeout = self.settings.default_run_timeout
        return _Job(
            job_id=job_id,
            command=command,
            resolved=resolved,
            user=user,
            cwd=cwd,
            env=env,
            file_content=file_content,
            capture=bool(options.get("capture")),
            run_timeout=float(run_timeout),
            lock_fd=lock_fd,
        )

    # ------------------------------------------------------------------- run
    def run(self, job_id: object, run_timeout: float | None = None) -> None:
        job = self._job
        if job is None or job.process is not None or job.job_id != job_id:
            log.warning(
                "job=%s run refused: state is %s for job %s", job_id, self.job_state, self.job_id
            )
            reply_id = job_id if isinstance(job_id, str) and JOB_ID.fullmatch(job_id) else None
            self._send("nack_run", reply_id, {"reason": NackReason.NOT_COMMITTED})
            return
        if run_timeout is not None and run_timeout > 0:
            job.run_timeout = float(run_timeout)
        try:
            self._start(job)
        except _Refused as refused:
            log.error("job=%s run failed (%s): %s", job.job_id, refused.reason, refused.detail)
            self._cleanup(job)
            self._job = None
            self._send("nack_run", job.job_id, {"reason": refused.reason})
            self.on_change()
            return
        self._send("ack_run", job.job_id, {})
        self.on_change()

    def _start(self, job: _Job) -> None:
        if job.file_content is not None:
            try:
                prepare_file_dir(self.settings.file_dir)
                job.file_path = write_job_file(
                    self.settings.file_dir, job.job_id, job.file_content, job.user.uid,
                    job.user.gid,
                )
            except (OSError, ValueError) as err:
                raise _Refused(NackReason.BAD_FILE, f"cannot write the job file: {err}") from None
        env = build_job_env(
            self._base_env,
            job.env,
            user=job.user,
            allowed_overwritable=self.settings.allowed_overwritable_env_vars,
            node_name=self.settings.node_name,
            job_id=job.job_id,
            job_file=job.file_path,
            login_cwd=job.cwd if self.settings.login_environment else None,
        )
        limit = self.settings.max_output_bytes
        job.stdout, job.stderr = TailBuffer(limit), TailBuffer(limit)
        if job.capture and self.live_output is not None:
            now = self._clock()
            job.live = {c: LiveStream(self.live_output, now) for c in ("stdout", "stderr")}
        try:
            tree = self.containment.new_tree(job.job_id)
        except ContainmentError as err:
            raise _Refused(NackReason.INTERNAL_ERROR, f"cannot contain the job: {err}") from None
        env.update(tree.env)  # after the job's own variables: the client's, never the job's
        try:
            job.process = spawn(
                job.resolved.argv, user=job.user, cwd=job.cwd, env=env, capture=job.capture,
                preexec=tree.preexec,
            )
        except (OSError, subprocess.SubprocessError) as err:
            tree.release()
            detail = f"cannot start {job.resolved.argv[0]}: {err}"
            if not isinstance(err, OSError):  # only the pre-exec hook raises anything else
                detail += f" (joining its {tree.mechanism})"
            raise _Refused(NackReason.EXEC_FAILED, detail) from None
        job.tree = tree
        tree.started(job.process.pid)
        job.started = self._clock()
        job.deadline = job.started + job.run_timeout
        job.recorded_at = job.started
        self._save_record(job)
        log.info(
            "job=%s started pid %d (%s): %s", job.job_id, job.process.pid, tree.mechanism,
            job.resolved.command_line,
        )

    def _save_record(self, job: _Job) -> None:
        """Write the job record when what it says changed (a subreaper tree grows)."""
        if self._state_dir is None or job.process is None or job.tree is None:
            return
        previous = job.record
        record = JobRecord(
            job_id=job.job_id,
            pid=job.process.pid,
            pgid=job.process.pgid,
            start_time=previous.start_time if previous else process_start_time(job.process.pid),
            command=job.command,
            started_at=previous.started_at if previous else time.time(),
            tree=job.tree.record(),
        )
        if record == previous:
            return
        job.record = record
        try:
            self._state_dir.save_job(record)
        except OSError as err:
            # The job runs anyway; only recovery after a client crash is lost.
            log.error("job=%s cannot record the job in %s: %s", job.job_id,
                      self._state_dir.job_path, err)

    # ----------------------------------------------------------------- abort
    def abort(self, reason: str = AbortReason.REQUESTED) -> None:
        job = self._job
        if job is None:
            orphan, self._orphan = self._orphan, None
            if orphan is not None:
                log.info("job=%s reported aborted: left by a previous client", orphan.job_id)
                self._send("aborted", orphan.job_id, {"reason": AbortReason.CLIENT_RESTARTED})
            else:
                self._send("aborted", None, {"reason": reason})
            return
        if job.process is None:
            log.info("job=%s aborted before it ran (%s)", job.job_id, reason)
            self._cleanup(job)
            self._job = None
            self._send("aborted", job.job_id, {"reason": reason})
            self.on_change()
            return
        if job.final is not None and job.final[0] == "aborted":
            return  # already ending; the reply follows when the tree is gone
        log.info("job=%s aborting (%s): ending its process tree (pid %d)", job.job_id, reason,
                 job.process.pid)
        self._stop(job, ("aborted", {"reason": reason}))

    def shutdown(self) -> None:
        """End the current job now (blocking up to kill_grace + a few seconds)."""
        job = self._job
        if job is None:
            return
        if job.process is None:
            self.abort(AbortReason.SHUTDOWN)
            return
        assert job.tree is not None
        log.info("job=%s client shutting down: ending its process tree (pid %d)", job.job_id,
                 job.process.pid)
        job.final = ("aborted", {"reason": AbortReason.SHUTDOWN})
        if not kill_tree_blocking(job.tree, self.settings.kill_grace, job.process):
            log.error("job=%s processes %s survived SIGKILL", job.job_id, job.tree.members())
        self._finish(job)

    # --------------------------------------------------------- event loop glue
    def watched_fds(self) -> list[int]:
        job = self._job
        if job is None or job.process is None:
            return []
        return [fd for fd in (job.process.stdout_fd, job.process.stderr_fd) if fd is not None]

    def on_readable(self, fd: int) -> None:
        job = self._job
        if job is None or job.process is None:
            return
        data = job.process.read(fd)
        if data:
            (job.stdout if fd == job.process.stdout_fd else job.stderr).feed(data)
            if job.live and job.final is None:
                self._send_live(job, final=False)

    def poll_timeout(self) -> float | None:
        job = self._job
        if job is None or job.process is None:
            return None
        if job.live and job.final is None:
            now = self._clock()
            dues = [d for d in (job.live["stdout"].next_due(job.stdout, now),
                                job.live["stderr"].next_due(job.stderr, now)) if d is not None]
            if dues:
                return min(TICK_WHILE_BUSY, *dues)
        return TICK_WHILE_BUSY

    def _send_live(self, job: _Job, *, final: bool) -> None:
        """Send the live chunks that are due (all that is left within the bounds if `final`)."""
        now = self._clock()
        for channel, buffer in (("stdout", job.stdout), ("stderr", job.stderr)):
            stream = job.live[channel]
            for _ in range(4 if final else 1):
                chunk = stream.take(buffer, now, final=final)
                if chunk is None:
                    break
                sent = self._send("output", job.job_id,
                                  {"channel": channel, "offset": chunk[0], "data": chunk[1]})
                if sent is False:
                    # Not connected or the queue is full: the bytes stay in the capture buffer
                    # and go with a later chunk (a gap only if the buffer no longer holds them).
                    stream.undo(chunk[0], chunk[1])
                    return

    def tick(self) -> None:
        job = self._job
        if job is None or job.process is None:
            return
        tree = job.tree
        assert tree is not None
        now = self._clock()
        status = job.process.reap()
        tree.reap()
        if job.live and job.final is None:
            self._send_live(job, final=False)
        if job.final is None:
            if status is not None:
                self._drain(job)
                job.final = self._result(job, status)
                if tree.alive():
                    log.info("job=%s exited %d; ending what it left running", job.job_id,
                             status)
                    self._stop(job, job.final)
                    return
                self._finish(job)
                return
            if now >= job.deadline:
                log.warning("job=%s run_timeout of %gs reached", job.job_id, job.run_timeout)
                self._stop(job, ("aborted", {"reason": AbortReason.RUN_TIMEOUT}))
                return
            if now - job.recorded_at >= RECORD_INTERVAL:
                job.recorded_at = now
                self._save_record(job)
            return
        if not tree.alive():
            self._finish(job)
            return
        if job.kill_stage == "term" and now >= job.kill_deadline:
            log.warning("job=%s processes %s still running after %gs: SIGKILL", job.job_id,
                        tree.members(), self.settings.kill_grace)
            job.kill_stage, job.kill_deadline = "kill", now + KILL_WAIT
        if job.kill_stage == "kill":
            # Every tick: a process forked since the last round is killed too.
            tree.signal(signal.SIGKILL)
            if now >= job.kill_deadline:
                log.error("job=%s processes %s survive SIGKILL", job.job_id, tree.members())
                job.kill_deadline = now + KILL_WAIT

    # --------------------------------------------------------------- internal
    def _stop(self, job: _Job, final: tuple[str, dict[str, Any]]) -> None:
        assert job.process is not None and job.tree is not None
        job.final = final
        if job.kill_stage == "":
            job.tree.signal(signal.SIGTERM)
            job.kill_stage = "term"
            job.kill_deadline = self._clock() + self.settings.kill_grace
        self.on_change()

    def _drain(self, job: _Job) -> None:
        assert job.process is not None
        for fd in (job.process.stdout_fd, job.process.stderr_fd):
            # Bounded: a straggler that keeps writing must not keep us here.
            for _ in range(64):
                if fd is None or fd not in self.watched_fds():
                    break
                data = job.process.read(fd)
                if not data:
                    break
                (job.stdout if fd == job.process.stdout_fd else job.stderr).feed(data)

    def _result(self, job: _Job, status: int) -> tuple[str, dict[str, Any]]:
        msg_type = "succeeded" if status == 0 else "failed"
        log.info("job=%s finished: exit status %d -> %s", job.job_id, status, msg_type)
        return msg_type, {}

    def _finish(self, job: _Job) -> None:
        assert job.process is not None and job.final is not None
        job.process.reap()
        self._drain(job)
        msg_type, fields = job.final
        if job.live and msg_type in ("succeeded", "failed"):
            # What is left goes live too (bounded), so a follower has it before the end.
            self._send_live(job, final=True)
        if job.capture and msg_type in ("succeeded", "failed"):
            budget = self.body_limit

            def render(output: dict[str, object]) -> bytes:
                return b" " * self._measure(msg_type, job.job_id, {**fields, **output})

            fields = {**fields, **fit_output(job.stdout, job.stderr, budget, render)}
            if "truncated" in fields:
                log.warning(
                    "job=%s output truncated to fit %d bytes (stdout %d, stderr %d bytes)",
                    job.job_id, budget, job.stdout.total, job.stderr.total,
                )
        self._cleanup(job)
        self._job = None
        if msg_type == "aborted":
            log.info("job=%s process tree gone; reporting aborted (%s)", job.job_id,
                     fields.get("reason"))
        self._send(msg_type, job.job_id, fields)
        self.on_change()

    def _cleanup(self, job: _Job) -> None:
        if job.process is not None:
            job.process.close()
        if job.tree is not None:
            job.tree.release()  # before the record goes: a crash here still finds the cgroup
        if job.file_path is not None:
            remove_job_file(job.file_path)
            job.file_path = None
        _release_lock(job.lock_fd)
        job.lock_fd = None
        if self._state_dir is not None:
            try:
                self._state_dir.clear_job()
            except OSError as err:
                log.error("job=%s cannot remove %s: %s", job.job_id, self._state_dir.job_path,
                          err)


def _release_lock(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


