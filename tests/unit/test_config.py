"""Loading opscode-push-jobs-server.rb: lookup order, applying statements, located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pushd.config import (
    CONFIG_ENV_VAR,
    MAX_CONFIG_BYTES,
    find_config_file,
    load_settings,
    load_settings_from_text,
)
from pushd.errors import ConfigError
from pushd.settings import Settings


@pytest.fixture
def search_paths(tmp_path: Path) -> tuple[Path, Path]:
    """Stand-ins for the two /etc locations, in lookup order (neither exists yet)."""
    return (
        tmp_path / "etc" / "opscode-push-jobs-server" / "opscode-push-jobs-server.rb",
        tmp_path / "etc" / "chef" / "opscode-push-jobs-server.rb",
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_lookup_order(tmp_path: Path, search_paths: tuple[Path, Path]) -> None:
    first, second = search_paths
    assert find_config_file(None, {}, search_paths) is None
    write(second, "")
    assert find_config_file(None, {}, search_paths) == second
    write(first, "")
    assert find_config_file(None, {}, search_paths) == first
    env_file = write(tmp_path / "env.rb", "")
    environ = {CONFIG_ENV_VAR: str(env_file)}
    assert find_config_file(None, environ, search_paths) == env_file
    cli_file = write(tmp_path / "cli.rb", "")
    assert find_config_file(cli_file, environ, search_paths) == cli_file
    assert find_config_file(None, {CONFIG_ENV_VAR: ""}, search_paths) == first


def test_explicit_paths_that_do_not_exist_are_errors(
    tmp_path: Path, search_paths: tuple[Path, Path]
) -> None:
    write(search_paths[0], "")
    missing = tmp_path / "nope.rb"
    with pytest.raises(ConfigError, match="--config does not exist") as caught:
        find_config_file(missing, {}, search_paths)
    assert caught.value.filename == str(missing)
    with pytest.raises(ConfigError, match=f"{CONFIG_ENV_VAR} does not exist"):
        find_config_file(None, {CONFIG_ENV_VAR: str(missing)}, search_paths)
    with pytest.raises(ConfigError, match="not a file"):
        find_config_file(tmp_path, {}, search_paths)


def test_no_file_means_defaults(search_paths: tuple[Path, Path]) -> None:
    assert load_settings(None, {}, search_paths) == Settings.defaults()


def test_load_settings_reads_the_found_file(
    tmp_path: Path, search_paths: tuple[Path, Path]
) -> None:
    write(search_paths[1], "opscode_pushy_server['api_port'] = 11003\n")
    assert load_settings(None, {}, search_paths)["api_port"] == 11003
    env_file = write(tmp_path / "env.rb", "opscode_pushy_server['api_port'] = 12003\n")
    assert load_settings(None, {CONFIG_ENV_VAR: str(env_file)}, search_paths)["api_port"] == 12003


def test_a_full_file_applies_every_form(tmp_path: Path) -> None:
    text = f"""\
