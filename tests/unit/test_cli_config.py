"""Configuration discovery: knife.rb / config.rb idioms, credentials profiles, flag overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from pushd_knife.config import find_config_file, load_config
from pushd_knife.exitcodes import CliError
from pushd_knife.knife_rb import read_knife_rb

from pushd.errors import ConfigError


@pytest.fixture(scope="module")
def pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    (path / ".chef").mkdir(parents=True)
    return path


def env_for(home: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(home), **extra}


TYPICAL_KNIFE_RB = """\
# See https://docs.chef.io/config_rb_knife.html for more information on knife configuration options

current_dir = File.dirname(__FILE__)
log_level                :info
log_location             STDOUT
node_name                "alice"
client_key               "#{current_dir}/alice.pem"
chef_server_url          "https://api.chef.io/organizations/acme"
cookbook_path            ["#{current_dir}/../cookbooks",
                          "#{current_dir}/../site-cookbooks"]
knife[:editor] = "vim"
cache_options( :path => "#{ENV['HOME']}/.chef/checksums" )
if ENV['CI']
  something_else true
end
"""


def test_typical_knife_rb(tmp_path: Path) -> None:
    path = tmp_path / ".chef" / "knife.rb"
    path.parent.mkdir()
    path.write_text(TYPICAL_KNIFE_RB)
    values = read_knife_rb(path, {"HOME": "/home/alice"})
    assert values == {
        "node_name": "alice",
        "client_key": f"{path.parent.resolve()}/alice.pem",
        "chef_server_url": "https://api.chef.io/organizations/acme",
    }


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("client_key File.join(__dir__, 'k.pem')", "{dir}/k.pem"),
        ("client_key File.expand_path('../k.pem', __FILE__)", "{dir}/k.pem"),
        ("client_key File.expand_path('k.pem', File.dirname(__FILE__))", "{dir}/k.pem"),
        ("client_key \"#{ENV['HOME']}/.chef/k.pem\"", "/home/bob/.chef/k.pem"),
        ("client_key ENV.fetch('KEYFILE', '/x.pem')", "/x.pem"),
        ("client_key(Dir.home + '/k.pem')", "/home/bob/k.pem"),
        ("client_key '/a\\'b.pem'  # trailing comment", "/a'b.pem"),
        ('client_key "/tab\\there#not-a-comment"', "/tab\there#not-a-comment"),
    ],
)
def test_key_path_idioms(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "config.rb"
    path.write_text(line + "\n")
    values = read_knife_rb(path, {"HOME": "/home/bob"})
    assert values["client_key"] == expected.format(dir=tmp_path.resolve())


def test_brackets_inside_strings_do_not_join_lines(tmp_path: Path) -> None:
    path = tmp_path / "knife.rb"
    path.write_text("node_name 'a(b'\nclient_key '/k[.pem'\nchef_server_url 'https://x/o'\n")
    assert read_knife_rb(path, {}) == {"node_name": "a(b", "client_key": "/k[.pem",
                                       "chef_server_url": "https://x/o"}


def test_deep_nesting_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "knife.rb"
    path.write_text("node_name " + "(" * 5000 + "'x'" + ")" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        read_knife_rb(path, {})


def test_node_name_from_env_and_symbol_values(tmp_path: Path) -> None:
    path = tmp_path / "config.rb"
    path.write_text("node_name ENV['USER']\nssl_verify_mode :verify_none\n")
    assert read_knife_rb(path, {"USER": "carol"}) == {
        "node_name": "carol", "ssl_verify_mode": "verify_none"}


def test_unreadable_wanted_value_is_located(tmp_path: Path) -> None:
    path = tmp_path / "knife.rb"
    path.write_text("log_location STDOUT\n\nnode_name   `whoami`.chomp\n")
    with pytest.raises(ConfigError) as err:
        read_knife_rb(path, {})
    assert err.value.filename == str(path)
    assert err.value.line == 3
    assert err.value.column == 13
    assert err.value.text == "node_name   `whoami`.chomp"
    assert "cannot read the value of node_name" in str(err.value)


def test_variable_from_unsupported_expression_fails_only_when_used(tmp_path: Path) -> None:
    path = tmp_path / "knife.rb"
    path.write_text("user = `whoami`.chomp\nother = 1\nnode_name user\n")
    with pytest.raises(ConfigError, match="user is set by an expression"):
        read_knife_rb(path, {})
    path.write_text("user = `whoami`.chomp\nnode_name 'dave'\n")
    assert read_knife_rb(path, {}) == {"node_name": "dave"}


def test_discovery_order(tmp_path: Path, home: Path) -> None:
    project = tmp_path / "project" / "sub"
    project.mkdir(parents=True)
    env = env_for(home)
    assert find_config_file(cwd=project, environ=env) is None
    (home / ".chef" / "knife.rb").write_text("")
    assert find_config_file(cwd=project, environ=env) == home / ".chef" / "knife.rb"
    (home / ".chef" / "config.rb").write_text("")
    assert find_config_file(cwd=project, environ=env) == home / ".chef" / "config.rb"
    (tmp_path / "project" / ".chef").mkdir()
    (tmp_path / "project" / ".chef" / "knife.rb").write_text("")
    # knife looks in .chef of the working directory or its nearest parent first
    assert find_config_file(cwd=project, environ=env) == tmp_path / "project/.chef/knife.rb"
    (tmp_path / "project" / ".chef" / "config.rb").write_text("")
    assert find_config_file(cwd=project, environ=env) == tmp_path / "project/.chef/config.rb"
    explicit = tmp_path / "mine.rb"
    explicit.write_text("")
    assert find_config_file(explicit, cwd=project, environ=env) == explicit
    with pytest.raises(CliError, match="not found"):
        find_config_file(tmp_path / "missing.rb", cwd=project, environ=env)


def test_load_from_knife_rb_with_relative_key(tmp_path: Path, home: Path, pem: bytes) -> None:
    chef = tmp_path / "repo" / ".chef"
    chef.mkdir(parents=True)
    (chef / "alice.pem").write_bytes(pem)
    (chef / "knife.rb").write_text(TYPICAL_KNIFE_RB)
    config = load_config(cwd=tmp_path / "repo", environ=env_for(home))
    assert config.server_url == "https://api.chef.io/organizations/acme"
    assert config.user == "alice"
    assert config.key_pem == pem
    assert config.ssl_verify is True
    assert config.config_file == chef / "knife.rb"
    assert config.trusted_certs_dir == chef / "trusted_certs"


CREDENTIALS = """\
[default]
client_name = "barney"
client_key = "barney.pem"
chef_server_url = "https://chef.example/organizations/bedrock"

