"""The environment a job's command runs with.

Public API:

    validate_job_env(env: object) -> dict[str, str]
        The job's `env` option checked by the rules the server's API also applies
        (pushd.protocol.limits.env_problem: at most MAX_ENV_VARS names matching ENV_NAME, to
        strings without NUL, MAX_ENV_BYTES in all); ValueError otherwise.
    build_job_env(base, job_env, *, user, allowed_overwritable, node_name, job_id, job_file,
                  login_cwd=None) -> dict[str, str]
        `base` (the daemon's environment) + HOME/USER/LOGNAME/SHELL of the job's user + the
        job's variables + CHEF_PUSH_JOB_FILE (if any), CHEF_PUSH_NODE_NAME, CHEF_PUSH_JOB_ID.
        With `login_cwd` (the client's `job_environment 'login'`; `base` then comes from
        login_base()), PATH defaults to a standard one (with the sbin directories for root)
        and PWD is login_cwd.
    login_base(daemon_env, config_env) -> dict[str, str]
        The base of a login-like environment: only the locale and time zone of the daemon's
        environment (LOGIN_KEPT_PREFIXES), plus the config file's ENV[...] lines.
    is_protected(name) -> bool

Policy for the job's variables (`allowed_overwritable_env_vars` in the config):
  - None (the stock default): every name is set as given, except protected names (PATH, HOME,
    USER, LOGNAME, SHELL, IFS, ENV, BASH_ENV, LD_*, DYLD_*, PYTHON*, PERL5*, RUBY*, GEM_*,
    CHEF_PUSH_*), which arrive as CHEF_PUSH_ENV_<name> instead. The stock client let a job
    replace PATH or LD_PRELOAD of a command that may run as root.
  - a list: only the listed names are set as given; every other name is renamed as above.
  - CHEF_PUSH_NODE_NAME, CHEF_PUSH_JOB_ID and CHEF_PUSH_JOB_FILE are always the client's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pushd_client.process import UserSpec

from pushd.protocol.limits import env_problem

RENAME_PREFIX = "CHEF_PUSH_ENV_"
_PROTECTED_NAMES = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "IFS", "ENV", "BASH_ENV"})
_PROTECTED_PREFIXES = ("LD_", "DYLD_", "PYTHON", "PERL5", "RUBY", "GEM_", "CHEF_PUSH_")
_CLIENT_OWNED = frozenset({"CHEF_PUSH_NODE_NAME", "CHEF_PUSH_JOB_ID", "CHEF_PUSH_JOB_FILE"})
# What a login environment keeps from the daemon's: how text is read and shown, not its paths.
LOGIN_KEPT_PREFIXES = ("LANG", "LC_", "TZ")
LOGIN_PATH = "/usr/local/bin:/usr/bin:/bin"
LOGIN_PATH_ROOT = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def login_base(daemon_env: Mapping[str, str], config_env: Mapping[str, str]) -> dict[str, str]:
    kept = {k: v for k, v in daemon_env.items() if k.startswith(LOGIN_KEPT_PREFIXES)}
    return {**kept, **config_env}


def is_protected(name: str) -> bool:
    return name in _PROTECTED_NAMES or name.startswith(_PROTECTED_PREFIXES)


def validate_job_env(env: object) -> dict[str, str]:
    if env is None:
        return {}
    if isinstance(env, Mapping):
        env = dict(env)
    problem = env_problem(env)
    if problem is not None:
        raise ValueError(problem)
    assert isinstance(env, dict)
    return env


def build_job_env(
    base: Mapping[str, str],
    job_env: Mapping[str, str],
    *,
    user: UserSpec,
    allowed_overwritable: Iterable[str] | None,
    node_name: str,
    job_id: str,
    job_file: str | None,
    login_cwd: str | None = None,
) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in _CLIENT_OWNED}
    if login_cwd is not None:
        env.setdefault("PATH", LOGIN_PATH_ROOT if user.uid == 0 else LOGIN_PATH)
        env["PWD"] = login_cwd
    env.update(HOME=user.home, USER=user.name, LOGNAME=user.name, SHELL=user.shell or "/bin/sh")
    allowed = None if allowed_overwritable is None else frozenset(allowed_overwritable)
    for name, value in job_env.items():
        direct = not is_protected(name) if allowed is None else name in allowed
        if name in _CLIENT_OWNED:
            direct = False
        env[name if direct else RENAME_PREFIX + name] = value
    if job_file is not None:
        env["CHEF_PUSH_JOB_FILE"] = job_file
    env["CHEF_PUSH_NODE_NAME"] = node_name
    env["CHEF_PUSH_JOB_ID"] = job_id
    return env
