"""Reading svlogd's ``current`` files: the last lines, and following them (offset based).

    last_lines(path, count, *, max_bytes=1 MiB) -> list[str]
        The last `count` lines of a file, reading backwards at most `max_bytes`.
    LogFollower(paths, *, prefix=True)
        poll() -> list[str]    lines appended since the last poll, "<name>: " prefixed when
                               several files are followed. Remembers (inode, offset) per file;
                               svlogd's rotation (``current`` renamed, a new one created) or
                               truncation restarts at offset 0 of the new file. A partial last
                               line waits for its newline. Each poll reads at most 1 MiB per file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LogFollower", "last_lines"]

READ_LIMIT = 1024 * 1024


def last_lines(path: Path, count: int, *, max_bytes: int = READ_LIMIT) -> list[str]:
    if count <= 0:
        return []
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            start = max(0, size - max_bytes)
            handle.seek(start)
            data = handle.read(size - start)
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # the first line read is probably cut
    return lines[-count:]


@dataclass
class _Position:
    inode: int | None = None
    offset: int = 0
    pending: bytes = b""


class LogFollower:
    def __init__(self, paths: list[tuple[str, Path]], *, prefix: bool = True) -> None:
        """`paths`: (label, file) pairs; existing files are followed from their current end."""
        self._paths = paths
        self._prefix = prefix
        self._positions: dict[Path, _Position] = {}
        for _, path in paths:
            position = _Position()
            try:
                stat = path.stat()
                position.inode, position.offset = stat.st_ino, stat.st_size
            except OSError:
                pass
            self._positions[path] = position

    def poll(self) -> list[str]:
        out: list[str] = []
        for label, path in self._paths:
            for line in self._read_new(path):
                out.append(f"{label}: {line}" if self._prefix else line)
        return out

    def _read_new(self, path: Path) -> list[str]:
        position = self._positions[path]
        try:
            with open(path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                if stat.st_ino != position.inode or stat.st_size < position.offset:
                    position.inode, position.offset, position.pending = stat.st_ino, 0, b""
                handle.seek(position.offset)
                data = handle.read(READ_LIMIT)
        except OSError:
            return []
        position.offset += len(data)
        data = position.pending + data
        complete, newline, rest = data.rpartition(b"\n")
        position.pending = rest
        if len(rest) > READ_LIMIT:  # a line that never ends is shown in pieces, not hoarded
            complete, newline, position.pending = data, b"\n", b""
        if not newline:
            return []
        return complete.decode("utf-8", errors="replace").split("\n")
