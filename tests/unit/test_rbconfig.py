"""The Ruby-subset parser: every value type, statement forms, located errors, fuzzing."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pushd.errors import ConfigError
from pushd.rbconfig import MAX_DEPTH, Constant, Regex, StatementKind, Symbol, parse


def value_of(source: str) -> object:
    (statement,) = parse(f"x['k'] = {source}\n", "v.rb")
    return statement.value


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("'plain'", "plain"),
        (r"'it\'s \\ \n'", "it's \\ \\n"),
        (r'"a\nb\tc\"d\\e"', 'a\nb\tc"d\\e'),
        (r'"\e\s\0\a"', "\x1b \x00\x07"),
        (r'"\x41\101\u00e9\u{1F600 41}"', "AAé\U0001f600A"),
        (r'"\xc3\xa9"', "é"),
        ('"# not interpolation #x"', "# not interpolation #x"),
        ("42", 42),
        ("-7", -7),
        ("1_000_000", 1_000_000),
        ("0x1f", 31),
        ("0b101", 5),
        ("0o17", 15),
        ("017", 15),
        ("0", 0),
        ("1.5", 1.5),
        ("-0.6", -0.6),
        ("2e3", 2000.0),
        ("1.5e-3", 0.0015),
        ("true", True),
        ("false", False),
        ("nil", None),
        (":info", Symbol("info")),
        (':"with space"', Symbol("with space")),
        ("STDOUT", Constant("STDOUT")),
        ("Logger::INFO", Constant("Logger::INFO")),
        ("[]", []),
        ("[1, 'a', [true, nil],]", [1, "a", [True, None]]),
        ("{}", {}),
        ("{ 'a' => 1, :b => 2, c: 3, 'd': 4, }", {"a": 1, "b": 2, "c": 3, "d": 4}),
        ("{:lock=>true}", {"lock": True}),
        ("/^chef-(\\w+)$/i", Regex("^chef-(\\w+)$", "i")),
        ("/a\\/b/mx", Regex("a/b", "mx")),
    ],
)
def test_values(source: str, expected: object) -> None:
    value = value_of(source)
    assert value == expected
    assert type(value) is type(expected)


def test_symbols_are_distinguishable_from_strings() -> None:
    value = value_of("{ :command_line => 'x', 'lock' => true }")
    assert isinstance(value, dict)
    kinds = {key: type(key) for key in value}
    assert kinds == {"command_line": Symbol, "lock": str}


def test_multi_line_hash_with_comments_and_regex_keys() -> None:
    text = """\
whitelist({
  # the stock default
  'chef-client' => 'chef-client',
  /^deliverance (.+)$/ => 'deliverance eats at \\1',   # comment after a value
  /^hard (.+)$/ => {
     :lock => true,
     :command_line => 'tastes like \\1',
  },
})
"""
    (statement,) = parse(text, "client.rb")
    assert statement.kind is StatementKind.CALL
    assert statement.target == ("whitelist",)
    keys = list(statement.value)
    assert keys[0] == "chef-client"
    assert keys[1] == Regex("^deliverance (.+)$")
    assert statement.value[keys[2]] == {"lock": True, "command_line": "tastes like \\1"}
    pattern = keys[1].compile()
    assert pattern.sub(statement.value[keys[1]], "deliverance lunchtime") == (
        "deliverance eats at lunchtime"
    )


def test_statement_forms_and_positions() -> None:
    text = """\
# comment
LC_ALL='en_US.UTF-8'
Mixlib::Log::Formatter.show_time = false
ENV['HOME'] = "/root"

opscode_pushy_server['log_rotation']['num_to_keep'] = 5
opscode_pushy_server[:heartbeat_interval] =
    10_000
