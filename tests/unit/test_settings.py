"""The settings registry: coverage of the original's keys, validation, derivation, rendering."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pushd.config import load_settings_from_text
from pushd.settings import (
    SETTINGS,
    Settings,
    SettingsConflict,
    lookup,
    render_example,
    render_markdown,
    to_ruby,
    validate,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "opscode-push-jobs-server.rb.example"
REGENERATE = "python -m pushd.settings --example > opscode-push-jobs-server.rb.example"

ORIGINAL_KEYS = str.split("""enable ha dir log_directory log_rotation listen db_pool_size
ibrowse_max_sessions
ibrowse_max_pipeline_size max_body_size heartbeat_interval zeromq_listen_address zmq_io_processes
server_name_advertised vip server_heartbeat_port command_port api_port down_threshold decay_window
detect_offline_nodes_interval validate_client_node_name enable_graphite graphite_host graphite_port
chef_api_version voting_timeout default_running_timeout wait_complete_time keep_alive_time
org_feed_expiration rehab_timer config_lifetime max_message_skew disable_curve_encryption
allow_unencrypted unencrypted_command_port data_dir run_dir service_dir etc_dir offline_threshold
online_threshold api_workers api_listen principal_source chef_server_url chef_server_superuser_name
chef_server_superuser_key principal_cache_ttl org_feed_retention job_retention_days
max_request_body max_job_file_size output_max_bytes""")
POSTGRESQL_KEYS = str.split("""enable vip port database_name sql_user sql_password sql_ro_user
sql_ro_password username db_superuser""")


def test_every_key_of_the_brief_is_declared_once() -> None:
    names = [setting.name for setting in SETTINGS]
    assert len(names) == len(set(names))
    missing = [key for key in ORIGINAL_KEYS if key not in names]
    missing += [f"postgresql.{key}" for key in POSTGRESQL_KEYS if f"postgresql.{key}" not in names]
    assert missing == []
    for setting in SETTINGS:
        assert setting.doc.endswith(".") and "\n" not in setting.doc, setting.name


def test_defaults_match_the_original() -> None:
    defaults = Settings.defaults()
    assert defaults["heartbeat_interval"] == 10000
    assert defaults.get("log_rotation") == {"file_maxbytes": 104857600, "num_to_keep": 10}
    assert defaults["voting_timeout"] == 60
    assert defaults["rehab_timer"] == 1000
    assert defaults["max_message_skew"] == 300
    assert defaults["allow_unencrypted"] is False
    assert defaults["unencrypted_command_port"] == 10001
    assert defaults["postgresql.database_name"] == "opscode_pushy"
    assert defaults["postgresql.sql_ro_user"] == "opscode_pushy_ro"
    assert (defaults["offline_threshold"], defaults["online_threshold"]) == (3, 2)
    assert defaults["max_request_body"] == 1_000_000
    assert defaults["output_max_bytes"] == 1024 * 1024


def test_every_default_passes_its_own_validator() -> None:
    for setting in SETTINGS:
        assert validate(setting.name, setting.default) == setting.default, setting.name


def test_paths_derive_from_dir_unless_set() -> None:
    moved = Settings.from_values({"dir": "/tmp/appliance/"})
    assert moved["dir"] == "/tmp/appliance"
    assert moved["data_dir"] == "/tmp/appliance/data"
    assert moved["run_dir"] == "/tmp/appliance/run"
    assert moved["service_dir"] == "/tmp/appliance/service"
    assert moved["sqlite_path"] == "/tmp/appliance/data/pushd.sqlite3"
    assert not moved.is_set("data_dir")
    pinned = moved.replace({"data_dir": "/srv/pushd"})
    assert pinned["data_dir"] == "/srv/pushd"
    assert pinned["sqlite_path"] == "/srv/pushd/pushd.sqlite3"
    assert pinned["run_dir"] == "/tmp/appliance/run"
    advertised = Settings.from_values({"vip": "push.example.com"})
    assert advertised["server_name_advertised"] == "push.example.com"


def test_settings_are_immutable_and_copy_out() -> None:
    settings = Settings.defaults()
    rotation = settings["log_rotation"]
    rotation["num_to_keep"] = 99
    settings.as_dict()["opscode_pushy_server"]["log_rotation"]["num_to_keep"] = 98
    assert settings["log_rotation"]["num_to_keep"] == 10
    assert settings.replace({"api_port": 11003})["api_port"] == 11003
    assert settings["api_port"] == 10003


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(KeyError, match="heartbeat_interval"):
        Settings.defaults().get("heartbeat_intervall")
    with pytest.raises(KeyError, match=r"postgresql\.vip"):
        lookup("postgresql.vipp")


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("heartbeat_interval", "fast", 'expected an integer, got string "fast"'),
        ("heartbeat_interval", True, "expected an integer"),
        ("heartbeat_interval", 10, "at least 100"),
        ("api_port", 70000, "at most 65535"),
        ("enable", "yes", "expected true or false"),
        ("dir", "relative/path", "absolute path"),
        ("down_threshold", 1.5, "at most 1.0"),
        ("zeromq_listen_address", "tcp://*:10000", "without a port"),
        ("principal_source", "ldap", "one of local, chef_server"),
        ("chef_server_url", "chef.example.com", "http"),
        ("log_rotation", {"num_to_kep": 1}, "did you mean 'num_to_keep'"),
        ("log_rotation", {"num_to_keep": 0}, "at least 1"),
        ("postgresql.port", "5432", "expected an integer"),
        # Never above what the node client accepts (issue 12).
        ("max_job_file_size", 1_048_577, "at most 1048576"),
    ],
)
def test_validators_reject_with_a_reason(name: str, value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_values({name: value})


def test_conflicting_ports_are_refused() -> None:
    with pytest.raises(SettingsConflict) as caught:
        Settings.from_values({"api_port": 10002})
    assert caught.value.names == ("command_port", "api_port")
    # The legacy port only matters when the legacy ROUTER is on.
    assert Settings.from_values({"unencrypted_command_port": 10003})["api_port"] == 10003
    with pytest.raises(SettingsConflict):
        Settings.from_values({"unencrypted_command_port": 10003, "allow_unencrypted": True})
    with pytest.raises(SettingsConflict):  # without Curve, nodes are sent to the legacy port
        Settings.from_values(
            {"unencrypted_command_port": 10003, "disable_curve_encryption": True}
        )
    with pytest.raises(SettingsConflict, match="online_threshold"):
        Settings.from_values({"online_threshold": 4})


def test_as_dict_is_nested_by_namespace_and_json_ready() -> None:
    settings = Settings.from_values({"postgresql.sql_password": "s3cret", "api_port": 9000})
    document = settings.as_dict()
    assert set(document) == {"opscode_pushy_server", "postgresql"}
    assert document["opscode_pushy_server"]["api_port"] == 9000
    assert document["postgresql"]["sql_password"] == "s3cret"
    assert settings.as_dict(redact=True)["postgresql"]["sql_password"] == "********"
    assert json.loads(json.dumps(document)) == document


def test_diff_lists_changed_resolved_values_in_registry_order() -> None:
    old = Settings.defaults()
    new = old.replace({"dir": "/x", "heartbeat_interval": 5000})
    assert old.diff(new) == [
        ("dir", "/var/opt/opscode-push-jobs-server/opscode-pushy-server", "/x"),
        ("data_dir", "/var/opt/opscode-push-jobs-server/opscode-pushy-server/data", "/x/data"),
        ("run_dir", "/var/opt/opscode-push-jobs-server/opscode-pushy-server/run", "/x/run"),
        (
            "service_dir",
            "/var/opt/opscode-push-jobs-server/opscode-pushy-server/service",
            "/x/service",
        ),
        (
            "sqlite_path",
            "/var/opt/opscode-push-jobs-server/opscode-pushy-server/data/pushd.sqlite3",
            "/x/data/pushd.sqlite3",
        ),
        ("heartbeat_interval", 10000, 5000),
    ]
    assert old.diff(Settings.defaults()) == []
    assert old == Settings.defaults() and old != new


def test_committed_example_is_current() -> None:
    assert EXAMPLE.read_text() == render_example(), (
        f"{EXAMPLE.name} is stale; regenerate it with: {REGENERATE}"
    )


def test_example_round_trips_to_the_defaults() -> None:
    text = EXAMPLE.read_text()
    assert load_settings_from_text(text, str(EXAMPLE)) == Settings.defaults()
    # Uncommenting every assignment must also give exactly the defaults: each rendered literal
    # parses back to its default.
    assignments = [
        line[2:] for line in text.splitlines()
        if line.startswith(("# opscode_pushy_server[", "# postgresql["))
    ]  # fmt: skip
    assert len(assignments) > len(SETTINGS)
    uncommented = load_settings_from_text("\n".join(assignments), "uncommented.rb")
    assert uncommented.diff(Settings.defaults()) == []
    assert set(uncommented.explicit) == {setting.name for setting in SETTINGS}


def test_module_prints_the_example_and_the_reference() -> None:
    example = subprocess.run(
        [sys.executable, "-m", "pushd.settings", "--example"],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    assert example.stdout == render_example()
    usage = subprocess.run(
        [sys.executable, "-m", "pushd.settings", "--bogus"], capture_output=True, text=True,
        cwd=REPO,
    )  # fmt: skip
    assert usage.returncode == 2 and "usage" in usage.stderr
    markdown = render_markdown()
    for setting in SETTINGS:
        assert f"`{setting.namespace}['{setting.key}']`" in markdown


def test_to_ruby_quotes_strings() -> None:
    assert to_ruby("it's \\") == "'it\\'s \\\\'"
    assert to_ruby({"a": [1, None, True]}) == "{ 'a' => [1, nil, true] }"


def test_committed_settings_reference_is_current() -> None:
    reference = REPO / "docs" / "settings.md"
    assert reference.read_text() == render_markdown(), (
        "docs/settings.md is stale; regenerate it with: "
        "python -m pushd.settings --markdown > docs/settings.md"
    )
