"""push-jobs-client configuration: the stock `push-jobs-client.rb` subset or YAML, plus CLI flags.

Public API:

    SETTINGS: tuple[Setting, ...]     every setting, declared once (name, default, validator, doc)
    ClientConfig                      frozen; one attribute per setting, plus
        .organization -> str          from chef_server_url (".../organizations/ORG")
        .whitelist_object -> Whitelist
        .job_env -> dict[str, str]    ENV['X'] = 'y' lines from the Ruby file
    load_config(path, overrides=None) -> ClientConfig
        `path` ending in .yml/.yaml is YAML (a mapping of setting names), anything else is the
        Ruby subset read by pushd.rbconfig (parsed, never evaluated). `overrides` (setting name
        -> value, from CLI flags) win over the file. Raises ConfigError naming the file, line,
        column and text of the offending statement (or just the file for YAML structure errors
        and values that only fail together, like a missing chef_server_url).
    find_default_config() -> str | None
        The first existing file of DEFAULT_CONFIG_PATHS (the stock client's search list).
    from_values(values, source="<flags>") -> ClientConfig     (no file; used by tests)
    settings_table() -> str           the Markdown table of SETTINGS kept in docs/client.md

Unknown settings are ignored with a log line: the stock client may be pointed at chef-client's
own client.rb, which holds many settings that mean nothing here. `KEY='v'` constant lines and
`Mixlib::Log::Formatter.show_time = ...` that the cookbook writes are accepted and ignored.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from pushd_client.proctree import MODES as CONTAINMENT_MODES
from pushd_client.whitelist import DEFAULT_WHITELIST, Whitelist

from pushd import rbconfig
from pushd.errors import ConfigError
from pushd.files import read_bounded

log = logging.getLogger("pushd_client.config")

DEFAULT_CONFIG_PATHS = (
    "/etc/chef/chef-push-client.rb",
    "/etc/chef/push-jobs-client.rb",
    "/etc/chef/client.rb",
)
MAX_CONFIG_BYTES = 1024 * 1024
_ORG = re.compile(r"/organizations/+([^/]+)")
LOG_LEVELS = ("debug", "info", "warn", "warning", "error", "fatal")


@dataclass(frozen=True)
class Setting:
    """One client setting: its name in the file, default, validator and one-line doc."""

    name: str
    default: Any
    validate: Callable[[Any], Any]
    doc: str


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return str(value)


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError("must be true or false")


def _positive_int(value: Any) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _positive_float(value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError("must be a positive number") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError("must be a positive number")
    return float(value)


def _server_url(value: Any) -> str:
    url = _text(value).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    if not _ORG.search(url):
        raise ValueError("must end in /organizations/ORG_NAME")
    return url


def _env_names(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError("must be a list of variable names")
    return tuple(value)


def _log_level(value: Any) -> str:
    level = str(getattr(value, "name", value)).lstrip(":").lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def _log_location(value: Any) -> str:
    if isinstance(value, rbconfig.Constant):
        if str(value) not in ("STDOUT", "STDERR"):
            raise ValueError("must be STDOUT, STDERR or a file path")
        return str(value)
    return _text(value)


def _whitelist(value: Any) -> dict[Any, Any]:
    if not isinstance(value, Mapping):
        raise ValueError("must be a hash of command names to command lines")
    Whitelist(value)  # raises ValueError naming the bad entry
    return dict(value)


def _containment(value: Any) -> str:
    mode = str(value).lstrip(":")
    if mode not in CONTAINMENT_MODES:
        raise ValueError(f"must be one of {', '.join(CONTAINMENT_MODES)}")
    return mode


def _optional_abs_path(value: Any) -> str | None:
    if value is None:
        return None
    path = _text(value)
    if not os.path.isabs(path):
        raise ValueError("must be an absolute path")
    return path


def _job_environment(value: Any) -> str:
    text = str(value).lstrip(":")  # a Ruby symbol (:login) or a string
    if text not in ("inherit", "login"):
        raise ValueError("must be 'inherit' or 'login'")
    return text


def _ssl_verify_mode(value: Any) -> str:
    mode = str(value).lstrip(":")
    if mode not in ("verify_peer", "verify_none"):
        raise ValueError("must be :verify_peer or :verify_none")
    return mode


SETTINGS: tuple[Setting, ...] = (
    Setting("chef_server_url", None, _server_url,
            "Chef Server URL including /organizations/ORG (-S)"),
    Setting("node_name", None, _text, "this node's name; default: the host's FQDN (-N)"),
    Setting("client_key", "/etc/chef/client.pem", _text,
            "RSA private key the node signs REST requests with (-k)"),
    Setting("whitelist", DEFAULT_WHITELIST, _whitelist,
            "commands jobs may run: exact names or /regex/ keys (full match)"),
    Setting("file_dir", "/tmp/chef-push", _text, "where job data files are written (-d)"),
    Setting("allow_unencrypted", False, _boolean,
            "talk to a server that offers no Curve key (1.x protocol)"),
    Setting("allowed_overwritable_env_vars", None, _env_names,
            "job env names set as given; others become CHEF_PUSH_ENV_<name>"),
    Setting("max_body_size", 63000, _positive_int,
            "largest message body sent, output included (-M)"),
    Setting("log_level", "info", _log_level, "debug, info, warn, error or fatal (-l)"),
    Setting("log_location", "STDOUT", _log_location, "STDOUT, STDERR or a log file (-L)"),
    Setting("lockfile", None, _optional_text,
            "lock taken for whitelist entries with `lock: true`"),
    Setting("file_cache_path", "/var/chef/cache", _text,
            "where chef-client-running.pid lives when lockfile is not set"),
    Setting("state_dir", "/var/lib/push-jobs-client", _text,
            "running job record and status.json (pushd addition)"),
    Setting("job_environment", "inherit", _job_environment,
            "'inherit': jobs get the client's environment (as the stock client); 'login': "
            "the job user's HOME, SHELL, USER, a standard PATH and the locale only "
            "(pushd addition)"),
    Setting("kill_grace", 10.0, _positive_float,
            "seconds between SIGTERM and SIGKILL of a job's processes (pushd addition)"),
    Setting("job_containment", "auto", _containment,
            "how a job's process tree is held and ended: cgroup, subreaper or auto "
            "(cgroup when possible; pushd addition)"),
    Setting("job_cgroup", None, _optional_abs_path,
            "delegated cgroup v2 directory for per-job cgroups; default: the client's own "
            "(pushd addition)"),
    Setting("default_run_timeout", 86400.0, _positive_float,
            "local run limit when the server sends none (pushd addition)"),
    Setting("max_reconnect_delay", 60.0, _positive_float,
            "cap of the reconnect backoff in seconds (pushd addition)"),
    Setting("ssl_verify_mode", "verify_peer", _ssl_verify_mode,
            ":verify_peer or :verify_none for the config fetch"),
    Setting("ssl_ca_file", None, _optional_text, "CA bundle for the config fetch"),
    Setting("trusted_certs_dir", None, _optional_text, "extra trusted certificates (PEM files)"),
)
_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class ClientConfig:
    """The validated settings (one attribute per Setting) plus where they came from."""

    chef_server_url: str
    node_name: str
    client_key: str
    whitelist: dict[Any, Any]
    file_dir: str
    allow_unencrypted: bool
    allowed_overwritable_env_vars: tuple[str, ...] | None
    max_body_size: int
    log_level: str
    log_location: str
    lockfile: str | None
    file_cache_path: str
    state_dir: str
    job_environment: str
    kill_grace: float
    job_containment: str
    job_cgroup: str | None
    default_run_timeout: float
    max_reconnect_delay: float
    ssl_verify_mode: str
    ssl_ca_file: str | None
    trusted_certs_dir: str | None
    source: str = "<defaults>"
    job_env: dict[str, str] = field(default_factory=dict)

    @property
    def organization(self) -> str:
        match = _ORG.search(self.chef_server_url)
        assert match is not None  # checked by _server_url
        return match.group(1)

    @property
    def whitelist_object(self) -> Whitelist:
        return Whitelist(self.whitelist)

    @property
    def effective_lockfile(self) -> str:
        return self.lockfile or os.path.join(self.file_cache_path, "chef-client-running.pid")


@dataclass
class _Located:
    value: Any
    line: int | None = None
    column: int | None = None
    text: str | None = None


def _read(path: str) -> str:
    # "cannot read config: <reason>" / "config is larger than N bytes", naming the file.
    raw = read_bounded(Path(path), MAX_CONFIG_BYTES, "config")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config is not UTF-8 (byte {err.start})", filename=path) from None


def _from_ruby(path: str, text: str) -> tuple[dict[str, _Located], dict[str, str]]:
    values: dict[str, _Located] = {}
    env: dict[str, str] = {}
    for stmt in rbconfig.parse(text, path):
        where = _Located(stmt.value, stmt.line, stmt.column, stmt.text)
        if stmt.kind is rbconfig.StatementKind.CALL and len(stmt.target) == 1:
            values[stmt.target[0]] = where
        elif stmt.target[:1] == ("ENV",) and len(stmt.target) == 2:
            if not isinstance(stmt.value, str):
                raise ConfigError("ENV values must be strings", filename=path,
                                  line=stmt.line, column=stmt.value_column, text=stmt.text)
            env[str(stmt.target[1])] = stmt.value
        else:
            log.debug("%s:%d: ignoring %s", path, stmt.line, stmt.text)
    return values, env


def _yaml_key(key: Any) -> Any:
    """YAML whitelist keys written as "/regex/flags" become patterns, as in the Ruby file."""
    if isinstance(key, str):
        match = re.fullmatch(r"/(.*)/([imx]*)", key, re.DOTALL)
        if match:
            return rbconfig.Regex(match.group(1), match.group(2))
    return key


def _from_yaml(path: str, text: str) -> dict[str, _Located]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise ConfigError(
            f"invalid YAML: {getattr(err, 'problem', None) or err}",
            filename=path,
            line=None if mark is None else mark.line + 1,
            column=None if mark is None else mark.column + 1,
        ) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError("the YAML document must be a mapping of setting names", filename=path)
    # Line numbers for YAML keys: find each top-level key's line in the text.
    lines = text.splitlines()
    values: dict[str, _Located] = {}
    for key, value in document.items():
        line = next(
            (i + 1 for i, t in enumerate(lines) if re.match(rf"{re.escape(str(key))}\s*:", t)),
            None,
        )
        if key == "whitelist" and isinstance(value, dict):
            try:
                value = {_yaml_key(k): v for k, v in value.items()}
            except Exception as err:  # a bad regex: report it like any other bad value
                raise ConfigError(f"whitelist: {err}", filename=path, line=line) from None
        values[str(key)] = _Located(value, line, 1, None if line is None else lines[line - 1])
    return values


def _build(located: Mapping[str, _Located], source: str, env: dict[str, str]) -> ClientConfig:
    resolved: dict[str, Any] = {}
    for name, where in located.items():
        setting = _BY_NAME.get(name)
        if setting is None:
            log.info("%s:%s: ignoring setting %s (not used by push-jobs-client)", source,
                     where.line, name)
            continue
        try:
            resolved[name] = setting.validate(where.value)
        except (ValueError, TypeError, re.error) as err:
            raise ConfigError(f"{name} {err}", filename=source, line=where.line,
                              column=where.column, text=where.text) from None
    for setting in SETTINGS:
        resolved.setdefault(setting.name, setting.default)
    if resolved["chef_server_url"] is None:
        raise ConfigError("chef_server_url is not set (use -S or the config file)",
                          filename=source)
    if resolved["node_name"] is None:
        resolved["node_name"] = socket.getfqdn() or socket.gethostname()
    known = {f.name for f in fields(ClientConfig)}
    return ClientConfig(source=source, job_env=env,
                        **{k: v for k, v in resolved.items() if k in known})


def load_config(path: str, overrides: Mapping[str, Any] | None = None) -> ClientConfig:
    text = _read(path)
    env: dict[str, str] = {}
    if path.endswith((".yml", ".yaml")):
        located = _from_yaml(path, text)
    else:
        located, env = _from_ruby(path, text)
    for name, value in (overrides or {}).items():
        if value is not None:
            located[name] = _Located(value, None, None, f"command-line option for {name}")
    return _build(located, path, env)


def from_values(values: Mapping[str, Any], source: str = "<flags>") -> ClientConfig:
    return _build({k: _Located(v) for k, v in values.items() if v is not None}, source, {})


def find_default_config() -> str | None:
    for candidate in DEFAULT_CONFIG_PATHS:
        if os.path.isfile(candidate):
            return candidate
    return None


def settings_table() -> str:
    """Markdown rows for docs/client.md (a test keeps the page equal to this)."""
    rows = ["| Setting | Default | Meaning |", "|---|---|---|"]
    for setting in SETTINGS:
        default = "required" if setting.name == "chef_server_url" else (
            "host FQDN" if setting.name == "node_name" else f"`{setting.default!r}`")
        rows.append(f"| `{setting.name}` | {default} | {setting.doc} |")
    return "\n".join(rows) + "\n"
