"""Where the appliance keeps things, derived from the settings (nothing here touches the disk).

    SERVICES                     the runit services reconfigure manages, in start order
    MAIN_SERVICE                 "opscode-pushy-server"
    RUNNING_JSON_NAME            "opscode-push-jobs-server-running.json"
    running_json_path(settings) -> Path          <etc_dir>/opscode-push-jobs-server-running.json
    service_path(settings, service) -> Path      <service_dir>/<service>
    log_dir(settings, service) -> Path           svlogd's directory for `service`
    runsvdir_pid_path(settings) -> Path          <run_dir>/runsvdir.pid
    keys_dir(settings) -> Path                   <data_dir>/keys (the server's RSA + Curve keys)
    status_url(settings) -> str                  http://HOST:api_port/_status (loopback when the
                                                 API listens on every address)
    service_user(package_user=None) -> str       the account the service runs as (see below)
    EMBEDDED_PREFIX                              "/opt/opscode-push-jobs-server" (the package)

The service runs as the invoking user when the ctl runs unprivileged. As root it runs as
``$PUSH_JOBS_SERVER_USER`` when set, else as ``opscode`` when the ctl itself runs from the
package's embedded interpreter (the Chef Server's account, created by reconfigure), else as root:
a development checkout's interpreter usually lives where a system account cannot read it.
"""

from __future__ import annotations

import os
import pwd
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "EMBEDDED_PREFIX",
    "MAIN_SERVICE",
    "RUNNING_JSON_NAME",
    "SERVICES",
    "keys_dir",
    "log_dir",
    "running_json_path",
    "runsvdir_pid_path",
    "service_path",
    "service_user",
    "status_url",
]

MAIN_SERVICE = "opscode-pushy-server"
SERVICES: tuple[str, ...] = (MAIN_SERVICE,)
RUNNING_JSON_NAME = "opscode-push-jobs-server-running.json"
EMBEDDED_PREFIX = "/opt/opscode-push-jobs-server"
PACKAGE_SERVICE_USER = "opscode"
SERVICE_USER_ENV = "PUSH_JOBS_SERVER_USER"


def running_json_path(settings: Any) -> Path:
    return Path(settings.get("etc_dir")) / RUNNING_JSON_NAME


def service_path(settings: Any, service: str) -> Path:
    return Path(settings.get("service_dir")) / service


def log_dir(settings: Any, service: str) -> Path:
    # The original has one service and logs it straight into log_directory; any further service
    # gets a subdirectory so svlogd's `current` files never collide.
    base = Path(settings.get("log_directory"))
    return base if service == MAIN_SERVICE else base / service


def runsvdir_pid_path(settings: Any) -> Path:
    return Path(settings.get("run_dir")) / "runsvdir.pid"


def keys_dir(settings: Any) -> Path:
    return Path(settings.get("data_dir")) / "keys"


def status_url(settings: Any) -> str:
    host = str(settings.get("api_listen"))
    if host in ("0.0.0.0", "*", "::", "[::]"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.get('api_port')}/_status"


def service_user(package_user: str | None = None) -> str:
    """`package_user` replaces ``opscode`` (a Chef Server host's ``user.username``)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    chosen = os.environ.get(SERVICE_USER_ENV, "").strip()
    if chosen:
        return chosen
    if sys.prefix.startswith(EMBEDDED_PREFIX):
        return package_user or PACKAGE_SERVICE_USER
    return "root"
