"""What the resources share: injected dependencies and the settings values the API reads.

    ApiSettings.from_settings(settings) -> ApiSettings
        Reads the values the API needs with `settings.get(name)` (pushd.settings.Settings).
    ApiContext(settings: ApiSettings, store, principals, broker: BrokerGateway,
               authenticator: Authenticator, feeds: FeedStreams, server_public_key_pem: str)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pushd.node_config import NodeConfigSettings


@dataclass(frozen=True)
class ApiSettings:
    max_request_body: int
    max_job_file_size: int
    default_running_timeout: int
    keep_alive_time: float
    org_feed_retention: float
    allow_unencrypted: bool
    disable_curve_encryption: bool
    validate_client_node_name: bool
    allow_user_node_config: bool
    node_config: NodeConfigSettings  # what a node's config document is made of
    jobs_page_limit: int
    # The cluster member whose broker runs the jobs POSTed here (settings' default otherwise).
    cluster_member: str | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> ApiSettings:
        get = settings.get
        return cls(
            max_request_body=int(get("max_request_body")),
            max_job_file_size=int(get("max_job_file_size")),
            default_running_timeout=int(get("default_running_timeout")),
            keep_alive_time=float(get("keep_alive_time")),
            org_feed_retention=float(get("org_feed_retention")),
            allow_unencrypted=bool(get("allow_unencrypted")),
            disable_curve_encryption=bool(get("disable_curve_encryption")),
            validate_client_node_name=bool(get("validate_client_node_name")),
            allow_user_node_config=bool(get("allow_user_node_config")),
            node_config=NodeConfigSettings.from_settings(settings),
            jobs_page_limit=int(get("jobs_page_limit")),
            cluster_member=str(get("cluster_member_name")),
        )


@dataclass
class ApiContext:
    settings: ApiSettings
    store: Any
    principals: Any
    broker: Any
    authenticator: Any
    feeds: Any
    server_public_key_pem: str
