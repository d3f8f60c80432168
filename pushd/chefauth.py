"""Chef request signing (the `X-Ops-*` headers), client and server side.

Pure: imports only the standard library and `cryptography`, so the node client and the CLI can
use it. Behaviour follows mixlib-authentication (the Ruby signer used by chef-client, knife and the
stock push-jobs client) and chef_authn (the Erlang verifier of the original server).

Client side
-----------
``sign_request(method, path, body, user_id, private_key, *, version="1.3", timestamp=None,
server_api_version="1") -> dict[str, str]``
    The headers to add to a request: ``X-Ops-Sign``, ``X-Ops-UserId``, ``X-Ops-Timestamp``,
    ``X-Ops-Content-Hash``, ``X-Ops-Authorization-1..N`` (60-character lines) and, for 1.3,
    ``X-Ops-Server-API-Version``. `path` may carry a query string (it is not signed). `body` is
    the exact bytes sent (``b""`` for GET). `private_key` is an `RSAPrivateKey` or PEM text.
    `timestamp` is a `datetime`, epoch seconds, an already formatted string, or None for now.
    Versions: "1.0" (SHA-1, RSA private-encrypt of the canonical request), "1.1" (as 1.0 with
    the user id hashed), "1.2" (SHA-1, PKCS#1 v1.5 signature) and "1.3" (SHA-256, PKCS#1 v1.5,
    signs the server API version too). Raises `ValueError` for an unknown version or a request
    too long for a 1.0/1.1 signature (long user ids need 1.1 or later).

Server side
-----------
``verify_request(method, path, headers, body, lookup_keys, *, now=None, max_skew=900) -> str``
    Authenticates a request and returns the user id it was signed by. `headers` is a mapping
    (or iterable of pairs) with names in any case; an empty value counts as missing.
    ``lookup_keys(user_id)`` returns the principal's public keys (PEM text or `RSAPublicKey`,
    any number; the first that verifies wins) or None when the principal is unknown; whatever
    it raises propagates unchanged (so a source can raise its own "organization missing" or
    "upstream unreachable" errors). `now` is a `datetime` or epoch seconds (default: the clock).
    Raises `pushd.errors.AuthError(status, message, headers)` with the original server's status
    and message; the HTTP layer answers ``{"error": [message]}`` with `headers` added:

    ======  ===========================================================================
    400     ``missing required authentication header(s) 'X-Ops-UserId', ...``
    401     ``bad header(s) 'X-Ops-Timestamp'`` (unparseable timestamp)
    401     ``Failed to authenticate as USER. Synchronize the clock on your host.``
    400     ``Unsupported authentication protocol version``
    401     ``Failed to authenticate as 'USER'. Ensure that your node_name and client key
            are correct.`` (unknown principal; carries ``WWW-Authenticate``)
    401     ``Invalid signature for user or client 'USER'`` (bad, partial or missing
            signature, wrong method/path/body, content hash not matching the body; carries
            ``WWW-Authenticate: X-Ops-Sign version="1.0" version="1.1"``)
    ======  ===========================================================================

    Checks run in the original's order: required headers, timestamp, signing description,
    principal lookup, content hash, signature.

``authenticate_request(...) -> Verified``
    Same arguments and errors as `verify_request`; returns ``Verified(user_id, public_key)``,
    the key that verified the signature (the config endpoint encrypts the session key to it).

Helpers
-------
``canonical_path(path) -> str``, ``content_hash(body, version) -> str``,
``canonical_request(method, path, content_hash, timestamp, user_id, version,
server_api_version) -> str``, ``format_timestamp(when) -> str``,
``parse_timestamp(text) -> datetime`` (ValueError when malformed),
``load_private_key(pem) -> RSAPrivateKey``, ``load_private_key_file(path) -> RSAPrivateKey``,
``load_public_key(pem) -> RSAPublicKey`` (SubjectPublicKeyInfo, PKCS#1 "RSA PUBLIC KEY" or an
X.509 certificate; ValueError otherwise). ``SUPPORTED_VERSIONS``, ``DEFAULT_MAX_SKEW``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from pushd.errors import AuthError

__all__ = [
    "DEFAULT_MAX_SKEW",
    "SUPPORTED_VERSIONS",
    "WWW_AUTHENTICATE",
    "PublicKeyLike",
    "Verified",
    "authenticate_request",
    "canonical_path",
    "canonical_request",
    "content_hash",
    "format_timestamp",
    "load_private_key",
    "load_private_key_file",
    "load_public_key",
    "parse_timestamp",
    "sign_request",
    "verify_request",
]

PublicKeyLike = rsa.RSAPublicKey | str | bytes

DEFAULT_MAX_SKEW = 900  # seconds, chef_authn's ?AUTH_SKEW in the original server
SUPPORTED_VERSIONS = ("1.0", "1.1", "1.2", "1.3")
# The algorithm each protocol version must be signed with (as chef_authn requires).
_ALGORITHM_FOR_VERSION = {"1.0": "sha1", "1.1": "sha1", "1.2": "sha1", "1.3": "sha256"}
# What the original answers in WWW-Authenticate on every 401 from its is_authorized step.
WWW_AUTHENTICATE = 'X-Ops-Sign version="1.0" version="1.1"'
# chef_authn's ?REQUIRED_HEADERS, in the order the "missing" message lists them.
_REQUIRED_HEADERS = ("X-Ops-UserId", "X-Ops-Timestamp", "X-Ops-Sign", "X-Ops-Content-Hash")
_LINE_LENGTH = 60  # Ruby's Base64.encode64 line length, kept by every Chef signer
# A 16384-bit RSA signature is 2732 base64 characters; anything longer is not a signature and
# must not make us concatenate an unbounded number of headers.
_MAX_SIGNATURE_CHARS = 4096
_MAX_SIGNATURE_LINES = 128
_MAX_USER_ID_CHARS = 1024
_MAX_HEADER_CHARS = 4096
# When 1.3 requests omit X-Ops-Server-API-Version the verifier signs with 0 (chef_authn).
_DEFAULT_SERVER_API_VERSION = 0

_TIMESTAMP_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?$"
)
_INTEGER_RE = re.compile(r"^-?\d{1,9}$")
_SLASHES_RE = re.compile(r"/{2,}")


class Verified(NamedTuple):
    """A request that authenticated: who signed it and with which of their keys."""

    user_id: str
    public_key: rsa.RSAPublicKey


# --------------------------------------------------------------------------- shared pieces


def canonical_path(path: str) -> str:
    """The path as signed: no query string, repeated slashes squeezed, no trailing slash."""
    path = path.split("?", 1)[0]
    path = _SLASHES_RE.sub("/", path)
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path or "/"


def _check_version(version: str) -> str:
    if version not in _ALGORITHM_FOR_VERSION:
        raise ValueError(
            f"unsupported signing protocol version {version!r} "
            f"(supported: {', '.join(SUPPORTED_VERSIONS)})"
        )
    return _ALGORITHM_FOR_VERSION[version]


def _b64_digest(data: bytes, algorithm: str) -> str:
    return base64.b64encode(hashlib.new(algorithm, data).digest()).decode("ascii")


def content_hash(body: bytes | str, version: str) -> str:
    """``X-Ops-Content-Hash`` for `body`: base64 SHA-1 (1.0-1.2) or SHA-256 (1.3)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    return _b64_digest(body, _check_version(version))


