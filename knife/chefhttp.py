"""A small signed HTTP client for the push jobs REST API (stdlib http.client only).

Public API:
    Response(status, headers, body)           .json() parses the body
    ApiError(status, message, body)           a non-2xx answer (a CliError, exit code 1);
                                              `message` is the server's reason, shown as is
    segment(value) -> str                     quote a job id / node name for a URL path
    ChefHTTP(server_url, user, key_pem, *, ssl_verify=True, ca_file=None,
             trusted_certs_dir=None, timeout=30.0, sign_version="1.3")
        .request(method, path, body=None, *, params=None, accept="application/json",
                 headers=None, max_bytes=MAX_RESPONSE_BYTES) -> Response      (raises ApiError)
        .get_json(path, params=None) -> Any
        .post_json(path, document) -> Any
        .open_stream(path, headers=None, timeout=None) -> (HTTPConnection, HTTPResponse, socket)
                                            the socket: to shut down under a blocked read
            a signed GET left open for reading (SSE); the caller closes the connection
        .url(path) -> str
        .server_root() -> ChefHTTP | None
            the same client at the server's root, without the ``/organizations/NAME`` suffix
            (None when the URL has none): single-tenant Chef servers serve search there

`path` is relative to the organization URL (`chef_server_url`, e.g.
`https://chef.example/organizations/acme`), like knife's `rest` calls: `pushy/jobs`.
Requests are signed with the Chef protocol (`pushd.chefauth.sign_request`, 1.3 by default) over
the full URL path without the query string. TLS uses the system CAs plus `ssl_ca_file` and the
certificates in knife's `trusted_certs` directory; `ssl_verify=False` is knife's :verify_none.
"""

from __future__ import annotations

import copy
import http.client
import json
import re
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from pushd_knife.exitcodes import ERROR, CliError

from pushd.chefauth import load_private_key, sign_request

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
USER_AGENT = "push-jobs (pushd CLI)"
_ORG_SUFFIX = re.compile(r"/organizations/[^/]+$")


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise CliError(f"the server answered {self.status} with a body that is not JSON:"
                           f" {_snippet(self.body)}") from None


class ApiError(CliError):
    """The server answered with a non-2xx status; `message` is its reason, unchanged."""

    def __init__(self, status: int, message: str, body: bytes = b"") -> None:
        super().__init__(message, ERROR)
        self.status = status
        self.body = body


def segment(value: str) -> str:
    """One URL path segment (a job id or node name) with `/`, `?`, `#` and `%` escaped."""
    return quote(value, safe="")


def _snippet(body: bytes, limit: int = 300) -> str:
    text = body.decode("utf-8", errors="replace").strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


