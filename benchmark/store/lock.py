"""One writer per store: the commands that write a run's folder (``run``, ``report``, ``verify``) hold its lock.

The lock is an advisory ``flock`` on ``<output dir>/.lock``, so the kernel releases it when its holder dies,
however it dies; the file also names the holder (pid, host, start time, command, phase) for the message a second
command prints. A lock file that still names a holder nobody holds is what a killed command left: it is taken
over, and said so. An overlapping cron-started nightly therefore waits (``--wait``) or exits at once; it never
writes beside the first.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

log = logging.getLogger("benchmark")
LOCK = ".lock"


class StoreBusy(RuntimeError):
    """Another command holds the store's lock."""


class StoreLock:
    """``with StoreLock(out_dir, "run"):`` holds the run folder's lock; :meth:`phase` records what it is doing.

    ``wait``: poll until the holder is done instead of raising :class:`StoreBusy`."""

    def __init__(self, out_dir: Path, command: str, wait: bool = False, poll_s: float = 1.0):
        self.path, self.command, self.wait, self.poll_s = Path(out_dir) / LOCK, command, wait, poll_s
        self.fd: int | None = None
        self.info: dict = {}
        self.took_over: dict | None = None  # what a dead holder's lock file said

    def __enter__(self) -> "StoreLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                holder = self.describe(_read(fd))
                if not self.wait:
                    os.close(fd)
                    raise StoreBusy(f"{self.path.parent} is in use by {holder}; wait for it, or pass --wait") from None
                if not announced:
                    log.warning("waiting for %s to release %s", holder, self.path.parent)
                    announced = True
                time.sleep(self.poll_s)
        self.fd = fd
        previous = _read(fd)
        if previous.get("pid"):
            self.took_over = previous
            log.warning("took over the lock of %s, which ended without releasing it", self.describe(previous))
        self.info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                     "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "phase": "start"}
        self._write()
        return self

    def phase(self, name: str) -> None:
        """Record the holder's phase (``planning``, ``generation``, ``report`` ...) in the lock file."""
        if self.fd is not None:
            self.info["phase"] = name
            self._write()

    def __exit__(self, *exc) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)  # an empty file: released cleanly
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            self.fd = None

    def _write(self) -> None:
        data = json.dumps(self.info).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    @staticmethod
    def describe(info: dict) -> str:
        if not info.get("pid"):
            return "another command"
        return (f"`{info.get('command', '?')}` (pid {info['pid']} on {info.get('host', '?')}, started "
                f"{info.get('started', '?')}, {info.get('phase', '?')})")


def _read(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 1 << 16, 0) or b"{}")
        return data if isinstance(data, dict) else {}
    except ValueError:
        return {}


def holder(out_dir: Path) -> dict:
    """What the lock file of a run folder says (empty when free or released cleanly); for tests and ``ls``."""
    try:
        return json.loads((Path(out_dir) / LOCK).read_text() or "{}")
    except (OSError, ValueError):
        return {}
