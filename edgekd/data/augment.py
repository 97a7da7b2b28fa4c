"""Training-time augmentation: shifts, mixup and cutmix for images, token dropout for text.

Distillation wants the teacher to see exactly the view the student sees ("consistent teaching",
Beyer et al., CVPR 2022, "Knowledge distillation: A good teacher is patient and consistent"): the
trainer augments a batch once and hands that batch to both. Every draw comes from the generator
the trainer seeds per epoch, so a replayed epoch sees the same views.

Fixed views (``ViewPlan``) make the views a function of (sample, view number) alone, so a
teacher's outputs on them can be computed once and cached; each epoch each sample shows one. A
fixed mixup view keeps its partner sample and weight, so it too is the same every time it is shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SHIFT = 2  # pixels: what `augment: true` means for images (the teacher stage's only augmentation)


def shift_batch(x: torch.Tensor, shifts: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Shift sample i of ``x`` (N, C, H, W) by ``shifts[:, i]`` = (rows, cols) pixels, each in [-max_shift, max_shift].

    Vacated pixels take the sample's minimum (its background, also after normalisation), so a
    shift never paints a false border.
    """
    n, c, h, w = x.shape
    m = max_shift
    shifts = shifts.to(x.device)
    background = x.amin(dim=(1, 2, 3), keepdim=True)
    padded = background.expand(n, c, h + 2 * m, w + 2 * m).clone()
    padded[:, :, m : m + h, m : m + w] = x
    # a shift by +d moves content down/right: the crop starts d pixels before the original origin
    rows = (m - shifts[0]).view(n, 1, 1, 1) + torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = (m - shifts[1]).view(n, 1, 1, 1) + torch.arange(w, device=x.device).view(1, 1, 1, w)
    out = padded.gather(2, rows.expand(n, c, h, w + 2 * m))
    return out.gather(3, cols.expand(n, c, h, w))


def augment_batch(x: torch.Tensor, *, max_shift: int = SHIFT, generator: torch.Generator) -> torch.Tensor:
    """Shift each sample of ``x`` (N, C, H, W) by up to ``max_shift`` pixels in each direction, drawn from
    ``generator`` alone: same seed, same batch."""
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0 or x.numel() == 0:
        return x
    # drawn on the generator's device (the trainer's is CPU), then moved beside the data
    shifts = torch.randint(-max_shift, max_shift + 1, (2, len(x)), generator=generator, device=generator.device)
    return shift_batch(x, shifts, max_shift)


def drop_tokens(ids: torch.Tensor, dropped: torch.Tensor, pad_id: int) -> torch.Tensor:
    """``ids`` (N, L) with the tokens where ``dropped`` (N, >= L) is true replaced by ``pad_id``, which the model
    masks out: the token is gone, its neighbours keep their positions. The first token ([CLS]) and the last
    real one ([SEP]) always stay."""
    real = ids != pad_id
    keep = torch.zeros_like(real)
    keep[:, 0] = True
    keep[torch.arange(len(ids)), (real.sum(1) - 1).clamp(min=0)] = True
    return ids.masked_fill(dropped[:, : ids.shape[1]].to(ids.device) & real & ~keep, pad_id)


@dataclass(frozen=True)
class Mix:
    """A mixed batch: sample i holds ``lam`` of itself and ``1 - lam`` of its partner (``lam`` >= 0.5, so each
    sample's own label stays its dominant one); ``targets_b`` are the partners' labels. ``lam`` is one number
    for a batch mixed on the fly, one per sample (a tensor) for fixed views."""

    lam: float | torch.Tensor
    targets_b: torch.Tensor

    def part(self, rows: slice | torch.Tensor, device: torch.device | None = None) -> "Mix":
        """The mix of the samples ``rows`` (a process's share of the batch), on ``device``."""
        lam = self.lam[rows] if isinstance(self.lam, torch.Tensor) else self.lam
        if device is not None and isinstance(lam, torch.Tensor):
            lam = lam.to(device)
        targets_b = self.targets_b[rows]
        return Mix(lam, targets_b.to(device) if device is not None else targets_b)


