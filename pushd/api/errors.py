"""JSON errors for the REST API, in the shapes knife-push and the conformance suite parse.

    ApiError(status, message, *, listed=False, headers=None, reason=None)
        Raise from any responder or hook. The body is ``{"error": message}``, or
        ``{"error": [message]}`` when ``listed`` is true (the original's shape for every
        authentication and authorization error); a `reason` adds ``"reason": reason`` (used
        where the original's message is generic, e.g. "an unknown validation error has
        occurred", so the user still learns what was wrong).
    auth_failure(err: pushd.errors.AuthError) -> ApiError
        An authentication/authorization refusal in the listed shape, keeping its headers
        (``WWW-Authenticate`` on a bad signature).
    install_error_handlers(app)
        Makes every error the app can produce a JSON body with a reason: ApiError, falcon's own
        HTTPErrors (405 with ``Allow``, unrouted 404, ...), an unreachable database (503) and
        unexpected exceptions (500, logged).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import falcon

from pushd.errors import AuthError
from pushd.store.db import StoreUnavailable

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A refusal with an HTTP status and a reason a user can read."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        listed: bool = False,
        headers: dict[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.listed = listed
        self.headers = headers or {}
        self.reason = reason

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": [self.message] if self.listed else self.message}
        if self.reason is not None:
            body["reason"] = self.reason
        return body


def auth_failure(err: AuthError) -> ApiError:
    return ApiError(err.status, err.message, listed=True, headers=dict(err.headers))


def _write(resp: falcon.Response, status: int, body: dict[str, Any], headers: dict) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(body)
    # NOTE: a streaming responder may already have set a stream; an error replaces it.
    resp.stream = None
    for name, value in headers.items():
        resp.set_header(name, value)


def _handle_api_error(
    req: falcon.Request, resp: falcon.Response, ex: ApiError, params: dict
) -> None:
    _write(resp, ex.status, ex.body(), ex.headers)


# Reasons for falcon's own errors, keyed by status; falcon's titles are fine otherwise.
_REASONS = {
    404: "not found",
    405: "method not allowed",
    406: "not acceptable",
    411: "length required",
    413: "request body too large",
}


def _handle_http_error(
    req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError, params: dict
) -> None:
    status = ex.status_code
    message = ex.description or _REASONS.get(status) or ex.title or "error"
    headers = dict(ex.headers or {})
    _write(resp, status, {"error": message}, headers)


def _handle_unexpected(
    req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict
) -> None:
    if isinstance(ex, falcon.HTTPError):
        _handle_http_error(req, resp, ex, params)
        return
    if isinstance(ex, StoreUnavailable):
        log.warning("database unavailable on %s %s: %s", req.method, req.path, ex)
        _write(resp, 503, {"error": "the database is not available; try again shortly"}, {})
        return
    log.exception("unhandled error on %s %s", req.method, req.path)
    _write(resp, 500, {"error": "internal server error"}, {})


def install_error_handlers(app: falcon.App) -> None:
    # Falcon looks handlers up by the most specific class, so the order here is irrelevant.
    app.add_error_handler(Exception, _handle_unexpected)
    app.add_error_handler(falcon.HTTPError, _handle_http_error)
    app.add_error_handler(ApiError, _handle_api_error)
