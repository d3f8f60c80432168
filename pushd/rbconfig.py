"""Parser for the Ruby subset used by Chef-style config files. It never evaluates Ruby.

Both the server file (``opscode-push-jobs-server.rb``) and the node client file
(``push-jobs-client.rb``) are written in this subset. Stdlib only: the node client imports it.

Public API
----------
``parse(text: str, filename: str = "<string>") -> list[Statement]``
    Parse a whole file. Raises :class:`pushd.errors.ConfigError` (filename, line, column, the
    offending text and a reason) for anything outside the subset; never anything else.

``Statement`` (frozen dataclass)
    ``kind``      a :class:`StatementKind`
    ``target``    tuple of names/keys, e.g.
                  ``("opscode_pushy_server", "log_rotation", "num_to_keep")`` for
                  ``opscode_pushy_server['log_rotation']['num_to_keep'] = 5``; ``("node_name",)``
                  for ``node_name "x"``; ``("LC_ALL",)`` for ``LC_ALL='C'``;
                  ``("Mixlib::Log::Formatter", "show_time")`` for the dotted form;
                  ``("ENV", "X")`` for ``ENV['X'] = 'y'``. Index keys are ``str`` (``Symbol`` for
                  ``ns[:key]``).
    ``value``     the Python value: for assignments the right-hand side; for calls the single
                  argument, or a list of the arguments when there are several.
    ``args``      tuple of all call arguments (``(value,)`` for assignments).
    ``line``, ``column``          1-based position of the statement's first character.
    ``target_positions``          ``((line, column), ...)`` of each element of ``target``.
    ``value_line``, ``value_column``  position of the (first) value.
    ``text``      the source line the statement starts on, stripped.
    ``filename``

``StatementKind``: ``INDEX_ASSIGNMENT`` (``ns['k'] = v``, ``ENV['X'] = v``), ``CALL``
(``key v``, ``key(v)``, ``key v1, v2``), ``CONSTANT_ASSIGNMENT`` (``NAME = v``,
``A::B.attr = v``). Callers that have no use for constant assignments ignore them.

Values map to Python as: strings -> ``str``; integers (``1_000``, ``-5``, ``0x1f``, ``0o17``,
``017`` is octal as in Ruby, ``0b101``) -> ``int``; floats -> ``float``; ``true``/``false``/``nil``
-> ``True``/``False``/``None``; ``:sym`` / ``:"sym"`` -> :class:`Symbol` (a ``str`` subclass, so
``Symbol("a") == "a"``: a hash with both ``:a`` and ``'a'`` keeps the last one); arrays -> ``list``;
hashes (``=>`` and ``key:`` forms, multi-line, trailing commas) -> ``dict`` in source order;
``/re/imx`` -> :class:`Regex`; a bare constant such as ``STDOUT`` -> :class:`Constant`
(a ``str`` subclass holding the name, e.g. for ``log_location STDOUT``).

Strings: single-quoted strings know only ``\\\\`` and ``\\'``; double-quoted strings know
``\\n \\t \\r \\" \\\\ \\e \\s \\0 \\a \\b \\f \\v \\NNN \\xNN \\uNNNN \\u{N...}``
(bytes are assembled and must form UTF-8); ``#{...}``, ``#@var`` and ``#$var`` interpolation
is refused.

:class:`Regex` keeps the Ruby source and flags (``Regex(source, flags)``, hashable, usable as a
dict key) and offers ``Regex.compile() -> re.Pattern``: a translation to Python ``re`` with Ruby
semantics where they differ (``^``/``$`` always match at line boundaries, ``m`` -> ``re.DOTALL``,
``i`` -> ``re.IGNORECASE``, ``x`` -> ``re.VERBOSE``, ``\\z`` -> ``\\Z``, ``\\Z``, ``\\h``, ``\\H``,
``(?<name>...)`` and ``\\k<name>``). ``parse`` compiles every regex, so one Python cannot use is
reported with its location.

Also accepted: ``#`` comments, blank lines, ``;`` between statements, a newline after ``=`` or
after a comma between call arguments, ``\\`` line continuation, and a bare trailing hash in a
call (``whitelist 'a' => 'b'``). Refused with a located ConfigError: method calls
(``File.read('x')``), ``require`` and other Ruby keywords and Kernel methods, local variables,
operators and arithmetic, ``%w[]``/``%r{}`` literals, heredocs, ``||=``, statement modifiers.

Limits: ``MAX_TEXT_CHARS`` characters per file, ``MAX_DEPTH`` nested brackets.
"""