@dataclass(frozen=True)
class Augmentation:
    """What to do to a training batch (``data.augment``): ``shift`` pixels (images), ``mixup`` / ``cutmix``
    Beta(alpha, alpha) mixing (images; one of them per batch, at random, when both are on), ``token_dropout``
    probability (text)."""

    shift: int = 0
    mixup: float = 0.0
    cutmix: float = 0.0
    token_dropout: float = 0.0

    @property
    def mixes(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def describe(self) -> str:
        parts = [f"shifts up to {self.shift} px" if self.shift else "",
                 f"mixup alpha {self.mixup:g}" if self.mixup else "", f"cutmix alpha {self.cutmix:g}" if self.cutmix else "",
                 f"token dropout {self.token_dropout:g}" if self.token_dropout else ""]
        return ", ".join(p for p in parts if p) or "none"

    def apply(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
              pad_id: int | None = None) -> tuple[torch.Tensor, Mix | None]:
        """One batch's augmented view (and how it was mixed), every draw from ``generator``."""
        if self.shift and x.dtype.is_floating_point:
            x = augment_batch(x, max_shift=self.shift, generator=generator)
        if self.token_dropout and pad_id is not None:
            x = drop_tokens(x, torch.rand(x.shape, generator=generator) < self.token_dropout, pad_id)
        if not self.mixes or len(x) < 2:
            return x, None
        use_cutmix = self.cutmix > 0 and (self.mixup == 0 or bool(torch.rand((), generator=generator) < 0.5))
        alpha = self.cutmix if use_cutmix else self.mixup
        lam = _beta(alpha, generator)
        lam = max(lam, 1.0 - lam)
        perm = torch.randperm(len(x), generator=generator)
        if use_cutmix:
            x, lam = _cutmix(x, perm, lam, generator)
        else:
            x = lam * x + (1.0 - lam) * x[perm]
        return x, Mix(lam=lam, targets_b=y[perm])


def _beta(alpha: float, generator: torch.Generator) -> float:
    """A Beta(alpha, alpha) draw from ``generator`` (torch.distributions samples from the global one): the first
    part of a two-way Dirichlet."""
    return float(torch._sample_dirichlet(torch.tensor([alpha, alpha], dtype=torch.float64), generator=generator)[0])


def _cutmix(x: torch.Tensor, perm: torch.Tensor, lam: float, generator: torch.Generator) -> tuple[torch.Tensor, float]:
    """Paste a box of the partner images into each image: the box covers ``1 - lam`` of the area (Yun et al., ICCV
    2019), centred at random and clipped at the border; returns the batch and the area actually kept."""
    h, w = x.shape[-2:]
    cut = (1.0 - lam) ** 0.5
    bh, bw = int(round(h * cut)), int(round(w * cut))
    cy, cx = divmod(int(torch.randint(0, h * w, (1,), generator=generator)), w)
    top, bottom = max(cy - bh // 2, 0), min(cy + (bh - bh // 2), h)
    left, right = max(cx - bw // 2, 0), min(cx + (bw - bw // 2), w)
    out = x.clone()
    out[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]
    return out, 1.0 - (bottom - top) * (right - left) / (h * w)


@dataclass(frozen=True)
class ViewPlan:
    """``views`` fixed augmented views of every training sample (``distill.teacher_views``): view v of sample i
    depends on (seed, v, i) alone, so the teacher's outputs on every view are computed once and cached, and
    each epoch each sample shows the student one of them. Shifts, mixup (view v of sample i mixes in a fixed
    partner, itself shifted as in its own view v, with a fixed weight) and token dropout; not cutmix."""

    views: int
    shift: int
    shifts: torch.Tensor | None  # (views, 2, N) pixels
    dropped: torch.Tensor | None  # (views, N, width) bool
    partners: torch.Tensor | None = None  # (views, N) the sample each view mixes in
    lams: torch.Tensor | None = None  # (views, N) the sample's own share, >= 0.5

    @classmethod
    def draw(cls, augmentation: Augmentation, views: int, samples: int, width: int, seed: int) -> "ViewPlan":
        if augmentation.cutmix:
            raise ValueError("fixed views cannot hold cutmix (use mixup, or let the teacher run live)")
        generator = torch.Generator().manual_seed(seed)
        m = augmentation.shift
        shifts = torch.randint(-m, m + 1, (views, 2, samples), generator=generator) if m else None
        p = augmentation.token_dropout
        dropped = torch.rand(views, samples, width, generator=generator) < p if p else None
        partners = lams = None
        if augmentation.mixup:
            partners = torch.randint(samples, (views, samples), generator=generator)
            alpha = torch.full((views * samples, 2), augmentation.mixup, dtype=torch.float64)
            first = torch._sample_dirichlet(alpha, generator=generator)[:, 0].view(views, samples).float()
            lams = torch.maximum(first, 1.0 - first)
        return cls(views=views, shift=m, shifts=shifts, dropped=dropped, partners=partners, lams=lams)

    def apply(self, x: torch.Tensor, indices: torch.Tensor, view: torch.Tensor, pad_id: int | None = None,
              source: torch.Tensor | None = None) -> torch.Tensor:
        """Samples ``indices`` of the training split (``x``, in that order) as their views ``view``; a plan with
        mixup reads the partners from ``source`` (the whole training split)."""
        if self.shifts is not None and x.dtype.is_floating_point:
            x = shift_batch(x, self.shifts[view, :, indices].T, self.shift)
        if self.dropped is not None and pad_id is not None:
            x = drop_tokens(x, self.dropped[view, indices], pad_id)
        if self.partners is not None and x.dtype.is_floating_point:
            if source is None:
                raise ValueError("a plan with mixup needs the training split (source) to read the partners from")
            partner = self.partners[view, indices]
            other = source[partner]
            if self.shifts is not None:
                other = shift_batch(other, self.shifts[view, :, partner].T, self.shift)
            lam = self.lams[view, indices].view(-1, *([1] * (x.dim() - 1)))
            x = lam * x + (1.0 - lam) * other
        return x

    def mix(self, indices: torch.Tensor, view: torch.Tensor, y_train: torch.Tensor) -> Mix | None:
        """How views ``view`` of samples ``indices`` are mixed (None without mixup): for the labels' side."""
        if self.partners is None:
            return None
        return Mix(lam=self.lams[view, indices], targets_b=y_train[self.partners[view, indices]])
