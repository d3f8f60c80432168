"""Apply opscode-push-jobs-server.rb: validate, provision, write services, (re)start what changed.

Steps, in order; a configuration error stops before anything is touched:
  1. load and validate the file (errors name the file, line and column); warn, one line each
     with its file and line, about settings the file sets that pushd accepts for
     compatibility but that have no effect;
  2. show what changed against opscode-push-jobs-server-running.json (secrets masked);
  3. create the service account (root only), the directories, the database schema (or migrate
     it) and the server's RSA and Curve keys; on PostgreSQL the keys are the cluster's, kept in
     the database: the first server to reconfigure stores its own, the others take them
     (pushd.cluster_keys). On SQLite, fail first when another server (another run_dir) serves
     the same SQLite file (pushd.sqlite_lock): SQLite serves one server;
  4. write opscode-push-jobs-server-running.json (0600);
  5. write the runit service directories (run, log/run, svlogd's rotation config); as root,
     hand the service's state to the service account and check, as that account, that it can
     read the config file and write its directories (pushd_ctl.access), else fail with one line
     naming the account and the path before anything starts;
  6. start runsvdir for service_dir when none runs; restart only services whose rendered files
     changed, start services that are down;
  7. on a Chef Server host (``chef_server_running_json`` exists): write the nginx add-on files
     into the Chef Server's nginx addon.d, check them with ``nginx -t`` and reload nginx (only
     when they changed; see pushd_ctl.nginx_addon);
  8. wait until the API answers /_status, or fail showing the service's last log lines.
Run twice in a row, the second run changes nothing. Concurrent runs take turns (a lock file in
etc_dir).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
from pathlib import Path
from typing import Any

from pushd_ctl import (
    access,
    health,
    layout,
    logs,
    nginx_addon,
    provision,
    remembered,
    runit,
    supervision,
)
from pushd_ctl.context import EXIT_FAILURE, EXIT_OK, Context

from pushd import settings as registry
from pushd.chefserver import ORIGIN, ChefServerHost
from pushd.config import setting_lines
from pushd.settings import Settings

DEFAULT_TIMEOUT = 90.0
LOG_LINES_ON_FAILURE = 30
# Two reconfigures at once would race on the service files and on sv.
LOCK_NAME = ".reconfigure.lock"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the API to answer (default {DEFAULT_TIMEOUT:g})",
    )


def _flatten(document: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    for namespace, table in document.items():
        if namespace not in registry.NAMESPACES or not isinstance(table, dict):
            raise ValueError(f"unexpected section {namespace!r}")
        for key, value in table.items():
            values[key if namespace == registry.PUSHY else f"{namespace}.{key}"] = value
    return values


def read_running(path: Path) -> Settings | None:
    """The settings of the last successful reconfigure, or None (absent or unreadable)."""
    try:
        return Settings.from_values(_flatten(json.loads(path.read_text())))
    except (OSError, ValueError, KeyError):
        return None


def _running_document(settings: Settings) -> dict[str, Any]:
    """The running JSON: secrets read from the Chef Server's secrets file stay there."""
    document = settings.as_dict()
    where = f"(in {settings.get('chef_server_secrets_json')})"
    for setting in registry.SETTINGS:
        if setting.secret and settings.origin(setting.name) == ORIGIN:
            document[setting.namespace][setting.key] = where
    return document


def _shown(name: str, value: Any) -> str:
    if registry.lookup(name).secret and value is not None:
        return "********"
    return json.dumps(value)


def _report_changes(ctx: Context, previous: Settings | None, current: Settings) -> int:
    if previous is None:
        ctx.say("Configuration: first run (no running config yet)")
        return 1
    changes = previous.diff(current)
    if not changes:
        ctx.say("Configuration: unchanged")
    else:
        ctx.say(f"Configuration: {len(changes)} setting(s) changed")
        for name, old, new in changes:
            ctx.say(f"  {name}: {_shown(name, old)} -> {_shown(name, new)}")
    return len(changes)


def _warn_no_effect(ctx: Context, settings: Settings, config_path: Path | None) -> None:
    """One line per setting the file sets that is accepted for compatibility, no effect."""
    unused = [s for s in registry.SETTINGS if s.no_effect and settings.is_set(s.name)]
    if not unused or config_path is None:
        return
    lines = setting_lines(config_path)
    for setting in unused:
        filename, line = lines.get(setting.name, (str(config_path), 0))
        where = f"{filename}:{line}" if line else filename
        ctx.warn(
            f"push-jobs-server-ctl: reconfigure: warning: {where}: {setting.label} is "
            f"{registry.NO_EFFECT_NOTE.lower()} ({setting.no_effect})"
        )


