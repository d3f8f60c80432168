"""Rendering and writing runit service directories (pure text plus atomic file writes).

    ServiceFiles(run, finish, log_run, log_config)  the rendered texts of one service
    render_service(settings, service, *, config_path, python, user, settings_digest)
        -> ServiceFiles
        ``run``: ``exec 2>&1``, raises the soft open-files limit to the hard limit, then
        ``exec``s ``<python> -m pushd.server --config <config_path>`` (through ``chpst -u USER``
        when `user` differs from the invoking user), in a session of its own whose id it records
        in ``<service_dir>/<service>/pgid``. The settings digest is written into it as a
        comment, so a settings change is a change of the rendered file and restarts the service.
        ``finish`` (runit runs it when the main process has exited, however it died): sends
        TERM, then KILL, to what is left of that session (a broker or workers orphaned by a
        ``kill -9`` of the main process would otherwise hold the ports the restarted service
        needs). ``run`` does the same for a session left behind by a dead runsv.
        ``log/run``: ``exec svlogd -tt <log_dir>``. ``log_config``: svlogd's ``config`` file,
        ``s<file_maxbytes>`` and ``n<num_to_keep>``.
    WriteResult(service_changed, log_changed)
    write_service(settings, service, files, *, enabled=True) -> WriteResult
        Creates ``<service_dir>/<service>/{run,finish,log/run}`` (0755) and
        ``<log_dir>/config``; writes a file only when its content differs (temp file +
        rename, so runsv never sees half a script). ``enabled=False`` adds runit's ``down``
        file (the service is not started).
    settings_digest(settings) -> str               sha256 of the resolved settings the service
                                                   reads (log_rotation is svlogd's alone)
    atomic_write(path, data, mode) -> bool         True when the file changed
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pushd_ctl import layout

__all__ = [
    "ServiceFiles",
    "WriteResult",
    "atomic_write",
    "render_service",
    "settings_digest",
    "write_service",
]

HEADER = "# Written by push-jobs-server-ctl reconfigure; edits are overwritten."


@dataclass(frozen=True)
class ServiceFiles:
    run: str
    finish: str
    log_run: str
    log_config: str


@dataclass(frozen=True)
class WriteResult:
    service_changed: bool
    log_changed: bool


# Settings only svlogd reads: changing them restarts the log service, not the server.
LOG_ONLY_SETTINGS = ("log_rotation",)


def settings_digest(settings: Any) -> str:
    document = settings.as_dict()
    for name in LOG_ONLY_SETTINGS:
        document["opscode_pushy_server"].pop(name, None)
    text = json.dumps(document, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _as_user(user: str | None) -> str:
    """``chpst -u USER `` when the service must run as someone other than the invoking user."""
    if not user or user == pwd.getpwuid(os.geteuid()).pw_name:
        return ""
    return f"chpst -u {shlex.quote(user)} "


def render_service(
    settings: Any,
    service: str,
    *,
    config_path: str | None,
    python: str,
    user: str | None,
    settings_digest: str,
) -> ServiceFiles:
    command = [python, "-m", "pushd.server"]
    if config_path:
        command += ["--config", config_path]
    env = ""
    if config_path:
        env = f"export PUSH_JOBS_SERVER_CONFIG={shlex.quote(config_path)}\n"
    secrets = settings.get("chef_server_secrets_json")
    if _as_user(user) and any(settings.origin(name) for name in settings) \
            and os.path.exists(secrets):
        # A Chef Server host: its secrets file stays root's; the service account reads it
        # through this descriptor, opened before chpst drops privileges (pushd.chefserver).
        env += f"exec 3< {shlex.quote(secrets)}\nexport PUSHD_CHEF_SECRETS_FD=3\n"
    # Kept in the service dir, which stays root's when the service runs as another account:
    # these scripts run before chpst drops privileges and must not trust a file it can write.
    pgid_file = shlex.quote(str(layout.service_path(settings, service) / "pgid"))
    reap = (
        f'pgid=$(cat {pgid_file} 2>/dev/null)\n'
        'case "$pgid" in ""|*[!0-9]*|0*|1) pgid="" ;; esac\n'
        'if [ -n "$pgid" ] && kill -0 "-$pgid" 2>/dev/null; then\n'
        '  kill -TERM "-$pgid" 2>/dev/null\n'
        '  i=0\n'
        '  while [ $i -lt 30 ] && kill -0 "-$pgid" 2>/dev/null; do sleep 0.1; i=$((i+1)); done\n'
        '  kill -KILL "-$pgid" 2>/dev/null\n'
        'fi\n'
    )
    run = (
        "#!/bin/sh\n"
        f"{HEADER}\n"
        f"# settings digest: {settings_digest}\n"
        "exec 2>&1\n"
        "# Leftovers of an instance whose runsv died with it.\n"
        f"{reap}"
        "# Every node holds a connection open: allow as many files as the hard limit permits.\n"
        'ulimit -n "$(ulimit -Hn)" 2>/dev/null || true\n'
        "export PYTHONUNBUFFERED=1\n"
        f"{env}"
        f"echo $$ > {pgid_file}\n"
        "# setsid keeps this pid (not a group leader) and makes it the session's id.\n"
        f"exec setsid {_as_user(user)}{shlex.join(command)}\n"
    )
    finish = (
        "#!/bin/sh\n"
        f"{HEADER}\n"
        "# The main process has exited; take what it left behind (broker, workers) with it.\n"
        f"{reap}"
        f"rm -f {pgid_file}\n"
        "exit 0\n"
    )
    log_path = layout.log_dir(settings, service)
    log_run = (
        "#!/bin/sh\n"
        f"{HEADER}\n"
        f"exec {_as_user(user)}svlogd -tt {shlex.quote(str(log_path))}\n"
    )
    rotation = settings.get("log_rotation")
    log_config = f"s{int(rotation['file_maxbytes'])}\nn{int(rotation['num_to_keep'])}\n"
    return ServiceFiles(run=run, finish=finish, log_run=log_run, log_config=log_config)


def atomic_write(path: Path, data: str, mode: int) -> bool:
    try:
        if path.read_text() == data and (path.stat().st_mode & 0o7777) == mode:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return True


def write_service(
    settings: Any, service: str, files: ServiceFiles, *, enabled: bool = True
) -> WriteResult:
    root = layout.service_path(settings, service)
    (root / "log").mkdir(parents=True, exist_ok=True)
    log_path = layout.log_dir(settings, service)
    log_path.mkdir(parents=True, exist_ok=True)
    service_changed = atomic_write(root / "run", files.run, 0o755)
    service_changed = atomic_write(root / "finish", files.finish, 0o755) or service_changed
    down = root / "down"
    if enabled and down.exists():
        down.unlink()
        service_changed = True
    elif not enabled and not down.exists():
        down.write_text("")
        service_changed = True
    log_changed = atomic_write(root / "log" / "run", files.log_run, 0o755)
    log_changed = atomic_write(log_path / "config", files.log_config, 0o644) or log_changed
    return WriteResult(service_changed=service_changed, log_changed=log_changed)
