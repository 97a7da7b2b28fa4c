"""The run's log file: third-party chatter goes there, edgekd's own progress and figures stay on the screen.

Converters and runtimes print what a user can do nothing about: TensorFlow's C++
``I0000`` lines, coremltools' version warnings, exporters' FutureWarnings. While a
run holds ``run_log``, file descriptor 2 (where C and C++ libraries write) points at
``<run>/edgekd.log``, Python's warnings and library loggers are written there too,
and ``sys.stderr`` is a stream on the original terminal, so edgekd's console and
progress bars still reach the user. Everything is restored on exit, also on error,
so a traceback or an error message is printed on the screen.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from contextlib import contextmanager, redirect_stderr
from pathlib import Path
from typing import Iterator

LOG_NAME = "edgekd.log"


@contextmanager
def run_log(path: Path) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "a", buffering=1, encoding="utf-8", errors="replace")
    try:
        stderr_fd = sys.__stderr__.fileno() if sys.__stderr__ is not None else 2
    except (AttributeError, ValueError, OSError):  # no real stderr (an embedding host): nothing to redirect
        stderr_fd = None
    saved_fd = terminal = None
    old_stderr = sys.stderr
    root = logging.getLogger()
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    old_level = root.level
    try:
        if stderr_fd is not None:
            sys.stderr.flush()
            saved_fd = os.dup(stderr_fd)
            if _writes_to(old_stderr, stderr_fd):  # else a host (pytest, a notebook) already routes sys.stderr elsewhere
                terminal = os.fdopen(os.dup(saved_fd), "w", buffering=1, errors="replace",
                                     encoding=getattr(old_stderr, "encoding", None) or "utf-8")
                sys.stderr = terminal
            os.dup2(log.fileno(), stderr_fd)
        root.addHandler(handler)
        if root.level > logging.WARNING or root.level == logging.NOTSET:
            root.setLevel(logging.WARNING)
        logging.captureWarnings(True)
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # each distinct warning once, into the log
            yield path
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(old_level)
        if saved_fd is not None:
            sys.stderr.flush()
            os.dup2(saved_fd, stderr_fd)
            os.close(saved_fd)
            sys.stderr = old_stderr
            if terminal is not None:
                terminal.close()
        log.close()


@contextmanager
def vendor_output() -> Iterator[None]:
    """While a vendor's converter or runtime runs, its Python-level output (coremltools' tqdm bars, ExecuTorch's
    C++ log, which its binding routes through sys.stderr) goes where C-level output goes: under ``run_log`` the
    run's log file; elsewhere nothing changes."""
    if sys.__stderr__ is None or sys.stderr is sys.__stderr__:
        yield
        return
    sys.stderr.flush()
    with redirect_stderr(sys.__stderr__):
        yield


def _writes_to(stream, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, ValueError, OSError):
        return False
