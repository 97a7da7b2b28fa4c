"""Scoring a model on a whole split, with the split shared out over torchrun's processes.

Without torchrun these are :func:`edgekd.metrics.predict` and :func:`edgekd.metrics.evaluate`.
Under torchrun each process predicts its share, drawn by a ``DistributedSampler`` (no shuffle);
the shares are gathered and the sampler's padding (it repeats the first samples so that every
share has the same length) is dropped, so every process holds the logits of each sample exactly
once, in split order, and computes the same, exact metrics as one process would.
"""

from __future__ import annotations

import torch
from torch.utils.data import DistributedSampler

from .. import distributed
from ..metrics import EvalResult, evaluate_logits
from ..metrics import predict as _predict


def _device_of(model: torch.nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits for every row of ``x``, in order, on the CPU."""
    ctx = distributed.context()
    if ctx is None or len(x) == 0:
        return _predict(model, x, batch_size)
    n, world = len(x), ctx.world_size
    sampler = DistributedSampler(range(n), num_replicas=world, rank=ctx.rank, shuffle=False, drop_last=False)
    mine = torch.tensor(list(sampler), dtype=torch.long)
    device = _device_of(model)
    local = _predict(model, x[mine].to(device), batch_size).cpu()
    parts = distributed.all_gather_rows(local, what="gathering evaluation outputs")
    out = torch.empty((n, *local.shape[1:]), dtype=local.dtype)
    for r, part in enumerate(parts):
        positions = torch.arange(r, r + world * len(part), world)  # where rank r's rows sit in the padded list
        real = positions < n  # positions >= n are the sampler's padding (repeats of the first samples)
        out[positions[real]] = part[real]
    return out


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> EvalResult:
    """Accuracy, loss, per-class accuracy and ECE over the whole split (all processes agree)."""
    return evaluate_logits(predict(model, x), y, num_classes)
