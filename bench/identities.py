"""Emulated node identities: a cached pool of RSA client keys and idempotent provisioning.

    KeyPool(state_dir)
        pool.ensure(count, *, processes=None, progress=None) -> None
            Makes sure keys 0..count-1 exist as ``<state_dir>/keys/NNNNN.pem`` (PKCS#1, 0600).
            Missing keys are generated in parallel processes (RSA-2048 takes ~50-100 ms each);
            existing ones are never regenerated, so a second run reuses every identity.
            progress(done, total) is called once before and after each generated key (total = the
            missing ones).
        pool.private_pem(index) -> bytes
        pool.public_pem(index) -> str               SubjectPublicKeyInfo, as the store keeps it
        pool.load_private(index) -> RSAPrivateKey   fast load (no key re-validation)
    node_name(prefix, index) -> str                 "emu-00042" for ("emu-", 42)
    provision(config_path, org, names_and_keys, *, user=None, progress=None) -> ProvisionReport
        Creates the organization (if missing) and one client per node in the local principal
        store of the appliance `config_path` describes -- the same store writes as
        ``push-jobs-server-ctl org-create`` / ``client-create`` (pushd.store's public API) -- in
        one transaction per 500 clients. A client that exists with the same public key is left
        alone; one with another key gets the pool's key (update_principal). Idempotent.
        `user` = (name, public_pem) also provisions an admin user (for benchmarks that POST jobs).
        progress(done, total) is called after each committed batch of clients.
    ProvisionReport(org_id, created, updated, unchanged)

The emulator's nodes sign their config requests with these keys exactly as a stock client does.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from pushd.keys import generate_client_keypair, rsa_public_pem

BATCH = 500


def node_name(prefix: str, index: int) -> str:
    return f"{prefix}{index:05d}"


def _generate_one(path: str) -> str:
    private_pem, _public = generate_client_keypair()
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(private_pem)
    os.replace(tmp, path)  # atomic: a killed run never leaves half a key
    return path


class KeyPool:
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.directory = Path(state_dir) / "keys"
        self._public: dict[int, str] = {}

    def path(self, index: int) -> Path:
        return self.directory / f"{index:05d}.pem"

    def ensure(
        self,
        count: int,
        *,
        processes: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        missing = [str(self.path(i)) for i in range(count) if not self.path(i).exists()]
        if not missing:
            return
        workers = processes or os.cpu_count() or 1
        done = 0
        if progress is not None:
            progress(0, len(missing))
        # spawn, not fork: the emulator may already run threads (its status writer, a caller's
        # logging), and a child forked while one of them held a lock hangs on it for ever (seen:
        # Pool.terminate joining a worker blocked on a lock). Spawning costs ~0.3 s per worker.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_generate_one, missing, chunksize=8):
                done += 1
                if progress is not None:
                    progress(done, len(missing))

    def private_pem(self, index: int) -> bytes:
        return self.path(index).read_bytes()

    def load_private(self, index: int) -> RSAPrivateKey:
        # The pool wrote these keys itself: skipping the (slow) RSA consistency check is safe
        # and makes loading thousands of keys take a fraction of a second.
        key = serialization.load_pem_private_key(
            self.private_pem(index), password=None, unsafe_skip_rsa_key_validation=True
        )
        assert isinstance(key, RSAPrivateKey)
        return key

    def public_pem(self, index: int) -> str:
        if index not in self._public:
            self._public[index] = rsa_public_pem(self.load_private(index))
        return self._public[index]


@dataclass(frozen=True)
class ProvisionReport:
    org_id: str
    created: int
    updated: int
    unchanged: int


def _same_key(stored: str, wanted: str) -> bool:
    return stored.strip() == wanted.strip()


def provision(
    config_path: str | os.PathLike[str] | None,
    org: str,
    names_and_keys: Iterable[tuple[str, str]],
    *,
    user: tuple[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ProvisionReport:
    from pushd import store
    from pushd.config import load_settings

    settings = load_settings(config_path)
    created = updated = unchanged = 0
    # The store's own API, as push-jobs-server-ctl's identity commands use it (without their
    # database bootstrap: the appliance's database exists once its server has started).
    store.open_database(settings, migrate=True)
    try:
        organization = store.get_organization(org)
        if organization is None:
            organization = store.create_organization(org, f"{org} (push-jobs-emulator)")
        org_id = organization.id
        existing = {p.name: p for p in store.list_principals(org_id, "client")}
        pending = list(names_and_keys)
        for start in range(0, len(pending), BATCH):
            with store.transaction():
                for name, public_pem in pending[start : start + BATCH]:
                    found = existing.get(name)
                    if found is None:
                        store.create_principal(org_id, name, "client", public_pem)
                        store.add_group_member(org_id, "clients", "client", name,
                                               create_group=True)
                        created += 1
                    elif not _same_key(found.public_key, public_pem):
                        store.update_principal(org_id, name, "client", public_key=public_pem)
                        updated += 1
                    else:
                        unchanged += 1
            if progress is not None:
                progress(min(start + BATCH, len(pending)), len(pending))
        if user is not None:
            name, public_pem = user
            found = store.get_principal(org_id, name, "user")
            with store.transaction():
                if found is None:
                    store.create_principal(org_id, name, "user", public_pem, admin=True)
                elif not _same_key(found.public_key, public_pem):
                    store.update_principal(org_id, name, "user", public_key=public_pem)
                store.add_group_member(org_id, "admins", "user", name, create_group=True)
    finally:
        store.close_database()
    return ProvisionReport(org_id, created, updated, unchanged)