def error_message(status: int, body: bytes) -> str:
    """The reason in an error body: `{"error": "x"}`, `{"error": ["x", ...]}` or the text."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        document = None
    if isinstance(document, dict):
        reason = document.get("error", document.get("message", document.get("reason")))
        if isinstance(reason, list):
            reason = "; ".join(str(item) for item in reason)
        if reason:
            return str(reason)
    text = _snippet(body)
    return text or http.client.responses.get(status, f"HTTP {status}")


def _ssl_context(verify: bool, ca_file: str | None, trusted_dir: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise CliError(f"cannot load ssl_ca_file {ca_file}: {exc}") from None
    if trusted_dir is not None and trusted_dir.is_dir():
        # knife's `knife ssl fetch` stores self-signed server certificates here.
        for cert in sorted(trusted_dir.iterdir()):
            if cert.suffix in (".crt", ".pem") and cert.is_file():
                try:
                    context.load_verify_locations(cafile=str(cert))
                except (OSError, ssl.SSLError):
                    continue
    return context


class ChefHTTP:
    """Signed requests to one organization's URL. Not thread-safe per call; cheap to share."""

    def __init__(
        self,
        server_url: str,
        user: str,
        key_pem: bytes,
        *,
        ssl_verify: bool = True,
        ca_file: str | None = None,
        trusted_certs_dir: Path | None = None,
        timeout: float = 30.0,
        sign_version: str = "1.3",
    ) -> None:
        parts = urlsplit(server_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CliError(f"chef_server_url {server_url!r} is not an http(s) URL")
        self.server_url = server_url.rstrip("/")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        self.user = user
        self.key = _load_key(key_pem)
        self.timeout = timeout
        self.sign_version = sign_version
        self._ssl = (
            _ssl_context(ssl_verify, ca_file, trusted_certs_dir) if self.scheme == "https" else None
        )

    def server_root(self) -> ChefHTTP | None:
        match = _ORG_SUFFIX.search(self.base_path)
        if match is None:
            return None
        root = copy.copy(self)
        root.base_path = self.base_path[: match.start()]
        root.server_url = self.server_url[: len(self.server_url) - len(match.group(0))]
        return root

    def url(self, path: str) -> str:
        return f"{self.server_url}/{path.lstrip('/')}"

    def _full_path(self, path: str) -> str:
        return f"{self.base_path}/{path.lstrip('/')}"

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        effective = self.timeout if timeout is None else timeout
        if self._ssl is not None:
            return http.client.HTTPSConnection(self.host, self.port, timeout=effective,
                                               context=self._ssl)
        return http.client.HTTPConnection(self.host, self.port, timeout=effective)

    def _send(
        self,
        method: str,
        path: str,
        body: bytes,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None,
        accept: str,
        timeout: float | None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, socket.socket | None]:
        full_path = quote(self._full_path(path), safe="/%:@")
        signed = sign_request(method, full_path, body, self.user, self.key,
                              version=self.sign_version)
        all_headers = {
            "Accept": accept,
            "User-Agent": USER_AGENT,
            "X-Chef-Version": "14.0.0",
            **signed,
            **(headers or {}),
        }
        if body or method in ("POST", "PUT"):
            all_headers["Content-Type"] = "application/json"
        target = full_path + (f"?{urlencode(params)}" if params else "")
        conn = self._connection(timeout)
        try:
            conn.request(method, target, body=body or None, headers=all_headers)
            # Taken before getresponse(): a response that reads until the connection closes
            # takes the socket over, and conn.sock is None afterwards.
            sock = conn.sock
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise CliError(f"cannot reach {self.server_url}: {_describe(exc)}") from None
        return conn, response, sock

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        params: dict[str, Any] | None = None,
        accept: str = "application/json",
        headers: dict[str, str] | None = None,
        max_bytes: int = MAX_RESPONSE_BYTES,
        timeout: float | None = None,
    ) -> Response:
        conn, response, _ = self._send(method, path, body or b"", params, headers, accept,
                                       timeout)
        try:
            data = response.read(max_bytes + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise CliError(f"lost the connection to {self.server_url}: {_describe(exc)}") from None
        finally:
            conn.close()
        if len(data) > max_bytes:
            raise CliError(f"the server's answer to {method} {path} is larger than"
                           f" {max_bytes} bytes")
        result = Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
        if not 200 <= response.status < 300:
            raise ApiError(response.status, error_message(response.status, data), data)
        return result

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params).json()

    def post_json(self, path: str, document: Any) -> Any:
        body = json.dumps(document).encode("utf-8")
        response = self.request("POST", path, body)
        return response.json() if response.body.strip() else {}

    def open_stream(
        self, path: str, headers: dict[str, str] | None = None, timeout: float | None = None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, socket.socket | None]:
        """A signed GET whose 2xx response is left unread; non-2xx raises ApiError. The
        socket comes too: shutting it down wakes a read blocked in another thread."""
        conn, response, sock = self._send("GET", path, b"", None, headers, "text/event-stream",
                                          timeout)
        if not 200 <= response.status < 300:
            try:
                data = response.read(64 * 1024)
            except (OSError, http.client.HTTPException):
                data = b""
            conn.close()
            raise ApiError(response.status, error_message(response.status, data), data)
        return conn, response, sock


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS certificate not trusted ({exc.verify_message}); add it to knife's"
                " trusted_certs directory, set ssl_ca_file, or use --ssl-verify-mode verify_none")
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    return str(exc) or type(exc).__name__


def _load_key(pem: bytes) -> Any:
    """Load the PEM private key once (cryptography only; no falcon/peewee on a workstation)."""
    try:
        return load_private_key(pem)
    except (ValueError, TypeError) as exc:
        raise CliError(f"the client key is not a usable unencrypted PEM private key: {exc}") \
            from None
