"""Training-time augmentation: small random translations."""

from __future__ import annotations

import torch


def augment_batch(x: torch.Tensor, *, max_shift: int = 2, generator: torch.Generator) -> torch.Tensor:
    """Shift each sample of ``x`` (N, C, H, W) by up to ``max_shift`` pixels in each direction.

    Vacated pixels take the sample's minimum (its background, also after normalisation), so a
    shift never paints a false border. The shifts come from ``generator`` alone: same seed,
    same batch.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0 or x.numel() == 0:
        return x
    n, c, h, w = x.shape
    m = max_shift
    # drawn on the generator's device (the trainer's is CPU), then moved beside the data
    shifts = torch.randint(-m, m + 1, (2, n), generator=generator, device=generator.device).to(x.device)
    background = x.amin(dim=(1, 2, 3), keepdim=True)
    padded = background.expand(n, c, h + 2 * m, w + 2 * m).clone()
    padded[:, :, m : m + h, m : m + w] = x
    # a shift by +d moves content down/right: the crop starts d pixels before the original origin
    rows = (m - shifts[0]).view(n, 1, 1, 1) + torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = (m - shifts[1]).view(n, 1, 1, 1) + torch.arange(w, device=x.device).view(1, 1, 1, w)
    out = padded.gather(2, rows.expand(n, c, h, w + 2 * m))
    return out.gather(3, cols.expand(n, c, h, w))
