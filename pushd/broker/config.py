"""The broker's settings, read once from the settings registry into one typed object.

    BrokerConfig(...)                      every knob the broker uses, with the original defaults
    BrokerConfig.from_settings(settings)   from anything with ``get(name)`` (pushd.settings);
                                           a setting the registry does not know keeps its
                                           default here, so the broker runs on older registries

Times given in milliseconds in the rb file (`heartbeat_interval`, `rehab_timer`) are kept in
seconds here. Derived values:

    offline_after      = offline_threshold * heartbeat_interval   (a node silent that long is
                         offline; detection runs every `liveness_check_interval`)
    recovery_grace     = max(recovery_grace_intervals, offline_threshold + online_threshold + 2)
                         * heartbeat_interval (after a restart, how long running jobs wait for
                         their nodes, how long a node re-attached to one is not judged offline,
                         and the longest a `new` job waits for its returning nodes:
                         starts.py). The floor is what a stock client needs once it has
                         judged the server offline: it heartbeats again only after
                         more than `online_threshold` server heartbeats, and meanwhile its DEALER
                         may deliver stale queued heartbeats that open a session at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(slots=True)
class BrokerConfig:
    run_dir: Path
    data_dir: Path
    heartbeat_interval: float = 10.0  # seconds
    server_heartbeat_port: int = 10000
    command_port: int = 10002
    unencrypted_command_port: int = 10004
    allow_unencrypted: bool = False
    zeromq_listen_address: str = "tcp://*"
    server_name: str = "localhost"
    max_body_size: int = 65536
    max_message_skew: float = 300.0
    rehab_timer: float = 1.0  # seconds
    offline_threshold: int = 3
    online_threshold: int = 2  # the clients' (sent in their config); used for recovery_grace
    liveness_check_interval: float | None = None  # seconds; None: one heartbeat interval
    voting_timeout: float = 60.0
    default_running_timeout: int = 3600
    zap_window: float = 60.0
    recovery_grace_intervals: int = 3
    known_nodes_flush_interval: float = 30.0
    session_key_reload_interval: float = 60.0  # how soon a deleted key stops working
    zmq_io_threads: int = 1
    disable_curve_encryption: bool = False
    metrics_listen: str = "127.0.0.1"
    metrics_port: int = 0  # 0: no /metrics listener (the settings' default is 10004)
    database: tuple[str, dict[str, Any]] | None = None  # tests: (kind, params); else settings
    job_retention_days: int = 0  # 0: keep finished jobs (pushd.broker.retention)
    retention_batch: int = 100  # jobs purged per transaction
    retention_interval: float = 600.0  # seconds between looks for jobs to purge
    output_max_bytes: int | None = None  # stored bytes per node and stream; None: no cap
    heartbeat_process: bool = False  # publish heartbeats from a relay process
    api_port: int = 10003
    cluster_member: str | None = None  # None: "<server_name>:<api_port>"
    cluster_lease: float = 10.0  # seconds (PostgreSQL: the members of a cluster)
    settings: Any = None

    @property
    def member_name(self) -> str:
        return self.cluster_member or f"{self.server_name}:{self.api_port}"

    @property
    def offline_after(self) -> float:
        return self.offline_threshold * self.heartbeat_interval

    @property
    def liveness_period(self) -> float:
        return self.liveness_check_interval or self.heartbeat_interval

    @property
    def recovery_grace(self) -> float:
        intervals = max(
            self.recovery_grace_intervals, self.offline_threshold + self.online_threshold + 2
        )
        return intervals * self.heartbeat_interval

    @classmethod
    def from_settings(cls, settings: Any) -> BrokerConfig:
        def get(name: str, default: Any = None) -> Any:
            try:
                value = settings.get(name)
            except (KeyError, LookupError, AttributeError):
                return default
            return default if value is None else value

        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {
            "run_dir": Path(get("run_dir")),
            "data_dir": Path(get("data_dir")),
            "heartbeat_interval": float(get("heartbeat_interval", 10000)) / 1000.0,
            "rehab_timer": float(get("rehab_timer", 1000)) / 1000.0,
            "server_name": str(
                get("server_name_advertised") or get("vip") or get("server_name", "localhost")
            ),
            "zmq_io_threads": int(get("zmq_io_processes", 1)),
            "settings": settings,
        }
        # The original's detect_offline_nodes_interval; here the seconds between liveness
        # checks, used only when set explicitly (default: every heartbeat interval).
        is_set = getattr(settings, "is_set", None)
        if is_set is not None and _safe(is_set, "detect_offline_nodes_interval"):
            values["liveness_check_interval"] = float(get("detect_offline_nodes_interval"))
        for name in (
            "server_heartbeat_port", "command_port", "unencrypted_command_port",
            "allow_unencrypted", "zeromq_listen_address", "max_body_size", "max_message_skew",
            "offline_threshold", "online_threshold", "voting_timeout", "default_running_timeout",
            "recovery_grace_intervals", "disable_curve_encryption", "metrics_listen",
            "metrics_port", "api_port", "heartbeat_process",
        ):
            value = get(name)
            if value is not None and name in known:
                values[name] = value
        values["job_retention_days"] = int(get("job_retention_days", 0))
        values["output_max_bytes"] = get("output_max_bytes")
        values["cluster_member"] = get("cluster_member_name")
        values["cluster_lease"] = float(get("cluster_lease", 10))
        return cls(**values)


def _safe(predicate: Any, name: str) -> bool:
    try:
        return bool(predicate(name))
    except (KeyError, LookupError):
        return False
