"""The job data file (`--file` on `job start`): decoding, the private directory, the file itself.

Public API:

    decode_file_spec(spec: str, limit: int) -> bytes
        "raw:<text>" or "base64:<data>" (strict base64); ValueError for anything else or for
        more than `limit` decoded bytes.
    prepare_file_dir(path) -> None
        Creates `path` (mode 0711) if missing; refuses (ValueError) a path that is a symlink,
        not a directory, not owned by the daemon, or writable by group or others.
    write_job_file(file_dir, job_id, content, uid, gid) -> str
        Creates `<file_dir>/pushy_file-<job_id>-<random>` exclusively, mode 0600, owned by
        uid:gid (the job's user), and returns its path.
    remove_job_file(path) -> None
    remove_stale_job_files(file_dir) -> int
        At start-up (no job can be running): removes `pushy_file-*` regular files this client
        left behind when it was killed mid-job; returns how many.

Why 0711 and not 0700: a job running as another user (e.g. `nobody`) must be able to reach its
own file, so the directory is searchable but not listable or writable; each file is 0600 and
owned by its job's user, so only that user (and root) can read it. The `pushy_file` prefix is
the stock client's, so existing clean-up tooling keeps working.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
import stat

DIR_MODE = 0o711


def decode_file_spec(spec: str, limit: int) -> bytes:
    if spec.startswith("raw:"):
        content = spec[4:].encode("utf-8", errors="surrogateescape")
    elif spec.startswith("base64:"):
        try:
            content = base64.b64decode(spec[7:], validate=True)
        except (binascii.Error, ValueError) as err:
            raise ValueError(f"file is not valid base64: {err}") from None
    else:
        raise ValueError("file must start with 'raw:' or 'base64:'")
    if len(content) > limit:
        raise ValueError(f"file is {len(content)} bytes, more than the {limit} allowed")
    return content


def prepare_file_dir(path: str) -> None:
    try:
        os.mkdir(path, DIR_MODE)
        os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask
    except FileExistsError:
        pass
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ValueError(f"file_dir {path} is not a directory")
    if info.st_uid != os.geteuid():
        raise ValueError(f"file_dir {path} is owned by uid {info.st_uid}, not by this daemon")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ValueError(f"file_dir {path} is writable by other users")


def write_job_file(file_dir: str, job_id: str, content: bytes, uid: int, gid: int) -> str:
    path = os.path.join(file_dir, f"pushy_file-{job_id}-{secrets.token_hex(4)}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        if (uid, gid) != (os.geteuid(), os.getegid()):
            os.fchown(fd, uid, gid)
        view = memoryview(content)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except BaseException:
        os.close(fd)
        remove_job_file(path)
        raise
    os.close(fd)
    return path


def remove_job_file(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def remove_stale_job_files(file_dir: str) -> int:
    removed = 0
    try:
        names = os.listdir(file_dir)
    except OSError:
        return 0
    for name in names:
        if not name.startswith("pushy_file-"):
            continue
        path = os.path.join(file_dir, name)
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.unlink(path)
                removed += 1
    return removed