from __future__ import annotations

import bisect
import enum
import re
from dataclasses import dataclass
from typing import Any, NoReturn

from pushd.errors import ConfigError

__all__ = [
    "MAX_DEPTH",
    "MAX_TEXT_CHARS",
    "Constant",
    "Regex",
    "Statement",
    "StatementKind",
    "Symbol",
    "parse",
]

MAX_TEXT_CHARS = 1_000_000
MAX_DEPTH = 64


class Symbol(str):
    """A Ruby symbol (``:info``). Compares and hashes like its name."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Symbol({str.__repr__(self)})"


class Constant(str):
    """A bare Ruby constant used as a value (``STDOUT``, ``Logger::INFO``): just its name."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Constant({str.__repr__(self)})"


@dataclass(frozen=True)
class Regex:
    """A Ruby regex literal ``/source/flags``; ``compile()`` gives the Python equivalent."""

    source: str
    flags: str = ""

    def compile(self) -> re.Pattern[str]:
        """Translate to a Python pattern (see the module docstring). Raises ``re.error``."""
        py_flags = re.MULTILINE  # Ruby's ^ and $ are always line anchors
        if "i" in self.flags:
            py_flags |= re.IGNORECASE
        if "m" in self.flags:
            py_flags |= re.DOTALL
        if "x" in self.flags:
            py_flags |= re.VERBOSE
        return re.compile(_translate_regex(self.source), py_flags)

    def __str__(self) -> str:
        return f"/{self.source}/{self.flags}"


def _translate_regex(source: str) -> str:
    out: list[str] = []
    i = 0
    n = len(source)
    in_class = False
    while i < n:
        ch = source[i]
        if ch == "\\" and i + 1 < n:
            nxt = source[i + 1]
            if nxt == "z" and not in_class:
                out.append(r"\Z")
            elif nxt == "Z" and not in_class:
                out.append(r"(?=\n?\Z)")
            elif nxt == "h":
                out.append("0-9a-fA-F" if in_class else "[0-9a-fA-F]")
            elif nxt == "H" and not in_class:
                out.append("[^0-9a-fA-F]")
            elif nxt == "k" and source.startswith("<", i + 2) and not in_class:
                end = source.find(">", i + 3)
                if end == -1:
                    out.append(source[i : i + 2])
                else:
                    out.append(f"(?P={source[i + 3 : end]})")
                    i = end + 1
                    continue
            else:
                out.append(source[i : i + 2])
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
            out.append(ch)
        elif ch == "[":
            in_class = True
            out.append(ch)
            # A ']' right after '[' or '[^' is a literal member, not the end of the class.
            if source.startswith("^", i + 1):
                out.append("^")
                i += 1
            if source.startswith("]", i + 1):
                out.append(r"\]")
                i += 1
        elif ch == "(" and source.startswith("?<", i + 1) and source[i + 3 : i + 4] not in "=!":
            out.append("(?P<")
            i += 3
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


class StatementKind(enum.Enum):
    INDEX_ASSIGNMENT = "index-assignment"
    CALL = "call"
    CONSTANT_ASSIGNMENT = "constant-assignment"


@dataclass(frozen=True)
class Statement:
    """One top-level statement of a config file (see the module docstring)."""

    kind: StatementKind
    target: tuple[str, ...]
    value: Any
    args: tuple[Any, ...]
    line: int
    column: int
    target_positions: tuple[tuple[int, int], ...]
    value_line: int
    value_column: int
    text: str
    filename: str


