"""Reading the few settings the CLI needs from knife.rb / config.rb, without running Ruby.

Public API:
    read_knife_rb(path, environ=os.environ, wanted=WANTED_KEYS) -> dict[str, Any]
        the last value given to each wanted key, e.g. {"chef_server_url": "...", "node_name":
        "alice", "client_key": "/home/alice/.chef/alice.pem"}; raises pushd.errors.ConfigError
        (file, line, column, text) when a wanted key's value is an expression it cannot read.

knife.rb is Ruby that knife evaluates, and real files are full of lines this CLI does not need
(`cookbook_path [...]`, `log_location STDOUT`, `knife[:editor] = ...`). So this reader is
tolerant: it looks only at statements that set a wanted key (`key value`, `key(value)`) and at
local variable assignments (`current_dir = File.dirname(__FILE__)`), and skips everything else.
A wanted key's value may use the common idioms: string literals (double-quoted ones with
`#{...}` interpolation), symbols, numbers, true/false/nil, local variables, `__FILE__`,
`__dir__`, `File.dirname/join/expand_path/absolute_path`, `Dir.home`, `ENV['X']`,
`ENV.fetch('X'[, default])` and `+` between strings. Anything else in such a value is an
error naming the file, line, column and text, rather than a silently wrong setting.
Conditionals are not evaluated: the last statement for a key wins.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pushd.errors import ConfigError
from pushd.files import read_bounded

WANTED_KEYS = frozenset(
    {
        "chef_server_url",
        "node_name",
        "client_name",
        "client_key",
        "ssl_verify_mode",
        "ssl_ca_file",
        "trusted_certs_dir",
        "authentication_protocol_version",
    }
)

_SETTING = re.compile(r"^(?P<key>[a-z_][a-z0-9_]*)(?P<rest>(?:\s+|\().*)$", re.DOTALL)
_ASSIGNMENT = re.compile(r"^(?P<var>[a-z_][a-z0-9_]*)\s*=(?!=)\s*(?P<expr>.*)$", re.DOTALL)
_MAX_FILE_BYTES = 1_000_000
_MAX_NESTING = 50  # brackets/interpolations inside one value; keeps recursion bounded


class _Unreadable(Exception):
    """An expression this reader does not understand (offset into the statement)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class _Unknown:
    """A variable whose value could not be read; an error only if a wanted key uses it."""

    def __init__(self, message: str) -> None:
        self.message = message


