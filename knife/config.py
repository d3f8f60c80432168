"""Where the CLI finds the server, the user name and the key: knife's own configuration files.

Public API:
    CliConfig                    server_url, user, key_pem (bytes), key_source, ssl_verify,
                                 ca_file, trusted_certs_dir, config_file, profile, sign_version
    find_config_file(explicit=None, cwd=None, environ=None) -> Path | None
    read_credentials(path, profile, required=False) -> dict[str, Any]
    select_profile(flag=None, environ=None) -> tuple[str, bool]    (name, explicitly chosen)
    load_config(*, config_path=None, profile=None, server_url=None, user=None, key=None,
                ssl_verify_mode=None, cwd=None, environ=None) -> CliConfig

Lookup, as knife does it: `-c/--config FILE` (must exist); else `config.rb` or `knife.rb` in
`$KNIFE_HOME`, then in `.chef/` of the working directory or its nearest parent that has one,
then in `~/.chef/`. `~/.chef/credentials` (TOML) is read first for the selected profile
(`--profile`, `$CHEF_PROFILE`, the name in `~/.chef/context`, else `default`); values from the
config file override it, and `-s/--server-url`, `-u/--user`, `-k/--key` override both.
Profile keys: `client_name` (or `node_name`), `client_key` (a path, relative to `~/.chef`, or
the PEM text itself), `chef_server_url`, `ssl_verify_mode`, `ssl_ca_file`,
`authentication_protocol_version` (request signing: 1.3 by default, 1.0/1.1/1.2 accepted).
Every problem is a CliError with one line naming the file and what to fix.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pushd_knife.exitcodes import CliError
from pushd_knife.knife_rb import read_knife_rb

from pushd.errors import ConfigError

CONFIG_NAMES = ("config.rb", "knife.rb")
MAX_KEY_BYTES = 64 * 1024
MAX_CREDENTIALS_BYTES = 1_000_000
SSL_VERIFY_MODES = ("verify_peer", "verify_none")
SIGN_VERSIONS = ("1.0", "1.1", "1.2", "1.3")


@dataclass(frozen=True)
class CliConfig:
    """Everything needed to talk to the server as the operator."""

    server_url: str
    user: str
    key_pem: bytes
    key_source: str
    ssl_verify: bool = True
    ca_file: str | None = None
    trusted_certs_dir: Path | None = None
    config_file: Path | None = None
    profile: str | None = None
    sign_version: str = "1.3"


def _home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HOME") or Path.home())


def find_config_file(
    explicit: str | Path | None = None,
    cwd: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path | None:
    """The knife.rb / config.rb to read, or None when there is none (see the module docstring)."""
    environ = os.environ if environ is None else environ
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise CliError(f"configuration file {path} not found (given with -c/--config)")
        return path
    candidates: list[Path] = []
    if environ.get("KNIFE_HOME"):
        candidates.append(Path(environ["KNIFE_HOME"]).expanduser())
    start = Path(cwd) if cwd is not None else Path.cwd()
    for directory in (start, *start.parents):
        if (directory / ".chef").is_dir():
            candidates.append(directory / ".chef")
            break
    candidates.append(_home(environ) / ".chef")
    for directory in candidates:
        for name in CONFIG_NAMES:
            path = directory / name
            if path.is_file():
                return path
    return None


def select_profile(
    flag: str | None = None, environ: Mapping[str, str] | None = None
) -> tuple[str, bool]:
    """(profile, chosen by the operator?) from --profile, $CHEF_PROFILE, ~/.chef/context."""
    environ = os.environ if environ is None else environ
    if flag:
        return flag, True
    if environ.get("CHEF_PROFILE"):
        return environ["CHEF_PROFILE"], True
    context = _home(environ) / ".chef" / "context"
    try:
        name = context.read_text(encoding="utf-8").strip()
    except OSError:
        name = ""
    return (name, True) if name else ("default", False)


def read_credentials(path: Path, profile: str, required: bool = False) -> dict[str, Any]:
    """The profile's table from a TOML credentials file ({} if absent and not required)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CREDENTIALS_BYTES + 1)
    except FileNotFoundError:
        if required:
            raise CliError(f"profile {profile!r} requested but {path} does not exist") from None
        return {}
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_CREDENTIALS_BYTES:
        raise CliError(f"{path} is larger than {MAX_CREDENTIALS_BYTES} bytes")
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: not valid TOML: {exc}") from None
    table = document.get(profile)
    if table is None:
        if required:
            known = ", ".join(sorted(document)) or "none"
            raise CliError(f"profile {profile!r} not found in {path} (profiles: {known})")
        return {}
    if not isinstance(table, dict):
        raise CliError(f"{path}: [{profile}] must be a table")
    for key in ("client_name", "node_name", "client_key", "chef_server_url", "ssl_verify_mode",
                "ssl_ca_file", "authentication_protocol_version"):
        if key in table and not isinstance(table[key], str):
            raise CliError(f"{path}: [{profile}] {key} must be a string")
    return table


