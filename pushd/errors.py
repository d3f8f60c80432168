"""Exception tree shared by every part of pushd (stdlib only; the node client imports it).

    PushdError
     ├── ConfigError          a configuration file or value is wrong (file, line, column, text)
     ├── ProtocolError        a ZeroMQ frame or message is malformed, unsigned, stale or too large
     ├── AuthError            a REST request failed Chef authentication or authorization
     └── StoreError           the database refused an operation
"""

from __future__ import annotations


class PushdError(Exception):
    """Base of every error pushd raises on purpose."""


class ConfigError(PushdError):
    """A configuration problem, located where possible.

    `str(err)` is one line an operator can act on: ``FILE:LINE:COL: MESSAGE: TEXT``.
    """

    def __init__(
        self,
        message: str,
        *,
        filename: str | None = None,
        line: int | None = None,
        column: int | None = None,
        text: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.filename = filename
        self.line = line
        self.column = column
        self.text = text

    def __str__(self) -> str:
        where = ":".join(
            str(part) for part in (self.filename, self.line, self.column) if part is not None
        )
        out = f"{where}: {self.message}" if where else self.message
        if self.text:
            out += f": {self.text}"
        return out


class ProtocolError(PushdError):
    """A wire message that must be dropped. `reason` is a short stable code for counters/logs."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class AuthError(PushdError):
    """A REST request that must be refused with `status` and the original's `message`."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        reason: str = "bad_signature",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        # A short stable code for metrics (pushd_auth_failures_total{reason}).
        self.reason = reason


class StoreError(PushdError):
    """A database operation failed in a way callers may want to report."""
