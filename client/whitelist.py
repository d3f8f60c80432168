"""The command whitelist: which requested commands a node runs, and how.

Public API:

    Whitelist(entries)                 entries: {key: value}, in the config's order
        key    str                     exact command name
               re.Pattern or           must match the WHOLE requested command (fullmatch), unlike
               pushd.rbconfig.Regex    the stock client's unanchored `match`
        value  str                     command line (may use \\1, \\2 ... or \\0 for captures)
               Mapping                 {"command_line": str, "lock": True | "/path", "shell": bool}
                                       (string or symbol-like keys; `lock` and `shell` optional)
    Whitelist.resolve(requested) -> ResolvedCommand | None
    Whitelist.names() -> list[str]     keys as written, for logs and --status
    DEFAULT_WHITELIST                  {"chef-client": "chef-client"} (the stock default)
    ResolvedCommand(argv, command_line, shell, lock)
        argv          tuple[str, ...]  what is exec'd (["/bin/sh", "-c", line] when shell)
        lock          None | True | str   True = chef-client's lock file

Why captures are checked: a capture is text chosen by whoever starts the job. Without a shell the
template is split into argv first and captures are substituted inside single arguments, so they
cannot add arguments. With `shell: true` a capture must match SAFE_CAPTURE, so it cannot smuggle
shell syntax into the line; otherwise the command is treated as not whitelisted.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pushd.rbconfig import Regex

DEFAULT_WHITELIST: dict[str, str] = {"chef-client": "chef-client"}

SAFE_CAPTURE = re.compile(r"[A-Za-z0-9_.,:/=+@%-]*")

# A backreference in a replacement: \0-\9 or \& (Ruby's whole match), or an escaped backslash.
_BACKREF = re.compile(r"\\(\d|&|\\)")
# Backreferences are swapped for these markers before shlex.split, which would eat the backslash.
_MARKER = re.compile("\x00(\\d)\x00")


@dataclass(frozen=True)
class ResolvedCommand:
    """What to run for one accepted request."""

    argv: tuple[str, ...]
    command_line: str
    shell: bool
    lock: bool | str | None


@dataclass(frozen=True)
class _Entry:
    key: str | re.Pattern[str]
    command_line: str
    shell: bool
    lock: bool | str | None


def _field(value: Mapping[Any, Any], name: str) -> Any:
    """`value[name]` whether the config wrote the key as a string or a symbol-like object."""
    for key, item in value.items():
        if str(getattr(key, "name", key)).lstrip(":") == name:
            return item
    return None


def _entry(key: str | re.Pattern[str], value: Any) -> _Entry | None:
    if isinstance(value, str):
        return _Entry(key, value, shell=False, lock=None)
    if isinstance(value, Mapping):
        line = _field(value, "command_line")
        if line is None and isinstance(key, str):
            line = key  # `'chef-client' => {:lock => true}` as in the 1.x docs
        if not isinstance(line, str):
            raise ValueError(f"whitelist entry {_show(key)}: command_line must be a string")
        lock = _field(value, "lock")
        if lock is not None and not isinstance(lock, bool | str):
            raise ValueError(f"whitelist entry {_show(key)}: lock must be true or a path")
        return _Entry(key, line, shell=bool(_field(value, "shell")), lock=lock or None)
    if value is None or value is False:
        return None  # an explicit "not allowed" entry
    raise ValueError(f"whitelist entry {_show(key)}: value must be a string or a hash")


def _show(key: str | re.Pattern[str]) -> str:
    return f"/{key.pattern}/" if isinstance(key, re.Pattern) else repr(key)


def _expand(template: str, match: re.Match[str]) -> str:
    def repl(ref: re.Match[str]) -> str:
        token = ref.group(1)
        if token == "\\":
            return "\\"
        group = 0 if token == "&" else int(token)
        if group > (match.re.groups or 0):
            return ""
        return match.group(group) or ""

    return _BACKREF.sub(repl, template)


class Whitelist:
    """An ordered whitelist; exact keys win over patterns, then the first matching pattern."""

    def __init__(self, entries: Mapping[Any, Any]) -> None:
        self._exact: dict[str, _Entry | None] = {}
        self._patterns: list[tuple[re.Pattern[str], _Entry | None]] = []
        for raw_key, value in entries.items():
            key = raw_key.compile() if isinstance(raw_key, Regex) else raw_key
            entry = _entry(key, value)
            if isinstance(key, re.Pattern):
                self._patterns.append((key, entry))
            elif isinstance(key, str):
                self._exact[key] = entry
            else:
                raise ValueError(f"whitelist key {key!r} must be a string or a /regex/")

    def names(self) -> list[str]:
        return [*self._exact, *(_show(p) for p, _ in self._patterns)]

    def resolve(self, requested: str) -> ResolvedCommand | None:
        """The command to run for `requested`, or None when it is not allowed."""
        if requested in self._exact:
            entry = self._exact[requested]
            return None if entry is None else self._build(entry, None)
        for pattern, entry in self._patterns:
            match = pattern.fullmatch(requested)
            if match is not None:
                return None if entry is None else self._build(entry, match)
        return None

    @staticmethod
    def _build(entry: _Entry, match: re.Match[str] | None) -> ResolvedCommand | None:
        if entry.shell:
            if match is not None:
                captures = [match.group(0), *(g or "" for g in match.groups())]
                if not all(SAFE_CAPTURE.fullmatch(c) for c in captures[1:]):
                    return None
                whole = "\\0" in entry.command_line or "\\&" in entry.command_line
                if whole and not SAFE_CAPTURE.fullmatch(captures[0]):
                    return None
            line = _expand(entry.command_line, match) if match else entry.command_line
            return ResolvedCommand(("/bin/sh", "-c", line), line, True, entry.lock)
        marked = entry.command_line
        if match is not None:  # exact entries are used as written, backslashes and all
            marked = re.sub(
                r"\\(\d|&)", lambda m: f"\x00{0 if m.group(1) == '&' else m.group(1)}\x00",
                marked,
            )
        try:
            template_argv = shlex.split(marked)
        except ValueError:
            return None

        def fill(ref: re.Match[str]) -> str:
            group = int(ref.group(1))
            if match is None or group > (match.re.groups or 0):
                return ""
            return match.group(group) or ""

        argv = tuple(_MARKER.sub(fill, arg) for arg in template_argv)
        if not argv or not argv[0]:
            return None
        return ResolvedCommand(argv, shlex.join(argv), False, entry.lock)
