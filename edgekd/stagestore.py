"""Completed stages shared between run folders, found by their cache key.

A search runs many trials, each a normal run folder; trials that share a prefix (the same teacher, the same
student, the same pruning) would otherwise retrain it. With ``stage_store=DIR``, a stage that completes is
copied to ``DIR/<stage>/<key>/`` and a later run whose stage has the same key copies it in instead of running
it. Records hold paths relative to their run folder, so a copied stage works in its new folder. Copies are
published under a temporary name and renamed into place, so a killed run never leaves a half-copied stage
that looks complete, and two processes publishing the same key keep the first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def stored(store: Path, stage: str, key: str) -> Path | None:
    """The stored copy of ``stage`` made with ``key``, if any."""
    folder = Path(store) / stage / key
    return folder if (folder / "stage.json").is_file() else None


def restore(store: Path, stage: str, key: str, run_dir: Path) -> bool:
    """Copy the stored stage into ``run_dir/<stage>`` (replacing what is there); False when none is stored."""
    source = stored(store, stage, key)
    if source is None:
        return False
    target = run_dir / stage
    scratch = run_dir / f".{stage}.restoring"
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(source, scratch)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(scratch, target)
    return True


def publish(store: Path, stage: str, key: str, run_dir: Path, *, replace: bool = False) -> None:
    """Copy ``run_dir/<stage>`` into the store under ``key`` unless another run already did; ``replace``: a
    stage re-run on purpose (``--force``) replaces the stored copy, so a bad entry can be mended."""
    if stored(store, stage, key) is not None and not replace:
        return
    folder = Path(store) / stage
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder / f".{key}.{os.getpid()}.part"
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(run_dir / stage, scratch)
    if replace and (folder / key).exists():
        old = folder / f".{key}.{os.getpid()}.old"
        os.replace(folder / key, old)
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.rename(scratch, folder / key)  # atomic; fails when another process published first
    except OSError:
        shutil.rmtree(scratch, ignore_errors=True)
