"""The signed REST fetch of this node's push-jobs config (`GET .../pushy/config/NODE?ccpk=...`).

Public API:

    fetch_config(config: ClientConfig, client_key: RSAPrivateKey, curve_public: str | None,
                 *, timeout=5.0) -> FetchedConfig
        Signs the request as the node (Chef X-Ops headers, protocol 1.3), sends the client's
        Curve public key as `ccpk`, validates the document (pushd.protocol.parse_config) and
        decrypts the session key. Raises FetchError.
    FetchedConfig(node_config: NodeConfig, session_key: bytes)
    FetchError(message, status=None, permanent=False)
        `permanent` marks answers that retrying will not fix without an operator (401, 403,
        400, a document we cannot use); the agent keeps retrying anyway, at its backoff cap,
        so a fixed server or ACL is picked up without a restart.

Bounded: the response is read up to MAX_CONFIG_DOCUMENT bytes; one request never takes longer
than `timeout` per socket operation.
"""

from __future__ import annotations

import glob
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from pushd_client.config import ClientConfig

from pushd.chefauth import sign_request
from pushd.errors import ProtocolError
from pushd.protocol.config import (
    MAX_CONFIG_DOCUMENT,
    NodeConfig,
    decrypt_session_key,
    parse_config,
)

USER_AGENT = "push-jobs-client (pushd)"


@dataclass(frozen=True)
class FetchedConfig:
    """A validated config document and the decrypted HMAC session key."""

    node_config: NodeConfig
    session_key: bytes


class FetchError(Exception):
    """The config could not be fetched or used; `permanent` when retrying will not help."""

    def __init__(self, message: str, status: int | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.permanent = permanent


def _ssl_context(config: ClientConfig) -> ssl.SSLContext:
    if config.ssl_verify_mode == "verify_none":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context(cafile=config.ssl_ca_file)
    if config.trusted_certs_dir:
        for path in sorted(glob.glob(os.path.join(config.trusted_certs_dir, "*"))):
            if path.endswith((".pem", ".crt")):
                context.load_verify_locations(cafile=path)
    return context


def _error_text(body: bytes) -> str:
    try:
        document = json.loads(body)
        errors = document.get("error") if isinstance(document, dict) else None
        if isinstance(errors, list):
            return "; ".join(str(e) for e in errors)
        if errors:
            return str(errors)
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace")


def fetch_config(
    config: ClientConfig,
    client_key: RSAPrivateKey,
    curve_public: str | None,
    *,
    timeout: float = 5.0,
) -> FetchedConfig:
    base = config.chef_server_url.rstrip("/")
    node = urllib.parse.quote(config.node_name, safe="")
    query = {"version": "2.0"}
    if curve_public is not None:
        query = {"ccpk": curve_public, "version": "2.0"}
    url = f"{base}/pushy/config/{node}?{urllib.parse.urlencode(query)}"
    parts = urllib.parse.urlsplit(url)
    headers = sign_request("GET", parts.path, b"", config.node_name, client_key)
    headers.update(
        {"Accept": "application/json", "User-Agent": USER_AGENT, "X-Chef-Version": "15.0.0"}
    )
    request = urllib.request.Request(url, headers=headers, method="GET")
    context = _ssl_context(config) if parts.scheme == "https" else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            body = response.read(MAX_CONFIG_DOCUMENT + 1)
    except urllib.error.HTTPError as err:
        detail = _error_text(err.read(4096))
        permanent = err.code in (400, 401, 403, 404)
        raise FetchError(f"HTTP {err.code} from {base}: {detail}", err.code, permanent) from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise FetchError(f"cannot reach {base}: {reason}") from None
    if len(body) > MAX_CONFIG_DOCUMENT:
        raise FetchError(f"config from {base} is larger than {MAX_CONFIG_DOCUMENT} bytes",
                         permanent=True)
    try:
        node_config = parse_config(body)
        session_key = decrypt_session_key(
            client_key, node_config.encoded_session_key
        )
    except ProtocolError as err:
        raise FetchError(f"unusable config from {base}: {err}", permanent=True) from None
    return FetchedConfig(node_config, session_key)
