"""``GET /_status`` and ``GET /pushy/_status`` (no authentication; original-server.md 5.2)."""

from __future__ import annotations

import falcon

from pushd.api.broker import BrokerDown
from pushd.api.context import ApiContext
from pushd.api.resources.common import BROKER_DOWN, send_json


class StatusResource:
    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            status = self._ctx.broker.status()
        except BrokerDown:
            # Still JSON with a reason: the API answers, but jobs cannot run right now.
            send_json(resp, {"status": "broker unavailable", "error": BROKER_DOWN}, 503)
            return
        send_json(
            resp,
            {
                "status": "it's alive",
                "incarnation_id": status.get("incarnation_id"),
                "node_fsm_count": status.get("node_fsm_count", 0),
                "job_processes": list(status.get("job_processes") or []),
            },
        )
