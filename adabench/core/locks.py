"""Exclusive locks held by a process for as long as it lives: one Snakemake per study, one trainer per run.

``flock`` where the filesystem has it (released by the kernel when the process dies, however it dies). Some
network filesystems (NFS and Lustre mounts, common on clusters) refuse it; there the lock is a file created with
O_EXCL that records its holder (host, pid, process start time) and is removed when the holder exits, and a lock
file whose holder is gone (this host, that pid no longer that process) is taken over.
"""
from __future__ import annotations

import atexit
import errno
import fcntl
import json
import os
import platform
import time
from pathlib import Path

from .atomic import read_json_object

# errors that say "this filesystem does not do flock", not "someone else holds it"
NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
POLL_SECONDS = 1.0


class Locked(RuntimeError):
    """Another process holds the lock; ``holder`` is what it recorded of itself (host, pid, start, since)."""

    def __init__(self, path: Path, holder: dict):
        self.path, self.holder = path, holder
        super().__init__(f"{path} is held by {describe(holder)}")


def describe(holder: dict) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["since"])) if "since" in holder else "?"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} (since {since})"


def process_start(pid: int) -> str | None:
    """A process's start time (its /proc stat field 22), or None if it is gone: a pid alone may be reused. A zombie
    (exited, not yet reaped by its parent) is gone: it holds nothing and does nothing."""
    try:
        state, *fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return None
    return None if state == "Z" or len(fields) < 19 else fields[18]


def this_process() -> dict:
    return {"host": platform.node(), "pid": os.getpid(), "start": process_start(os.getpid()), "since": time.time()}


def holder_gone(holder: dict) -> bool:
    """Whether a recorded holder is certainly gone: it ran on this host and its pid is no longer that process."""
    if holder.get("host") != platform.node():
        return False
    start = process_start(int(holder.get("pid", -1)))
    return start is None or start != holder.get("start", start)


def same_process(holder: dict) -> bool:
    """Whether a recorded process (host, pid, start) is certainly alive as that very process: on this host, with a
    recorded start time equal to its pid's now. Only such a process may be signalled: a record without its start
    may name a pid that another process has taken since."""
    if holder.get("host") != platform.node() or holder.get("start") is None:
        return False
    try:
        pid = int(holder["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    return pid > 0 and process_start(pid) == str(holder["start"])


def read_holder(path: Path) -> dict:
    return read_json_object(path)


class ProcessLock:
    """An exclusive lock on ``path`` for this process. ``acquire(wait=False)`` raises Locked if another process
    holds it; ``wait=True`` waits for it. The holder's record is written into the lock file either way, so that
    others can say who holds it (``adabench status``, ``adabench stop``)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.held = self.path.with_name(self.path.name + ".held")  # the lock where flock is missing
        self.handle = None
        self.exclusive_file = False

    def acquire(self, wait: bool = False, on_wait=None) -> "ProcessLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in NO_FLOCK:
                handle.close()
                return self.acquire_exclusive_file(wait, on_wait)
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                handle.close()
                raise
            if not wait:
                holder = read_holder(self.path)
                handle.close()
                raise Locked(self.path, holder) from None
            if on_wait:
                on_wait(read_holder(self.path))
            fcntl.flock(handle, fcntl.LOCK_EX)
        self.handle = handle
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(this_process()))
        handle.flush()
        return self

    def acquire_exclusive_file(self, wait: bool, on_wait) -> "ProcessLock":
        """The lock without flock: a file (``<lock>.held``) made with O_EXCL by its holder, taken over once its
        holder is gone."""
        record = json.dumps(this_process()).encode()
        waited = False
        while True:
            try:
                descriptor = os.open(self.held, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_holder(self.held)
                if holder and holder_gone(holder):
                    self.held.unlink(missing_ok=True)
                    continue
                if not wait:
                    raise Locked(self.path, holder) from None
                if on_wait and not waited:
                    on_wait(holder)
                waited = True
                time.sleep(POLL_SECONDS)
                continue
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(record)
            self.exclusive_file = True
            atexit.register(self.release)
            return self

    def release(self) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None
        elif self.exclusive_file:
            if read_holder(self.held).get("pid") == os.getpid():
                self.held.unlink(missing_ok=True)
            self.exclusive_file = False

    def __enter__(self) -> "ProcessLock":
        return self.acquire(wait=True)

    def __exit__(self, *exc) -> None:
        self.release()


def holder_if_held(path: Path) -> dict | None:
    """Who holds the lock at ``path`` now, or None if nobody does (probed without taking it for long)."""
    path = Path(path)
    if not path.exists():
        return None
    probe = ProcessLock(path)
    try:
        probe.acquire(wait=False)
    except Locked as locked:
        return locked.holder or {"pid": "?", "host": "?"}
    probe.release()
    return None
