"""The settings registry: every server setting is declared once, here.

One declaration (namespace, key, default, validator, one-line doc) drives config parsing
(:mod:`pushd.config`), validation, ``push-jobs-server-ctl show-config``, the running JSON written
by ``reconfigure``, ``opscode-push-jobs-server.rb.example`` and ``docs/settings.md``.

Names
-----
A setting of the ``opscode_pushy_server`` namespace is named by its key (``"heartbeat_interval"``);
a setting of the ``postgresql`` namespace by ``"postgresql.<key>"`` (``"postgresql.vip"``).
In the config file they are ``opscode_pushy_server['heartbeat_interval'] = 10000`` and
``postgresql['vip'] = '10.0.0.5'``.

Public API
----------
``Setting``            frozen dataclass: ``namespace, key, default, type, validator, doc``, plus
                       ``derive`` (callable computing the default from other resolved values, or
                       None), ``secret`` (redacted by ``as_dict(redact=True)``), ``name`` property,
                       ``no_effect`` (why pushd accepts the setting but nothing reads it; "" for
                       a setting that has an effect) and ``label`` (``ns['key']``).
``NO_EFFECT``          ``{name: reason}``: the settings "accepted for compatibility, no effect"
                       (an original file loads unchanged); show-config, the example and the docs
                       say so, and reconfigure warns when the file sets one.
``SETTINGS``           tuple of every ``Setting`` in declaration (= documentation) order.
``NAMESPACES``         ``("opscode_pushy_server", "postgresql")``.
``IGNORED_NAMESPACES`` ``("bootstrap", "oc_chef_pedant")``: namespaces of the original file that
                       pushd accepts and ignores, so an existing file loads unchanged.
``lookup(name) -> Setting``             KeyError naming the closest known name.
``closest_name(name, candidates) -> str | None``
``validate(name, value) -> value``      normalised value, or ValueError with the reason.
``Settings``           immutable resolved settings:
    ``Settings.defaults()``                   every setting at its default.
    ``Settings.from_values(values)``          ``{name: value}`` (validated; a hash setting given
                                              partially is merged over its default); ValueError.
    ``s.get(name)`` / ``s[name]``             resolved value (explicit, else derived, else default);
                                              unknown name -> KeyError.
    ``s.is_set(name)``                        given explicitly.
    ``s.explicit``                            ``{name: value}`` of the explicit values.
    ``s.replace(values, origin=None) -> Settings``  a copy with more explicit values
                                              (validated); `origin` labels them.
    ``s.origin(name) -> str | None``          that label ("chef_server" for values taken from
                                              a Chef Server host by `pushd.chefserver`).
    ``s.as_dict(redact=False)``               ``{"opscode_pushy_server": {...},
                                              "postgresql": {...}}`` (what reconfigure writes as
                                              the running JSON; redact masks secrets).
    ``s.diff(other) -> list[(name, old, new)]`` resolved values that differ, registry order.
    ``==`` compares resolved values.
``render_example() -> str``              the text of ``opscode-push-jobs-server.rb.example``.
``render_markdown() -> str``             the text of ``docs/settings.md``.
``to_ruby(value) -> str``                a Ruby literal for a setting value.
``python -m pushd.settings --example`` prints the example file; ``--markdown`` the reference.

Derived defaults: ``data_dir`` = ``<dir>/data``, ``run_dir`` = ``<dir>/run``, ``service_dir`` =
``<dir>/service``, ``sqlite_path`` = ``<data_dir>/pushd.sqlite3``, ``server_name_advertised`` =
``vip``. They are computed from the resolved values when not set explicitly, so setting only
``dir`` moves the whole appliance.

Cross-setting checks (``Settings.from_values``): the listening ports must differ, and
``online_threshold`` must not exceed ``offline_threshold``. They raise :class:`SettingsConflict`
(a ValueError with ``.names``).

Units: ``heartbeat_interval`` and ``rehab_timer`` are milliseconds (as in the original); every
other duration is seconds. Database: ``postgresql['enable'] = true`` selects PostgreSQL at
``postgresql['vip']:postgresql['port']``; otherwise the embedded SQLite file ``sqlite_path``.
"""

from __future__ import annotations

import difflib
import os
import posixpath
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pushd.protocol.limits import MAX_JOB_FILE_BYTES
from pushd.rbconfig import Constant

