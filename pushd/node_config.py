"""A node's config document (``GET .../pushy/config/NODE``) from the settings, and its fingerprint.

    NodeConfigSettings.from_settings(settings)    the settings a config document is made of
    NodeConfigSettings.document(*, node, organization, public_key_pem, encoded_session_key,
                                incarnation_id, curve_public_key, legacy) -> dict
    NodeConfigSettings.fingerprint(public_key_pem, curve_public_key) -> str

The API builds every node's document here; the broker takes the fingerprint of what those
documents hold apart from the node's own fields (name, session key) and the incarnation id. A
restarted broker keeps its incarnation id only while the fingerprint is unchanged
(`pushd.broker.incarnation`): a stock client re-fetches its config when the incarnation id
changes, so a changed port, interval, threshold or key must change it, and nothing else needs to.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pushd.protocol.config import OutputCapability, build_config

# Stand-ins for the per-node fields in a fingerprinted document.
_NODE, _ORG, _SESSION_KEY, _INCARNATION = "node", "org", "session-key", "incarnation"


@dataclass(frozen=True)
class NodeConfigSettings:
    server_host: str
    heartbeat_port: int
    command_port: int
    unencrypted_command_port: int
    heartbeat_interval_ms: int
    offline_threshold: int
    online_threshold: int
    config_lifetime: int
    max_message_skew: int
    max_body_size: int
    # The live-output bound advertised to pushd clients in their config (issue 18).
    output_max_bytes: int = 1_048_576

    @classmethod
    def from_settings(cls, settings: Any) -> NodeConfigSettings:
        get = settings.get
        return cls(
            server_host=str(get("server_name_advertised") or get("vip")),
            heartbeat_port=int(get("server_heartbeat_port")),
            command_port=int(get("command_port")),
            unencrypted_command_port=int(get("unencrypted_command_port")),
            heartbeat_interval_ms=int(get("heartbeat_interval")),
            offline_threshold=int(get("offline_threshold")),
            online_threshold=int(get("online_threshold")),
            config_lifetime=int(get("config_lifetime")),
            max_message_skew=int(get("max_message_skew")),
            max_body_size=int(get("max_body_size")),
            output_max_bytes=int(get("output_max_bytes")),
        )

    def document(
        self,
        *,
        node: str,
        organization: str,
        public_key_pem: str,
        encoded_session_key: str,
        incarnation_id: str,
        curve_public_key: str | None,
        legacy: bool,
    ) -> dict[str, Any]:
        """The config document; `legacy` is the 1.x answer (no Curve, the unencrypted port)."""
        return build_config(
            host=self.server_host,
            heartbeat_port=self.heartbeat_port,
            command_port=self.unencrypted_command_port if legacy else self.command_port,
            interval=self.heartbeat_interval_ms / 1000.0,
            node=node,
            organization=organization,
            public_key_pem=public_key_pem,
            encoded_session_key=encoded_session_key,
            lifetime=self.config_lifetime,
            max_message_skew=self.max_message_skew,
            max_body_size=self.max_body_size,
            incarnation_id=incarnation_id,
            curve_public_key=None if legacy else curve_public_key,
            offline_threshold=self.offline_threshold,
            online_threshold=self.online_threshold,
            # Live output (pushd clients only): a 1.x-protocol client is never told of it.
            output=None if legacy else OutputCapability(max_bytes=self.output_max_bytes),
        )

    def fingerprint(self, public_key_pem: str, curve_public_key: str | None) -> str:
        """SHA-256 over both answers (Curve and 1.x) with stand-ins for the per-node fields:
        whatever a later version adds to the document is covered without a change here."""
        documents = [
            self.document(
                node=_NODE,
                organization=_ORG,
                public_key_pem=public_key_pem,
                encoded_session_key=_SESSION_KEY,
                incarnation_id=_INCARNATION,
                curve_public_key=curve_public_key,
                legacy=legacy,
            )
            for legacy in (False, True)
        ]
        text = json.dumps(documents, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()
