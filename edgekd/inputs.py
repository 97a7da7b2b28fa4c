"""Example tensors made from an ``InputSpec``: what tracing, MAC counting, export and the device benchmark feed.

A model takes one input (``records.InputSpec``): float32 NCHW images, or int64 token ids (batch, sequence)
right-padded with the tokenizer's pad id. Every place that needs "an input of the right kind" asks here
instead of assuming ``torch.zeros(1, C, H, W)``.
"""

from __future__ import annotations

import numpy as np
import torch

from .records import InputSpec

DTYPES = {"float32": torch.float32, "int64": torch.int64}


def example_input(spec: InputSpec, batch: int = 1, **sizes: int) -> torch.Tensor:
    """A valid input of ``spec``'s kind: zeros for images; for text, ids of one non-padding token (so the
    mask keeps every position and no layer sees an all-padding row)."""
    shape = spec.fixed_shape(batch=batch, **sizes)
    if not spec.is_text:
        return torch.zeros(shape, dtype=DTYPES[spec.dtype])
    pre = spec.preprocess
    token = (pre.pad_id + 1) % pre.vocab_size
    return torch.full(shape, token, dtype=DTYPES[spec.dtype])


def dynamic_axes(spec: InputSpec) -> dict[int, tuple[str, int]]:
    """Position -> (name, maximum) of each dynamic axis (``batch`` has no maximum of its own: 4096)."""
    return {i: (d, spec.max_sizes.get(d, 4096)) for i, d in enumerate(spec.shape) if isinstance(d, str)}


def parity_shapes(spec: InputSpec, *, dynamic_batch: bool) -> list[dict[str, int]]:
    """The shapes an export is checked at: batch 1 and 4 where the batch is dynamic, and for text the
    sequence lengths 16, 64 and the maximum (those that fit)."""
    batches = [1, 4] if dynamic_batch else [1]
    if not spec.is_text:
        return [{"batch": b} for b in batches]
    longest = spec.max_sizes.get("sequence", 1)
    lengths = sorted({n for n in (16, 64) if n < longest} | {longest})
    return [{"batch": b, "sequence": n} for b in batches for n in lengths]


def fit_length(x: np.ndarray | torch.Tensor, spec: InputSpec, length: int):
    """Text ids right-padded to ``length`` (padding is masked: the logits do not change) or cut to it (which drops
    tokens: preflight refuses a profile length shorter than the data's texts); images as they are."""
    if not spec.is_text or x.shape[1] == length:
        return x
    if x.shape[1] > length:
        return x[:, :length]
    pad = spec.preprocess.pad_id
    if isinstance(x, torch.Tensor):
        return torch.nn.functional.pad(x, (0, length - x.shape[1]), value=pad)
    return np.pad(x, ((0, 0), (0, length - x.shape[1])), constant_values=pad)


def trim_padding(x: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """A text batch without the trailing columns that are padding in every row (same logits, less work)."""
    if not spec.is_text or x.ndim != 2 or x.shape[1] == 0:
        return x
    used = (x != spec.preprocess.pad_id).any(0).nonzero()
    return x[:, : int(used.max()) + 1] if len(used) else x[:, :1]


def image_spec(shape: tuple[int, ...], *, name: str = "input") -> InputSpec:
    """The spec of a float32 (C, H, W) input taken as it is (mean 0, std 1): for callers outside a run."""
    from .records import ImagePreprocess

    channels = int(shape[0])
    return InputSpec(name=name, dtype="float32", shape=["batch", *map(int, shape)],
                     preprocess=ImagePreprocess(mean=[0.0] * channels, std=[1.0] * channels))