def canonical_request(
    method: str,
    path: str,
    content_hash: str,
    timestamp: str,
    user_id: str,
    version: str,
    server_api_version: int | str = _DEFAULT_SERVER_API_VERSION,
) -> str:
    """The string a signature covers. `server_api_version` is used by 1.3 only."""
    algorithm = _check_version(version)
    method = method.upper()
    if version == "1.3":
        return (
            f"Method:{method}\nPath:{canonical_path(path)}\n"
            f"X-Ops-Content-Hash:{content_hash}\nX-Ops-Sign:version={version}\n"
            f"X-Ops-Timestamp:{timestamp}\nX-Ops-UserId:{user_id}\n"
            f"X-Ops-Server-API-Version:{int(server_api_version)}"
        )
    hashed_path = _b64_digest(canonical_path(path).encode("utf-8"), algorithm)
    if version in ("1.1", "1.2"):
        user_id = _b64_digest(user_id.encode("utf-8"), algorithm)
    return (
        f"Method:{method}\nHashed Path:{hashed_path}\n"
        f"X-Ops-Content-Hash:{content_hash}\n"
        f"X-Ops-Timestamp:{timestamp}\nX-Ops-UserId:{user_id}"
    )


def format_timestamp(when: datetime | float | int | None = None) -> str:
    """ISO 8601 UTC to the second, as Chef sends it: ``2009-01-01T12:00:00Z``."""
    if when is None:
        when = time.time()
    if isinstance(when, int | float):
        when = datetime.fromtimestamp(when, UTC)
    elif when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    """Parse an ``X-Ops-Timestamp`` value (UTC unless it names an offset); ValueError if bad."""
    match = _TIMESTAMP_RE.match(text.strip())
    if not match:
        raise ValueError(f"not an ISO 8601 timestamp: {text[:64]!r}")
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    parsed = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    offset = match.group(7)
    if offset and offset != "Z":
        digits = offset[1:].replace(":", "")
        delta = int(digits[:2]) * 3600 + int(digits[2:]) * 60
        parsed -= timedelta(seconds=delta if offset[0] == "+" else -delta)
    return parsed


