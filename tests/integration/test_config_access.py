"""Only a node gets a node's session: who may fetch ``GET .../pushy/config/NODE``.

The config document carries the node's session key (RSA-wrapped for the requester) and admits
the requester's Curve key for that node: whoever gets it can act as the node. Real server, real
broker; a refusal must leave no session key behind for the name asked about.
"""

from __future__ import annotations

from typing import Any

import zmq

from pushd.identity.authz import CLIENT_NODE_MISMATCH, not_a_node, user_config_refused
from pushd.protocol.config import decrypt_session_key
from tests.support.server import NORMAL_USER, PushdServer, load_private_key_cached, running_server


def config(server: PushdServer, node: str, user: str) -> Any:
    ccpk = zmq.curve_keypair()[0].decode()
    return server.request("GET", f"config/{node}", user=user, query={"ccpk": ccpk})


def session_key_stored(server: PushdServer, node: str) -> bool:
    from pushd import store

    store.open_database(server.settings)
    try:
        return store.get_session_key(server.org_id, node) is not None
    finally:
        store.close_database()


def test_by_default_only_the_node_itself_gets_its_config() -> None:
    with running_server(nodes=("node1", "node2")) as server:
        own = config(server, "node1", "node1")
        assert own.status == 200, own.body
        for user in (server.admin_user, NORMAL_USER):
            for node in ("node2", "ghost"):
                refused = config(server, node, user)
                assert refused.status == 403, refused.body
                assert refused.json() == {"error": [user_config_refused(user)]}
        other = config(server, "ghost", "node1")
        assert other.status == 403
        assert other.json() == {"error": [CLIENT_NODE_MISMATCH]}
        # no session was made for the names refused
        assert not session_key_stored(server, "node2")
        assert not session_key_stored(server, "ghost")


def test_allow_user_node_config_lets_readers_fetch_existing_nodes_only() -> None:
    settings = {"allow_user_node_config": True}
    with running_server(nodes=("node1", "node2"), settings=settings) as server:
        granted = config(server, "node2", NORMAL_USER)
        assert granted.status == 200, granted.body
        # the session key is wrapped for the user who asked
        private = load_private_key_cached(server.users[NORMAL_USER])
        wrapped = granted.json()["encoded_session_key"]["key"]
        assert len(decrypt_session_key(private, wrapped)) == 32
        for not_node in ("ghost", NORMAL_USER):  # no such name; a user's name
            refused = config(server, not_node, server.admin_user)
            assert refused.status == 403, refused.body
            assert refused.json() == {"error": [not_a_node(server.org_name, not_node)]}
            assert not session_key_stored(server, not_node)
        # readers only: once pushy_job_readers exists, a user outside it is refused
        server.add_group("pushy_job_readers", users=[server.admin_user])
        assert config(server, "node1", NORMAL_USER).status == 403
        assert config(server, "node1", server.admin_user).status == 200
