"""The commands of push-jobs-server-ctl, one module each (see pushd_ctl.main).

    COMMANDS                  every command name, in the order ``--help`` lists them
    module_name(name) -> str  "graceful-kill" -> "graceful_kill"
"""

from __future__ import annotations

COMMANDS: tuple[str, ...] = (
    "reconfigure",
    "show-config",
    "start",
    "stop",
    "restart",
    "status",
    "cluster-status",
    "tail",
    "once",
    "hup",
    "term",
    "int",
    "kill",
    "usr1",
    "usr2",
    "graceful-kill",
    "service-list",
    "cleanse",
    "uninstall",
    "test",
    "org-create",
    "org-list",
    "user-create",
    "user-list",
    "user-key",
    "user-delete",
    "client-create",
    "client-list",
    "client-key",
    "client-delete",
    "group-add",
    "group-remove",
    "group-list",
)


def module_name(name: str) -> str:
    return name.replace("-", "_")
