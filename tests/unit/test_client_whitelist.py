"""The client's whitelist: exact names, full-match regexes, captures, shell opt-in."""

from __future__ import annotations

import re

import pytest
from pushd_client.whitelist import Whitelist

from pushd.rbconfig import Regex


def test_exact_entry_runs_without_a_shell() -> None:
    wl = Whitelist({"chef-client": "chef-client --once -l info"})
    resolved = wl.resolve("chef-client")
    assert resolved is not None
    assert resolved.argv == ("chef-client", "--once", "-l", "info")
    assert not resolved.shell
    assert wl.resolve("chef-client; rm -rf /") is None


def test_regex_must_match_the_whole_command() -> None:
    """The stock client let `/chef-client/` pass `chef-client; rm -rf /`; we do not."""
    wl = Whitelist({Regex("chef-client"): "chef-client"})
    assert wl.resolve("chef-client") is not None
    assert wl.resolve("chef-client; rm -rf /") is None
    assert wl.resolve("xchef-client") is None


def test_stock_capture_examples() -> None:
    wl = Whitelist(
        {
            Regex("^deliverance (.+)$"): "deliverance eats at \\1",
            Regex("^hard (.+)$"): {"lock": True, "command_line": "tastes like \\1"},
        }
    )
    first = wl.resolve("deliverance lunchtime")
    assert first is not None and first.argv == ("deliverance", "eats", "at", "lunchtime")
    second = wl.resolve("hard chicken")
    assert second is not None
    assert second.argv == ("tastes", "like", "chicken") and second.lock is True


def test_capture_cannot_add_arguments_without_shell() -> None:
    wl = Whitelist({Regex("run (.+)"): "echo \\1"})
    resolved = wl.resolve("run a b; rm -rf /")
    assert resolved is not None
    assert resolved.argv == ("echo", "a b; rm -rf /")


def test_shell_entry_rejects_unsafe_captures() -> None:
    wl = Whitelist({Regex("say (.+)"): {"command_line": "echo \\1 | tr a b", "shell": True}})
    ok = wl.resolve("say hello")
    assert ok is not None and ok.argv == ("/bin/sh", "-c", "echo hello | tr a b")
    assert wl.resolve("say $(reboot)") is None
    assert wl.resolve("say a;b") is None


def test_symbol_like_and_string_hash_keys() -> None:
    class Sym:
        def __init__(self, name: str) -> None:
            self.name = name

    wl = Whitelist(
        {
            "a": {Sym("command_line"): "echo a", Sym("lock"): "/tmp/x.lock"},
            "b": {"command_line": "echo b"},
        }
    )
    a = wl.resolve("a")
    b = wl.resolve("b")
    assert a is not None and a.argv == ("echo", "a") and a.lock == "/tmp/x.lock"
    assert b is not None and b.argv == ("echo", "b") and b.lock is None


def test_exact_keys_win_and_order_of_patterns_is_kept() -> None:
    wl = Whitelist(
        {
            Regex("x(.*)"): "first \\1",
            Regex("xy"): "second",
            "xy": "exact",
        }
    )
    exact = wl.resolve("xy")
    assert exact is not None and exact.argv == ("exact",)
    first = wl.resolve("xz")
    assert first is not None and first.argv == ("first", "z")


def test_bad_values_are_refused_at_load() -> None:
    with pytest.raises(ValueError, match="command_line"):
        Whitelist({Regex("x"): {"lock": True}})
    with pytest.raises(ValueError):
        Whitelist({"x": 3})


def test_ruby_named_groups_and_flags() -> None:
    wl = Whitelist({Regex("(?<name>[a-z]+)-run", "i"): "echo \\1"})
    resolved = wl.resolve("ABC-RUN")
    assert resolved is not None and resolved.argv == ("echo", "ABC")


def test_compiled_patterns_are_accepted_too() -> None:
    wl = Whitelist({re.compile("a+"): "echo a"})
    assert wl.resolve("aaa") is not None and wl.resolve("aab") is None
