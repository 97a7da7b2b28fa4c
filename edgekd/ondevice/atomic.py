"""Files written whole or not at all, with the permissions any other new file gets.

Everything edgekd writes (stage records, reports, weights, compiled models, the
device benchmark's result) goes to a temporary name beside its destination and
is renamed onto it only on success, so a killed run never leaves a file that
looks complete but is not. The temporary file is created the way ``open()``
creates files, mode 0666 less the umask (0644 under the usual 022), not
``mkstemp``'s 0600: results are meant to be read by other users and by CI
artifact uploads. The umask itself is never read or changed (that is not
thread-safe); the kernel applies it. A writer that replaces the temporary file
with one of its own (safetensors' ``save_file`` creates its files 0600) gets
the mode the kernel gave ours back before the rename.

Standard library only, so the device-side benchmark (see ``edgekd.ondevice``)
writes its result with it too; importing it never imports torch.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import Iterator

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _create_beside(path: Path) -> Path:
    """A new empty file ``.NAME.RANDOM.part`` in ``path``'s folder (hidden, and never mistaken for ``path``)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        try:
            os.close(os.open(tmp, _FLAGS, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {path}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for the caller to write; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_beside(path)
    mode = stat.S_IMODE(tmp.stat().st_mode)  # 0666 less the umask, as the kernel applied it
    try:
        yield tmp
        written = tmp.stat().st_mode
        if stat.S_ISREG(written) and stat.S_IMODE(written) != mode:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
