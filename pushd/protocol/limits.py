"""Bounds of a job that the REST API and the node client must agree on, written once.

The API refuses (400) what the client would refuse; the client checks the same rules again for
commits from other servers (nack with a reason). Stdlib only: `client/` imports this module.

    MAX_NAME_LENGTH          node, org, client and server names (characters)
    MAX_USER_LENGTH          the job's `user` (job_options.job_user is char(32) in the original)
    MIN_RUN_TIMEOUT, MAX_RUN_TIMEOUT   seconds; the client refuses a commit or run outside them
    MAX_ENV_VARS, MAX_ENV_BYTES        variables in a job's `env` and their total size
                                       (names + UTF-8 values)
    ENV_NAME                 the pattern every `env` name must fully match
    MAX_JOB_FILE_BYTES       largest decoded job data file (the server's `max_job_file_size`
                             may only lower it)
    MAX_SERVER_MESSAGE_BYTES largest server -> node message body the client reads; a commit
                             (command, env, file...) must fit in it

    env_problem(env) -> str | None     why `env` breaks the rules above, None when it is fine
    text_problem(value) -> str | None  "not valid UTF-8 text" when a string (or any string
                                       inside lists/objects, keys included) holds a lone
                                       surrogate, which no UTF-8 encoder accepts
    is_absolute_dir(path) -> bool      an absolute path: POSIX `/...`, or a Windows drive or UNC
                                       path (stock clients run there); relative ones would run
                                       relative to the client's own directory
"""

from __future__ import annotations

import re
from typing import Any

MAX_NAME_LENGTH = 255
MAX_USER_LENGTH = 32
MIN_RUN_TIMEOUT = 1
MAX_RUN_TIMEOUT = 2**31 - 1  # jobs.run_timeout is a 32-bit integer column
MAX_ENV_VARS = 256
MAX_ENV_BYTES = 64 * 1024
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_JOB_FILE_BYTES = 1024 * 1024
MAX_SERVER_MESSAGE_BYTES = 2 * 1024 * 1024

_WINDOWS_ABSOLUTE = re.compile(r"[A-Za-z]:[\\/]|\\\\")


def _encodes(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_problem(value: Any) -> str | None:
    """See the module docstring; walks lists and objects iteratively (no recursion limit)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not _encodes(item):
                return "not valid UTF-8 text"
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None


def env_problem(env: Any) -> str | None:
    """Why a job's `env` is refused by both sides, or None."""
    if not isinstance(env, dict):
        return "env must be an object of names to strings"
    if len(env) > MAX_ENV_VARS:
        return f"env has {len(env)} variables, more than {MAX_ENV_VARS}"
    size = 0
    for name, value in env.items():
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            return f"env name {str(name)[:64]!r} is not a valid variable name"
        if not isinstance(value, str) or "\x00" in value:
            return f"env value of {name} must be a string without NUL"
        if not _encodes(value):
            return f"env value of {name} is not valid UTF-8 text"
        size += len(name) + len(value.encode("utf-8"))
    if size > MAX_ENV_BYTES:
        return f"env is {size} bytes, more than {MAX_ENV_BYTES}"
    return None


def is_absolute_dir(path: str) -> bool:
    return path.startswith("/") or _WINDOWS_ABSOLUTE.match(path) is not None