class _Evaluator:
    """Recursive-descent reader for one expression of the supported idioms."""

    def __init__(
        self, text: str, variables: Mapping[str, Any], path: Path, environ: Mapping[str, str]
    ) -> None:
        self.text = text
        self.pos = 0
        self.variables = variables
        self.path = path
        self.environ = environ
        self.depth = 0

    # -- scanning helpers ------------------------------------------------------------------
    def _skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n\\":
            self.pos += 1

    def _peek(self, token: str) -> bool:
        self._skip_space()
        return self.text.startswith(token, self.pos)

    def _expect(self, token: str) -> None:
        if not self._peek(token):
            raise _Unreadable(f"expected {token!r}", self.pos)
        self.pos += len(token)

    def at_end(self) -> bool:
        self._skip_space()
        return self.pos >= len(self.text)

    # -- grammar ---------------------------------------------------------------------------
    def expression(self) -> Any:
        self.depth += 1
        try:
            if self.depth > _MAX_NESTING:
                raise _Unreadable("nested too deeply", self.pos)
            return self._sum()
        finally:
            self.depth -= 1

    def _sum(self) -> Any:
        value = self._term()
        while self._peek("+"):
            start = self.pos
            self.pos += 1
            right = self._term()
            if not isinstance(value, str) or not isinstance(right, str):
                raise _Unreadable("'+' is only supported between strings", start)
            value += right
        return value

    def _arguments(self) -> list[Any]:
        args: list[Any] = []
        self._expect("(")
        if self._peek(")"):
            self.pos += 1
            return args
        while True:
            args.append(self.expression())
            if self._peek(","):
                self.pos += 1
                continue
            self._expect(")")
            return args

    def _term(self) -> Any:
        self._skip_space()
        start = self.pos
        text = self.text
        if start >= len(text):
            raise _Unreadable("missing value", start)
        char = text[start]
        if char == "'":
            return self._single_quoted()
        if char == '"':
            return self._double_quoted()
        if char == ":" and re.match(r":[A-Za-z_]\w*", text[start:]):
            match = re.match(r":([A-Za-z_]\w*[?!]?)", text[start:])
            assert match is not None
            self.pos += match.end()
            return match.group(1)
        if char == "[":
            return self._array()
        if char == "(":
            self.pos += 1
            value = self.expression()
            self._expect(")")
            return value
        number = re.match(r"-?\d[\d_]*(\.\d+)?", text[start:])
        if number:
            self.pos += number.end()
            literal = number.group(0).replace("_", "")
            return float(literal) if number.group(1) else int(literal)
        return self._name(start)

    def _array(self) -> list[Any]:
        self._expect("[")
        items: list[Any] = []
        while not self._peek("]"):
            items.append(self.expression())
            if self._peek(","):
                self.pos += 1
            elif not self._peek("]"):
                raise _Unreadable("expected ',' or ']'", self.pos)
        self.pos += 1
        return items

    def _name(self, start: int) -> Any:
        match = re.match(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*[?!]?)?", self.text[start:])
        if not match:
            raise _Unreadable("unsupported expression", start)
        name = match.group(0)
        self.pos = start + match.end()
        if name in ("true", "false"):
            return name == "true"
        if name == "nil":
            return None
        if name == "__FILE__":
            return str(self.path)
        if name == "__dir__":
            return str(self.path.parent)
        if name == "Dir.home":
            if self._peek("("):
                self._arguments()
            return self.environ.get("HOME") or str(Path.home())
        if name == "Dir.pwd":
            if self._peek("("):
                self._arguments()
            return os.getcwd()
        if name == "ENV":
            return self._env_index(start)
        if name == "ENV.fetch":
            args = self._arguments()
            if not args or not isinstance(args[0], str):
                raise _Unreadable("ENV.fetch needs a variable name", start)
            if args[0] in self.environ:
                return self.environ[args[0]]
            if len(args) > 1:
                return args[1]
            raise _Unreadable(f"environment variable {args[0]} is not set", start)
        if name.startswith("File."):
            return self._file_call(name, start)
        if name in self.variables:
            value = self.variables[name]
            if isinstance(value, _Unknown):
                raise _Unreadable(f"{name} is set by an expression this reader cannot read "
                                  f"({value.message})", start)
            return value
        raise _Unreadable(f"unsupported expression {name!r}", start)

    def _env_index(self, start: int) -> str | None:
        self._expect("[")
        key = self.expression()
        self._expect("]")
        if not isinstance(key, str):
            raise _Unreadable("ENV[...] needs a variable name", start)
        return self.environ.get(key)

    def _file_call(self, name: str, start: int) -> str:
        args = self._arguments()
        if not all(isinstance(arg, str) for arg in args) or not args:
            raise _Unreadable(f"{name} needs string arguments", start)
        if name == "File.dirname":
            return os.path.dirname(args[0])
        if name == "File.join":
            return "/".join(part.rstrip("/") if i < len(args) - 1 else part
                            for i, part in enumerate(args))
        if name in ("File.expand_path", "File.absolute_path"):
            base = args[1] if len(args) > 1 else os.getcwd()
            target = args[0]
            if name == "File.expand_path":
                target = os.path.expanduser(target)
                base = os.path.expanduser(base)
            return os.path.normpath(os.path.join(base, target))
        raise _Unreadable(f"unsupported call {name}", start)

    def _single_quoted(self) -> str:
        out: list[str] = []
        pos = self.pos + 1
        text = self.text
        while pos < len(text):
            char = text[pos]
            if char == "\\" and pos + 1 < len(text) and text[pos + 1] in "\\'":
                out.append(text[pos + 1])
                pos += 2
                continue
            if char == "'":
                self.pos = pos + 1
                return "".join(out)
            out.append(char)
            pos += 1
        raise _Unreadable("unterminated string", self.pos)

    _ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "s": " ", "0": "\0", "e": "\x1b", "a": "\a",
                "b": "\b", "f": "\f", "v": "\v"}

    def _double_quoted(self) -> str:
        out: list[str] = []
        text = self.text
        self.pos += 1
        while self.pos < len(text):
            char = text[self.pos]
            if char == "\\" and self.pos + 1 < len(text):
                nxt = text[self.pos + 1]
                out.append(self._ESCAPES.get(nxt, nxt))
                self.pos += 2
                continue
            if char == "#" and text.startswith("#{", self.pos):
                self.pos += 2
                value = self.expression()
                self._expect("}")
                out.append("" if value is None else str(value))
                continue
            if char == '"':
                self.pos += 1
                return "".join(out)
            out.append(char)
            self.pos += 1
        raise _Unreadable("unterminated string", self.pos)


