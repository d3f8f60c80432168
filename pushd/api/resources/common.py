"""Helpers every resource uses.

    authorized(ctx, req, org_name, access, body=b"") -> Requestor
        Authenticates the request and checks `access` ("read" | "write" | None).
    send_json(resp, doc, status=200)
    broker_call(fn, *args) -> result
        Runs a BrokerGateway method; BrokerDown becomes 503 ``{"error": "..."}``.
    find_job(ctx, org_id, job_id) -> job view (404 when the org has no such job)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import falcon

from pushd.api.auth import Requestor
from pushd.api.broker import BrokerDown
from pushd.api.context import ApiContext
from pushd.api.errors import ApiError

BROKER_DOWN = "the push jobs broker is not available; try again shortly"
JOB_ID_MAX = 64


def authorized(
    ctx: ApiContext, req: falcon.Request, org_name: str, access: str | None, body: bytes = b""
) -> Requestor:
    requestor = ctx.authenticator.authenticate(req, org_name, body)
    if access is not None:
        ctx.authenticator.require(requestor, access)
    return requestor


def send_json(resp: falcon.Response, doc: Any, status: int = 200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(doc)


def broker_call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except BrokerDown:
        raise ApiError(503, BROKER_DOWN) from None


def org_id_of(requestor: Requestor) -> str:
    return str(requestor.org.id)


def find_job(ctx: ApiContext, org_id: str, job_id: str) -> Any:
    job = None
    if 0 < len(job_id) <= JOB_ID_MAX:
        job = ctx.store.get_job(org_id, job_id)
    if job is None:
        raise ApiError(404, f"job '{job_id}' not found")
    return job