# A push jobs server under a temporary directory.
opscode_pushy_server['dir'] = '{tmp_path}/pushy'
opscode_pushy_server['log_directory'] = "{tmp_path}/log"
opscode_pushy_server['heartbeat_interval'] = 1_000
opscode_pushy_server[:api_port] = 11003
opscode_pushy_server['log_rotation']['num_to_keep'] = 5
opscode_pushy_server['down_threshold'] = 0.5
opscode_pushy_server['principal_source'] = :chef_server
postgresql['enable'] = true
postgresql['vip'] = 'db.example.com'
postgresql['sql_password'] = nil
allow_unencrypted true
bootstrap['enable'] = false
oc_chef_pedant['debug_org_creation'] = true
ENV['LC_ALL'] = 'C'
LC_ALL='en_US.UTF-8'
"""
    settings = load_settings_from_text(text, "full.rb")
    assert settings["dir"] == f"{tmp_path}/pushy"
    assert settings["run_dir"] == f"{tmp_path}/pushy/run"
    assert settings["log_directory"] == f"{tmp_path}/log"
    assert settings["heartbeat_interval"] == 1000
    assert settings["api_port"] == 11003
    assert settings["log_rotation"] == {"file_maxbytes": 104857600, "num_to_keep": 5}
    assert settings["down_threshold"] == 0.5
    assert settings["principal_source"] == "chef_server"
    assert type(settings["principal_source"]) is str
    assert settings["postgresql.enable"] is True
    assert settings["postgresql.vip"] == "db.example.com"
    assert settings["allow_unencrypted"] is True


def test_whole_hash_and_later_nested_assignment_merge() -> None:
    settings = load_settings_from_text(
        "opscode_pushy_server['log_rotation'] = { 'file_maxbytes' => 1000 }\n"
        "opscode_pushy_server['log_rotation']['num_to_keep'] = 3\n",
        "h.rb",
    )
    assert settings["log_rotation"] == {"file_maxbytes": 1000, "num_to_keep": 3}


def test_last_assignment_wins() -> None:
    settings = load_settings_from_text(
        "opscode_pushy_server['api_port'] = 1\nopscode_pushy_server['api_port'] = 2\n", "l.rb"
    )
    assert settings["api_port"] == 2


def load_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings_from_text(text, "server.rb")
    return caught.value


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        (
            "\nopscode_pushy_server['heartbeat_intervl'] = 1000\n",
            2, 22, "did you mean opscode_pushy_server['heartbeat_interval']",
        ),
        ("postgresql['prot'] = 5432", 1, 12, "did you mean postgresql['port']"),
        ("opscode_pushy['vip'] = 'x'", 1, 1, "unknown namespace 'opscode_pushy'; did you mean"),
        ("chef['vip'] = 'x'", 1, 1, "unknown namespace 'chef'"),
        (
            "opscode_pushy_server['heartbeat_interval'] = \"fast\"",
            1, 46, "invalid value for opscode_pushy_server['heartbeat_interval']: expected an "
            'integer, got string "fast"',
        ),
        ("postgresql['port'] = 0", 1, 22, "must be at least 1"),
        (
            "opscode_pushy_server['log_rotation']['num_to_kep'] = 5",
            1, 38, "did you mean 'num_to_keep'",
        ),
        (
            "opscode_pushy_server['log_rotation']['num_to_keep'] = 'five'",
            1, 55, "invalid value for opscode_pushy_server['log_rotation']['num_to_keep']",
        ),
        ("opscode_pushy_server['dir']['x'] = 1", 1, 22, "is not a hash"),
        ("heartbeat_interval 5000", 1, 1, "write opscode_pushy_server['heartbeat_interval']"),
        ("allow_unencrypted 'yes'", 1, 19, "expected true or false"),
        ("node_name 'x'", 1, 1, "unknown top-level setting 'node_name'"),
        (
            "opscode_pushy_server['command_port'] = 10003\nopscode_pushy_server['vip'] = 'h'",
            1, 40, "ports must differ",
        ),
        ("opscode_pushy_server['vip'] = File.read('x')", 1, 31, "method calls"),
    ],
)  # fmt: skip
def test_errors_name_file_line_column(text: str, line: int, column: int, message: str) -> None:
    err = load_error(text)
    assert (err.filename, err.line, err.column) == ("server.rb", line, column), str(err)
    assert message in err.message, str(err)
    assert err.text, str(err)


def test_file_errors(tmp_path: Path, search_paths: tuple[Path, Path]) -> None:
    big = write(tmp_path / "big.rb", "#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than"):
        load_settings(big, {}, search_paths)
    latin1 = tmp_path / "latin1.rb"
    latin1.write_bytes(b"# ok\nopscode_pushy_server['vip'] = '\xe9'\n")
    with pytest.raises(ConfigError, match="not valid UTF-8") as caught:
        load_settings(latin1, {}, search_paths)
    assert (caught.value.line, caught.value.column) == (2, 32)
