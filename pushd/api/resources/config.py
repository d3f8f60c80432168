"""``GET /organizations/ORG/pushy/config/NODE``: a node's configuration and session key (section 3).

Unlike the original, the client's Curve key (``ccpk``) is handed to the broker's ZAP whitelist
only after the request has authenticated and passed authorization. Order of checks:
``ccpk`` shape (400 ``Missing ccpk`` / 401 ``Bad ccpk``, listed shape, as the original; a key
that is 40 Z85 characters but does not decode is also ``Bad ccpk``, not a 500), then
authentication, then a client must be the node itself (403 ``Client and node name must match``,
when ``validate_client_node_name``) while a user is refused unless ``allow_user_node_config``
(then it needs read access and the node must be an existing client; `authz.can_read_config`),
then admission.

Which protocol the answer sets up (the stock client's rule, original-client-and-knife.md 2.3:
a config with ``curve_public_key`` means Curve, one without it and the client's
``allow_unencrypted`` option means the 1.x protocol):
- ``disable_curve_encryption``: no port speaks Curve, so every request, ``ccpk`` or not, gets
  the 1.x answer a 1.x server gives: no ``curve_public_key``, ``command_addr`` the unencrypted
  port. (Handing a 2.x client a Curve key there made it loop on "No messages being received on
  command port" instead of falling back.) The ``ccpk`` is not checked or admitted.
- ``allow_unencrypted``: a request with ``ccpk`` gets Curve on ``command_port``; one without
  (a 1.x client) gets the 1.x answer.
- neither: ``ccpk`` is required.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import falcon

from pushd import chefauth
from pushd.api.context import ApiContext
from pushd.api.errors import ApiError
from pushd.api.resources.common import authorized, broker_call, org_id_of, send_json
from pushd.keys import z85_decode
from pushd.protocol.config import _Z85_ALPHABET, encrypt_session_key

# The alphabet is the protocol module's, which the client checks the server's curve key
# against: one definition of a Curve key's shape on both sides. (It is private there, and
# pushd.protocol.config is not this module's to change, so it is borrowed rather than copied.)
Z85_ALPHABET = _Z85_ALPHABET
CCPK_LENGTH = 40  # a 32-byte Curve public key in Z85


def is_curve_key(ccpk: str) -> bool:
    """40 Z85 characters that decode: a 5-character group worth 2**32 or more (``#####``) is
    in the alphabet but is no key, and the broker refuses it."""
    if len(ccpk) != CCPK_LENGTH or not set(ccpk) <= Z85_ALPHABET:
        return False
    try:
        z85_decode(ccpk)
    except ValueError:
        return False
    return True


class ConfigResource:
    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, org: str, node: str) -> None:
        settings = self._ctx.settings
        ccpk = req.get_param("ccpk")
        legacy = False
        if settings.disable_curve_encryption:
            legacy = True  # as the original: the ccpk is not even checked in this mode
        elif not ccpk:
            if settings.allow_unencrypted:
                legacy = True
            else:
                raise ApiError(400, "Missing ccpk", listed=True)
        elif not is_curve_key(ccpk):
            raise ApiError(401, "Bad ccpk", listed=True)

        requestor = authorized(self._ctx, req, org, None)
        self._ctx.authenticator.require_config(
            requestor,
            node,
            validate_client_node_name=settings.validate_client_node_name,
            allow_user_node_config=settings.allow_user_node_config,
        )

        org_id = org_id_of(requestor)
        admitted = broker_call(
            self._ctx.broker.admit, org, org_id, node, None if legacy else ccpk
        )
        try:
            session_key = base64.b64decode(admitted["session_key"], validate=True)
        except (KeyError, binascii.Error, ValueError, TypeError):
            raise ApiError(502, "the broker returned no session key") from None
        send_json(resp, self._document(org, node, admitted, session_key, requestor, legacy))

    def _document(
        self,
        org: str,
        node: str,
        admitted: dict[str, Any],
        session_key: bytes,
        requestor: Any,
        legacy: bool,
    ) -> dict[str, Any]:
        public_key = requestor.public_key
        if not hasattr(public_key, "encrypt"):
            public_key = chefauth.load_public_key(public_key)
        return self._ctx.settings.node_config.document(
            node=node,
            organization=org,
            public_key_pem=self._ctx.server_public_key_pem,
            encoded_session_key=encrypt_session_key(public_key, session_key),
            incarnation_id=admitted["incarnation_id"],
            curve_public_key=None if legacy else admitted.get("curve_public_key"),
            legacy=legacy,
        )