# Words that start Ruby code rather than a setting: refused wherever a statement starts.
_RUBY_WORDS = frozenset(
    str.split("""alias and begin break case class def defined? do else elsif end ensure for if in
    module next not or redo rescue retry return self super then undef unless until when while yield
    __FILE__ __LINE__ __dir__ __method__ BEGIN END require require_relative load eval
    instance_eval class_eval system exec spawn fork open puts print p pp raise fail exit exit!
    abort sleep at_exit lambda proc binding send public_send loop catch throw gets trap
    config_context default configurable""")
)

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*[?!]?")
_CONST_PATH = re.compile(r"[A-Z][A-Za-z0-9_]*(?:::[A-Z][A-Za-z0-9_]*)*")
_NUMBER = re.compile(
    r"""-?(?:
        0[xX][0-9a-fA-F]+(?:_[0-9a-fA-F]+)*
      | 0[oO]?[0-7]+(?:_[0-7]+)*
      | 0[bB][01]+(?:_[01]+)*
      | (?:0|[1-9][0-9]*(?:_[0-9]+)*)(?:\.[0-9]+(?:_[0-9]+)*)?(?:[eE][-+]?[0-9]+)?
    )""",
    re.VERBOSE,
)
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*[?!]?:(?!:)")
_SYMBOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:[?!]|=(?![>~=]))?")
_SIMPLE_ESCAPES = {
    "n": "\n", "t": "\t", "r": "\r", "s": " ", "e": "\x1b", "a": "\x07", "b": "\x08",
    "f": "\x0c", "v": "\x0b",
}  # fmt: skip
_TEXT_LIMIT = 120  # characters of offending text quoted in an error


