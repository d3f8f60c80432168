"""Authentication and authorization of REST requests (original-server.md 5.1).

    Requestor: the authenticated principal of a request: ``name``, ``kind`` ('user' | 'client'),
        ``org`` (the organization object of the principal source: ``.name``, ``.id``),
        ``principal`` (the source's principal object) and ``public_key`` (the key that
        verified the signature; the config endpoint encrypts the session key to it).
    Authenticator(principals, authz, *, max_skew=900)
        ``authenticate(req, org_name, body) -> Requestor``: checks the X-Ops-* signature
        with `pushd.chefauth`, the organization (404 when it does not exist) and org
        membership (403). ``require(requestor, access)`` with access "read" or "write"
        applies the group rules (`pushd.identity.authz`). Every refusal is an ApiError in the
        original's listed shape ``{"error": [message]}``; a principal source that cannot
        reach its upstream gives 502, except the local source's database being unreachable,
        which is the API-wide 503 ``{"error": "the database is not available; ..."}``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import falcon

from pushd import chefauth
from pushd.api.errors import ApiError, auth_failure
from pushd.api.metrics import count_auth_failure
from pushd.errors import AuthError
from pushd.identity.base import Org, Principal, PrincipalSource, SourceUnavailable
from pushd.store.db import StoreUnavailable

log = logging.getLogger(__name__)


def org_missing(org_name: str) -> ApiError:
    return ApiError(404, f"organization '{org_name}' does not exist.", listed=True)


def forbidden(name: str) -> ApiError:
    return ApiError(
        403,
        f"User or client '{name}' does not have access to that action on this server.",
        listed=True,
    )


@dataclass(frozen=True)
class Requestor:
    name: str
    kind: str
    org: Org
    principal: Principal
    public_key: Any

    @property
    def is_client(self) -> bool:
        return self.kind == "client"


class _OrgMissing(Exception):
    """Raised from the key lookup so an unknown org answers 404, as the original does."""


class Authenticator:
    def __init__(
        self, principals: PrincipalSource, authz: Any, *, max_skew: int = 900
    ) -> None:
        self._principals = principals
        self._authz = authz
        self._max_skew = max_skew

    def authenticate(self, req: falcon.Request, org_name: str, body: bytes) -> Requestor:
        found: dict[str, Any] = {}

        def lookup_keys(user_id: str) -> list[Any] | None:
            org = self._call(self._principals.org, org_name)
            if org is None:
                raise _OrgMissing
            found["org"] = org
            principal = self._call(self._principals.principal, org_name, user_id)
            if principal is None:
                return None
            found["principal"] = principal
            return list(principal.public_keys)

        try:
            verified = chefauth.authenticate_request(
                req.method,
                req.path,
                req.headers,
                body,
                lookup_keys,
                now=time.time(),
                max_skew=self._max_skew,
            )
        except _OrgMissing:
            count_auth_failure("unknown_org")
            raise org_missing(org_name) from None
        except AuthError as err:
            count_auth_failure(err.reason)
            raise auth_failure(err) from None
        principal = found["principal"]
        requestor = Requestor(
            name=verified.user_id,
            kind=principal.kind,
            org=found["org"],
            principal=principal,
            public_key=verified.public_key,
        )
        if not principal.org_member:
            count_auth_failure("not_member")
            raise ApiError(
                403,
                f"'{requestor.name}' is not associated with organization '{org_name}'",
                listed=True,
            )
        return requestor

    def require(self, requestor: Requestor, access: str) -> None:
        check = self._authz.can_write if access == "write" else self._authz.can_read
        allowed = self._call(check, self._principals, requestor.org, requestor.principal)
        if not allowed:
            count_auth_failure("forbidden")
            raise forbidden(requestor.name)

    def require_config(
        self,
        requestor: Requestor,
        node: str,
        *,
        validate_client_node_name: bool,
        allow_user_node_config: bool = False,
    ) -> None:
        """The config endpoint's rule: a client only for itself; a user only when
        `allow_user_node_config`, with read access, for an existing client."""
        refusal = self._call(
            self._authz.can_read_config,
            self._principals,
            requestor.org,
            requestor.principal,
            node,
            validate_client_node_name=validate_client_node_name,
            allow_user_node_config=allow_user_node_config,
        )
        if refusal:
            count_auth_failure("forbidden")
            raise ApiError(403, refusal, listed=True)

    def _call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ApiError, _OrgMissing, AuthError):
            raise
        except Exception as err:
            if isinstance(err.__cause__, StoreUnavailable):
                # The local source is our own database: the same 503 as any other request
                # that cannot reach it (502 is for a Chef Server that does not answer).
                raise err.__cause__ from None
            if _is_upstream_failure(err):
                log.warning("principal source unavailable: %s", err)
                raise ApiError(502, "identity service unavailable", listed=True) from None
            raise


def _is_upstream_failure(err: Exception) -> bool:
    return isinstance(err, SourceUnavailable)
