"""ZAP admission rules, persisted Curve bindings and the settings mapping of the broker."""

from __future__ import annotations

import json
from pathlib import Path

import zmq

from pushd.broker.config import BrokerConfig
from pushd.broker.timers import ManualClock
from pushd.broker.zap import CurveGrants, answer_zap, user_id_ref
from pushd.config import load_settings_from_text
from pushd.keys import z85_decode

ORG = "a" * 32


def key() -> bytes:
    return z85_decode(zmq.curve_keypair()[0].decode())


def zap_request(raw: bytes, mechanism: bytes = b"CURVE") -> list[bytes]:
    return [b"1.0", b"req-7", b"pushd", b"10.0.0.9", b"", mechanism, raw]


def test_admitted_key_is_bound_to_its_node_for_the_window() -> None:
    clock = ManualClock()
    grants = CurveGrants(60, clock=clock)
    raw = key()
    grants.admit(raw, ORG, "web-1")
    reply = answer_zap(zap_request(raw), grants)
    assert reply[:5] == [b"1.0", b"req-7", b"200", b"OK", f"{ORG}:web-1".encode()]
    assert user_id_ref(reply[4].decode()) == (ORG, "web-1")
    clock.advance(60.5)
    assert answer_zap(zap_request(raw), grants)[2] == b"400"


def test_unknown_key_other_mechanisms_and_garbage_are_refused() -> None:
    grants = CurveGrants(60)
    assert answer_zap(zap_request(key()), grants)[2] == b"400"
    raw = key()
    grants.admit(raw, ORG, "n")
    assert answer_zap(zap_request(raw, b"PLAIN"), grants)[2] == b"400"
    assert answer_zap([b"1.0"], grants)[2] == b"500"
    assert answer_zap([b"2.0", b"r", b"", b"", b"", b"CURVE", raw], grants)[2] == b"500"


def test_node_names_with_colons_survive_the_user_id() -> None:
    assert user_id_ref(f"{ORG}:odd:name") == (ORG, "odd:name")


def test_bindings_persist_and_are_readmitted_after_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "broker" / "curve_clients.json"
    clock = ManualClock()
    grants = CurveGrants(60, clock=clock, state_file=state)
    old, new = key(), key()
    grants.admit(old, ORG, "n1")
    grants.admit(new, ORG, "n1")  # the node re-keyed: only the newest key is kept
    grants.save()
    assert state.stat().st_mode & 0o077 == 0
    restarted = CurveGrants(60, clock=clock, state_file=state)
    assert restarted.restore(grace=10) == 1
    assert restarted.check(new) == f"{ORG}:n1"
    assert restarted.check(old) is None
    clock.advance(11)
    assert restarted.check(new) is None


def test_binding_file_is_rewritten_at_most_every_save_period(tmp_path: Path) -> None:
    state = tmp_path / "curve_clients.json"
    clock = ManualClock()
    grants = CurveGrants(60, clock=clock, state_file=state, save_period=10)

    def saved() -> int:
        return len(json.loads(state.read_text()))

    grants.admit(key(), ORG, "n1")
    grants.save()
    assert saved() == 1
    grants.admit(key(), ORG, "n2")
    clock.advance(5)
    grants.save()  # 5 s after the last write: not yet
    assert saved() == 1 and grants.dirty
    clock.advance(5)
    grants.save()
    assert saved() == 2 and not grants.dirty
    grants.admit(key(), ORG, "n3")
    grants.save(force=True)  # shutdown: whatever the period
    assert saved() == 3


def test_unreadable_state_file_is_ignored(tmp_path: Path) -> None:
    state = tmp_path / "curve_clients.json"
    state.write_text("{not json")
    assert CurveGrants(60, state_file=state).restore(10) == 0


def test_config_from_real_settings(tmp_path: Path) -> None:
    settings = load_settings_from_text(
        f"opscode_pushy_server['dir'] = '{tmp_path}'\n"
        "opscode_pushy_server['heartbeat_interval'] = 2000\n"
        "opscode_pushy_server['rehab_timer'] = 500\n"
        "opscode_pushy_server['offline_threshold'] = 4\n"
        "opscode_pushy_server['vip'] = 'push.example.com'\n"
        "opscode_pushy_server['voting_timeout'] = 90\n"
        "allow_unencrypted true\n"
    )
    config = BrokerConfig.from_settings(settings)
    assert config.run_dir == tmp_path / "run"
    assert config.data_dir == tmp_path / "data"
    assert config.heartbeat_interval == 2.0
    assert config.rehab_timer == 0.5
    assert config.offline_after == 8.0
    assert config.liveness_period == 2.0  # one interval unless configured
    # After a restart: what a stock client offline for 4 threshold intervals needs to come back
    # (offline 4 + online 2 + 2 intervals), more than the 3 of recovery_grace_intervals.
    assert config.recovery_grace == (4 + 2 + 2) * 2.0
    assert config.server_name == "push.example.com"
    assert config.voting_timeout == 90
    assert config.allow_unencrypted is True
    assert config.command_port == 10002


def test_liveness_check_period_is_configurable(tmp_path: Path) -> None:
    settings = load_settings_from_text(
        f"opscode_pushy_server['dir'] = '{tmp_path}'\n"
        "opscode_pushy_server['detect_offline_nodes_interval'] = 1\n"
    )
    assert BrokerConfig.from_settings(settings).liveness_period == 1.0
