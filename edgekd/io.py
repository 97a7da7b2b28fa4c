"""Atomic files and content hashes.

Every artifact is written under a temporary name and renamed into place, so a
killed run never leaves a file that looks complete but is not; the writer
itself (and why files get 0644, not 0600) is ``edgekd.ondevice.atomic``.
torch is imported only by the functions that need it, so the gate and other
light commands can write files without loading it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .ondevice.atomic import atomic_path, write_bytes, write_text

if TYPE_CHECKING:
    import torch

__all__ = ["atomic_path", "write_bytes", "write_text", "write_json", "read_json", "torch_save", "sha256_file",
           "sha256_json", "state_dict_hash"]


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def torch_save(obj: Any, path: Path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def state_dict_hash(module: torch.nn.Module) -> str:
    """Hash of a module's parameters and buffers, independent of how it was saved."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        tensor = tensor.detach().cpu().contiguous()
        digest.update(str(tensor.dtype).encode() + str(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()
