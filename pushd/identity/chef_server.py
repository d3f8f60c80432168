"""Principal source backed by a Chef Server's HTTP API (stdlib `urllib`, no `requests`).

    ChefServerSource(url, superuser_name, superuser_key, *, cache_ttl=5.0, timeout=10.0,
                     tenancy="auto", sign_version="1.3", chef_version="11.1.0",
                     ssl_context=None, clock=time.monotonic)
        Implements `PrincipalSource`. Every request is signed with `pushd.chefauth` as the
        superuser (`superuser_key`: an RSA private key or its PEM). Lookups, including
        "does not exist", are cached for `cache_ttl` seconds.
        `url` is the server root (e.g. ``https://chef.example.com``); a trailing
        ``/organizations/NAME`` (knife style) is ignored.
    ChefServerSource.from_settings(settings) reads `chef_server_url`,
        `chef_server_superuser_name`, `chef_server_superuser_key` (a key file path; when it
        names `chef_server_secrets_json`, the key is that file's ``chef-server.superuser_key``),
        `principal_cache_ttl` and `chef_api_version` (sent as X-Chef-Version) through
        ``settings.get(name)``; ValueError naming the setting when the key file is unusable.
    ChefServerUnavailable(SourceUnavailable)
        The server could not be reached, timed out, refused the superuser (401/403), answered
        5xx or something that is not the documented JSON. The API answers 502.

Requests (multi-tenant, Chef Server 12 and later):
    GET /organizations/ORG                  -> Org(name, guid); 404 -> None
    GET /organizations/ORG/principals/NAME  -> Principal with every key in `principals[]`
                                               (when a client and a user share the name,
                                               only the client's entries are used)
    GET /organizations/ORG/groups/GROUP     -> Group(users, clients, groups); 404 -> None
Single-tenant servers (Chef 11 API, e.g. goiardi) have no organizations, no groups and no
org guids. There the source answers every organization name with a stable synthetic guid
(derived from the server URL and the name), reads ``GET /principals/NAME`` (one key) plus
``GET /users/NAME`` or ``/clients/NAME`` for the principal's `admin` flag, and reports every
group as absent, so authorization falls back to the admin flag (see `authz.can_write`).
`tenancy="auto"` decides per server on the first organization lookup: a JSON answer or a 404
from ``/organizations/ORG`` means multi-tenant; a 200 that is not JSON (goiardi's answer to
paths it does not route) means single-tenant. "multi" or "single" skips the probe.

Names that cannot be Chef names (anything outside ``[A-Za-z0-9_.@-]``, or longer than 255
characters) are answered None without a request, so a requester cannot steer the superuser's
signed requests to other paths.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from pushd import chefauth, chefserver
from pushd.identity.base import (
    KIND_CLIENT,
    KIND_USER,
    Group,
    Org,
    Principal,
    SourceUnavailable,
)
from pushd.identity.cache import TTLCache

log = logging.getLogger(__name__)

TENANCIES = ("auto", "multi", "single")
MAX_RESPONSE_BYTES = 1 << 20  # a principal or group document is a few KiB
_NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,255}$")
_ORG_SUFFIX_RE = re.compile(r"/organizations/[^/]+/?$")
_GUID_RE = re.compile(r"^[0-9a-fA-F]{32}$")
_NOT_JSON = object()  # marker: a 200 whose body is not JSON


class ChefServerUnavailable(SourceUnavailable):
    """The Chef Server could not be used to answer an identity question."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would replay the superuser's signed headers to wherever it points.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _valid_name(name: str) -> bool:
    return bool(_NAME_RE.match(name)) and name not in (".", "..")


