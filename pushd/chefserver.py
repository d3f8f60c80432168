"""A Chef Server on this host: what pushd takes from it, as the Push Jobs add-on did.

Public API
----------
``ChefServerHost.read(path) -> ChefServerHost | None``
    The Chef Server's ``chef-server-running.json`` (setting ``chef_server_running_json``); None
    when the file does not exist (standalone). ConfigError (with the file) when it cannot be
    read or is not a JSON object with a ``private_chef`` object.
``host.values(secrets_path) -> dict[str, Any]``
    The settings pushd takes from the Chef Server (see below), validated by the registry.
``host.service_user`` / ``host.nginx_dir`` / ``host.path``
``apply_chef_server(settings) -> Settings``
    `settings` plus the Chef Server's values for every setting the config file does not set,
    labelled ``settings.origin(name) == "chef_server"``; unchanged when there is no Chef Server.
``read_secret(path, group, name) -> str | None``
    One value of ``private-chef-secrets.json`` (``{"chef-server": {"superuser_key": ...}}``, or
    the same under veil's ``{"veil": {"credentials": {...}}}``); None when absent. ConfigError
    when the file cannot be read or parsed.
``superuser_key_pem(path) -> str``
    ``chef-server.superuser_key`` of the secrets file, read where it is (never copied): ValueError
    naming the file when it is missing. When the service runs as an account that may not read
    the file, its run script opens it as root and passes the descriptor in
    ``$PUSHD_CHEF_SECRETS_FD``; the file is then read through that descriptor.

What is taken (attribute names under ``private_chef``, as in chef/chef-server's
``omnibus/files/private-chef-cookbooks/private-chef/attributes/default.rb``):

==========================================  =================================================
``vip`` (so ``server_name_advertised``)      ``lb.api_fqdn`` (topology standalone), else
                                             ``backend_vips.ipaddress`` (tier, ha)
``ha``                                       ``topology == "ha"``
``postgresql.enable/vip/port/db_superuser``  true, ``postgresql.vip/port/db_superuser``
``postgresql.username``                      ``postgresql.username``
``postgresql.db_superuser_password``         secrets ``postgresql.db_superuser_password``
``postgresql.sql_password/sql_ro_password``  secrets ``push-jobs-server.sql_password`` /
                                             ``sql_ro_password`` (where the original kept them)
``principal_source``                         ``"chef_server"``
``chef_server_url``                          ``http://<opscode-erchef.listen>:<port>`` (erchef,
                                             not through nginx)
``chef_server_superuser_key``                the secrets file itself (``chef-server.superuser_key``)
==========================================  =================================================

The service account is ``user.username``; the nginx directory ``nginx.dir`` (the add-on files
go to ``<nginx.dir>/etc/addon.d``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pushd import settings as registry
from pushd.errors import ConfigError
from pushd.files import read_bounded
from pushd.settings import Settings

__all__ = [
    "ORIGIN",
    "SECRETS_FD_ENV",
    "ChefServerHost",
    "apply_chef_server",
    "read_secret",
    "superuser_key_pem",
]

ORIGIN = "chef_server"
SECRETS_FD_ENV = "PUSHD_CHEF_SECRETS_FD"
MAX_JSON_BYTES = 4_000_000
SUPERUSER_KEY = ("chef-server", "superuser_key")
_WILDCARDS = ("0.0.0.0", "*", "::", "[::]")


def _load_json(path: Path, what: str) -> Any:
    data = read_bounded(path, MAX_JSON_BYTES, what)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{what} is not valid JSON: {exc}", filename=str(path)) from None


def _dig(document: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


@dataclass(frozen=True)
class ChefServerHost:
    path: Path
    attributes: dict[str, Any]  # the `private_chef` object

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> ChefServerHost | None:
        running = Path(path)
        if not running.exists():
            return None
        document = _load_json(running, "chef-server-running.json")
        attributes = _dig(document, "private_chef")
        if not isinstance(attributes, dict):
            raise ConfigError("chef-server-running.json has no 'private_chef' object",
                              filename=str(running))
        return cls(running, attributes)

    def get(self, *keys: str) -> Any:
        return _dig(self.attributes, *keys)

    @property
    def topology(self) -> str:
        return str(self.get("topology") or "standalone")

    @property
    def service_user(self) -> str | None:
        name = self.get("user", "username")
        return name if isinstance(name, str) and name else None

    @property
    def nginx_dir(self) -> Path | None:
        directory = self.get("nginx", "dir")
        return Path(directory) if isinstance(directory, str) and directory else None

    def _vip(self) -> Any:
        if self.topology in ("tier", "ha"):
            return self.get("backend_vips", "ipaddress")
        return self.get("lb", "api_fqdn")

    def _erchef_url(self) -> str | None:
        listen, port = self.get("opscode-erchef", "listen"), self.get("opscode-erchef", "port")
        if not isinstance(listen, str) or not listen or port is None:
            return None
        host = "127.0.0.1" if listen in _WILDCARDS else listen
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def values(self, secrets_path: str | os.PathLike[str]) -> dict[str, Any]:
        """The settings taken from this Chef Server (see the module docstring)."""
        secrets = Path(secrets_path)
        vip = self._vip()
        candidates: dict[str, tuple[str, Any]] = {
            "vip": ("lb.api_fqdn / backend_vips.ipaddress", vip),
            "ha": ("topology", self.topology == "ha"),
            "postgresql.enable": ("postgresql", True if self.get("postgresql") else None),
            "postgresql.vip": ("postgresql.vip", self.get("postgresql", "vip")),
            "postgresql.port": ("postgresql.port", _as_int(self.get("postgresql", "port"))),
            "postgresql.db_superuser": ("postgresql.db_superuser",
                                        self.get("postgresql", "db_superuser")),
            "postgresql.username": ("postgresql.username", self.get("postgresql", "username")),
            "principal_source": ("opscode-erchef", "chef_server"),
            "chef_server_url": ("opscode-erchef.listen/port", self._erchef_url()),
        }
        if candidates["chef_server_url"][1] is None:
            del candidates["principal_source"]
        elif secrets.exists():
            candidates["chef_server_superuser_key"] = ("secrets", str(secrets))
        if secrets.exists():
            for name, group, key in (
                ("postgresql.db_superuser_password", "postgresql", "db_superuser_password"),
                ("postgresql.sql_password", "push-jobs-server", "sql_password"),
                ("postgresql.sql_ro_password", "push-jobs-server", "sql_ro_password"),
            ):
                candidates[name] = (f"{group}.{key}", read_secret(secrets, group, key))
        values: dict[str, Any] = {}
        for name, (source, value) in candidates.items():
            if value is None:
                continue
            try:
                values[name] = registry.validate(name, value)
            except ValueError as exc:
                raise ConfigError(f"private_chef {source}: {exc}", filename=str(self.path)) \
                    from None
        return values


def _as_int(value: Any) -> Any:
    # Chef attributes hold ports as integers or as strings ("5432").
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def apply_chef_server(settings: Settings) -> Settings:
    host = ChefServerHost.read(settings.get("chef_server_running_json"))
    if host is None:
        return settings
    taken = host.values(settings.get("chef_server_secrets_json"))
    # The config file wins: only what it leaves unset comes from the Chef Server.
    missing = {name: value for name, value in taken.items() if not settings.is_set(name)}
    try:
        return settings.replace(missing, origin=ORIGIN)
    except ValueError as exc:
        raise ConfigError(f"with the Chef Server's values: {exc}", filename=str(host.path)) \
            from None


def _read_secrets_document(path: Path) -> Any:
    try:
        return _load_json(path, "Chef Server secrets file")
    except ConfigError as exc:
        descriptor = os.environ.get(SECRETS_FD_ENV, "")
        if "Permission denied" not in str(exc) or not descriptor.isdigit():
            raise
    # Opened by the run script as root before dropping privileges (see runit.render_service);
    # used only when it is that very file.
    try:
        same = os.path.samestat(os.fstat(int(descriptor)), os.stat(path))
        data = os.pread(int(descriptor), MAX_JSON_BYTES + 1, 0) if same else b""
    except OSError:
        same = False
    if not same:
        raise ConfigError(f"cannot read Chef Server secrets file: Permission denied "
                          f"(${SECRETS_FD_ENV} is not this file)", filename=str(path))
    if len(data) > MAX_JSON_BYTES:
        raise ConfigError("Chef Server secrets file is too large", filename=str(path))
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"Chef Server secrets file is not valid JSON: {exc}",
                          filename=str(path)) from None


def read_secret(path: str | os.PathLike[str], group: str, name: str) -> str | None:
    document = _read_secrets_document(Path(path))
    value = _dig(document, group, name)
    if value is None:
        value = _dig(document, "veil", "credentials", group, name)
    return value if isinstance(value, str) and value else None


def superuser_key_pem(path: str | os.PathLike[str]) -> str:
    try:
        pem = read_secret(path, *SUPERUSER_KEY)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    if pem is None:
        raise ValueError(f"{path}: no {'.'.join(SUPERUSER_KEY)} in the Chef Server's secrets")
    return pem