# --------------------------------------------------------------------------- keys


def load_private_key(pem: bytes | str | rsa.RSAPrivateKey) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM (PKCS#1 or PKCS#8, unencrypted); ValueError otherwise."""
    if isinstance(pem, rsa.RSAPrivateKey):
        return pem
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key (Chef request signing needs RSA)")
    return key


def load_private_key_file(path: str | os.PathLike[str]) -> rsa.RSAPrivateKey:
    """`load_private_key` on a file; the ValueError message names the file."""
    with open(path, "rb") as handle:
        data = handle.read(1 << 20)  # a PEM key is a few KiB; refuse to slurp a huge file
    try:
        return load_private_key(data)
    except ValueError as exc:
        raise ValueError(f"{os.fspath(path)}: {exc}") from exc


@functools.lru_cache(maxsize=4096)
def _load_public_key_pem(data: bytes) -> rsa.RSAPublicKey:
    # Keys arrive as PEM text on every request; parsing is cached because keys are immutable.
    stripped = data.lstrip()
    key: PublicKeyTypes
    try:
        if stripped.startswith(b"-----BEGIN CERTIFICATE"):
            key = x509.load_pem_x509_certificate(stripped).public_key()
        else:
            # Handles both "PUBLIC KEY" (SPKI) and "RSA PUBLIC KEY" (PKCS#1) blocks.
            key = serialization.load_pem_public_key(stripped)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a PEM public key or certificate: {exc}") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key (Chef request signing needs RSA)")
    return key


def load_public_key(pem: PublicKeyLike) -> rsa.RSAPublicKey:
    """An RSA public key from SPKI or PKCS#1 PEM, or a PEM certificate; ValueError otherwise."""
    if isinstance(pem, rsa.RSAPublicKey):
        return pem
    if isinstance(pem, str):
        pem = pem.encode("ascii", "replace")
    return _load_public_key_pem(bytes(pem))


# --------------------------------------------------------------------------- client side


def _format_api_version(server_api_version: int | str) -> str:
    text = str(server_api_version).strip()
    if not _INTEGER_RE.match(text):
        raise ValueError(f"server_api_version must be an integer, not {server_api_version!r}")
    return text