[dev]
node_name = "fred"
client_key = '''{pem}'''
chef_server_url = "https://dev.example/organizations/quarry"
ssl_verify_mode = "verify_none"
"""


def test_credentials_profiles(tmp_path: Path, home: Path, pem: bytes) -> None:
    (home / ".chef" / "barney.pem").write_bytes(pem)
    (home / ".chef" / "credentials").write_text(CREDENTIALS.format(pem=pem.decode()))
    cwd = tmp_path
    default = load_config(cwd=cwd, environ=env_for(home))
    assert (default.user, default.server_url, default.profile) == (
        "barney", "https://chef.example/organizations/bedrock", "default")
    assert default.key_pem == pem
    dev = load_config(cwd=cwd, profile="dev", environ=env_for(home))
    assert (dev.user, dev.ssl_verify) == ("fred", False)
    assert dev.key_pem.strip() == pem.strip()
    from_env = load_config(cwd=cwd, environ=env_for(home, CHEF_PROFILE="dev"))
    assert from_env.user == "fred"
    (home / ".chef" / "context").write_text("dev\n")
    assert load_config(cwd=cwd, environ=env_for(home)).user == "fred"
    with pytest.raises(CliError, match=r"profile 'prod' not found in .*credentials \(profiles: "
                                       r"default, dev\)"):
        load_config(cwd=cwd, profile="prod", environ=env_for(home))


def test_config_file_overrides_credentials_and_flags_override_both(
    tmp_path: Path, home: Path, pem: bytes
) -> None:
    (home / ".chef" / "barney.pem").write_bytes(pem)
    (home / ".chef" / "credentials").write_text(CREDENTIALS.format(pem=pem.decode()))
    (home / ".chef" / "config.rb").write_text("chef_server_url 'https://file.example/organizations/o'\n")
    config = load_config(cwd=tmp_path, environ=env_for(home))
    assert (config.user, config.server_url) == ("barney", "https://file.example/organizations/o")
    key = tmp_path / "other.pem"
    key.write_bytes(pem)
    config = load_config(cwd=tmp_path, environ=env_for(home), server_url="http://127.0.0.1:1/organizations/x/",
                         user="wilma", key=str(key))
    assert (config.user, config.server_url) == ("wilma", "http://127.0.0.1:1/organizations/x")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("node_name 'a'\nclient_key '/k'\n", "no chef_server_url"),
        ("chef_server_url 'https://x/organizations/o'\nclient_key '/k'\n", "no node_name"),
        ("chef_server_url 'https://x/organizations/o'\nnode_name 'a'\n", "no client_key"),
        ("chef_server_url 'x'\nnode_name 'a'\nclient_key '/k'\n", "must start with https://"),
        ("chef_server_url 'https://x/o'\nnode_name 'a'\nclient_key '/nonexistent/k.pem'\n",
         "client key /nonexistent/k.pem not found (client_key from"),
    ],
)
def test_missing_settings_are_one_clear_line(
    tmp_path: Path, home: Path, content: str, message: str
) -> None:
    (home / ".chef" / "knife.rb").write_text(content)
    with pytest.raises(CliError) as err:
        load_config(cwd=tmp_path, environ=env_for(home))
    assert message in err.value.message
    assert "\n" not in err.value.message


def test_bad_credentials_toml(tmp_path: Path, home: Path) -> None:
    (home / ".chef" / "credentials").write_text("[default\n")
    with pytest.raises(CliError, match="credentials: not valid TOML"):
        load_config(cwd=tmp_path, environ=env_for(home))


@given(st.text(alphabet=st.sampled_from(list("node_namclietkyhsrvu =\"'#{}()[]:,.+\\\n$ENVFil/_0"))
               | st.characters(), max_size=200))
@settings(max_examples=300, deadline=None)
def test_knife_rb_reader_fails_only_with_config_error(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    # One file rewritten per example (a directory per example cost more than the parse).
    path = tmp_path_factory.getbasetemp() / "fuzzed-knife.rb"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        values = read_knife_rb(path, {"HOME": "/home/x"})
    except ConfigError as exc:
        assert exc.filename == str(path)
    else:
        assert set(values) <= {"chef_server_url", "node_name", "client_name", "client_key",
                               "ssl_verify_mode", "ssl_ca_file", "trusted_certs_dir",
                               "authentication_protocol_version"}
