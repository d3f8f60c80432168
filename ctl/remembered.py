"""What the ctl remembers between runs: the config file of the last reconfigure and where each
config file's rendered running JSON is.

    state_path() -> Path              $PUSHD_CTL_STATE_DIR/state.json, else
                                      /var/lib/push-jobs-server-ctl/state.json as root,
                                      else $XDG_STATE_HOME (~/.local/state)/push-jobs-server-ctl/
    remember(config_path, running_json)   after a successful reconfigure
    last_config() -> Path | None      the last reconfigured file, if it still exists
    running_json_for(config_path) -> Path | None
    forget(config_path)               after cleanse/uninstall of that appliance

Why: an operator who ran `reconfigure --config FILE` (the demo does) should not have to repeat
`--config` for every later command, and `status`/`tail` must still find the running service
when the source file has just been broken by an edit (its rendered settings tell where the
service's directories are). The state is a hint: unreadable or stale state is ignored, never an
error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pushd_ctl import runit

STATE_DIR_ENV = "PUSHD_CTL_STATE_DIR"


def state_path() -> Path:
    override = os.environ.get(STATE_DIR_ENV)
    if override:
        return Path(override) / "state.json"
    if os.geteuid() == 0:
        return Path("/var/lib/push-jobs-server-ctl/state.json")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "push-jobs-server-ctl" / "state.json"


def _load() -> dict[str, Any]:
    try:
        state = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _save(state: dict[str, Any]) -> None:
    path = state_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        runit.atomic_write(path, json.dumps(state, indent=2, sort_keys=True) + "\n", 0o600)
    except OSError:
        pass  # a hint only: the command that asked has already done its work


def remember(config_path: Path, running_json: Path) -> None:
    state = _load()
    configs = state.get("running_json")
    configs = configs if isinstance(configs, dict) else {}
    configs[str(config_path)] = str(running_json)
    _save({**state, "last_config": str(config_path), "running_json": configs})


def last_config() -> Path | None:
    value = _load().get("last_config")
    if isinstance(value, str) and Path(value).is_file():
        return Path(value)
    return None


def running_json_for(config_path: Path) -> Path | None:
    configs = _load().get("running_json")
    value = configs.get(str(config_path)) if isinstance(configs, dict) else None
    return Path(value) if isinstance(value, str) and Path(value).is_file() else None


def forget(config_path: Path) -> None:
    state = _load()
    if not state:
        return
    configs = state.get("running_json")
    if isinstance(configs, dict):
        configs.pop(str(config_path), None)
    if state.get("last_config") == str(config_path):
        state.pop("last_config")
    _save(state)
