"""Loading the server config file ``opscode-push-jobs-server.rb`` into :class:`Settings`.

Public API
----------
``find_config_file(cli_path=None, environ=os.environ, search_paths=DEFAULT_CONFIG_PATHS)
-> Path | None``
    Lookup order: `cli_path` (``--config``), ``$PUSH_JOBS_SERVER_CONFIG``, then the first existing
    file of `search_paths` (``/etc/opscode-push-jobs-server/opscode-push-jobs-server.rb``,
    ``/etc/chef/opscode-push-jobs-server.rb``). A `cli_path` or environment path that does not
    name an existing file is a ConfigError; no file at all gives None (defaults apply).

``load_settings(path=None, environ=os.environ, search_paths=DEFAULT_CONFIG_PATHS) -> Settings``
    Find the file as above (`path` plays ``--config``), read it (UTF-8, at most
    ``MAX_CONFIG_BYTES``) and apply it; defaults when there is no file. On a Chef Server host
    (``chef_server_running_json`` exists) the Chef Server's values fill what the file leaves
    unset (`pushd.chefserver.apply_chef_server`; ``settings.origin(name) == "chef_server"``).

``load_settings_from_text(text, filename="<string>") -> Settings``
    Parse with :mod:`pushd.rbconfig` and apply the statements to the registry.

``setting_lines(path) -> {name: (filename, line)}``
    Where the file at `path` sets each setting (its last assignment), for messages that point
    at the file (reconfigure's warning about settings without effect). The file must be valid:
    load it first.

Every problem raises :class:`pushd.errors.ConfigError` with the file, line and column, the
offending text and the reason: an unknown namespace or key names the closest known one
(difflib); a value its validator refuses gives the validator's reason.

What a file may contain: ``opscode_pushy_server['key'] = value`` and ``postgresql['key'] = value``
for every setting of :mod:`pushd.settings`; ``opscode_pushy_server['log_rotation']['num_to_keep']
= 5`` for keys of a hash setting (merged over the default hash, as is a whole hash assigned at
once); the top-level call ``allow_unencrypted true`` (the release notes' form, an alias of
``opscode_pushy_server['allow_unencrypted']``). Ignored: assignments to the original's
``bootstrap[...]`` and ``oc_chef_pedant[...]`` namespaces, ``ENV[...] = ...`` and constant
assignments. When a key is assigned twice the last assignment wins, as in Ruby.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pushd import settings as registry
from pushd.chefserver import apply_chef_server
from pushd.errors import ConfigError
from pushd.files import read_bounded
from pushd.rbconfig import Statement, StatementKind, parse
from pushd.settings import Settings, SettingsConflict

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_PATHS",
    "MAX_CONFIG_BYTES",
    "find_config_file",
    "load_settings",
    "load_settings_from_text",
    "setting_lines",
]

CONFIG_ENV_VAR = "PUSH_JOBS_SERVER_CONFIG"
DEFAULT_CONFIG_PATHS: tuple[Path, ...] = (
    Path("/etc/opscode-push-jobs-server/opscode-push-jobs-server.rb"),
    Path("/etc/chef/opscode-push-jobs-server.rb"),
)
MAX_CONFIG_BYTES = 1_000_000
_TOP_LEVEL_ALIASES = {"allow_unencrypted": "allow_unencrypted"}


def find_config_file(
    cli_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] = os.environ,
    search_paths: Sequence[Path] = DEFAULT_CONFIG_PATHS,
) -> Path | None:
    """The config file to load, or None when there is none (see the module docstring)."""
    if cli_path is not None and str(cli_path) != "":
        return _must_exist(Path(cli_path), "--config")
    env_path = environ.get(CONFIG_ENV_VAR, "")
    if env_path:
        return _must_exist(Path(env_path), CONFIG_ENV_VAR)
    for candidate in search_paths:
        if candidate.is_file():
            return candidate
    return None


def _must_exist(path: Path, source: str) -> Path:
    if not path.exists():
        raise ConfigError(f"config file given by {source} does not exist", filename=str(path))
    if not path.is_file():
        raise ConfigError(f"config file given by {source} is not a file", filename=str(path))
    return path


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] = os.environ,
    search_paths: Sequence[Path] = DEFAULT_CONFIG_PATHS,
) -> Settings:
    """Settings from the config file found by `find_config_file`, or the defaults."""
    found = find_config_file(path, environ, search_paths)
    if found is None:
        return apply_chef_server(Settings.defaults())
    return apply_chef_server(load_settings_from_text(_read(found), str(found)))


def _read(path: Path) -> str:
    data = read_bounded(path, MAX_CONFIG_BYTES, "config file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            "config file is not valid UTF-8", filename=str(path), line=line, column=column
        ) from None


def load_settings_from_text(text: str, filename: str = "<string>") -> Settings:
    """Settings from the text of a config file (see the module docstring)."""
    explicit: dict[str, Any] = {}
    where_set: dict[str, Statement] = {}
    for statement in parse(text, filename):
        name = _apply(statement, explicit)
        if name is not None:
            where_set[name] = statement
    try:
        return Settings.from_values(explicit)
    except SettingsConflict as exc:
        culprits = [where_set[name] for name in exc.names if name in where_set]
        last = max(culprits, key=lambda s: (s.line, s.column), default=None)
        if last is None:
            raise ConfigError(str(exc), filename=filename) from None
        raise _error(str(exc), last, last.value_line, last.value_column) from None


def setting_lines(path: str | os.PathLike[str]) -> dict[str, tuple[str, int]]:
    """{setting name: (filename, line)} of the last assignment of each setting in the file."""
    found: dict[str, tuple[str, int]] = {}
    scratch: dict[str, Any] = {}
    for statement in parse(_read(Path(path)), str(path)):
        name = _apply(statement, scratch)
        if name is not None:
            found[name] = (statement.filename, statement.line)
    return found


def _error(message: str, statement: Statement, line: int, column: int) -> ConfigError:
    return ConfigError(
        message, filename=statement.filename, line=line, column=column, text=statement.text
    )


def _apply(statement: Statement, explicit: dict[str, Any]) -> str | None:
    """Record what `statement` sets in `explicit`; return the setting name, or None if ignored."""
    if statement.kind is StatementKind.CONSTANT_ASSIGNMENT:
        return None
    head = statement.target[0]
    if statement.kind is StatementKind.CALL:
        alias = _TOP_LEVEL_ALIASES.get(head)
        if alias is None:
            raise _error(_unknown_call_message(head), statement, statement.line, statement.column)
        _set(statement, alias, statement.value, explicit)
        return alias
    if head in registry.IGNORED_NAMESPACES or head == "ENV":
        return None
    if head not in registry.NAMESPACES:
        hint = registry.closest_name(head, registry.NAMESPACES + registry.IGNORED_NAMESPACES)
        message = f"unknown namespace '{head}'"
        known = ", ".join(registry.NAMESPACES)
        message += f"; did you mean '{hint}'?" if hint else f" (known: {known})"
        raise _error(message, statement, statement.line, statement.column)
    key = str(statement.target[1])
    key_line, key_column = statement.target_positions[1]
    name = key if head == registry.PUSHY else f"{head}.{key}"
    try:
        setting = registry.lookup(name)
    except KeyError:
        keys = [s.key for s in registry.SETTINGS if s.namespace == head]
        hint = registry.closest_name(key, keys)
        message = f"unknown setting {head}['{key}']"
        message += f"; did you mean {head}['{hint}']?" if hint else ""
        raise _error(message, statement, key_line, key_column) from None
    subkeys = statement.target[2:]
    if not subkeys:
        _set(statement, name, statement.value, explicit)
        return name
    if not setting.is_hash:
        raise _error(
            f"{head}['{key}'] is not a hash; assign it directly", statement, key_line, key_column
        )
    if len(subkeys) > 1:
        line, column = statement.target_positions[3]
        raise _error(f"{head}['{key}'] has no nested hashes", statement, line, column)
    subkey = str(subkeys[0])
    if subkey not in setting.default:
        line, column = statement.target_positions[2]
        hint = registry.closest_name(subkey, setting.default)
        message = f"unknown key {head}['{key}']['{subkey}']"
        message += f"; did you mean '{hint}'?" if hint else ""
        message += f" (known: {', '.join(setting.default)})"
        raise _error(message, statement, line, column)
    merged = dict(explicit.get(name, {}))
    merged[subkey] = statement.value
    _set(statement, name, merged, explicit, label=f"{head}['{key}']['{subkey}']")
    return name


def _set(
    statement: Statement, name: str, value: Any, explicit: dict[str, Any], label: str | None = None
) -> None:
    setting = registry.lookup(name)
    if label is None:
        label = f"{setting.namespace}['{setting.key}']"
    try:
        normalised = setting.validator(value)
    except ValueError as exc:
        raise _error(
            f"invalid value for {label}: {exc}", statement, statement.value_line,
            statement.value_column,
        ) from None
    if setting.is_hash and name in explicit and not statement.target[2:]:
        normalised = {**explicit[name], **normalised}
    explicit[name] = normalised


def _unknown_call_message(name: str) -> str:
    for namespace in registry.NAMESPACES:
        candidate = name if namespace == registry.PUSHY else f"{namespace}.{name}"
        if any(setting.name == candidate for setting in registry.SETTINGS):
            return (
                f"'{name} ...' is not a server setting here; "
                f"write {namespace}['{name}'] = value"
            )
    keys = [s.key for s in registry.SETTINGS if s.namespace == registry.PUSHY]
    hint = registry.closest_name(name, [*keys, *_TOP_LEVEL_ALIASES])
    message = f"unknown top-level setting '{name}'"
    if hint:
        message += f"; did you mean opscode_pushy_server['{hint}']?"
    return message