__all__ = [
    "IGNORED_NAMESPACES",
    "NAMESPACES",
    "NO_EFFECT",
    "SETTINGS",
    "Setting",
    "Settings",
    "SettingsConflict",
    "closest_name",
    "lookup",
    "render_example",
    "render_markdown",
    "to_ruby",
    "validate",
]

PUSHY = "opscode_pushy_server"
POSTGRESQL = "postgresql"
NAMESPACES = (PUSHY, POSTGRESQL)
IGNORED_NAMESPACES = ("bootstrap", "oc_chef_pedant")

Validator = Callable[[Any], Any]


class SettingsConflict(ValueError):
    """Settings that are valid alone but not together; ``names`` are the settings involved."""

    def __init__(self, message: str, names: tuple[str, ...]) -> None:
        super().__init__(message)
        self.names = names


# -- validators: pure functions returning the normalised value or raising ValueError ----------


def _describe(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", type(None): "nil", list: "array",
             dict: "hash"}  # fmt: skip
    kind = names.get(type(value), "string" if isinstance(value, str) else type(value).__name__)
    shown = repr(value) if not isinstance(value, str) else f'"{value}"'
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{kind} {shown}"


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected true or false, got {_describe(value)}")


def integer(minimum: int | None = None, maximum: int | None = None) -> Validator:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_describe(value)}")
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be at most {maximum}, got {value}")
        return value

    return check


def number(minimum: float | None = None, maximum: float | None = None) -> Validator:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {_describe(value)}")
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be at most {maximum}, got {value}")
        return float(value)

    return check


port = integer(1, 65535)
port_or_zero = integer(0, 65535)  # 0 turns the listener off
positive = integer(1)
non_negative = integer(0)


def string(value: Any) -> str:
    if not isinstance(value, str) or isinstance(value, Constant):
        raise ValueError(f"expected a string, got {_describe(value)}")
    if len(value) > 4096:
        raise ValueError("string is longer than 4096 characters")
    return str(value)


def non_empty(value: Any) -> str:
    text = string(value)
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def optional(validator: Validator) -> Validator:
    def check(value: Any) -> Any:
        return None if value is None else validator(value)

    return check


def host(value: Any) -> str:
    text = non_empty(value)
    if re.search(r"[\s/]", text):
        raise ValueError(f"expected a host name or address, got {_describe(value)}")
    return text


def absolute_path(value: Any) -> str:
    text = non_empty(value)
    if not text.startswith("/"):
        raise ValueError(f"expected an absolute path, got {_describe(value)}")
    return posixpath.normpath(text)


def zmq_listen_address(value: Any) -> str:
    text = non_empty(value)
    if not re.fullmatch(r"tcp://(\*|[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])", text):
        raise ValueError(
            f"expected tcp://HOST or tcp://* without a port, got {_describe(value)}"
        )
    return text


def url(value: Any) -> str:
    text = non_empty(value)
    if not re.match(r"https?://[^\s/]+", text):
        raise ValueError(f"expected an http:// or https:// URL, got {_describe(value)}")
    return text.rstrip("/")


def choice(*options: str) -> Validator:
    def check(value: Any) -> str:
        if isinstance(value, str) and str(value) in options:
            return str(value)
        raise ValueError(f"expected one of {', '.join(options)}; got {_describe(value)}")

    return check


def sub_hash(schema: Mapping[str, Validator]) -> Validator:
    """A hash with known keys only (string or symbol keys), each with its own validator."""

    def check(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValueError(f"expected a hash, got {_describe(value)}")
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str) or str(key) not in schema:
                hint = closest_name(str(key), schema)
                raise ValueError(
                    f"unknown key {key!r}" + (f"; did you mean '{hint}'?" if hint else "")
                    + f" (known: {', '.join(schema)})"
                )
            try:
                out[str(key)] = schema[str(key)](item)
            except ValueError as exc:
                raise ValueError(f"[{str(key)!r}]: {exc}") from None
        return out

    return check


# -- the registry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    namespace: str
    key: str
    default: Any
    type: str
    validator: Validator
    doc: str
    derive: Callable[[Mapping[str, Any]], Any] | None = None
    derive_doc: str = ""
    secret: bool = False
    no_effect: str = ""

    @property
    def name(self) -> str:
        return self.key if self.namespace == PUSHY else f"{self.namespace}.{self.key}"

    @property
    def label(self) -> str:
        """How the config file names it: ``opscode_pushy_server['key']``."""
        return f"{self.namespace}['{self.key}']"

    @property
    def is_hash(self) -> bool:
        return isinstance(self.default, dict)


