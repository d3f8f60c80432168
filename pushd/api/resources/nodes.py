"""``GET .../pushy/node_states`` and ``GET .../pushy/node_states/NODE`` (section 5.8).

The list shows every node the broker knows in the org with ``node_name`` and ``availability``
(what knife prints) plus pushd's ``status`` and ``last_seen``. The named form answers exactly
``{"node_name", "status", "availability"}``; a never-seen node is ``offline``/``unavailable``.
"""

from __future__ import annotations

from typing import Any

import falcon

from pushd.api.context import ApiContext
from pushd.api.resources.common import authorized, broker_call, org_id_of, send_json


class NodeStatesResource:
    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, org: str) -> None:
        requestor = authorized(self._ctx, req, org, "read")
        states = broker_call(self._ctx.broker.node_states, org_id_of(requestor), None)
        send_json(
            resp,
            [
                {
                    "node_name": state.get("node_name"),
                    "availability": state.get("availability", "unavailable"),
                    "status": state.get("status", "offline"),
                    "last_seen": state.get("last_seen"),
                }
                for state in states
            ],
        )


class NodeStateResource:
    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, org: str, node: str) -> None:
        requestor = authorized(self._ctx, req, org, "read")
        states = broker_call(self._ctx.broker.node_states, org_id_of(requestor), [node])
        state: dict[str, Any] = next((s for s in states if s.get("node_name") == node), {})
        send_json(
            resp,
            {
                "node_name": node,
                "status": state.get("status", "offline"),
                "availability": state.get("availability", "unavailable"),
            },
        )