def sign_request(
    method: str,
    path: str,
    body: bytes | str | None,
    user_id: str,
    private_key: rsa.RSAPrivateKey | bytes | str,
    *,
    version: str = "1.3",
    timestamp: datetime | float | int | str | None = None,
    server_api_version: int | str = "1",
) -> dict[str, str]:
    """Headers that authenticate this request as `user_id` (see the module docstring)."""
    algorithm = _check_version(version)
    key = load_private_key(private_key)
    if body is None:
        body = b""
    elif isinstance(body, str):
        body = body.encode("utf-8")
    stamp = timestamp if isinstance(timestamp, str) else format_timestamp(timestamp)
    api_version = _format_api_version(server_api_version)
    hashed_body = content_hash(body, version)
    canonical = canonical_request(
        method, path, hashed_body, stamp, user_id, version, api_version
    ).encode("utf-8")

    if version in ("1.0", "1.1"):
        # RSA_private_encrypt with PKCS#1 v1.5 type 1 padding over the raw canonical string.
        if len(canonical) > key.key_size // 8 - 11:
            raise ValueError(
                f"request too long to sign with protocol {version} "
                f"({len(canonical)} bytes); use version 1.1 or 1.3"
            )
        signature = key.sign(canonical, padding.PKCS1v15(), asym_utils.NoDigestInfo())
    else:
        digest = hashes.SHA256() if algorithm == "sha256" else hashes.SHA1()
        signature = key.sign(canonical, padding.PKCS1v15(), digest)

    encoded = base64.b64encode(signature).decode("ascii")
    headers = {
        "X-Ops-Sign": f"algorithm={algorithm};version={version};",
        "X-Ops-UserId": user_id,
        "X-Ops-Timestamp": stamp,
        "X-Ops-Content-Hash": hashed_body,
    }
    for index in range(0, len(encoded), _LINE_LENGTH):
        headers[f"X-Ops-Authorization-{index // _LINE_LENGTH + 1}"] = encoded[
            index : index + _LINE_LENGTH
        ]
    if version == "1.3":
        headers["X-Ops-Server-API-Version"] = api_version
    return headers


# --------------------------------------------------------------------------- server side