def _read_key(value: str, base_dir: Path, origin: str) -> tuple[bytes, str]:
    """(PEM bytes, where they came from) for a client_key value: inline PEM or a path."""
    if "-----BEGIN" in value:
        return value.encode("utf-8"), f"inline key in {origin}"
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    try:
        with path.open("rb") as handle:
            pem = handle.read(MAX_KEY_BYTES + 1)
    except FileNotFoundError:
        raise CliError(f"client key {path} not found (client_key from {origin})") from None
    except OSError as exc:
        raise CliError(f"cannot read client key {path}: {exc.strerror}") from None
    if len(pem) > MAX_KEY_BYTES or b"-----BEGIN" not in pem:
        raise CliError(f"client key {path} is not a PEM private key")
    return pem, str(path)


def load_config(
    *,
    config_path: str | Path | None = None,
    profile: str | None = None,
    server_url: str | None = None,
    user: str | None = None,
    key: str | None = None,
    ssl_verify_mode: str | None = None,
    cwd: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> CliConfig:
    """Merge credentials profile < config file < flags into a CliConfig (or raise CliError)."""
    environ = os.environ if environ is None else environ
    chef_dir = _home(environ) / ".chef"
    profile_name, explicit_profile = select_profile(profile, environ)
    credentials = read_credentials(chef_dir / "credentials", profile_name, explicit_profile)

    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    cred_origin = f"{chef_dir / 'credentials'} [{profile_name}]"
    for source_key, target in (("chef_server_url", "chef_server_url"), ("node_name", "node_name"),
                               ("client_name", "node_name"), ("client_key", "client_key"),
                               ("ssl_verify_mode", "ssl_verify_mode"),
                               ("ssl_ca_file", "ssl_ca_file"),
                               ("authentication_protocol_version",
                                "authentication_protocol_version")):
        if source_key in credentials:
            values[target] = credentials[source_key]
            origins[target] = cred_origin
    key_base = {"client_key": chef_dir}

    config_file = find_config_file(config_path, cwd, environ)
    if config_file is not None:
        try:
            from_file = read_knife_rb(config_file, environ)
        except ConfigError as exc:
            raise CliError(str(exc)) from None
        if "client_name" in from_file and "node_name" not in from_file:
            from_file["node_name"] = from_file["client_name"]
        for name, value in from_file.items():
            if name == "client_name":
                continue
            values[name] = value
            origins[name] = str(config_file)
        if "client_key" in from_file:
            key_base["client_key"] = config_file.parent

    for name, value in (("chef_server_url", server_url), ("node_name", user), ("client_key", key),
                        ("ssl_verify_mode", ssl_verify_mode)):
        if value is not None:
            values[name] = value
            origins[name] = "the command line"
            if name == "client_key":
                key_base["client_key"] = Path.cwd() if cwd is None else Path(cwd)

    looked = str(config_file) if config_file else "no knife.rb/config.rb found"
    url = values.get("chef_server_url")
    if not isinstance(url, str) or not url:
        raise CliError(
            f"no chef_server_url: set it in knife.rb/config.rb or {chef_dir / 'credentials'},"
            f" or pass --server-url ({looked})"
        )
    if not url.startswith(("http://", "https://")):
        raise CliError(f"chef_server_url {url!r} from {origins['chef_server_url']} must start"
                       " with https:// or http://")
    user_name = values.get("node_name")
    if not isinstance(user_name, str) or not user_name:
        raise CliError(f"no node_name (the user to sign requests as): set node_name in"
                       f" knife.rb/config.rb or client_name in a credentials profile, or pass"
                       f" -u/--user ({looked})")
    key_value = values.get("client_key")
    if not isinstance(key_value, str) or not key_value:
        raise CliError(f"no client_key: set client_key in knife.rb/config.rb or a credentials"
                       f" profile, or pass -k/--key ({looked})")
    key_pem, key_source = _read_key(key_value, key_base["client_key"], origins["client_key"])

    mode = values.get("ssl_verify_mode", "verify_peer")
    if mode not in SSL_VERIFY_MODES:
        raise CliError(f"ssl_verify_mode must be :verify_peer or :verify_none, not {mode!r}"
                       f" (from {origins.get('ssl_verify_mode')})")
    trusted = values.get("trusted_certs_dir")
    trusted_dir = Path(trusted) if isinstance(trusted, str) else (
        (config_file.parent if config_file else chef_dir) / "trusted_certs"
    )
    ca_file = values.get("ssl_ca_file")
    sign_version = str(values.get("authentication_protocol_version", "1.3"))
    if sign_version not in SIGN_VERSIONS:
        raise CliError(f"authentication_protocol_version must be one of"
                       f" {', '.join(SIGN_VERSIONS)}, not {sign_version!r}"
                       f" (from {origins.get('authentication_protocol_version')})")
    return CliConfig(
        server_url=url.rstrip("/"),
        user=user_name,
        key_pem=key_pem,
        key_source=key_source,
        ssl_verify=mode == "verify_peer",
        ca_file=ca_file if isinstance(ca_file, str) else None,
        trusted_certs_dir=trusted_dir,
        config_file=config_file,
        profile=profile_name if credentials else None,
        sign_version=sign_version,
    )