def _outside_strings(line: str) -> Iterator[tuple[int, str]]:
    """(index, char) of each character of `line` outside string literals (quotes excluded)."""
    quote: str | None = None
    index = 0
    while index < len(line):
        char = line[index]
        if quote:
            if char == "\\":
                index += 2
                continue
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        else:
            yield index, char
        index += 1


def _strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a `#` inside a string is kept)."""
    for index, char in _outside_strings(line):
        if char == "#":
            return line[:index]
    return line


def _bracket_depth(line: str) -> int:
    """Opening minus closing brackets outside string literals."""
    depth = 0
    for _, char in _outside_strings(line):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
    return depth


def _statements(text: str) -> Iterable[tuple[int, str]]:
    """(first line number, statement text) with bracketed values joined across lines."""
    buffer: list[str] = []
    first_line = 0
    depth = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw).rstrip()
        if not buffer:
            first_line = number
            if not line.strip():
                continue
        buffer.append(line)
        depth += _bracket_depth(line)
        if depth > 0 or line.endswith(("\\", ",")):
            continue
        yield first_line, "\n".join(buffer).strip()
        buffer = []
        depth = 0
    if buffer:
        yield first_line, "\n".join(buffer).strip()


def _evaluate(
    text: str, variables: dict[str, Any], absolute: Path, environ: Mapping[str, str]
) -> Any:
    """The value of the whole expression `text`; _Unreadable if it is not one we can read."""
    evaluator = _Evaluator(text, variables, absolute, environ)
    value = evaluator.expression()
    if not evaluator.at_end():
        raise _Unreadable("unexpected text after the value", evaluator.pos)
    return value


def read_knife_rb(
    path: str | Path,
    environ: Mapping[str, str] | None = None,
    wanted: Iterable[str] = WANTED_KEYS,
) -> dict[str, Any]:
    """The values of the wanted keys set in a knife.rb / config.rb (see the module docstring)."""
    file_path = Path(path)
    environ = os.environ if environ is None else environ
    wanted_keys = frozenset(wanted)
    data = read_bounded(file_path, _MAX_FILE_BYTES, "knife config file")
    text = data.decode("utf-8", errors="replace")
    absolute = file_path.resolve()
    variables: dict[str, Any] = {}
    values: dict[str, Any] = {}
    for line_number, statement in _statements(text):
        setting = None if _ASSIGNMENT.match(statement) else _SETTING.match(statement)
        if setting and setting.group("key") in wanted_keys:
            key = setting.group("key")
            offset = len(key)
            try:
                value = _evaluate(setting.group("rest"), variables, absolute, environ)
            except _Unreadable as exc:
                raise ConfigError(
                    f"cannot read the value of {key} ({exc.message}; knife.rb is read, not run)",
                    filename=str(file_path),
                    line=line_number,
                    column=offset + exc.offset + 1,
                    text=statement.splitlines()[0],
                ) from None
            values[key] = value
            continue
        assignment = _ASSIGNMENT.match(statement)
        if assignment:
            try:
                value = _evaluate(assignment.group("expr"), variables, absolute, environ)
            except _Unreadable as exc:
                value = _Unknown(exc.message)
            variables[assignment.group("var")] = value
    return values