def run(ctx: Context, args: Any) -> int:
    settings = ctx.settings  # a bad file raises ConfigError here, before anything is touched
    etc_dir = Path(settings.get("etc_dir"))
    etc_dir.mkdir(parents=True, exist_ok=True)
    with open(etc_dir / LOCK_NAME, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            ctx.say("Waiting for another reconfigure to finish...")
            fcntl.flock(lock, fcntl.LOCK_EX)
        return _reconfigure(ctx, settings, args)


def _reconfigure(ctx: Context, settings: Settings, args: Any) -> int:
    config_path = ctx.config_path
    ctx.say(f"Config file: {config_path if config_path else '(none, defaults)'}")
    _warn_no_effect(ctx, settings, config_path)
    provision.check_sqlite_free(settings)  # before anything is touched
    running_path = layout.running_json_path(settings)
    chef = ChefServerHost.read(settings.get("chef_server_running_json"))
    if chef is not None:
        taken = [name for name in settings if settings.origin(name) == ORIGIN]
        ctx.say(f"Chef Server host ({chef.path}); taken from it: {', '.join(taken) or 'nothing'}")
    running_values = _running_document(settings)
    changed_settings = _report_changes(
        ctx, read_running(running_path), Settings.from_values(_flatten(running_values))
    )

    user = layout.service_user(chef.service_user if chef is not None else None)
    actions: list[str] = []
    if os.geteuid() == 0 and user != "root" and provision.ensure_service_user(user):
        actions.append(f"created user {user}")
    actions += [f"created {path}" for path in provision.ensure_directories(settings)]
    before, after = provision.ensure_database(settings)
    if before != after:
        actions.append(f"database schema {before if before is not None else 'none'} -> {after}")
    # After the schema: on PostgreSQL the keys are the cluster's, kept in the database.
    keys = provision.ensure_server_keys(settings)
    if keys.taken:
        actions.append(f"took the cluster's server keys into {layout.keys_dir(settings)}")
    elif keys.created:
        actions.append(f"created server keys in {layout.keys_dir(settings)}")
    document = json.dumps(running_values, indent=2, sort_keys=True, default=str) + "\n"
    if runit.atomic_write(running_path, document, 0o600):
        actions.append(f"wrote {running_path}")
    if config_path is not None:
        remembered.remember(config_path, running_path)

    enabled = bool(settings.get("enable"))
    digest = runit.settings_digest(settings)
    written: dict[str, runit.WriteResult] = {}
    for service in layout.SERVICES:
        files = runit.render_service(
            settings,
            service,
            config_path=str(config_path) if config_path else None,
            python=sys.executable,
            user=user,
            settings_digest=digest,
        )
        written[service] = runit.write_service(settings, service, files, enabled=enabled)
        if written[service].service_changed or written[service].log_changed:
            actions.append(f"wrote service {layout.service_path(settings, service)}")
    provision.hand_over(settings, user)
    # Before anything starts: a service that cannot read its config or write its state would
    # only crash-loop under runsv, its reason buried in its log.
    access.check_service_access(settings, user, config_path=config_path, python=sys.executable)

    pid, started = supervision.ensure_runsvdir(settings)
    if started:
        actions.append(f"started runsvdir (pid {pid}) for {settings.get('service_dir')}")
    for service in layout.SERVICES:
        actions += _converge(ctx, settings, service, written[service], enabled, started)
    if chef is not None and chef.nginx_dir is not None:
        actions += nginx_addon.install(settings, chef.nginx_dir)

    for action in actions:
        ctx.say(f"  {action}")
    if not actions and not changed_settings:
        ctx.say("Nothing changed.")
    if not enabled:
        ctx.say("opscode_pushy_server['enable'] is false: the service stays down.")
        return EXIT_OK
    ok, detail = health.wait_for_status(settings, args.timeout)
    if ok:
        ctx.say(f"The API answers at {layout.status_url(settings)} ({detail}).")
        return EXIT_OK
    ctx.warn(f"push-jobs-server-ctl: reconfigure: the API did not answer: {detail}")
    for service in layout.SERVICES:
        current = layout.log_dir(settings, service) / "current"
        lines = logs.last_lines(current, LOG_LINES_ON_FAILURE)
        ctx.warn(f"--- last lines of {current}:")
        for line in lines:
            ctx.warn(line)
    return EXIT_FAILURE


def _converge(
    ctx: Context,
    settings: Any,
    service: str,
    written: runit.WriteResult,
    enabled: bool,
    runsvdir_started: bool,
) -> list[str]:
    """Bring one service to its desired state; returns what was done."""
    if not supervision.wait_until(lambda: supervision.is_supervised(settings, service), 10):
        return [f"{service}: runsv did not pick the service up"]
    done: list[str] = []
    if not enabled:
        if supervision.service_status(settings, service).state != "down":
            supervision.sv(settings, "stop", service)
            done.append(f"stopped {service}")
        return done
    if runsvdir_started:
        return done  # a fresh runsv starts the current run script by itself
    state = supervision.service_status(settings, service).state
    if written.service_changed and state == "run":
        result = supervision.sv(settings, "restart", service)
        done.append(f"restarted {service} ({result.output or 'sv restart'})")
    elif state != "run":
        result = supervision.sv(settings, "start", service)
        done.append(f"started {service} ({result.output or 'sv start'})")
    if written.log_changed:
        supervision.sv(settings, "restart", service, log=True)
        done.append(f"restarted {service}/log")
    return done