def _s(key: str, default: Any, type_: str, validator: Validator, doc: str, **extra: Any) -> Setting:
    return Setting(PUSHY, key, default, type_, validator, doc, **extra)


def _pg(
    key: str, default: Any, type_: str, validator: Validator, doc: str, **extra: Any
) -> Setting:
    return Setting(POSTGRESQL, key, default, type_, validator, doc, **extra)


_LOG_ROTATION = sub_hash({"file_maxbytes": positive, "num_to_keep": positive})

SETTINGS: tuple[Setting, ...] = (
    # Service and paths.
    _s("enable", True, "bool", boolean, "Run the push jobs service."),
    _s("ha", False, "bool", boolean, "High-availability topology (informational)."),
    _s("dir", "/var/opt/opscode-push-jobs-server/opscode-pushy-server", "path", absolute_path,
       "Root of the server's state; data_dir, run_dir and service_dir derive from it."),
    _s("log_directory", "/var/log/opscode/opscode-pushy-server", "path", absolute_path,
       "Where the service and svlogd write logs."),
    _s("log_rotation", {"file_maxbytes": 104857600, "num_to_keep": 10}, "hash", _LOG_ROTATION,
       "svlogd rotation: bytes per file (file_maxbytes) and files kept (num_to_keep)."),
    _s("data_dir", None, "path", optional(absolute_path),
       "Keys and the SQLite database.", derive=lambda r: posixpath.join(r["dir"], "data"),
       derive_doc="<dir>/data"),
    _s("run_dir", None, "path", optional(absolute_path),
       "IPC sockets and pid files.", derive=lambda r: posixpath.join(r["dir"], "run"),
       derive_doc="<dir>/run"),
    _s("service_dir", None, "path", optional(absolute_path),
       "runit service directories (one runsvdir watches it).",
       derive=lambda r: posixpath.join(r["dir"], "service"), derive_doc="<dir>/service"),
    _s("etc_dir", "/etc/opscode-push-jobs-server", "path", absolute_path,
       "Where reconfigure writes opscode-push-jobs-server-running.json."),
    _s("sqlite_path", None, "path", optional(absolute_path),
       "SQLite database file, used unless postgresql['enable'] is true.",
       derive=lambda r: posixpath.join(r["data_dir"], "pushd.sqlite3"),
       derive_doc="<data_dir>/pushd.sqlite3"),
    # Network.
    _s("listen", "127.0.0.1", "host", host, "Listen address of the original (kept for "
       "compatibility; api_listen is what pushd binds)."),
    _s("api_listen", "127.0.0.1", "host", host, "Bind address of the REST API."),
    _s("vip", "127.0.0.1", "host", host, "Address clients use to reach this server."),
    _s("server_name_advertised", None, "host", optional(host),
       "Host put in the config endpoint's heartbeat and command addresses.",
       derive=lambda r: r["vip"], derive_doc="<vip>"),
    _s("zeromq_listen_address", "tcp://*", "zmq address", zmq_listen_address,
       "ZeroMQ bind address (no port) for the heartbeat and command sockets."),
    _s("server_heartbeat_port", 10000, "port", port, "PUB socket for server heartbeats."),
    _s("command_port", 10002, "port", port, "ROUTER socket for the Curve command channel."),
    _s("api_port", 10003, "port", port, "REST API port."),
    _s("metrics_listen", "127.0.0.1", "host", host,
       "Bind address of the Prometheus /metrics listener (served by the broker)."),
    _s("metrics_port", 10004, "port", port_or_zero,
       "Port of the Prometheus /metrics listener; 0 disables metrics."),
    _s("allow_unencrypted", False, "bool", boolean,
       "Also accept 1.x-protocol clients without Curve on unencrypted_command_port."),
    _s("unencrypted_command_port", 10001, "port", port,
       "ROUTER socket for 1.x-protocol clients (when allow_unencrypted or "
       "disable_curve_encryption)."),
    _s("zmq_io_processes", 1, "int", integer(1, 64), "ZeroMQ I/O threads."),
    _s("heartbeat_process", False, "bool", boolean,
       "Publish the server heartbeat from a process of its own, so the broker holds one open "
       "file per node instead of two: about twice the nodes per server under the same "
       "open-files limit (a cluster member taking over a dead member's nodes needs the room)."),
    _s("api_workers", 2, "int", integer(1, 64), "gunicorn workers serving the REST API."),
    # Protocol and liveness.
    _s("heartbeat_interval", 10000, "int (ms)", integer(100, 3_600_000),
       "Server heartbeat period in milliseconds; also the clients' heartbeat period."),
    _s("offline_threshold", 3, "int", integer(1, 1000),
       "Missed heartbeat intervals before a node (or, on the client, the server) is offline."),
    _s("online_threshold", 2, "int", integer(1, 1000),
       "Heartbeats in a row before an offline node (or server) is online again."),
    _s("down_threshold", 0.6, "float", number(0.0, 1.0),
       "Decayed heartbeat average below which the original marked a node down."),
    _s("decay_window", 4, "int", integer(1, 1000), "Heartbeat intervals in the decaying average."),
    _s("detect_offline_nodes_interval", 4, "int", integer(1, 3600),
       "Seconds between sweeps for silent nodes."),
    _s("max_body_size", 65536, "int (bytes)", integer(1024, 64 * 1024 * 1024),
       "Largest ZeroMQ message body accepted; advertised to clients."),
    _s("max_message_skew", 300, "int (s)", integer(1, 86400),
       "Largest clock difference accepted in a signed ZeroMQ message (max_time_skew)."),
    _s("disable_curve_encryption", False, "bool", boolean,
       "Run without Curve: every config answer is a 1.x server's (no curve_public_key, "
       "unencrypted_command_port), so 2.x clients work only with their allow_unencrypted "
       "option."),
    _s("rehab_timer", 1000, "int (ms)", integer(10, 600_000),
       "Milliseconds between abort messages to a node being brought back to idle."),
    _s("config_lifetime", 3600, "int (s)", positive,
       "Lifetime advertised in the config endpoint's response."),
    _s("validate_client_node_name", True, "bool", boolean,
       "A client may fetch only the config of the node with its own name."),
    _s("allow_user_node_config", False, "bool", boolean,
       "Users with read access may also fetch a node's config (its session key and Curve "
       "admission) for an existing client of that name; otherwise only the node itself may."),
    # Jobs.
    _s("voting_timeout", 60, "int (s)", positive, "Seconds a job waits for nodes to commit."),
    _s("default_running_timeout", 3600, "int (s)", positive,
       "Run timeout of a job created without one."),
    _s("wait_complete_time", 5, "int (s)", non_negative,
       "Seconds to wait for late node reports after a job ends."),
    _s("keep_alive_time", 15, "int (s)", positive,
       "Seconds between keep-alive comments on SSE streams."),
    _s("org_feed_expiration", 60, "int (s)", positive,
       "Seconds an idle organization feed keeps its in-memory state."),
    _s("org_feed_retention", 86400, "int (s)", non_negative,
       "Seconds of organization feed history kept for Last-Event-ID replay."),
    _s("job_retention_days", 0, "int (days)", non_negative,
       "Delete finished jobs older than this many days (0 keeps them)."),
    _s("max_request_body", 1_000_000, "int (bytes)", integer(1024, 100_000_000),
       "Largest REST request body."),
    # No larger than the node client accepts (pushd.protocol.limits).
    _s("max_job_file_size", 100_000, "int (bytes)", integer(0, MAX_JOB_FILE_BYTES),
       "Largest data file attached to a job."),
    _s("jobs_page_limit", 1000, "int", integer(1, 100_000),
       "Most jobs returned by one GET of the job list."),
    _s("dashboard_session_ttl", 28800, "int (s)", integer(60, 31_536_000),
       "Seconds a web dashboard login (cookie session) lasts."),
    _s("output_max_bytes", 1_048_576, "int (bytes)", integer(0, 1_073_741_824),
       "Output stored per node per stream (stdout, stderr); a longer stream keeps its end "
       "behind the truncation marker nodes use. Also the most live output a pushd client "
       "sends per stream of a job while it runs."),
    # Principals.
    _s("principal_source", "local", "'local' | 'chef_server'", choice("local", "chef_server"),
       "Where users, clients, groups and keys come from."),
    _s("chef_server_url", "https://127.0.0.1", "url", url,
       "Chef Server API root (principal_source 'chef_server')."),
    _s("chef_server_superuser_name", "pivotal", "string", non_empty,
       "Superuser that signs requests to the Chef Server."),
    _s("chef_server_superuser_key", "/etc/opscode/pivotal.pem", "path", absolute_path,
       "Private key of chef_server_superuser_name."),
    _s("chef_server_running_json", "/etc/opscode/chef-server-running.json", "path", absolute_path,
       "Chef Server's running attributes; when the file exists, reconfigure takes the Chef "
       "Server's address, account, PostgreSQL and superuser from it (this file's values win) "
       "and plugs into its nginx. Absent: standalone."),
    _s("chef_server_secrets_json", "/etc/opscode/private-chef-secrets.json", "path",
       absolute_path,
       "Chef Server's secrets; on a Chef Server host the superuser key is read from here "
       "(chef-server.superuser_key), never copied."),
    _s("principal_cache_ttl", 5, "int (s)", non_negative,
       "Seconds each API worker caches an organization, principal or group answer (local "
       "database or Chef Server); a change made with push-jobs-server-ctl applies to the next "
       "request all the same, other changes within this time; 0 turns the cache off."),
    _s("chef_api_version", "11.1.0", "string", non_empty,
       "X-Chef-Version sent to the Chef Server."),
    # Cluster (several servers on one PostgreSQL database; docs/operations.md).
    _s("cluster_member_name", None, "string", optional(non_empty),
       "This server's name in its cluster (servers sharing one PostgreSQL database); unique "
       "per server and kept across restarts.",
       derive=lambda r: f"{r['server_name_advertised']}:{r['api_port']}",
       derive_doc="<server_name_advertised>:<api_port>"),
    _s("cluster_lease", 10, "int (s)", integer(3, 600),
       "Seconds a cluster member's lease lasts (renewed every lease/5); a member silent for "
       "this long is gone and another takes over the jobs it coordinated."),
    # Kept from the original; accepted and documented, not used by pushd.
    _s("db_pool_size", 20, "int", integer(1, 1000), "Database connections per process."),
    _s("ibrowse_max_sessions", 256, "int", positive, "Unused by pushd (Erlang HTTP client)."),
    _s("ibrowse_max_pipeline_size", 1, "int", positive, "Unused by pushd (Erlang HTTP client)."),
    _s("enable_graphite", False, "bool", boolean, "Send metrics to graphite (unused by pushd)."),
    _s("graphite_host", "localhost", "host", host, "Graphite host (unused by pushd)."),
    _s("graphite_port", 2003, "port", port, "Graphite port (unused by pushd)."),
    # PostgreSQL.
    _pg("enable", False, "bool", boolean, "Use PostgreSQL instead of the embedded SQLite file."),
    _pg("vip", "127.0.0.1", "host", host, "PostgreSQL host."),
    _pg("port", 5432, "port", port, "PostgreSQL port."),
    _pg("database_name", "opscode_pushy", "string", non_empty, "Database name."),
    _pg("sql_user", "opscode_pushy", "string", non_empty, "Read-write database user."),
    _pg("sql_password", None, "string", optional(string), "Password of sql_user.", secret=True),
    _pg("sql_ro_user", "opscode_pushy_ro", "string", non_empty, "Read-only database user."),
    _pg("sql_ro_password", None, "string", optional(string), "Password of sql_ro_user.",
        secret=True),
    _pg("username", "opscode-pgsql", "string", non_empty, "System user running PostgreSQL."),
    _pg("db_superuser", "opscode-pgsql", "string", non_empty,
        "Superuser reconfigure uses to create users and the database."),
    _pg("db_superuser_password", None, "string", optional(string), "Password of db_superuser.",
        secret=True),
)  # fmt: skip