node_name "node-1"; log_level :info
whitelist('a' => 'b')
allowed_overwritable_env_vars 'A', 'B'
"""
    statements = parse(text, "f.rb")
    summary = [(s.kind.value, s.target, s.value, s.line, s.column) for s in statements]
    assert summary == [
        ("constant-assignment", ("LC_ALL",), "en_US.UTF-8", 2, 1),
        ("constant-assignment", ("Mixlib::Log::Formatter", "show_time"), False, 3, 1),
        ("index-assignment", ("ENV", "HOME"), "/root", 4, 1),
        (
            "index-assignment",
            ("opscode_pushy_server", "log_rotation", "num_to_keep"),
            5,
            6,
            1,
        ),
        ("index-assignment", ("opscode_pushy_server", "heartbeat_interval"), 10000, 7, 1),
        ("call", ("node_name",), "node-1", 9, 1),
        ("call", ("log_level",), "info", 9, 21),
        ("call", ("whitelist",), {"a": "b"}, 10, 1),
        ("call", ("allowed_overwritable_env_vars",), ["A", "B"], 11, 1),
    ]
    nested = statements[3]
    assert nested.target_positions == ((6, 1), (6, 22), (6, 38))
    assert (nested.value_line, nested.value_column) == (6, 55)
    assert statements[4].value_line == 8
    assert statements[8].args == ("A", "B")
    assert statements[5].text == 'node_name "node-1"; log_level :info'


def test_regex_translation_follows_ruby() -> None:
    assert Regex("^b$").compile().search("a\nb\nc")  # ^ and $ are line anchors in Ruby
    assert Regex("a.b", "m").compile().match("a\nb")
    assert not Regex("a.b").compile().match("a\nb")
    assert Regex("ABC", "i").compile().match("abc")
    assert Regex(r"\h+\z").compile().fullmatch("beef")
    assert Regex(r"(?<word>\w+) \k<word>").compile().match("hey hey")
    assert Regex(" a b # comment", "x").compile().match("ab")


def error_for(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(text, "bad.rb")
    return caught.value


@pytest.mark.parametrize(
    ("text", "line", "column", "message", "fragment"),
    [
        ("a = 1\n", 1, 1, "local variable", "a = 1"),
        ("ok 1\nx['k'] = 'abc\n", 2, 10, "unterminated string", "'abc"),
        ('x["k"] = "abc', 1, 10, "unterminated string", '"abc'),
        ("x['k'] = File.read('x')", 1, 10, "method calls are not supported", "File.read('x')"),
        ("File.read('x')", 1, 1, "method calls are not supported", "File.read('x')"),
        ("x['k'] = \"a#{ENV['X']}\"", 1, 12, "interpolation", "#{ENV['X']}\""),
        ('x["k"] = "#@var"', 1, 11, "interpolation", '#@var"'),
        ("require 'socket'", 1, 1, "Ruby code", "require 'socket'"),
        ("if true\n", 1, 1, "Ruby code", "if true"),
        ("node_name 'a' if true", 1, 15, "modifier", "if true"),
        ("x['k'] = 1 + 2", 1, 12, "operators", "+ 2"),
        ("x['k'] = %w[a b]", 1, 10, "%-literals", "%w[a b]"),
        ("x['k'] = <<EOF\nhi\nEOF\n", 1, 10, "heredocs", "<<EOF"),
        ("x['k'] ||= 1", 1, 8, "plain '='", "||= 1"),
        ("x['k'] = foo", 1, 10, "not a literal", "foo"),
        ("x['k'] = [1, 2", 1, 10, "unterminated array", "[1, 2"),
        ("x['k'] = {\n 'a' => 1,\n", 1, 10, "unterminated hash", "{"),
        ("x['k'] = { 'a' 1 }", 1, 16, "expected '=>'", "1 }"),
        ("x['k'] = /abc", 1, 10, "unterminated regex", "/abc"),
        ("x['k'] = /a/q", 1, 10, "flags", "/a/q"),
        ("x['k'] = /(?<=a+)b/", 1, 10, "regex cannot be used", "/(?<=a+)b/"),
        ("x[1] = 2", 1, 3, "index keys", "1] = 2"),
        ("node_name", 1, 1, "expected a value", "node_name"),
        ("x['k'] = 12abc", 1, 10, "malformed number", "12abc"),
        ("x['k'] = " + "9" * 5000, 1, 10, "too long", "9" * 20),
        ("x['k'] = 1e999", 1, 10, "out of range", "1e999"),
        ('x["k"] = "\\uD800"', 1, 11, "Unicode", "\\uD800"),
        ('x["k"] = "\\xff"', 1, 10, "UTF-8", '"\\xff"'),
        ("x['k'] = " + "[" * (MAX_DEPTH + 1), 1, 10 + MAX_DEPTH, "nesting", "["),
        ("x['k'] 1", 1, 8, "expected '='", "1"),
    ],
)
def test_errors_are_located(text: str, line: int, column: int, message: str, fragment: str) -> None:
    err = error_for(text)
    assert err.filename == "bad.rb"
    assert (err.line, err.column) == (line, column), str(err)
    assert message in err.message, str(err)
    assert err.text is not None and err.text.startswith(fragment), str(err)
    assert str(err).startswith(f"bad.rb:{line}:{column}: ")


def test_oversized_file_is_refused() -> None:
    err = error_for("# " + "x" * 1_000_000)
    assert "larger than" in err.message


def test_whitespace_comments_and_continuations() -> None:
    text = "\ufeff  \n\t# only comments\n\nx['a'] = \\\n  1 # trailing\n;;\nx['b'] = [\n\n 2 ,\n]\n"
    assert [(s.target, s.value) for s in parse(text)] == [(("x", "a"), 1), (("x", "b"), [2])]
    assert parse("") == []


_ATOMS = st.sampled_from(
    [
        "x", "['k']", "[:k]", " = ", "=", "'s'", '"d"', '"\\', "'", '"#{', "1", "-2", "1.5", "1_0",
        "0x", "true", "nil", ":sym", "[", "]", "{", "}", "=>", ",", "k:", "/re/i", "/", "(", ")",
        "\n", " ", "#", "\\", "ENV", "A::B", ".", "File.read", "require", "if", "%w", "<<", "\t",
        ";", "\\u{", "\\x", "é", "\x00",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ATOMS, max_size=30).map("".join))
def test_fuzz_token_soup_raises_only_config_error(text: str) -> None:
    try:
        statements = parse(text, "fuzz.rb")
    except ConfigError as err:
        assert err.filename == "fuzz.rb"
        assert err.line is not None and err.line >= 1
        assert err.column is not None and err.column >= 1
        return
    for statement in statements:
        assert statement.line >= 1 and statement.target


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_arbitrary_text_raises_only_config_error(text: str) -> None:
    try:
        parse(text, "fuzz.rb")
    except ConfigError:
        pass


_RUBY_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _ruby(value: object) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + "".join(f"\\u{{{ord(c):x}}}" if not c.isalnum() else c for c in value) + '"'
    if isinstance(value, list):
        return "[\n" + ",\n".join(_ruby(item) for item in value) + "\n]"
    assert isinstance(value, dict)
    items = ", ".join(f"{_ruby(k)} => {_ruby(v)}" for k, v in value.items())
    return "{" + items + (",}" if items else "}")


@settings(max_examples=200, deadline=None)
@given(_RUBY_VALUES)
def test_fuzz_literals_round_trip(value: object) -> None:
    text = _ruby(value)
    if re.search(r"[\ud800-\udfff]", text):
        return
    assert value_of(text) == value
