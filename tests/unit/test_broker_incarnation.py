"""When a restarted broker keeps its incarnation id (pushd.broker.incarnation) and what the
fingerprint of the nodes' config covers (pushd.node_config)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pushd.broker import incarnation
from pushd.node_config import NodeConfigSettings

SETTINGS = NodeConfigSettings(
    server_host="push.example", heartbeat_port=10000, command_port=10002,
    unencrypted_command_port=10004, heartbeat_interval_ms=10000, offline_threshold=3,
    online_threshold=2, config_lifetime=3600, max_message_skew=300, max_body_size=65536,
)
PEM, CURVE = "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n", "c" * 40


def saved(tmp_path: Path, *, fingerprint: str = "f1", bindings: int = 7) -> Path:
    path = tmp_path / "broker" / incarnation.FILE_NAME
    assert incarnation.save(path, incarnation.Incarnation("inc-1", next_sequence=42),
                            fingerprint, bindings)
    return path


def test_a_clean_stop_is_resumed_once(tmp_path: Path) -> None:
    path = saved(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600
    resumed = incarnation.resume(path, "f1", 7)
    assert resumed == incarnation.Incarnation("inc-1", kept=True, next_sequence=42)
    assert not path.exists()  # a second start (after a kill) must not find it
    again = incarnation.resume(path, "f1", 7)
    assert not again.kept and again.id != "inc-1"


def test_no_file_a_changed_config_or_lost_bindings_give_a_new_id(tmp_path: Path) -> None:
    missing = incarnation.resume(tmp_path / "none.json", "f1", 7)
    assert not missing.kept and missing.next_sequence == 0
    assert not incarnation.resume(saved(tmp_path), "f2", 7).kept
    assert not incarnation.resume(saved(tmp_path), "f1", 6).kept


def test_an_unreadable_file_gives_a_new_id(tmp_path: Path) -> None:
    path = tmp_path / incarnation.FILE_NAME
    for text in ("{", "[]", '{"id": "x"}',
                 '{"id": "x", "fingerprint": "f1", "next_sequence": -1, "bindings": 7}',
                 '{"id": "", "fingerprint": "f1", "next_sequence": 1, "bindings": 7}'):
        path.write_text(text)
        resumed = incarnation.resume(path, "f1", 7)
        assert not resumed.kept and resumed.id != "x", text


def test_the_fingerprint_follows_every_field_of_the_nodes_config() -> None:
    base = SETTINGS.fingerprint(PEM, CURVE)
    assert SETTINGS.fingerprint(PEM, CURVE) == base
    for field in dataclasses.fields(NodeConfigSettings):
        value = getattr(SETTINGS, field.name)
        changed = value + "x" if isinstance(value, str) else value + 1
        other = dataclasses.replace(SETTINGS, **{field.name: changed})
        assert other.fingerprint(PEM, CURVE) != base, field.name
    assert SETTINGS.fingerprint(PEM.replace("abc", "abd"), CURVE) != base
    assert SETTINGS.fingerprint(PEM, "d" * 40) != base
    assert SETTINGS.fingerprint(PEM, None) != base


def test_documents_differ_only_in_the_nodes_own_fields() -> None:
    def doc(node: str, key: str) -> dict[str, object]:
        return SETTINGS.document(node=node, organization="org", public_key_pem=PEM,
                                 encoded_session_key=key, incarnation_id="i",
                                 curve_public_key=CURVE, legacy=False)

    one, two = doc("n1", "k1"), doc("n2", "k2")
    assert {k for k in one if one[k] != two[k]} == {"node", "encoded_session_key"}
    legacy = SETTINGS.document(node="n1", organization="org", public_key_pem=PEM,
                               encoded_session_key="k1", incarnation_id="i",
                               curve_public_key=CURVE, legacy=True)
    assert "curve_public_key" not in legacy and "capabilities" not in legacy
    assert legacy["push_jobs"]["heartbeat"]["command_addr"] == "tcp://push.example:10004"
