"""gunicorn's access log with the client's address when the request came through a proxy.

    ProxyAwareLogger         gunicorn ``logger_class``: the ``%(h)s`` atom is the client address
                             (see `client_address`), not the proxy's
    client_address(peer, forwarded_for, trusted) -> str
        `peer` when it is not a trusted proxy; else the right-most X-Forwarded-For entry that is
        not a trusted proxy (each proxy appends the address it saw), or the left-most entry when
        every entry is trusted
    ACCESS_LOG_FORMAT        client, requestor (X-Ops-UserId), request line, status, bytes, seconds

Trusted proxies are gunicorn's ``forwarded_allow_ips`` (default ``127.0.0.1,::1``): on a Chef
Server host, its nginx on the same host. An X-Forwarded-For from anyone else is ignored, so a
client cannot choose the address it is logged under.
"""

from __future__ import annotations

from collections.abc import Collection, MutableMapping
from typing import Any

from gunicorn.glogging import Logger

__all__ = ["ACCESS_LOG_FORMAT", "ProxyAwareLogger", "client_address"]

ACCESS_LOG_FORMAT = '%(h)s %({x-ops-userid}i)s "%(r)s" %(s)s %(b)s %(L)ss'


def client_address(peer: str, forwarded_for: str | None, trusted: Collection[str]) -> str:
    allow_all = "*" in trusted
    if not forwarded_for or not (allow_all or peer in trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not (allow_all or hop in trusted):
            return hop
    return hops[0] if hops else peer


class ProxyAwareLogger(Logger):
    def atoms(
        self, resp: Any, req: Any, environ: MutableMapping[str, Any], request_time: Any
    ) -> Any:
        atoms = super().atoms(resp, req, environ, request_time)
        trusted = self.cfg.forwarded_allow_ips
        if isinstance(trusted, str):
            trusted = [item.strip() for item in trusted.split(",")]
        atoms["h"] = client_address(
            environ.get("REMOTE_ADDR", "-"), environ.get("HTTP_X_FORWARDED_FOR"), trusted or ()
        )
        return atoms
