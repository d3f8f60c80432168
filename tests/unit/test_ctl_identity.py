"""Identity administration through push-jobs-server-ctl, in-process, on SQLite and PostgreSQL.

The commands write to the real local principal store; the assertions read it back through the
store API and through the ctl's own list commands.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pushd_ctl.main import main

from pushd.keys import (
    generate_client_keypair,
    load_rsa_private_key,
    load_rsa_public_key,
    rsa_public_pem,
)


class Ctl:
    def __init__(self, root: Path, db_backend: tuple[str, dict[str, Any]]) -> None:
        self.root = root
        self.config = root / "opscode-push-jobs-server.rb"
        lines = [
            f"opscode_pushy_server['dir'] = '{root / 'srv'}'",
            f"opscode_pushy_server['log_directory'] = '{root / 'log'}'",
            f"opscode_pushy_server['etc_dir'] = '{root / 'etc'}'",
        ]
        kind, params = db_backend
        if kind == "postgres":
            lines += [
                "postgresql['enable'] = true",
                f"postgresql['vip'] = '{params['host']}'",
                f"postgresql['port'] = {int(params['port'])}",
                f"postgresql['database_name'] = '{params['database']}'",
                f"postgresql['sql_user'] = '{params['user']}'",
                f"postgresql['db_superuser'] = '{params['user']}'",
            ]
            if params.get("password"):
                lines.append(f"postgresql['sql_password'] = '{params['password']}'")
        else:
            lines.append(f"opscode_pushy_server['sqlite_path'] = '{params['path']}'")
        self.config.write_text("\n".join(lines) + "\n")

    def __call__(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--config", str(self.config), *args])
        return code, out.getvalue(), err.getvalue()

    def store(self) -> Any:
        from pushd import store
        from pushd.config import load_settings

        store.open_database(load_settings(self.config))
        return store


@pytest.fixture
def ctl(tmp_path: Path, db_backend: tuple[str, dict[str, Any]]) -> Iterator[Ctl]:
    yield Ctl(tmp_path, db_backend)
    from pushd import store

    store.close_database()


def test_org_user_client_group_round_trip(ctl: Ctl, tmp_path: Path) -> None:
    assert ctl("org-create", "acme")[0] == 0
    code, out, _ = ctl("user-create", "alice", "--org", "acme", "--admin",
                       "--key-out", str(tmp_path / "alice.pem"))  # fmt: skip
    assert code == 0, out
    assert (tmp_path / "alice.pem").stat().st_mode & 0o777 == 0o600
    _, public = generate_client_keypair()
    (tmp_path / "node.pub").write_text(public)
    assert ctl("client-create", "web1.example.com", "--org", "acme",
               "--public-key", str(tmp_path / "node.pub"))[0] == 0  # fmt: skip
    assert ctl("group-add", "acme", "pushy_job_writers", "--user", "alice")[0] == 0
    assert ctl("group-add", "acme", "pushy_job_readers", "--group", "pushy_job_writers")[0] == 0

    assert ctl("org-list")[1].split() == ["acme"]
    assert ctl("user-list", "--org", "acme")[1].strip() == "alice  (admin)"
    assert ctl("client-list", "--org", "acme")[1].split() == ["web1.example.com"]
    groups = ctl("group-list", "acme")[1]
    assert "admins  users: alice" in groups
    assert "pushy_job_readers  users: -  clients: -  groups: pushy_job_writers" in groups

    store = ctl.store()
    org = store.get_organization("acme")
    alice = store.get_principal(org.id, "alice", "user")
    assert alice.admin
    # The private key written for alice matches the public key stored for her.
    private = load_rsa_private_key(tmp_path / "alice.pem")
    assert rsa_public_pem(private) == rsa_public_pem(load_rsa_public_key(alice.public_key))
    assert store.get_principal(org.id, "web1.example.com", "client").public_key == public
    store.close_database()

    assert ctl("client-delete", "web1.example.com", "--org", "acme")[0] == 0
    assert ctl("client-list", "--org", "acme")[1].split() == []


def test_mistakes_are_one_line_and_change_nothing(ctl: Ctl, tmp_path: Path) -> None:
    assert ctl("org-create", "acme")[0] == 0
    code, _, err = ctl("org-create", "acme")
    assert code == 1 and "already exists" in err and len(err.splitlines()) == 1
    code, _, err = ctl("org-create", "Bad Name")
    assert code == 2 and "invalid organization name" in err
    code, _, err = ctl("user-create", "bob", "--org", "nope", "--key-out", str(tmp_path / "b"))
    assert code == 1 and "organization 'nope' does not exist" in err
    assert not (tmp_path / "b").exists()  # no key left behind for a user that was not created
    (tmp_path / "junk.pub").write_text("not a key")
    code, _, err = ctl("client-create", "n1", "--org", "acme", "--public-key",
                       str(tmp_path / "junk.pub"))  # fmt: skip
    assert code == 1 and "junk.pub" in err
    (tmp_path / "exists.pem").write_text("keep me")
    code, _, err = ctl("client-create", "n1", "--org", "acme", "--key-out",
                       str(tmp_path / "exists.pem"))  # fmt: skip
    assert code == 1 and "not overwriting" in err
    assert (tmp_path / "exists.pem").read_text() == "keep me"
    code, _, err = ctl("group-add", "acme", "admins", "--user", "ghost")
    assert code == 1 and "user 'ghost' does not exist" in err
    code, _, err = ctl("client-delete", "ghost", "--org", "acme")
    assert code == 1
    assert ctl("client-list", "--org", "acme")[1] == ""
    assert ctl("group-list", "acme")[1] == ""


def test_user_create_requires_exactly_one_key_option(ctl: Ctl) -> None:
    ctl("org-create", "acme")
    proc = subprocess.run(
        [sys.executable, "-m", "pushd_ctl", "--config", str(ctl.config), "user-create", "x",
         "--org", "acme"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--public-key" in proc.stderr


def test_key_replacement_removal_and_group_removal(ctl: Ctl, tmp_path: Path) -> None:
    ctl("org-create", "acme")
    ctl("user-create", "alice", "--org", "acme", "--admin", "--key-out", str(tmp_path / "a.pem"))
    ctl("client-create", "n1", "--org", "acme", "--key-out", str(tmp_path / "n1.pem"))
    assert ctl("user-key", "alice", "--org", "acme", "--key-out", str(tmp_path / "a2.pem"))[0] == 0
    _, public = generate_client_keypair()
    (tmp_path / "n1.pub").write_text(public)
    assert ctl("client-key", "n1", "--org", "acme",
               "--public-key", str(tmp_path / "n1.pub"))[0] == 0  # fmt: skip
    store = ctl.store()
    org = store.get_organization("acme")
    alice = store.get_principal(org.id, "alice", "user")
    new_private = load_rsa_private_key(tmp_path / "a2.pem")
    assert rsa_public_pem(new_private) == rsa_public_pem(load_rsa_public_key(alice.public_key))
    assert store.get_principal(org.id, "n1", "client").public_key == public
    store.close_database()

    assert ctl("group-remove", "acme", "admins", "--user", "alice")[0] == 0
    assert "admins  users: -" in ctl("group-list", "acme")[1]
    code, _, err = ctl("group-remove", "acme", "admins", "--user", "alice")
    assert code == 1 and err.strip().endswith("user alice is not in acme/admins")
    code, _, err = ctl("group-remove", "acme", "nope", "--user", "alice")
    assert code == 1 and "group 'nope' does not exist" in err
    assert ctl("user-delete", "alice", "--org", "acme")[0] == 0
    assert ctl("user-list", "--org", "acme")[1] == ""
    code, _, err = ctl("user-delete", "alice", "--org", "acme")
    assert code == 1 and "user 'alice' does not exist" in err
    code, _, err = ctl("client-key", "ghost", "--org", "acme", "--key-out", str(tmp_path / "g"))
    assert code == 1 and "client 'ghost' does not exist" in err
    assert not (tmp_path / "g").exists()


def test_changes_bump_the_identity_generation_and_lists_do_not(ctl: Ctl) -> None:
    from pushd.config import load_settings
    from pushd.identity.generation import GenerationWatch, generation_path

    watch = GenerationWatch(generation_path(load_settings(ctl.config).get("run_dir")))
    seen: list[str] = []
    assert ctl("org-create", "acme")[0] == 0
    assert watch.check(lambda: seen.append("org-create"))
    assert ctl("org-list")[0] == 0 and ctl("group-list", "acme")[0] == 0
    assert not watch.check(lambda: seen.append("lists"))
    assert ctl("group-add", "acme", "admins", "--group", "ops")[0] == 1  # refused: no such group
    assert watch.check(lambda: seen.append("refused"))  # harmless: a forgotten cache reloads
    assert seen == ["org-create", "refused"]


@pytest.mark.postgres
@pytest.mark.parametrize("db_backend", ["postgres"], indirect=True)
def test_changes_notify_every_cluster_member_on_postgresql(
    ctl: Ctl, db_backend: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Each member's broker LISTENs on pushd_identity and bumps its own run_dir's generation
    file: an identity change made through any member reaches every member's API workers."""
    import psycopg

    from pushd.store.cluster import IDENTITY_CHANNEL

    params = db_backend[1]
    assert ctl("org-create", "acme")[0] == 0
    with psycopg.connect(
        host=params["host"], port=params["port"], user=params["user"],
        password=params.get("password") or None, dbname=params["database"], autocommit=True,
    ) as listener:  # fmt: skip
        listener.execute(f"LISTEN {IDENTITY_CHANNEL}")
        code, _, err = ctl("user-create", "alice", "--org", "acme",
                           "--key-out", str(tmp_path / "alice.pem"))  # fmt: skip
        assert code == 0, err
        heard = list(listener.notifies(timeout=10, stop_after=1))
        assert [note.channel for note in heard] == [IDENTITY_CHANNEL]
