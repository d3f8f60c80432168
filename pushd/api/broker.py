"""The API's view of the broker's control socket (the ops of docs/architecture.md).

    BrokerGateway(call)
        `call(request: dict) -> dict` sends one control request and returns the reply; it is
        normally ``BrokerClient.request`` of `pushd.broker.control_client` on a green zmq context.
        Any exception whose class is named ``BrokerUnavailable`` (a timeout), or an OSError,
        becomes BrokerDown. Methods:
        ``admit(org_name, org_id, node, ccpk) -> dict`` (session_key b64, curve_public_key,
        incarnation_id), ``start_job(org_id, job_id)``, ``abort_job(org_id, job_id) -> dict``,
        ``node_states(org_id, nodes) -> list[dict]``, ``status() -> dict``.
    BrokerDown: the broker did not answer; the API answers 503 ``{"error": "..."}``.
    BrokerRefused(code, message): the broker answered ``{"ok": false, "error": code}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class BrokerDown(Exception):
    pass


class BrokerRefused(Exception):
    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class BrokerGateway:
    def __init__(self, call: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self._call = call

    def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            reply = self._call(request)
        except OSError as err:
            raise BrokerDown(str(err)) from None
        except Exception as err:
            if type(err).__name__ == "BrokerUnavailable":
                raise BrokerDown(str(err)) from None
            raise
        if not isinstance(reply, dict):
            raise BrokerDown("malformed reply from broker")
        if reply.get("ok") is False:
            raise BrokerRefused(str(reply.get("error", "error")), str(reply.get("message", "")))
        return reply

    def admit(self, org_name: str, org_id: str, node: str, ccpk: str | None) -> dict[str, Any]:
        return self._request(
            {"op": "admit", "org_name": org_name, "org_id": org_id, "node": node, "ccpk": ccpk}
        )

    def start_job(self, org_id: str, job_id: str) -> None:
        self._request({"op": "start_job", "org_id": org_id, "job_id": job_id})

    def abort_job(self, org_id: str, job_id: str) -> dict[str, Any]:
        return self._request({"op": "abort_job", "org_id": org_id, "job_id": job_id})

    def node_states(self, org_id: str, nodes: list[str] | None) -> list[dict[str, Any]]:
        reply = self._request({"op": "node_states", "org_id": org_id, "nodes": nodes})
        return list(reply.get("nodes") or [])

    def status(self) -> dict[str, Any]:
        return self._request({"op": "status"})
