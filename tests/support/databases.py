"""The tests' name for pushd_bench.databases (throwaway SQLite and PostgreSQL databases; the
benchmarks use it too)."""

from pushd_bench.databases import (
    BACKENDS,
    POSTGRES_ADMIN_URL,
    postgres_database,
    sqlite_database,
)

__all__ = ["BACKENDS", "POSTGRES_ADMIN_URL", "postgres_database", "sqlite_database"]