def _header_getter(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
) -> Callable[[str], str | None]:
    """Case-insensitive header access where an empty (or blank) value counts as missing."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    lowered: dict[str, str] = {}
    for name, value in items:
        lowered[str(name).lower()] = value
    # WSGI-style names ("HTTP_X_OPS_SIGN") are accepted too, so any framework can pass its dict.
    for name, value in list(lowered.items()):
        if name.startswith("http_"):
            lowered.setdefault(name[5:].replace("_", "-"), value)

    def get(name: str) -> str | None:
        value = lowered.get(name.lower())
        if value is None:
            return None
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        value = str(value).strip()
        return value or None

    return get


def _parse_sign_description(description: str) -> tuple[str, str]:
    """(algorithm, version) from ``algorithm=sha1;version=1.1;``; raises on anything else."""
    pairs: dict[str, str] = {}
    for item in description.split(";"):
        key, sep, value = item.partition("=")
        if sep and "=" not in value:
            pairs[key.strip()] = value.strip()
    version = pairs.get("version", "")
    expected = _ALGORITHM_FOR_VERSION.get(version)
    algorithm = pairs.get("algorithm", expected)
    if expected is None or algorithm != expected:
        raise AuthError(400, "Unsupported authentication protocol version",
                        reason="unsupported_version")
    return algorithm, version


def _as_epoch(now: datetime | float | int | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return now.timestamp()
    return float(now)


def _bad_signature(user_id: str) -> AuthError:
    return AuthError(
        401,
        f"Invalid signature for user or client '{user_id}'",
        {"WWW-Authenticate": WWW_AUTHENTICATE},
    )


def _signature_from_headers(get: Callable[[str], str | None], user_id: str) -> bytes:
    """Concatenate X-Ops-Authorization-1..N (stopping at the first gap) and decode it."""
    parts: list[str] = []
    total = 0
    for index in range(1, _MAX_SIGNATURE_LINES + 2):
        part = get(f"X-Ops-Authorization-{index}")
        if part is None:
            break
        total += len(part)
        if index > _MAX_SIGNATURE_LINES or total > _MAX_SIGNATURE_CHARS:
            raise _bad_signature(user_id)
        parts.append(part)
    try:
        return base64.b64decode("".join(parts), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad_signature(user_id) from exc


def _signature_matches(
    key: rsa.RSAPublicKey, signature: bytes, canonical: bytes, version: str
) -> bool:
    try:
        if version in ("1.0", "1.1"):
            # cryptography's hint for verify() omits NoDigestInfo, which it accepts.
            key.verify(signature, canonical, padding.PKCS1v15(), asym_utils.NoDigestInfo())  # type: ignore[arg-type]
        elif version == "1.2":
            key.verify(signature, canonical, padding.PKCS1v15(), hashes.SHA1())
        else:
            key.verify(signature, canonical, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def authenticate_request(
    method: str,
    path: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes | str | None,
    lookup_keys: Callable[[str], Iterable[PublicKeyLike] | None],
    *,
    now: datetime | float | int | None = None,
    max_skew: int = DEFAULT_MAX_SKEW,
) -> Verified:
    """Authenticate a signed request; see the module docstring for errors and their order."""
    get = _header_getter(headers)
    missing = [name for name in _REQUIRED_HEADERS if get(name) is None]
    if missing:
        listed = ", ".join(f"'{name}'" for name in missing)
        raise AuthError(400, f"missing required authentication header(s) {listed}",
                        reason="missing_headers")
    user_id = get("X-Ops-UserId") or ""
    stamp = get("X-Ops-Timestamp") or ""
    sent_hash = get("X-Ops-Content-Hash") or ""

    try:
        if len(stamp) > 64:
            raise ValueError("timestamp too long")
        signed_at = parse_timestamp(stamp).timestamp()
    except (ValueError, OverflowError) as exc:
        raise AuthError(401, "bad header(s) 'X-Ops-Timestamp'", reason="bad_timestamp") from exc
    if abs(_as_epoch(now) - signed_at) >= max_skew:
        raise AuthError(
            401, f"Failed to authenticate as {user_id}. Synchronize the clock on your host.",
            reason="clock_skew",
        )

    sign_description = get("X-Ops-Sign") or ""
    if len(sign_description) > _MAX_HEADER_CHARS:
        raise AuthError(400, "Unsupported authentication protocol version",
                        reason="unsupported_version")
    algorithm, version = _parse_sign_description(sign_description)

    unknown = AuthError(
        401,
        f"Failed to authenticate as '{user_id}'. "
        "Ensure that your node_name and client key are correct.",
        {"WWW-Authenticate": WWW_AUTHENTICATE},
        reason="unknown_principal",
    )
    if len(user_id) > _MAX_USER_ID_CHARS:
        raise unknown
    candidates = lookup_keys(user_id)
    if candidates is None:
        raise unknown

    if body is None:
        body = b""
    elif isinstance(body, str):
        body = body.encode("utf-8")
    hashed_body = _b64_digest(body, algorithm)
    # chef_authn checks this only for 1.0/1.1 (1.3 signs the body hash it computes itself);
    # checking it for every version rejects a forged header early and costs nothing.
    if sent_hash != hashed_body:
        raise _bad_signature(user_id)

    api_version: int | str = _DEFAULT_SERVER_API_VERSION
    if version == "1.3":
        sent_api_version = get("X-Ops-Server-API-Version")
        if sent_api_version is not None:
            if not _INTEGER_RE.match(sent_api_version):
                raise _bad_signature(user_id)
            api_version = sent_api_version
    signature = _signature_from_headers(get, user_id)
    canonical = canonical_request(
        method, path, hashed_body, stamp, user_id, version, api_version
    ).encode("utf-8")

    for candidate in candidates:
        try:
            key = load_public_key(candidate)
        except ValueError:
            continue  # one unreadable key must not hide the principal's other keys
        if _signature_matches(key, signature, canonical, version):
            return Verified(user_id, key)
    raise _bad_signature(user_id)


def verify_request(
    method: str,
    path: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes | str | None,
    lookup_keys: Callable[[str], Iterable[PublicKeyLike] | None],
    *,
    now: datetime | float | int | None = None,
    max_skew: int = DEFAULT_MAX_SKEW,
) -> str:
    """The user id that signed this request; raises `AuthError` (see the module docstring)."""
    return authenticate_request(
        method, path, headers, body, lookup_keys, now=now, max_skew=max_skew
    ).user_id
