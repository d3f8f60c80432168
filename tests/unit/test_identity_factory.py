"""make_principal_source: chooses the source from the settings and reports bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pushd.errors import ConfigError
from pushd.identity import ChefServerSource, make_principal_source
from pushd.identity.local import LocalSource
from pushd.settings import Settings


def write_key(path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    return path


def test_local_is_the_default() -> None:
    assert isinstance(make_principal_source(Settings.defaults()), LocalSource)


def test_chef_server_source_is_built_from_settings(tmp_path: Path) -> None:
    settings = Settings.from_values({
        "principal_source": "chef_server",
        "chef_server_url": "https://chef.example.com/organizations/acme",
        "chef_server_superuser_name": "pivotal",
        "chef_server_superuser_key": str(write_key(tmp_path / "pivotal.pem")),
        "principal_cache_ttl": 7,
    })
    source = make_principal_source(settings)
    assert isinstance(source, ChefServerSource)
    assert source.tenancy == "auto"


@pytest.mark.parametrize("content", [None, "not a key\n"])
def test_unusable_superuser_key_is_a_config_error(tmp_path: Path, content: str | None) -> None:
    key_path = tmp_path / "pivotal.pem"
    if content is not None:
        key_path.write_text(content)
    settings = Settings.from_values({
        "principal_source": "chef_server",
        "chef_server_superuser_key": str(key_path),
    })
    with pytest.raises(ConfigError, match="chef_server_superuser_key"):
        make_principal_source(settings)


def test_unknown_source_is_a_config_error() -> None:
    class Loose:
        def get(self, name: str) -> str:
            return "ldap"

    with pytest.raises(ConfigError, match="'local' or 'chef_server'"):
        make_principal_source(Loose())
