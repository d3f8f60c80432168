"""Turning `job start` options into the POST body of `.../pushy/jobs` (knife-push's v2 body).

Public API:
    parse_quorum(text, node_count) -> int      "N" or "N%" (ceil), else CliError with knife's text
    encode_file(path, max_bytes=MAX_FILE_READ) -> str    "raw:<text>" or "base64:<b64>"
    parse_env(text) -> dict[str, str]          --with-env JSON object, clear CliError otherwise
    unique_nodes(names) -> list[str]           order kept, duplicates dropped
    build_job_body(command, nodes, *, quorum="100%", run_timeout=None, file=None,
                   capture=False, env=None, directory=None, user=None,
                   max_concurrency=None, max_errors=None) -> dict
    parse_rollout_flag(text, name) -> int | str   --max-concurrency / --max-errors: "N" or "N%"
                                               (pushd/rollout.py rules), else a USAGE CliError

Unlike knife, `--file` sends anything that is not UTF-8 text as `base64:` (knife always sent
`raw:` and mangled binaries), and a bad `--with-env` is an error instead of being dropped.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pushd_knife.exitcodes import USAGE, CliError

from pushd.rollout import parse_limit

QUORUM_PATTERN = re.compile(r"^(\d+)(%?)$")
# The server refuses a request body over 1,000,000 bytes; reading more than that is pointless.
MAX_FILE_READ = 1_000_000


def parse_quorum(text: str, node_count: int) -> int:
    """knife's quorum rule: an integer, or a percentage of the nodes rounded up."""
    match = QUORUM_PATTERN.match(text.strip())
    if not match:
        raise CliError("Invalid Format please enter integer or percent", USAGE)
    number = int(match.group(1))
    if match.group(2):
        # ceil(number / 100 * node_count) in integer arithmetic: no float rounding surprises.
        return -(-(number * node_count) // 100)
    return number


def parse_rollout_flag(text: str, name: str) -> int | str:
    """`--max-concurrency` / `--max-errors`: an integer or "N%", checked as the server does."""
    try:
        return parse_limit(text.strip(), name)
    except ValueError as err:
        flag = "--" + name.replace("_", "-")
        raise CliError(f"{flag} {text}: {err}", USAGE) from None


def encode_file(path: str | Path, max_bytes: int = MAX_FILE_READ) -> str:
    """The job's `file` value: `raw:` for UTF-8 text without NULs, `base64:` for anything else."""
    file_path = Path(path)
    try:
        with file_path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise CliError(f"{path} not found") from None
    except IsADirectoryError:
        raise CliError(f"--file {path} is a directory") from None
    except OSError as exc:
        raise CliError(f"cannot read --file {path}: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise CliError(
            f"--file {path} is larger than {max_bytes} bytes, more than the server accepts"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        return "raw:" + text
    return "base64:" + base64.b64encode(data).decode("ascii")


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise CliError(f"--with-env has the variable {key!r} twice", USAGE)
        seen[key] = value
    return seen


def parse_env(text: str) -> dict[str, str]:
    """Parse `--with-env`: a JSON object of string values, e.g. '{"test": "foo"}'."""
    try:
        value = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"--with-env is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}):"
            f" {text}", USAGE
        ) from None
    if not isinstance(value, dict):
        raise CliError(
            f"--with-env must be a JSON object such as '{{\"NAME\": \"value\"}}': {text}",
            USAGE,
        )
    for key, item in value.items():
        if not isinstance(item, str):
            raise CliError(
                f"--with-env value of {key!r} must be a string, not {json.dumps(item)}", USAGE
            )
    return value


def unique_nodes(names: Iterable[str]) -> list[str]:
    """Node names in their given order without repeats (so the quorum counts each once)."""
    return list(dict.fromkeys(name for name in names if name))


def build_job_body(
    command: str,
    nodes: list[str],
    *,
    quorum: str = "100%",
    run_timeout: int | None = None,
    file: str | None = None,
    capture: bool = False,
    env: dict[str, str] | None = None,
    directory: str | None = None,
    user: str | None = None,
    max_concurrency: str | None = None,
    max_errors: str | None = None,
) -> dict[str, Any]:
    """The v2 POST body, keys as knife-push sends them (`env` and `capture_output` always)."""
    body: dict[str, Any] = {
        "command": command,
        "nodes": nodes,
        "quorum": parse_quorum(quorum, len(nodes)),
    }
    if file is not None:
        body["file"] = file
    body["capture_output"] = bool(capture)
    body["env"] = dict(env or {})
    if directory is not None:
        body["dir"] = directory
    if user is not None:
        body["user"] = user
    if run_timeout is not None:
        body["run_timeout"] = run_timeout
    # Rollout control (pushd): only when asked for, so a stock server sees knife's body.
    if max_concurrency is not None:
        body["max_concurrency"] = parse_rollout_flag(max_concurrency, "max_concurrency")
    if max_errors is not None:
        body["max_errors"] = parse_rollout_flag(max_errors, "max_errors")
    return body
