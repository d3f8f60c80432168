"""Bounded reads of small files the operator names (config files, keys), with ConfigErrors.

    read_bounded(path: Path, limit: int, what: str) -> bytes
        The whole file, at most `limit` bytes. ConfigError(filename=path) with
        ``"cannot read <what>: <reason>"`` when it cannot be opened or read, and
        ``"<what> is larger than <limit> bytes"`` when it is bigger (never read past limit + 1).

Stdlib only: the node client and the CLI import it.
"""

from __future__ import annotations

from pathlib import Path

from pushd.errors import ConfigError


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """Read `path` whole if it holds at most `limit` bytes (see the module docstring)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror}", filename=str(path)) from None
    if len(data) > limit:
        raise ConfigError(f"{what} is larger than {limit} bytes", filename=str(path))
    return data
