"""What every command receives: the config file, the settings (loaded on first use), output.

    Context(config_arg, *, stdout=sys.stdout, stderr=sys.stderr, stdin=sys.stdin)
        config_path -> Path | None      --config, $PUSH_JOBS_SERVER_CONFIG, then the /etc paths
                                        (pushd.config.find_config_file), then the file of the
                                        last reconfigure (pushd_ctl.remembered); ConfigError
                                        when a named file does not exist
        config_description() -> str     which file is used and how it was found, or where the
                                        ctl looked
        settings -> Settings            loaded once; ConfigError with file, line and column
        settings_or_running() -> (Settings, ConfigError | None)
                                        for status/tail: when the file does not load, the
                                        settings of its last reconfigure and the error
        say(text) / warn(text)          a line to stdout / stderr
    CommandFailed(message, exit_code=1)
        raised by commands for an expected failure: main prints "push-jobs-server-ctl: MESSAGE"
        on stderr and exits with `exit_code`.

Exit statuses (LSB): 0 success, 1 failure, 2 usage or configuration error, 3 not running
(``status``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, TextIO

from pushd_ctl import remembered

from pushd.config import CONFIG_ENV_VAR, DEFAULT_CONFIG_PATHS, find_config_file, load_settings
from pushd.errors import ConfigError

__all__ = [
    "EXIT_FAILURE", "EXIT_NOT_RUNNING", "EXIT_OK", "EXIT_USAGE", "PROG", "CommandFailed", "Context",
]

PROG = "push-jobs-server-ctl"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3


class CommandFailed(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class Context:
    def __init__(
        self,
        config_arg: str | None,
        *,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        stdin: TextIO | None = None,
    ) -> None:
        self.config_arg = config_arg
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.stdin = stdin or sys.stdin
        self._config_path: Path | None = None
        self._config_resolved = False
        self._config_origin = ""
        self._settings: Any = None

    @property
    def config_path(self) -> Path | None:
        if not self._config_resolved:
            found = find_config_file(self.config_arg)
            if found is not None:
                self._config_origin = (
                    "--config" if self.config_arg else
                    f"${CONFIG_ENV_VAR}" if os.environ.get(CONFIG_ENV_VAR) else "found")
            else:
                found = remembered.last_config()
                self._config_origin = "the last reconfigure" if found is not None else ""
            self._config_path = found.resolve() if found is not None else None
            self._config_resolved = True
        return self._config_path

    def config_description(self) -> str:
        path = self.config_path
        if path is None:
            looked = ", ".join(str(p) for p in DEFAULT_CONFIG_PATHS)
            return (f"no config file (no --config, ${CONFIG_ENV_VAR} unset, none of {looked},"
                    " no earlier reconfigure): defaults")
        if self._config_origin in ("found", "--config"):
            return f"config {path}"
        return f"config {path} (from {self._config_origin})"

    def settings_or_running(self) -> tuple[Any, ConfigError | None]:
        try:
            return self.settings, None
        except ConfigError as err:
            path = self.config_path
            running = remembered.running_json_for(path) if path is not None else None
            if running is None:
                raise
            from pushd_ctl.commands.reconfigure import read_running

            settings = read_running(running)
            if settings is None:
                raise
            return settings, err

    @property
    def settings(self) -> Any:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings

    def say(self, text: str = "") -> None:
        print(text, file=self.stdout, flush=True)

    def warn(self, text: str) -> None:
        print(text, file=self.stderr, flush=True)