class ChefServerSource:
    def __init__(
        self,
        url: str,
        superuser_name: str,
        superuser_key: rsa.RSAPrivateKey | bytes | str,
        *,
        cache_ttl: float = 5.0,
        timeout: float = 10.0,
        tenancy: str = "auto",
        sign_version: str = "1.3",
        chef_version: str = "11.1.0",
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"chef_server_url must be an http(s) URL, not {url!r}")
        if tenancy not in TENANCIES:
            raise ValueError(f"tenancy must be one of {', '.join(TENANCIES)}, not {tenancy!r}")
        if sign_version not in chefauth.SUPPORTED_VERSIONS:
            raise ValueError(f"unsupported signing version {sign_version!r}")
        self._root = f"{parsed.scheme}://{parsed.netloc}"
        self._base_path = _ORG_SUFFIX_RE.sub("", parsed.path).rstrip("/")
        self._superuser = superuser_name
        self._key = chefauth.load_private_key(superuser_key)
        self._timeout = timeout
        self._sign_version = sign_version
        self._chef_version = chef_version
        self._tenancy = tenancy
        self._tenancy_lock = threading.Lock()
        self._cache = TTLCache(cache_ttl, clock=clock)
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if parsed.scheme == "https":
            handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
        self._opener = urllib.request.build_opener(*handlers)

    @classmethod
    def from_settings(cls, settings: Any) -> ChefServerSource:
        key_path = settings.get("chef_server_superuser_key")
        try:
            if key_path == settings.get("chef_server_secrets_json"):
                # A Chef Server host: the superuser key stays in the Chef Server's secrets.
                key = chefauth.load_private_key(chefserver.superuser_key_pem(key_path))
            else:
                key = chefauth.load_private_key_file(key_path)
        except OSError as exc:
            raise ValueError(f"chef_server_superuser_key {key_path}: {exc.strerror}") from exc
        except ValueError as exc:
            raise ValueError(f"chef_server_superuser_key: {exc}") from exc
        ttl = settings.get("principal_cache_ttl")
        return cls(
            settings.get("chef_server_url"),
            settings.get("chef_server_superuser_name"),
            key,
            cache_ttl=5.0 if ttl is None else float(ttl),
            chef_version=settings.get("chef_api_version") or "11.1.0",
        )

    @property
    def tenancy(self) -> str:
        """"multi", "single", or "auto" until the first organization lookup decides."""
        return self._tenancy

    # ------------------------------------------------------------------ PrincipalSource

    def org(self, name: str) -> Org | None:
        if not _valid_name(name):
            return None
        return self._cache.get_or_load(("org", name), lambda: self._load_org(name))

    def principal(self, org_name: str, name: str) -> Principal | None:
        if not (_valid_name(org_name) and _valid_name(name)):
            return None
        return self._cache.get_or_load(
            ("principal", org_name, name), lambda: self._load_principal(org_name, name)
        )

    def group(self, org_name: str, group_name: str) -> Group | None:
        if not (_valid_name(org_name) and _valid_name(group_name)):
            return None
        return self._cache.get_or_load(
            ("group", org_name, group_name), lambda: self._load_group(org_name, group_name)
        )

    def invalidate(self) -> None:
        """Forget every cached answer (e.g. after changing keys or groups upstream)."""
        self._cache.invalidate()

    # ------------------------------------------------------------------ loaders

    def _single_tenant(self, org_name: str) -> bool:
        if self._tenancy == "auto":
            self.org(org_name)  # the probe settles the tenancy
        return self._tenancy == "single"

    def _load_org(self, name: str) -> Org | None:
        if self._tenancy == "single":
            return self._synthetic_org(name)
        document = self._get_json(f"/organizations/{name}", allow_not_json=True)
        if document is _NOT_JSON:
            if self._tenancy == "multi":
                raise ChefServerUnavailable(
                    f"{self._url('/organizations/' + name)} did not answer JSON"
                )
            self._settle_tenancy("single")
            return self._synthetic_org(name)
        self._settle_tenancy("multi")
        if document is None:
            return None
        guid = document.get("guid") if isinstance(document, dict) else None
        if not isinstance(guid, str) or not _GUID_RE.match(guid):
            raise ChefServerUnavailable(f"organization {name!r}: response has no valid guid")
        return Org(name=name, id=guid.lower())

    def _settle_tenancy(self, tenancy: str) -> None:
        with self._tenancy_lock:
            if self._tenancy == "auto":
                log.info("Chef Server %s is %s-tenant", self._root, tenancy)
                self._tenancy = tenancy

    def _synthetic_org(self, name: str) -> Org:
        # Stable across restarts and workers, distinct per server and per name.
        digest = hashlib.sha256(f"{self._root}{self._base_path}|{name}".encode()).hexdigest()
        return Org(name=name, id=digest[:32])

    def _load_principal(self, org_name: str, name: str) -> Principal | None:
        if self._single_tenant(org_name):
            return self._load_single_tenant_principal(name)
        document = self._get_json(f"/organizations/{org_name}/principals/{name}")
        if document is None:
            return None
        entries = document.get("principals") if isinstance(document, dict) else None
        if entries is None and isinstance(document, dict) and "public_key" in document:
            entries = [document]  # pre-12 shape: one principal object
        if not isinstance(entries, list) or not entries:
            raise ChefServerUnavailable(f"principal {name!r}: malformed response")
        by_kind: dict[str, list[dict[str, Any]]] = {KIND_CLIENT: [], KIND_USER: []}
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("public_key"), str):
                raise ChefServerUnavailable(f"principal {name!r}: malformed response")
            kind = entry.get("type")
            if kind not in by_kind:
                raise ChefServerUnavailable(f"principal {name!r}: unknown type {kind!r}")
            by_kind[kind].append(entry)
        # A client and a user may share a name; keys are never mixed across the two, or a
        # user's key would authenticate as the client. The client wins, as in the local source.
        kind = KIND_CLIENT if by_kind[KIND_CLIENT] else KIND_USER
        chosen = by_kind[kind]
        authz_id = next((e["authz_id"] for e in chosen if isinstance(e.get("authz_id"), str)), None)
        return Principal(
            name=name,
            kind=kind,
            public_keys=tuple(entry["public_key"] for entry in chosen),
            # Clients always belong to their organization; users say so explicitly.
            org_member=any(bool(entry.get("org_member", True)) for entry in chosen),
            authz_id=authz_id,
        )

    def _load_single_tenant_principal(self, name: str) -> Principal | None:
        document = self._get_json(f"/principals/{name}")
        if document is None:
            return None
        if not isinstance(document, dict):
            raise ChefServerUnavailable(f"principal {name!r}: malformed response")
        kind = document.get("type")
        key = document.get("public_key")
        if kind not in (KIND_USER, KIND_CLIENT) or not isinstance(key, str):
            raise ChefServerUnavailable(f"principal {name!r}: malformed response")
        details = self._get_json(f"/{'users' if kind == KIND_USER else 'clients'}/{name}")
        admin = bool(details.get("admin")) if isinstance(details, dict) else False
        return Principal(name=name, kind=kind, public_keys=(key,), admin=admin)

    def _load_group(self, org_name: str, group_name: str) -> Group | None:
        if self._single_tenant(org_name):
            return None
        document = self._get_json(f"/organizations/{org_name}/groups/{group_name}")
        if document is None:
            return None
        if not isinstance(document, dict):
            raise ChefServerUnavailable(f"group {group_name!r}: malformed response")
        members: dict[str, list[str]] = {}
        for field in ("users", "clients", "groups"):
            value = document.get(field, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ChefServerUnavailable(f"group {group_name!r}: malformed {field!r}")
            members[field] = value
        return Group.of(group_name, members["users"], members["clients"], members["groups"])

    # ------------------------------------------------------------------ HTTP

    def _url(self, path: str) -> str:
        return f"{self._root}{self._base_path}{path}"

    def _get_json(self, path: str, *, allow_not_json: bool = False) -> Any:
        """The decoded JSON of a signed GET; None on 404; `_NOT_JSON` when allowed."""
        full_path = f"{self._base_path}{path}"
        headers = chefauth.sign_request(
            "GET", full_path, b"", self._superuser, self._key, version=self._sign_version
        )
        headers["Accept"] = "application/json"
        headers["X-Chef-Version"] = self._chef_version
        headers["User-Agent"] = "pushd"
        url = self._url(path)
        request = urllib.request.Request(url, headers=headers, method="GET")
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                body = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
            if status == 404:
                return None
            if status in (401, 403):
                raise ChefServerUnavailable(
                    f"{url}: Chef Server refused superuser {self._superuser!r} ({status}); "
                    "check chef_server_superuser_name and chef_server_superuser_key"
                ) from None
            raise ChefServerUnavailable(f"{url}: HTTP {status}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ChefServerUnavailable(f"{url}: {reason}") from None
        if len(body) > MAX_RESPONSE_BYTES:
            raise ChefServerUnavailable(f"{url}: response larger than {MAX_RESPONSE_BYTES} bytes")
        try:
            return json.loads(body)
        except ValueError:
            if allow_not_json:
                return _NOT_JSON
            raise ChefServerUnavailable(f"{url}: response is not JSON") from None
