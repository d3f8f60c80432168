"""The tests' name for pushd_bench.ports (free loopback ports; the benchmarks use it too)."""

from pushd_bench.ports import free_port, free_ports

__all__ = ["free_port", "free_ports"]