# Settings of the original that pushd accepts, so an existing file loads unchanged, but that
# nothing in pushd reads. tests/unit/test_settings_effect.py fails on a setting that nothing
# reads and is not listed here, and on a listed one that something reads.
NO_EFFECT: dict[str, str] = {
    "ha": "pushd has no high-availability topology of its own",
    "listen": "pushd binds api_listen and zeromq_listen_address",
    "down_threshold": "node liveness counts heartbeats (offline_threshold, online_threshold)",
    "decay_window": "node liveness counts heartbeats (offline_threshold, online_threshold)",
    "wait_complete_time": "results are recorded as they arrive; a finished job waits for none",
    "org_feed_expiration": "organization feeds keep no state in memory (see org_feed_retention)",
    "ibrowse_max_sessions": "a setting of the original's Erlang HTTP client",
    "ibrowse_max_pipeline_size": "a setting of the original's Erlang HTTP client",
    "enable_graphite": "pushd sends no graphite metrics",
    "graphite_host": "pushd sends no graphite metrics",
    "graphite_port": "pushd sends no graphite metrics",
    "postgresql.sql_ro_user": "pushd connects only as sql_user",
    "postgresql.sql_ro_password": "pushd connects only as sql_user",
    "postgresql.username": "pushd does not run PostgreSQL",
}
SETTINGS = tuple(
    replace(setting, no_effect=NO_EFFECT[setting.name]) if setting.name in NO_EFFECT else setting
    for setting in SETTINGS
)
NO_EFFECT_NOTE = "Accepted for compatibility, no effect"

_BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}
_PORT_NAMES = ("server_heartbeat_port", "command_port", "api_port", "unencrypted_command_port")


def closest_name(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like `name` (difflib), or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def lookup(name: str) -> Setting:
    try:
        return _BY_NAME[name]
    except KeyError:
        hint = closest_name(name, _BY_NAME)
        raise KeyError(
            f"unknown setting {name!r}" + (f"; did you mean {hint!r}?" if hint else "")
        ) from None


def validate(name: str, value: Any) -> Any:
    """The normalised value of setting `name`, or ValueError with the reason."""
    return lookup(name).validator(value)


class Settings:
    """Immutable resolved settings (see the module docstring)."""

    __slots__ = ("_explicit", "_origins", "_resolved")

    def __init__(self, explicit: Mapping[str, Any] | None = None) -> None:
        """Prefer ``defaults()`` / ``from_values()``; `explicit` must already be validated."""
        self._explicit: dict[str, Any] = dict(explicit or {})
        self._origins: dict[str, str] = {}
        self._resolved = self._resolve()

    def _resolve(self) -> dict[str, Any]:
        resolved: dict[str, Any] = {}
        for setting in SETTINGS:  # declaration order: a derived setting follows its sources
            value = self._explicit.get(setting.name, setting.default)
            if setting.name in self._explicit and setting.is_hash:
                value = {**setting.default, **self._explicit[setting.name]}
            if value is None and setting.derive is not None:
                value = setting.derive(resolved)
            resolved[setting.name] = _copy(value)
        return resolved

    @classmethod
    def defaults(cls) -> Settings:
        return cls()

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Settings:
        explicit: dict[str, Any] = {}
        for name, value in values.items():
            setting = lookup(name)
            try:
                explicit[name] = setting.validator(value)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        settings = cls(explicit)
        settings._check_conflicts()
        return settings

    def _check_conflicts(self) -> None:
        legacy_port = self["allow_unencrypted"] or self["disable_curve_encryption"]
        used = [name for name in _PORT_NAMES
                if name != "unencrypted_command_port" or legacy_port]  # fmt: skip
        if self["metrics_port"]:
            used.append("metrics_port")
        seen: dict[int, str] = {}
        for name in used:
            if self[name] in seen:
                raise SettingsConflict(
                    f"{seen[self[name]]} and {name} are both {self[name]}; ports must differ",
                    (seen[self[name]], name),
                )
            seen[self[name]] = name
        if self["online_threshold"] > self["offline_threshold"]:
            raise SettingsConflict(
                "online_threshold must not exceed offline_threshold",
                ("online_threshold", "offline_threshold"),
            )

    def replace(self, values: Mapping[str, Any], origin: str | None = None) -> Settings:
        """A copy with more explicit values; `origin` (e.g. "chef_server") labels where they
        came from (see `origin`)."""
        merged = dict(self._explicit)
        merged.update(values)
        copy = Settings.from_values(merged)
        copy._origins = {name: label for name, label in self._origins.items()
                         if name not in values}  # fmt: skip
        if origin is not None:
            copy._origins.update({name: origin for name in values})
        return copy

    def origin(self, name: str) -> str | None:
        """Where an explicit value came from when not from the config file (set by `replace`
        with an origin), else None."""
        lookup(name)
        return self._origins.get(name)

    def get(self, name: str) -> Any:
        if name not in self._resolved:
            lookup(name)  # raises KeyError with a suggestion
        return _copy(self._resolved[name])

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._resolved

    def __iter__(self) -> Iterator[str]:
        return iter(self._resolved)

    def is_set(self, name: str) -> bool:
        lookup(name)
        return name in self._explicit

    @property
    def explicit(self) -> dict[str, Any]:
        return _copy(self._explicit)

    def as_dict(self, redact: bool = False) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {namespace: {} for namespace in NAMESPACES}
        for setting in SETTINGS:
            value = self._resolved[setting.name]
            if redact and setting.secret and value is not None:
                value = "********"
            out[setting.namespace][setting.key] = _copy(value)
        return out

    def diff(self, other: Settings) -> list[tuple[str, Any, Any]]:
        return [
            (name, self._resolved[name], other._resolved[name])
            for name in self._resolved
            if self._resolved[name] != other._resolved[name]
        ]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and self._resolved == other._resolved

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Settings({self._explicit!r})"


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


# -- rendering ----------------------------------------------------------------------------------


def to_ruby(value: Any) -> str:
    """A Ruby literal that pushd.rbconfig parses back to `value`."""
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ", ".join(to_ruby(item) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{to_ruby(key)} => {to_ruby(item)}" for key, item in value.items())
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"no Ruby literal for {type(value).__name__}")


_EXAMPLE_HEADER = """\
# opscode-push-jobs-server.rb: configuration of the pushd push jobs server.
#
# Copy to /etc/opscode-push-jobs-server/opscode-push-jobs-server.rb (or point --config or
# PUSH_JOBS_SERVER_CONFIG at it), uncomment what you change, then run
# `push-jobs-server-ctl reconfigure`. Every assignment below shows the default.
# The file is parsed, never evaluated: only literal assignments are accepted.
#
# Generated from pushd/settings.py by `python -m pushd.settings --example`; do not edit by hand.
"""


def render_example() -> str:
    lines = [_EXAMPLE_HEADER]
    namespace = None
    for setting in SETTINGS:
        if setting.namespace != namespace:
            namespace = setting.namespace
            lines.append(f"\n## {namespace}\n")
        lines.append(f"\n# {setting.doc}")
        if setting.no_effect:
            lines.append(f"# {NO_EFFECT_NOTE}: {setting.no_effect}.")
        if setting.derive is not None:
            lines.append(f"# Default: {setting.derive_doc}.")
            value = Settings.defaults()[setting.name]
        else:
            value = setting.default
        if setting.secret:
            lines.append("# Secret: redacted by show-config.")
        if setting.is_hash:
            for key, item in value.items():
                lines.append(f"# {namespace}['{setting.key}']['{key}'] = {to_ruby(item)}")
        else:
            lines.append(f"# {namespace}['{setting.key}'] = {to_ruby(value)}")
        if setting.key == "allow_unencrypted":
            lines.append("# (The top-level form `allow_unencrypted true` is accepted too.)")
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def render_markdown() -> str:
    rows = [
        "# pushd server settings",
        "",
        "Generated from `pushd/settings.py` by `python -m pushd.settings --markdown`.",
        "Set them in `opscode-push-jobs-server.rb` as `namespace['key'] = value`.",
        "Namespaces `bootstrap` and `oc_chef_pedant` of the original file are accepted and",
        "ignored.",
        "",
        "| Setting | Type | Default | Description |",
        "|---|---|---|---|",
    ]
    for setting in SETTINGS:
        default = (f"`{setting.derive_doc}`" if setting.derive is not None
                   else f"`{to_ruby(setting.default)}`")  # fmt: skip
        doc = setting.doc
        if setting.no_effect:
            doc += f" **{NO_EFFECT_NOTE}:** {setting.no_effect}."
        rows.append(
            f"| `{setting.namespace}['{setting.key}']` | {setting.type} | {default} | {doc} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--example"]:
        sys.stdout.write(render_example())
        return 0
    if args == ["--markdown"]:
        sys.stdout.write(render_markdown())
        return 0
    sys.stderr.write(f"usage: python -m pushd.settings --example | --markdown{os.linesep}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
