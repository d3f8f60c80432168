"""The Chef Server nginx add-on: route the push jobs API through the Chef Server's front door.

    UPSTREAMS_NAME, EXTERNAL_NAME     "10-push_jobs_upstreams.conf", "10-push_jobs_external.conf"
    addon_dir(nginx_dir) -> Path      <nginx.dir>/etc/addon.d (Chef Server's nginx includes
                                      addon.d/*_upstreams.conf in `http` and
                                      addon.d/*_external.conf in its API server blocks)
    render(settings) -> dict[str, str]                the two files' text, by name
    install(settings, nginx_dir) -> list[str]         write what changed, `nginx -t`, reload;
                                                      returns what was done ([] when the files
                                                      were already current: no write, no reload)
    remove(nginx_dir) -> list[str]                    delete the files, `nginx -t`, reload
    nginx_binary() -> str                             the Chef Server's own nginx when present
                                                      (/opt/opscode/embedded/sbin/nginx), else
                                                      nginx on PATH
Errors are CommandFailed with nginx's own words. When `nginx -t` refuses the new files, the
previous ones are put back (or the new ones removed), so nginx keeps a loadable configuration.

The proxy keeps the request path as sent (`proxy_pass` without a URI part): the Chef signature
covers the path, so nothing may rewrite it. SSE feeds need `proxy_buffering off` (events arrive
when sent) and a read timeout longer than `keep_alive_time` (the feeds' keep-alive comments
keep an idle stream under it). X-Forwarded-For carries the client's address to pushd's log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from pushd_ctl import runit
from pushd_ctl.context import CommandFailed

__all__ = [
    "EXTERNAL_NAME",
    "UPSTREAMS_NAME",
    "addon_dir",
    "install",
    "nginx_binary",
    "remove",
    "render",
]

UPSTREAMS_NAME = "10-push_jobs_upstreams.conf"
EXTERNAL_NAME = "10-push_jobs_external.conf"
CHEF_SERVER_NGINX = Path("/opt/opscode/embedded/sbin/nginx")
CHEF_SERVER_SV = Path("/opt/opscode/embedded/bin/sv")
CHEF_SERVER_NGINX_SERVICE = Path("/opt/opscode/service/nginx")
UPSTREAM = "opscode_pushy"
HEADER = "# Written by push-jobs-server-ctl reconfigure (pushd); removed by uninstall.\n"
_WILDCARDS = ("0.0.0.0", "*", "::", "[::]")


def addon_dir(nginx_dir: Path) -> Path:
    return Path(nginx_dir) / "etc" / "addon.d"


def _conf_path(nginx_dir: Path) -> Path:
    return Path(nginx_dir) / "etc" / "nginx.conf"


def nginx_binary() -> str:
    if CHEF_SERVER_NGINX.exists():
        return str(CHEF_SERVER_NGINX)
    return shutil.which("nginx") or "/usr/sbin/nginx"


def _api_host(settings: Any) -> str:
    host = str(settings.get("api_listen"))
    if host in _WILDCARDS:
        return "127.0.0.1"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def render(settings: Any) -> dict[str, str]:
    upstreams = (
        HEADER
        + f"upstream {UPSTREAM} {{\n"
        + f"    server {_api_host(settings)}:{int(settings.get('api_port'))};\n"
        + "    keepalive 16;\n"
        + "}\n"
    )
    # Longer than the gap between two keep-alive comments of an SSE stream, with room to spare.
    read_timeout = max(60, 4 * int(settings.get("keep_alive_time")))
    body_size = int(settings.get("max_request_body"))
    proxy = (
        f"    proxy_pass http://{UPSTREAM};\n"
        "    proxy_http_version 1.1;\n"
        '    proxy_set_header Connection "";\n'
        "    proxy_set_header Host $http_host;\n"
        "    proxy_set_header X-Real-IP $remote_addr;\n"
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "    proxy_set_header X-Forwarded-Proto $scheme;\n"
        "    proxy_buffering off;\n"
        "    proxy_cache off;\n"
        f"    proxy_read_timeout {read_timeout}s;\n"
        f"    proxy_send_timeout {read_timeout}s;\n"
        f"    client_max_body_size {body_size};\n"
    )
    external = (
        HEADER
        + "# Push jobs API (the path goes through unchanged: Chef signatures cover it).\n"
        + 'location ~ "^/organizations/[a-z0-9-_]+/pushy/" {\n'
        + proxy
        + "}\n"
        + 'location ~ "^/pushy/_status" {\n'
        + proxy
        + "}\n"
    )
    return {UPSTREAMS_NAME: upstreams, EXTERNAL_NAME: external}


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandFailed(f"nginx add-on: cannot run {argv[0]}: {exc}") from None


def _check(nginx_dir: Path) -> subprocess.CompletedProcess[str]:
    return _run([nginx_binary(), "-t", "-q", "-c", str(_conf_path(nginx_dir))])


def _reload(nginx_dir: Path) -> str:
    if CHEF_SERVER_NGINX_SERVICE.exists() and CHEF_SERVER_SV.exists():
        # The Chef Server's nginx runs under its runit; HUP makes nginx reload its config.
        result = _run([str(CHEF_SERVER_SV), "hup", str(CHEF_SERVER_NGINX_SERVICE)])
        what = f"sv hup {CHEF_SERVER_NGINX_SERVICE}"
    else:
        result = _run([nginx_binary(), "-s", "reload", "-c", str(_conf_path(nginx_dir))])
        what = "nginx -s reload"
    if result.returncode != 0:
        raise CommandFailed(f"nginx add-on: {what} failed: {_words(result)}")
    return what


def _words(result: subprocess.CompletedProcess[str]) -> str:
    text = (result.stderr or result.stdout or "").strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return " / ".join(lines) or f"exit {result.returncode}"


def install(settings: Any, nginx_dir: Path) -> list[str]:
    directory = addon_dir(nginx_dir)
    if not directory.is_dir():
        raise CommandFailed(f"nginx add-on: {directory} does not exist (is nginx.dir right?)")
    wanted = render(settings)
    previous: dict[str, str | None] = {}
    for name, text in wanted.items():
        path = directory / name
        current = path.read_text() if path.exists() else None
        if current != text:
            previous[name] = current
    if not previous:
        return []
    for name in previous:
        runit.atomic_write(directory / name, wanted[name], 0o644)
    check = _check(nginx_dir)
    if check.returncode != 0:
        for name, before in previous.items():
            if before is None:
                (directory / name).unlink(missing_ok=True)
            else:
                runit.atomic_write(directory / name, before, 0o644)
        raise CommandFailed(f"nginx add-on: nginx -t refused it (put back as it was): "
                            f"{_words(check)}")
    how = _reload(nginx_dir)
    return [f"wrote {directory / name}" for name in previous] + [f"reloaded nginx ({how})"]


def remove(nginx_dir: Path) -> list[str]:
    directory = addon_dir(nginx_dir)
    removed = []
    for name in (UPSTREAMS_NAME, EXTERNAL_NAME):
        path = directory / name
        if path.exists():
            os.unlink(path)
            removed.append(f"removed {path}")
    if not removed:
        return []
    check = _check(nginx_dir)
    if check.returncode != 0:
        raise CommandFailed(f"nginx add-on removed, but nginx -t fails: {_words(check)}")
    return [*removed, f"reloaded nginx ({_reload(nginx_dir)})"]
