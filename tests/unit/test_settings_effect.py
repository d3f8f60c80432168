"""No setting without effect: every registry setting is read by the server's code, or declared
"accepted for compatibility, no effect" (and then show-config, the docs and the example say so,
and reconfigure warns when the file sets it).

"Read" is found in the source (the AST, so comments and docstrings do not count) of the server
packages, pushd/ (but not the registry itself) and ctl/, as one of the ways the code reads a
setting: ``settings.get("name")`` / ``self._settings.is_set("name")`` (a receiver whose source
names settings), a bare ``get("name")`` / ``_setting(settings, "name")`` (the local readers of
pushd.broker.config, pushd.api.context and pushd.store.db), ``settings["name"]``, or a tuple or
list of strings two or more of which are setting names (the loops over names in
pushd.broker.config and ctl/).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from pushd import settings as registry
from pushd.config import load_settings_from_text

ROOT = Path(__file__).resolve().parents[2]
SERVER_SOURCES = ("pushd", "ctl")
REGISTRY_FILE = ROOT / "pushd" / "settings.py"
READER_FUNCTIONS = {"get", "is_set", "_setting"}


def _mentions_settings(node: ast.AST) -> bool:
    return "settings" in ast.unparse(node).lower()


def names_read(source: str, known: set[str]) -> set[str]:
    """The names of `known` that `source` reads in one of the ways the module doc lists."""
    found: set[str] = set()

    def constant(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in known:
            return node.value
        return None

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in READER_FUNCTIONS:
                if _mentions_settings(func.value) and node.args:
                    found.add(constant(node.args[0]) or "")
            elif isinstance(func, ast.Name) and func.id in READER_FUNCTIONS:
                found.update(constant(arg) or "" for arg in node.args)
        elif isinstance(node, ast.Subscript) and _mentions_settings(node.value):
            found.add(constant(node.slice) or "")
        elif isinstance(node, (ast.Tuple, ast.List)) and all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
        ):
            names = {constant(element) for element in node.elts} - {None}
            if len(names) >= 2:
                found.update(name for name in names if name)
    found.discard("")
    return found


def settings_read_by_the_server(root: Path = ROOT) -> set[str]:
    known = {setting.name for setting in registry.SETTINGS}
    found: set[str] = set()
    for package in SERVER_SOURCES:
        for path in sorted((root / package).rglob("*.py")):
            if path.resolve() != REGISTRY_FILE:
                found |= names_read(path.read_text(), known)
    return found


def test_every_setting_is_read_or_declared_without_effect() -> None:
    read = settings_read_by_the_server()
    dead = [s.name for s in registry.SETTINGS if not s.no_effect and s.name not in read]
    assert dead == [], f"settings nothing reads, not declared no-effect: {dead}"
    stale = [s.name for s in registry.SETTINGS if s.no_effect and s.name in read]
    assert stale == [], f"declared no-effect but read by the server: {stale}"


def test_the_walk_tells_reads_from_other_strings() -> None:
    known = {"dir", "voting_timeout", "run_dir", "data_dir", "postgresql.vip", "ha"}
    source = (
        '"""settings.get("ha") in a docstring is no read."""\n'
        "# settings.get('ha') in a comment is no read\n"
        "doc.get('dir'); x = {'dir': 1}; print('voting_timeout')\n"
        "def f(settings, get):\n"
        "    settings.get('voting_timeout'); get('run_dir'); _setting(settings, 'postgresql.vip')\n"
        "    return self._settings['data_dir']\n"
    )
    assert names_read(source, known) == {"voting_timeout", "run_dir", "postgresql.vip",
                                         "data_dir"}  # fmt: skip
    assert names_read("for name in ('dir', 'run_dir'): pass\n", known) == {"dir", "run_dir"}
    assert names_read("x = ('dir', 'other')\n", known) == set()
    assert names_read("x = ('dir', 'other', 'ha')\n", known) == {"dir", "ha"}


def test_the_settings_this_issue_names_have_an_effect_now() -> None:
    read = settings_read_by_the_server()
    assert {"job_retention_days", "output_max_bytes"} <= read
    for name in ("wait_complete_time", "org_feed_expiration", "down_threshold", "decay_window",
                 "ha", "enable_graphite"):  # fmt: skip
        assert name in read or registry.lookup(name).no_effect


def test_docs_example_and_show_config_say_no_effect(tmp_path: Path) -> None:
    markdown = registry.render_markdown()
    example = registry.render_example()
    for name, reason in registry.NO_EFFECT.items():
        setting = registry.lookup(name)
        row = next(line for line in markdown.splitlines() if f"`{setting.label}`" in line)
        assert f"{registry.NO_EFFECT_NOTE}:** {reason}." in row
        block = example.split(f"# {setting.doc}\n", 1)[1].split("\n\n", 1)[0]
        assert block.startswith(f"# {registry.NO_EFFECT_NOTE}: {reason}."), name
    config = tmp_path / "server.rb"
    config.write_text(f"opscode_pushy_server['dir'] = '{tmp_path}'\n"
                      f"opscode_pushy_server['etc_dir'] = '{tmp_path / 'etc'}'\n")
    out = subprocess.run([sys.executable, "-m", "pushd_ctl", "--config", str(config),
                          "show-config"], capture_output=True, text=True, check=True)  # fmt: skip
    shown = json.loads(out.stdout)["no_effect"]
    assert set(shown) == set(registry.NO_EFFECT)
    assert shown["ha"] == f"accepted for compatibility, no effect: {registry.NO_EFFECT['ha']}"

    from pushd_ctl import layout

    running = layout.running_json_path(load_settings_from_text(config.read_text()))
    running.parent.mkdir(parents=True, exist_ok=True)
    running.write_text(json.dumps(load_settings_from_text(config.read_text()).as_dict()))
    config.write_text(config.read_text() + "opscode_pushy_server['ha'] = true\n"
                      "opscode_pushy_server['voting_timeout'] = 90\n")  # fmt: skip
    diff = subprocess.run([sys.executable, "-m", "pushd_ctl", "--config", str(config),
                           "show-config", "--diff"], capture_output=True, text=True, check=True)
    assert diff.stdout.splitlines() == [
        f"ha: false -> true (accepted for compatibility, no effect: {registry.NO_EFFECT['ha']})",
        "voting_timeout: 60 -> 90",
    ]


def test_settings_without_effect_still_load_from_an_original_file() -> None:
    text = "".join(
        f"{registry.lookup(name).label} = {registry.to_ruby(registry.lookup(name).default)}\n"
        for name in registry.NO_EFFECT
    )
    settings = load_settings_from_text(text, "original.rb")
    assert all(settings.is_set(name) for name in registry.NO_EFFECT)
