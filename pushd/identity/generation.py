"""The identity generation: how an identity change reaches every API worker's cache at once.

`push-jobs-server-ctl` commands that change organizations, users, clients, keys or groups in the
local store call `bump(run_dir)` after their transaction committed and before they return.
Each API worker's `LocalSource` holds a `GenerationWatch` on the same file and asks it, before
every lookup, whether the file changed; if so it drops every cached identity answer. So the
first request a worker serves after the command returned reads the committed change, whatever
`principal_cache_ttl` is, and whether or not the broker is running (API workers keep serving
while the broker restarts).

Why a file and not a message on the broker's events socket: a published message reaches a
worker's reader thread some time after the ctl's command returned, so a request could still be
answered from the old cache in between; a `stat` of a file in `run_dir` (a few microseconds,
no database round trip) is ordered with the ctl's write by the kernel. API workers always share
the host, and `run_dir`, with the broker's ipc sockets, so the file is where they can see it.

    GENERATION_FILE                       the file's name in run_dir
    generation_path(run_dir) -> Path
    bump(run_dir) -> None                 replaces the file atomically (a new inode each time,
                                          0644 so a service account can read a root-written file)
    GenerationWatch(path)
        check(on_change) -> bool
            Calls ``on_change()`` and returns True when the file's identity (inode, size,
            change times) differs from what the watch last recorded (at creation, then after
            each change). The new identity is recorded only after ``on_change()`` returned, so
            a concurrent caller cannot see the change as handled before it was.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

__all__ = ["GENERATION_FILE", "GenerationWatch", "bump", "generation_path"]

GENERATION_FILE = "identity.generation"
_Signature = tuple[int, int, int, int] | None


def generation_path(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / GENERATION_FILE


def bump(run_dir: str | os.PathLike[str]) -> None:
    path = generation_path(run_dir)
    temporary = path.with_name(f".{GENERATION_FILE}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        # The content only makes each version differ; readers compare stat results.
        os.write(fd, f"{secrets.token_hex(8)}\n".encode())
    finally:
        os.close(fd)
    os.chmod(temporary, 0o644)  # whatever the umask
    os.replace(temporary, path)


def _signature(path: Path) -> _Signature:
    try:
        st = os.stat(path)
    except OSError:  # not written yet (no identity change since install), or unreadable
        return None
    # The inode alone could come back (a version two bumps old freed it); with the change
    # time in ns it cannot, as one ctl command takes far longer than the clock's granularity.
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class GenerationWatch:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: _Signature = _signature(path)

    def check(self, on_change: Callable[[], object]) -> bool:
        now = _signature(self.path)
        if now == self._seen:
            return False
        on_change()
        self._seen = now
        return True