class _Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.text = text
        self.filename = filename
        self.pos = 0
        self.depth = 0
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    # -- positions and errors ---------------------------------------------------------------

    def where(self, pos: int) -> tuple[int, int]:
        index = bisect.bisect_right(self.line_starts, pos) - 1
        return index + 1, pos - self.line_starts[index] + 1

    def line_text(self, pos: int) -> str:
        line, _ = self.where(pos)
        start = self.line_starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start : end if end != -1 else len(self.text)].strip()

    def fail(self, message: str, pos: int | None = None) -> NoReturn:
        pos = self.pos if pos is None else pos
        pos = min(pos, len(self.text))
        line, column = self.where(pos)
        end = self.text.find("\n", pos)
        fragment = self.text[pos : end if end != -1 else len(self.text)].rstrip()
        if not fragment:
            fragment = self.line_text(pos) or "<end of file>"
        if len(fragment) > _TEXT_LIMIT:
            fragment = fragment[:_TEXT_LIMIT] + "..."
        raise ConfigError(message, filename=self.filename, line=line, column=column, text=fragment)

    # -- whitespace ---------------------------------------------------------------------------

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else ""

    def skip_space(self, newlines: bool = False) -> None:
        """Skip blanks, comments and backslash continuations; newlines too when asked."""
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in " \t\r\f\v":
                self.pos += 1
            elif ch == "\\" and text.startswith("\n", self.pos + 1):
                self.pos += 2
            elif ch == "\\" and text.startswith("\r\n", self.pos + 1):
                self.pos += 3
            elif ch == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end == -1 else end
            elif ch == "\n" and (newlines or self.depth > 0):
                self.pos += 1
            elif ch == "=" and text.startswith("=begin", self.pos) and self.at_line_start():
                self.fail("=begin/=end block comments are not supported; use # comments")
            else:
                break

    def at_line_start(self) -> bool:
        return self.pos == 0 or self.text[self.pos - 1] == "\n"

    def expect(self, char: str, what: str) -> None:
        self.skip_space()
        if self.peek() != char:
            self.fail(f"expected {what}")
        self.pos += 1

    # -- statements ---------------------------------------------------------------------------

    def parse(self) -> list[Statement]:
        statements: list[Statement] = []
        while True:
            self.skip_space(newlines=True)
            while self.peek() == ";":
                self.pos += 1
                self.skip_space(newlines=True)
            if self.pos >= len(self.text):
                return statements
            statements.append(self.statement())
            self.end_of_statement()

    def end_of_statement(self) -> None:
        self.skip_space()
        ch = self.peek()
        if ch in ("", "\n", ";"):
            if ch:
                self.pos += 1
            return
        word = _IDENT.match(self.text, self.pos)
        if word and word.group() in ("if", "unless", "while", "until", "rescue"):
            self.fail(f"statement modifiers ('{word.group()}') are Ruby code, not configuration")
        if ch in "+-*/%|&<>.^" or self.text.startswith("==", self.pos):
            self.fail("operators and method calls are not supported; write a literal value")
        self.fail("unexpected text after the value; one setting per line")

    def statement(self) -> Statement:
        start = self.pos
        ch = self.peek()
        if ch.isascii() and ch.isupper():
            return self.constant_statement(start)
        word = _IDENT.match(self.text, self.pos)
        if not word:
            self.fail("expected a setting such as name['key'] = value or name value")
        name = word.group()
        if name in _RUBY_WORDS:
            self.fail(f"'{name}' is Ruby code, not configuration; only literal settings are read")
        if name.endswith(("?", "!")):
            self.fail("method calls are not supported")
        self.pos = word.end()
        after = self.peek()
        if after == "[":
            return self.index_assignment(start, name, [(name, start)])
        if after == ".":
            self.fail("method calls are not supported; write a literal value", start)
        if after == "(":
            return self.call(start, name, parenthesised=True)
        self.skip_space()
        nxt = self.peek()
        if nxt == "=" and self.peek(1) not in ("=", "~", ">"):
            self.fail(
                f"'{name} = ...' assigns a Ruby local variable and configures nothing; "
                f"write '{name} value' or namespace['key'] = value",
                start,
            )
        if nxt in ("", "\n", ";"):
            self.fail(f"expected a value after '{name}'", start)
        if self.text.startswith(("||=", "&&=", "+=", "-="), self.pos):
            self.fail("compound assignment is not supported")
        if nxt == "(":
            return self.call(start, name, parenthesised=True)
        return self.call(start, name, parenthesised=False)

    def constant_statement(self, start: int) -> Statement:
        path = _CONST_PATH.match(self.text, self.pos)
        if not path:
            self.fail("expected a constant name")
        self.pos = path.end()
        name = path.group()
        if self.peek() == "[":
            return self.index_assignment(start, name, [(name, start)])
        if self.peek() == "." and _IDENT.match(self.text, self.pos + 1):
            attr = _IDENT.match(self.text, self.pos + 1)
            assert attr is not None
            attr_pos = self.pos + 1
            self.pos = attr.end()
            self.skip_space()
            if self.peek() != "=" or self.peek(1) in ("=", "~", ">"):
                self.fail("method calls are not supported; write a literal value", start)
            self.pos += 1
            return self.assignment_rest(
                StatementKind.CONSTANT_ASSIGNMENT, start, [(name, start), (attr.group(), attr_pos)]
            )
        self.skip_space()
        if self.peek() == "=" and self.peek(1) not in ("=", "~", ">"):
            self.pos += 1
            return self.assignment_rest(StatementKind.CONSTANT_ASSIGNMENT, start, [(name, start)])
        self.fail("expected 'CONSTANT = value'; method calls are not supported", start)

    def index_assignment(self, start: int, name: str, target: list[tuple[str, int]]) -> Statement:
        while self.peek() == "[":
            self.pos += 1
            self.skip_space()
            key_pos = self.pos
            key = self.value()
            if not isinstance(key, str) or isinstance(key, Constant):
                self.fail("index keys must be 'strings' or :symbols", key_pos)
            self.skip_space()
            if self.peek() != "]":
                self.fail("expected ']' after the key")
            self.pos += 1
            target.append((key, key_pos))
        self.skip_space()
        if self.peek() != "=" or self.peek(1) in ("=", "~", ">"):
            if self.text.startswith(("||=", "&&=", "+=", "-=", "<<"), self.pos):
                self.fail("only plain '=' assignment is supported")
            self.fail(f"expected '=' after {name}[...]")
        self.pos += 1
        return self.assignment_rest(StatementKind.INDEX_ASSIGNMENT, start, target)

    def assignment_rest(
        self, kind: StatementKind, start: int, target: list[tuple[str, int]]
    ) -> Statement:
        self.skip_space(newlines=True)
        if self.pos >= len(self.text):
            self.fail("expected a value after '='")
        value_pos = self.pos
        value = self.value()
        return self.make(kind, start, target, value, (value,), value_pos)

    def call(self, start: int, name: str, *, parenthesised: bool) -> Statement:
        args: list[Any] = []
        if parenthesised:
            self.pos += 1  # "("
            self.depth += 1
            self.skip_space()
            value_pos = self.pos
            if self.peek() != ")":
                args = self.arguments(closing=")")
            self.skip_space()
            if self.peek() != ")":
                self.fail("expected ')' to close the argument list")
            self.pos += 1
            self.depth -= 1
            if not args:
                self.fail(f"expected a value in {name}(...)", start)
        else:
            value_pos = self.pos
            args = self.arguments(closing=None)
        value = args[0] if len(args) == 1 else list(args)
        return self.make(StatementKind.CALL, start, [(name, start)], value, tuple(args), value_pos)

    def arguments(self, closing: str | None) -> list[Any]:
        """Comma-separated call arguments; trailing ``k => v`` pairs form one hash."""
        args: list[Any] = []
        pairs: dict[Any, Any] | None = None
        while True:
            self.skip_space()
            if closing and self.peek() == closing:
                break
            label = self.label_key()
            if label is not None:
                key: Any = label
            else:
                key_pos = self.pos
                key = self.value()
                self.skip_space()
                if self.text.startswith("=>", self.pos):
                    self.pos += 2
                    key = self.hash_key(key, key_pos)
                elif pairs is not None:
                    self.fail("expected 'key => value' after a hash argument", key_pos)
                else:
                    args.append(key)
                    key = None
            if key is not None:
                self.skip_space(newlines=True)
                if pairs is None:
                    pairs = {}
                    args.append(pairs)
                pairs[key] = self.value()
            self.skip_space()
            if self.peek() != ",":
                break
            self.pos += 1
            self.skip_space(newlines=True)
        return args

    def make(
        self,
        kind: StatementKind,
        start: int,
        target: list[tuple[str, int]],
        value: Any,
        args: tuple[Any, ...],
        value_pos: int,
    ) -> Statement:
        line, column = self.where(start)
        value_line, value_column = self.where(value_pos)
        return Statement(
            kind=kind,
            target=tuple(name for name, _ in target),
            value=value,
            args=args,
            line=line,
            column=column,
            target_positions=tuple(self.where(pos) for _, pos in target),
            value_line=value_line,
            value_column=value_column,
            text=self.line_text(start),
            filename=self.filename,
        )

    # -- values -------------------------------------------------------------------------------

    def value(self) -> Any:
        self.skip_space()
        ch = self.peek()
        start = self.pos
        if ch == "'":
            return self.single_quoted()
        if ch == '"':
            return self.double_quoted()
        if ch == "[":
            return self.array()
        if ch == "{":
            return self.hash()
        if ch == ":":
            return self.symbol()
        if ch == "/":
            return self.regex()
        if ch.isdigit() or (ch == "-" and self.peek(1).isdigit()):
            return self.number()
        if ch == "%":
            self.fail("%-literals (%w[], %i[], %r{}, %q()) are not supported; write the literal")
        if self.text.startswith("<<", self.pos):
            self.fail("heredocs are not supported; use a quoted string")
        if ch.isascii() and ch.isupper():
            path = _CONST_PATH.match(self.text, self.pos)
            assert path is not None
            self.pos = path.end()
            if self.peek() in (".", "(", "[") or self.text.startswith("::", self.pos):
                self.fail("method calls are not supported; write a literal value", start)
            return Constant(path.group())
        word = _IDENT.match(self.text, self.pos)
        if word:
            literal = {"true": True, "false": False, "nil": None}
            if word.group() in literal and not _continues_word(self.text, word.end()):
                self.pos = word.end()
                return literal[word.group()]
            self.fail(
                f"'{word.group()}' is not a literal: variables and method calls are not supported",
                start,
            )
        if ch == "":
            self.fail("expected a value, found the end of the file")
        self.fail("expected a value (string, number, true/false/nil, :symbol, [...], {...}, /re/)")

    def single_quoted(self) -> str:
        start = self.pos
        self.pos += 1
        out: list[str] = []
        text = self.text
        while True:
            end = _find_any(text, "\\'", self.pos)
            if end == -1:
                self.fail("unterminated string", start)
            out.append(text[self.pos : end])
            if text[end] == "'":
                self.pos = end + 1
                return "".join(out)
            nxt = text[end + 1 : end + 2]
            if nxt in ("\\", "'"):
                out.append(nxt)
                self.pos = end + 2
            else:
                out.append("\\")
                self.pos = end + 1

    def double_quoted(self) -> str:
        start = self.pos
        self.pos += 1
        buf = bytearray()
        text = self.text
        while True:
            end = _find_any(text, '\\"#', self.pos)
            if end == -1:
                self.fail("unterminated string", start)
            buf += text[self.pos : end].encode("utf-8", "surrogatepass")
            self.pos = end
            ch = text[end]
            if ch == '"':
                self.pos += 1
                break
            if ch == "#":
                nxt = text[end + 1 : end + 2]
                if nxt == "{" or (nxt in ("@", "$") and _starts_word(text, end + 2)):
                    self.fail(
                        "string interpolation is not supported; use a plain string or '...'", end
                    )
                buf += b"#"
                self.pos += 1
                continue
            buf += self.escape()
        try:
            return buf.decode("utf-8")
        except UnicodeDecodeError:
            self.fail("string is not valid UTF-8 (check \\x and \\u escapes)", start)

    def escape(self) -> bytes:
        """Decode one backslash escape of a double-quoted string at self.pos."""
        start = self.pos
        text = self.text
        ch = text[start + 1 : start + 2]
        if ch == "":
            self.fail("unterminated string", start)
        self.pos = start + 2
        if ch in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[ch].encode()
        if ch in "01234567":
            digits = re.match(r"[0-7]{1,3}", text[start + 1 : start + 4])
            assert digits is not None
            self.pos = start + 1 + len(digits.group())
            return bytes([int(digits.group(), 8) & 0xFF])
        if ch == "x":
            digits = re.match(r"[0-9a-fA-F]{1,2}", text[start + 2 : start + 4])
            if not digits:
                self.fail("invalid \\x escape: expected hex digits", start)
            self.pos = start + 2 + len(digits.group())
            return bytes([int(digits.group(), 16)])
        if ch == "u":
            if text.startswith("{", start + 2):
                close = text.find("}", start + 3)
                if close == -1:
                    self.fail("invalid \\u{...} escape", start)
                out = bytearray()
                for code in text[start + 3 : close].split():
                    out += self.codepoint(code, start)
                self.pos = close + 1
                return bytes(out)
            code = text[start + 2 : start + 6]
            self.pos = start + 6
            return self.codepoint(code, start, exact=4)
        if ch == "\n":
            return b""
        if ch in "cCM":
            self.fail("control/meta escapes (\\c, \\C-, \\M-) are not supported", start)
        return ch.encode("utf-8", "surrogatepass")

    def codepoint(self, code: str, pos: int, exact: int | None = None) -> bytes:
        if not re.fullmatch(r"[0-9a-fA-F]{%s}" % (exact or "1,6"), code):
            self.fail("invalid \\u escape: expected hex digits", pos)
        value = int(code, 16)
        if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
            self.fail("invalid \\u escape: not a Unicode scalar value", pos)
        return chr(value).encode("utf-8")

    def number(self) -> int | float:
        start = self.pos
        match = _NUMBER.match(self.text, self.pos)
        if not match:
            self.fail("malformed number")
        self.pos = match.end()
        if _continues_word(self.text, self.pos) or self.peek() == "_":
            self.fail("malformed number", start)
        if self.peek() == "." and self.peek(1).isalpha():
            self.fail("method calls are not supported; write a literal value", start)
        raw = match.group().replace("_", "")
        sign = -1 if raw.startswith("-") else 1
        digits = raw.lstrip("-")
        try:
            if digits[:2].lower() in ("0x", "0b", "0o"):
                return sign * int(digits, 0)
            if len(digits) > 1 and digits[0] == "0" and digits.isdigit():
                return sign * int(digits, 8)  # Ruby reads a leading 0 as octal
            if digits.isdigit():
                return sign * int(digits)
            result = float(raw)
        except ValueError:
            self.fail("number is too long", start)
        if result in (float("inf"), float("-inf")):
            self.fail("number is out of range", start)
        return result

    def symbol(self) -> Symbol:
        start = self.pos
        self.pos += 1
        if self.peek() == '"':
            return Symbol(self.double_quoted())
        if self.peek() == "'":
            return Symbol(self.single_quoted())
        match = _SYMBOL_NAME.match(self.text, self.pos)
        if not match:
            self.fail("expected a symbol name after ':'", start)
        self.pos = match.end()
        return Symbol(match.group())

    def regex(self) -> Regex:
        start = self.pos
        self.pos += 1
        text = self.text
        out: list[str] = []
        while True:
            end = _find_any(text, "\\/#\n", self.pos)
            if end == -1 or text[end] == "\n":
                self.fail("unterminated regex", start)
            out.append(text[self.pos : end])
            ch = text[end]
            if ch == "/":
                self.pos = end + 1
                break
            if ch == "#":
                if text.startswith("#{", end):
                    self.fail("regex interpolation is not supported", end)
                out.append("#")
                self.pos = end + 1
                continue
            nxt = text[end + 1 : end + 2]
            if nxt == "":
                self.fail("unterminated regex", start)
            out.append("/" if nxt == "/" else "\\" + nxt)
            self.pos = end + 2
        flags = re.match(r"[a-z]*", text[self.pos :])
        assert flags is not None
        self.pos += len(flags.group())
        if set(flags.group()) - set("imx"):
            self.fail("unsupported regex flags; only i, m and x are allowed", start)
        regex = Regex("".join(out), "".join(sorted(set(flags.group()), key="imx".index)))
        try:
            regex.compile()
        except (re.error, OverflowError, RecursionError) as exc:
            self.fail(f"regex cannot be used: {exc}", start)
        return regex

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"nesting deeper than {MAX_DEPTH} levels")
        self.pos += 1

    def array(self) -> list[Any]:
        start = self.pos
        self.enter()
        items: list[Any] = []
        while True:
            self.skip_space()
            if self.peek() == "]":
                break
            if self.pos >= len(self.text):
                self.fail("unterminated array: expected ']'", start)
            items.append(self.value())
            self.skip_space()
            if self.peek() == ",":
                self.pos += 1
                continue
            if self.peek() != "]":
                if self.pos >= len(self.text):
                    self.fail("unterminated array: expected ']'", start)
                self.fail("expected ',' or ']' in the array")
        self.pos += 1
        self.depth -= 1
        return items

    def label_key(self) -> Symbol | None:
        """A ``key:`` or ``"key":`` hash label at self.pos (consumed), else None."""
        word = _LABEL.match(self.text, self.pos)
        if word:
            self.pos = word.end()
            return Symbol(word.group()[:-1])
        ch = self.peek()
        if ch in ("'", '"'):
            saved = self.pos
            text = self.single_quoted() if ch == "'" else self.double_quoted()
            if self.peek() == ":" and self.peek(1) != ":":
                self.pos += 1
                return Symbol(text)
            self.pos = saved
        return None

    def hash_key(self, key: Any, pos: int) -> Any:
        if isinstance(key, (list, dict)):
            self.fail("hash keys must be strings, symbols, numbers or regexes", pos)
        return key

    def hash(self) -> dict[Any, Any]:
        start = self.pos
        self.enter()
        result: dict[Any, Any] = {}
        while True:
            self.skip_space()
            if self.peek() == "}":
                break
            if self.pos >= len(self.text):
                self.fail("unterminated hash: expected '}'", start)
            label = self.label_key()
            if label is not None:
                key: Any = label
            else:
                key_pos = self.pos
                key = self.hash_key(self.value(), key_pos)
                self.skip_space()
                if not self.text.startswith("=>", self.pos):
                    self.fail("expected '=>' after the hash key")
                self.pos += 2
            self.skip_space()
            if self.peek() in (",", "}"):
                self.fail("expected a value for the hash key")
            result[key] = self.value()
            self.skip_space()
            if self.peek() == ",":
                self.pos += 1
                continue
            if self.peek() != "}":
                if self.pos >= len(self.text):
                    self.fail("unterminated hash: expected '}'", start)
                self.fail("expected ',' or '}' in the hash")
        self.pos += 1
        self.depth -= 1
        return result


def _find_any(text: str, chars: str, start: int) -> int:
    """Index of the first of `chars` in text at or after start, or -1."""
    best = -1
    for ch in chars:
        index = text.find(ch, start)
        if index != -1 and (best == -1 or index < best):
            best = index
    return best


def _continues_word(text: str, pos: int) -> bool:
    return pos < len(text) and (text[pos].isalnum() or text[pos] in "_?!")


def _starts_word(text: str, pos: int) -> bool:
    return pos < len(text) and (text[pos].isalpha() or text[pos] in "_@$")


def parse(text: str, filename: str = "<string>") -> list[Statement]:
    """Parse a config file's text into statements; raise ConfigError for anything else."""
    if len(text) > MAX_TEXT_CHARS:
        raise ConfigError(
            f"file is larger than {MAX_TEXT_CHARS} characters", filename=filename, line=1, column=1
        )
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise ConfigError("file contains a NUL byte", filename=filename, line=line, column=1)
    if text.startswith("\ufeff"):
        text = " " + text[1:]  # keep columns stable while ignoring a byte-order mark
    return _Parser(text, filename).parse()
