"""One edgekd run at a time per run folder: an exclusive lock, and the folder's scratch space.

``edgekd run`` and every stage command (and :func:`edgekd.run`) hold ``<run>/.edgekd.lock``
while they work. Two runs into one folder would otherwise rewrite each other's records (a
later ``teacher/stage.json`` written after ``distill/stage.json`` was made from the earlier one).

* The lock is ``flock`` on the open lock file: the kernel releases it when the process ends,
  however it ends, so a killed run never leaves a folder locked. The file's JSON names the
  holder (host, pid, start time, command) for the message a second run prints; a file whose
  lock nobody holds was left by a run that died, and the next run says it takes it over.
* A second run fails at once (exit 2) naming the holder, or with ``--wait`` (``wait=True``)
  says once that it waits, and starts when the holder is done.
* Under torchrun, rank 0 holds the lock; the other processes wait for it to be taken.
* While holding it, a run first removes what a killed run left: the scratch folder
  ``<run>/.tmp`` (temporary work such as the benchmark's result folder lives there, not in
  /tmp) and the atomic writer's unfinished ``.NAME.RANDOM.part`` files and the export's
  ``.NAME.unverified`` files. With the lock held no other edgekd process writes the folder, so
  anything of that form is debris. The scratch folder is removed again on release.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import re
import shlex
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console
from rich.markup import escape

from . import distributed
from .errors import EdgekdError

LOCK_FILE = ".edgekd.lock"
SCRATCH = ".tmp"
# Unfinished files of a killed run: edgekd.ondevice.atomic's ``.NAME.<8 hex>.part`` (and the Core ML
# backend's mkdtemp folder of the same form), and the export stage's ``.NAME.unverified``.
LEFTOVER = re.compile(r"^\..+\.([0-9a-z_]{8}\.part|unverified)$")
READ_TRIES = 20  # a holder writes its JSON just after taking the lock: a reader retries briefly


class RunLocked(EdgekdError):
    """Another edgekd run holds the run folder."""


class _NoLocks(Exception):
    """The run folder's filesystem has no flock (some network or FUSE filesystems)."""


def scratch_dir(run_dir: str | os.PathLike) -> Path:
    """``<run>/.tmp``, created: temporary work of the run that holds the lock (removed by the next one)."""
    path = Path(run_dir) / SCRATCH
    path.mkdir(parents=True, exist_ok=True)
    return path


def this_process() -> dict[str, Any]:
    """What the lock file says about its holder."""
    argv = list(sys.argv) or ["python"]
    if Path(argv[0]).name in ("edgekd", "__main__.py"):  # `edgekd ...` or `python -m edgekd ...`
        argv[0] = "edgekd"
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": shlex.join(argv)}


def describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "a process that has not yet written its name into the lock file"
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started', '?')}, "
            f"running `{holder.get('command', '?')}`")


def _read(fd: int) -> dict[str, Any] | None:
    """The holder named in the lock file open as ``fd``; None when it is empty or not (yet) whole JSON."""
    size = os.fstat(fd).st_size
    if not size:
        return None
    try:
        value = json.loads(os.pread(fd, size, 0))
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _current(fd: int, path: Path) -> bool:
    """True when ``fd`` is still the file at ``path`` (a releasing holder unlinks it; a waiter then retries)."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Remove the scratch folder and unfinished files a killed run left; return what was removed."""
    removed = []
    scratch = run_dir / SCRATCH
    if scratch.exists():
        shutil.rmtree(scratch, ignore_errors=True)
        removed.append(scratch)
    for folder, dirs, files in os.walk(run_dir):
        for name in [*dirs, *files]:
            if LEFTOVER.match(name):
                path = Path(folder) / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                    dirs.remove(name)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed


class RunLock:
    """The lock of one run folder, held by this process between :meth:`acquire` and :meth:`release`."""

    def __init__(self, run_dir: str | os.PathLike, console: Console | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.console = console or Console(stderr=True)
        self.fd: int | None = None

    def acquire(self, wait: bool = False) -> "RunLock":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        said_waiting = False
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            except OSError as error:
                raise EdgekdError(f"cannot create the run folder's lock file {self.path}: {error.strerror}; "
                                  "the run folder (--out) must be a writable folder") from None
            try:
                if not self._try(fd):
                    holder = self._holder(fd)
                    if not wait:
                        raise RunLocked(
                            f"run folder {self.run_dir} is in use by another edgekd run: {describe(holder)}. "
                            "Wait for it with --wait (wait=True from Python), or choose another --out.")
                    if not said_waiting:
                        self.console.print(escape(f"run folder {self.run_dir} is in use by {describe(holder)}; waiting for it to finish"))
                        said_waiting = True
                    fcntl.flock(fd, fcntl.LOCK_EX)
                if _current(fd, self.path):
                    break
            except _NoLocks as error:
                os.close(fd)
                self.console.print(escape(f"run folder {self.run_dir}: this filesystem does not support file locks "
                                          f"({error}); running without the lock, so nothing stops a second edgekd run "
                                          "from writing this folder at the same time"), style="yellow")
                return self
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # the holder removed the file as it released it: lock the one at the path now
        self.fd = fd
        previous = _read(fd)
        if previous is not None:  # its lock is free, so the process that wrote it is gone
            self.console.print(escape(f"run folder {self.run_dir}: taking over the lock left by {describe(previous)}, "
                                      "which ended without releasing it (killed or crashed)"), style="yellow")
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(this_process()) + "\n").encode(), 0)
        leftovers = remove_leftovers(self.run_dir)
        if previous is not None and leftovers:
            self.console.print(f"[dim]removed {len(leftovers)} temporary file(s) of that run[/dim]")
        return self

    @staticmethod
    def _try(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise _NoLocks(error.strerror) from None
            raise
        return True

    @staticmethod
    def _holder(fd: int) -> dict[str, Any] | None:
        for _ in range(READ_TRIES):  # between its flock and its write, the holder's file is empty
            holder = _read(fd)
            if holder is not None:
                return holder
            time.sleep(0.05)
        return None

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            shutil.rmtree(self.run_dir / SCRATCH, ignore_errors=True)
            if _current(self.fd, self.path):
                self.path.unlink()  # before the unlock: a waiter that then gets this file sees it is gone and retries
        finally:
            os.close(self.fd)  # releases the flock
            self.fd = None


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, *, wait: bool = False, console: Console | None = None) -> Iterator[RunLock | None]:
    """Hold ``run_dir``'s lock for the block (rank 0 under torchrun; the other processes get None).

    Raises :class:`RunLocked` naming the holder when another run has it and ``wait`` is False.
    """
    lock = None
    try:
        with distributed.together("taking the run folder's lock (edgekd.runlock)", patient=True):
            if distributed.is_writer():
                lock = RunLock(run_dir, console).acquire(wait)
        yield lock
    finally:
        if lock is not None:
            lock.release()
