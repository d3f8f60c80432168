"""Dashboard login: one-time URLs minted over signed REST, cookie sessions, CSRF tokens.

    LOGIN_TTL = 60                              seconds a login URL is valid (single use)
    COOKIE = "pushd_dashboard"
    hash_token(token) -> str                    SHA-256 hex: only hashes reach the database
    mint_login(store, org_id, org_name, user_name) -> token
    open_session(store, token, ttl) -> (cookie_value, expires_at) | None
        Consumes a login token (any worker, once) and stores a new session bound to its user
        and organization, with a fresh CSRF token; expired sessions are deleted on the way.
    Viewer(org_id, org_name, user_name, csrf_token, can_write)
    Sessions(store, principals, authz)
        ``viewer(req) -> Viewer``: the session of the request's cookie, with the user's rights
        checked now (a user removed from the org or the readers group loses the dashboard at
        once); raises NotLoggedIn (401) or NoAccess (403).
        ``check_csrf(viewer, submitted)``: raises BadCsrf (403) unless it matches.
    set_cookie(resp, req, value, ttl) / clear_cookie(resp, req)
        HttpOnly, SameSite=Strict, Path=/dashboard, Secure when the request came over https.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import falcon

from pushd.identity.base import SourceUnavailable
from pushd.store.times import utcnow

LOGIN_TTL = 60
COOKIE = "pushd_dashboard"
COOKIE_PATH = "/dashboard"
TOKEN_BYTES = 32
MAX_TOKEN = 128


class DashboardRefusal(Exception):
    """A refusal the dashboard renders as an HTML page (JSON for feeds and the data API)."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotLoggedIn(DashboardRefusal):
    status = 401


class NoAccess(DashboardRefusal):
    status = 403


class BadCsrf(DashboardRefusal):
    status = 403


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def mint_login(store: Any, org_id: str, org_name: str, user_name: str) -> str:
    token = secrets.token_urlsafe(TOKEN_BYTES)
    expires = utcnow() + timedelta(seconds=LOGIN_TTL)
    store.add_login_token(hash_token(token), org_id, org_name, user_name, expires)
    return token


def open_session(store: Any, token: str, ttl: int) -> tuple[str, datetime] | None:
    if not token or len(token) > MAX_TOKEN:
        return None
    grant = store.consume_login_token(hash_token(token))
    if grant is None:
        return None
    # Logins are rare: a good moment to drop expired sessions (and logins nobody followed).
    store.prune_dashboard()
    value = secrets.token_urlsafe(TOKEN_BYTES)
    expires = utcnow() + timedelta(seconds=ttl)
    store.add_session(
        hash_token(value), grant.org_id, grant.org_name, grant.user_name,
        secrets.token_urlsafe(TOKEN_BYTES), expires,
    )  # fmt: skip
    return value, expires


@dataclass(frozen=True)
class Viewer:
    org_id: str
    org_name: str
    user_name: str
    csrf_token: str
    can_write: bool
    cookie_hash: str


class Sessions:
    def __init__(self, store: Any, principals: Any, authz: Any) -> None:
        self._store = store
        self._principals = principals
        self._authz = authz

    def viewer(self, req: falcon.Request) -> Viewer:
        value = req.get_cookie_values(COOKIE)
        cookie = value[0] if value else ""
        if not cookie or len(cookie) > MAX_TOKEN:
            raise NotLoggedIn("not logged in: run `push-jobs dashboard` to get a login link")
        digest = hash_token(cookie)
        session = self._store.get_session(digest)
        if session is None:
            raise NotLoggedIn("your dashboard session has ended: run `push-jobs dashboard`")
        try:
            org = self._principals.org(session.org_name)
            principal = (
                None if org is None
                else self._principals.principal(session.org_name, session.user_name)
            )  # fmt: skip
            if org is None or principal is None or not principal.org_member:
                raise NoAccess(f"{session.user_name} is no longer in {session.org_name}")
            if str(org.id) != session.org_id:
                raise NoAccess(f"organization {session.org_name} was recreated; log in again")
            if not self._authz.can_read(self._principals, org, principal):
                raise NoAccess(f"{session.user_name} may not read jobs of {session.org_name}")
            can_write = bool(self._authz.can_write(self._principals, org, principal))
        except SourceUnavailable:
            raise DashboardUnavailable("the identity service is unavailable") from None
        return Viewer(
            session.org_id, session.org_name, session.user_name, session.csrf_token,
            can_write, digest,
        )  # fmt: skip

    @staticmethod
    def check_csrf(viewer: Viewer, submitted: str | None) -> None:
        if not submitted or not hmac.compare_digest(
            submitted.encode("utf-8", "surrogatepass"), viewer.csrf_token.encode()
        ):
            raise BadCsrf("refused: the form's CSRF token is missing or wrong")


class DashboardUnavailable(DashboardRefusal):
    status = 503


def _secure(req: falcon.Request) -> bool:
    proto = (req.get_header("X-Forwarded-Proto") or req.scheme or "http").split(",")[0]
    return proto.strip().lower() == "https"


def set_cookie(resp: falcon.Response, req: falcon.Request, value: str, ttl: int) -> None:
    resp.set_cookie(
        COOKIE, value, max_age=ttl, path=COOKIE_PATH, secure=_secure(req), http_only=True,
        same_site="Strict",
    )  # fmt: skip


def clear_cookie(resp: falcon.Response, req: falcon.Request) -> None:
    resp.set_cookie(
        COOKIE, "", max_age=0, path=COOKIE_PATH, secure=_secure(req), http_only=True,
        same_site="Strict",
    )  # fmt: skip
