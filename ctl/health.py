"""Is the API answering? (``GET /_status`` on the configured address, stdlib HTTP only.)

    probe_status(settings, timeout=2.0) -> tuple[int | None, dict | None]
        (HTTP status, JSON body) of ``/_status``; (None, None) when nothing answers.
    wait_for_status(settings, timeout) -> tuple[bool, str]
        Polls until ``/_status`` answers 200 (True, the body's summary) or `timeout` seconds
        pass (False, what was last seen).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from pushd_ctl import layout

__all__ = ["probe_status", "wait_for_status"]

MAX_STATUS_BODY = 64 * 1024


def probe_status(settings: Any, timeout: float = 2.0) -> tuple[int | None, dict[str, Any] | None]:
    request = urllib.request.Request(
        layout.status_url(settings), headers={"Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read(MAX_STATUS_BODY)
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read(MAX_STATUS_BODY)
    except (OSError, ValueError):
        return None, None
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    return status, body if isinstance(body, dict) else None


def wait_for_status(settings: Any, timeout: float) -> tuple[bool, str]:
    deadline = time.monotonic() + timeout
    seen = "no answer"
    while True:
        status, body = probe_status(settings)
        if status == 200:
            return True, str((body or {}).get("status", "ok"))
        if status is not None:
            seen = f"HTTP {status}: {json.dumps(body) if body else ''}".strip()
        if time.monotonic() >= deadline:
            return False, f"{layout.status_url(settings)}: {seen}"
        time.sleep(0.25)
