"""The run lock: one process at a time updates the states of a run folder.

``forestwatch daily`` holds it for its whole run (discovery, the Snakemake run of the tile
updates, the run record). A ``snakemake`` that executes jobs takes it in its ``onstart``
hook (``rules/common.smk``), after planning and before the first job, so a dry-run never
waits; the daily run's own Snakemake recognises its parent's lock by a token passed in
the environment (:data:`TOKEN_ENV`). A second daily run (cron and an operator), or a
``snakemake`` while a daily run is under way, waits up to ``wait_s`` seconds and then stops
with :class:`RunLocked`, whose message says who holds the lock and since when.

The lock is ``flock(2)`` on ``results/<run>/.lock``: the kernel releases it when its holder
ends, however it ends (SIGKILL included), so a killed run never leaves a stale lock. The
file itself only describes the holder. (On a network filesystem, use one whose locks
work across hosts - NFSv4, or Lustre/GPFS with flock enabled - or run the daily command
and ``snakemake`` from one host.)
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import socket
import sys
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

#: environment variable holding the token of the lock a parent process holds
TOKEN_ENV = "FORESTWATCH_RUN_LOCK"
#: exit status of a command that found the run folder locked (EX_TEMPFAIL)
EXIT_LOCKED = 75


class RunLocked(RuntimeError):
    """Another process holds the run lock; the message names it."""


class RunLock:
    """A held run lock; :meth:`release` (or the end of the process) lets it go."""

    def __init__(self, path: str | Path, fd: int, token: str) -> None:
        self.path, self.fd, self.token = Path(path), fd, token

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def holder(path: str | Path) -> dict:
    """What the lock file says of its (last) holder: pid, host, command, since, token."""
    try:
        return json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def describe(info: dict) -> str:
    if not info:
        return "another process"
    return (f"{info.get('command', 'a process')} (pid {info.get('pid')} on {info.get('host')}, "
            f"since {info.get('since')})")


def acquire(path: str | Path, *, command: str, wait_s: float = 0.0) -> RunLock:
    """Take the lock at ``path``, waiting up to ``wait_s`` seconds; raise
    :class:`RunLocked` if it is still held then."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    announced = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise RunLocked(
                    f"{path.parent} is being updated by {describe(holder(path))}. Wait for it "
                    "to finish (operational.lock_wait_s or `forestwatch daily --wait` sets how "
                    "long to wait), or stop it first; nothing was changed.") from None
            if not announced:
                log.warning("waiting up to %.0f s for the run lock held by %s", wait_s,
                            describe(holder(path)))
                announced = True
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
    token = uuid.uuid4().hex
    info = {"token": token, "pid": os.getpid(), "host": socket.gethostname(),
            "command": command, "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    os.fsync(fd)
    return RunLock(path, fd, token)


_HELD: RunLock | None = None


def lock_for_workflow(path: str | Path, *, wait_s: float = 0.0) -> RunLock | None:
    """The lock for a ``snakemake`` about to execute jobs (its ``onstart`` hook): taken and
    held until the process ends; ``None`` when the daily run that started this Snakemake
    holds it (its token is in :data:`TOKEN_ENV`)."""
    global _HELD
    command = ("snakemake " + " ".join(sys.argv[1:]))[:200].strip()
    try:
        _HELD = acquire(path, command=command)
        return _HELD
    except RunLocked:
        token = os.environ.get(TOKEN_ENV)
        if token and holder(path).get("token") == token:
            return None  # our parent, `forestwatch daily`, holds it
    _HELD = acquire(path, command=command, wait_s=wait_s)
    return _HELD


__all__ = ["acquire", "lock_for_workflow", "RunLock", "RunLocked", "holder", "TOKEN_ENV",
           "EXIT_LOCKED"]
