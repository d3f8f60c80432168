"""The tests' name for pushd_bench.client_process (the real push-jobs-client as a child process;
see its docstring): it lives in that installed package because the soak benchmark starts clients
with it too, and nothing installed may import tests/."""

from pushd_bench.client_process import (
    NODE,
    SESSION_MARK,
    ClientProcess,
    leftover_jobs,
    wait_until,
)

__all__ = ["NODE", "SESSION_MARK", "ClientProcess", "leftover_jobs", "wait_until"]
