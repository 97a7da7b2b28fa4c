"""Where the student's targets come from: the live teacher, or its cached outputs.

When augmentation is off the teacher sees the same input for a sample every
epoch, so its logits (and requested features) are computed once, stored on
disk in float16 keyed by teacher and data hashes, and reused across epochs and
runs. With fixed augmented views (``ViewPlan``, ``distill.teacher_views``) the
same holds per (sample, view): row ``i * views + v`` holds sample i's view v.

Under torchrun the cache is filled once per machine, by the process with
``LOCAL_RANK`` 0, exactly as one process fills it (so the file is the same
bytes), under the file lock and an atomic rename; the machine's other processes
wait for it at a barrier, then read the file. No two processes ever write it.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .. import distributed
from ..data.augment import ViewPlan
from ..io import atomic_path, sha256_json
from ..models import FeatureRecorder


@dataclass
class TeacherOutputs:
    logits: torch.Tensor  # aggregated over the ensemble, temperature-calibrated
    logits_each: list[torch.Tensor]
    features: dict[str, torch.Tensor] = field(default_factory=dict)


class TeacherSource(Protocol):
    def outputs(self, indices: torch.Tensor, x: torch.Tensor) -> TeacherOutputs: ...


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEKD_CACHE_DIR", Path.home() / ".cache" / "edgekd"))


class LiveTeacher:
    """Runs the teacher members on each batch. Features are read from the first member."""

    def __init__(
        self,
        members: list[torch.nn.Module],
        weights: list[float],
        feature_names: list[str],
        temperature: float = 1.0,
    ) -> None:
        self.members = [m.eval() for m in members]
        total = float(sum(weights))
        self.weights = [w / total for w in weights]
        self.temperature = temperature
        self.feature_names = feature_names
        self._recorder = FeatureRecorder(members[0], feature_names, key="distill.features[].teacher") if feature_names else None

    def to(self, device: torch.device) -> "LiveTeacher":
        """Move the members (a torchrun process on a GPU runs its teacher there)."""
        self.members = [m.to(device) for m in self.members]
        return self

    @torch.no_grad()
    def outputs(self, indices: torch.Tensor, x: torch.Tensor) -> TeacherOutputs:
        features: dict[str, torch.Tensor] = {}
        logits_each = []
        for i, member in enumerate(self.members):
            if i == 0 and self._recorder is not None:
                with self._recorder:
                    logits_each.append(member(x).float() / self.temperature)
                    features = dict(self._recorder.features)
            else:
                logits_each.append(member(x).float() / self.temperature)
        logits = sum(w * l for w, l in zip(self.weights, logits_each))
        return TeacherOutputs(logits=logits, logits_each=logits_each, features=features)


class CachedTeacher:
    """Teacher outputs for the training split, computed once and read by row: the sample's index, or with
    ``plan`` (fixed augmented views) ``index * plan.views + view``."""

    def __init__(self, tensors: dict[str, torch.Tensor], path: Path, hit: bool, plan: ViewPlan | None = None) -> None:
        self._tensors = tensors
        self.path = path
        self.hit = hit  # True when the file already existed
        self.plan = plan
        self._members = sum(1 for k in tensors if k.startswith("logits_each."))

    @classmethod
    def load_or_build(
        cls,
        live: LiveTeacher,
        x_train: torch.Tensor,
        key_parts: dict,
        batch_size: int = 256,
        plan: ViewPlan | None = None,
        pad_id: int | None = None,
    ) -> "CachedTeacher":
        build = lambda: cls._load_or_build(live, x_train, key_parts, batch_size, plan, pad_id)  # noqa: E731
        if not distributed.active():
            return build()
        leader = distributed.is_local_leader()
        cached = None
        # One process per machine fills the cache; the others wait here (EDGEKD_DIST_WAIT_S), then read it.
        # A failure on the leader ends every process with a message instead of leaving them waiting.
        with distributed.together("filling the teacher-output cache", patient=True):
            if leader:
                cached = build()
        if not leader:
            cached = build()  # a hit: the leader wrote it
        return cached

    @classmethod
    def _load_or_build(cls, live: LiveTeacher, x_train: torch.Tensor, key_parts: dict, batch_size: int,
                       plan: ViewPlan | None, pad_id: int | None) -> "CachedTeacher":
        key = sha256_json({**key_parts, "features": live.feature_names, "temperature": live.temperature})[:24]
        path = cache_dir() / "teacher" / f"{key}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        # One writer per machine: other processes wait on the lock, then read the file.
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if path.exists():
                return cls(load_file(path), path, hit=True, plan=plan)
            views = plan.views if plan is not None else 1
            chunks: dict[str, list[torch.Tensor]] = {}
            starts = range(0, len(x_train), batch_size)
            for view, start in tqdm([(v, s) for v in range(views) for s in starts], desc="teacher cache", leave=False,
                                    unit="batch", disable=None):
                indices = torch.arange(start, min(start + batch_size, len(x_train)))
                x = x_train[indices]
                if plan is not None:
                    x = plan.apply(x, indices, torch.full_like(indices, view), pad_id, source=x_train)
                out = live.outputs(indices, x)
                named = {"logits": out.logits, **{f"logits_each.{i}": l for i, l in enumerate(out.logits_each)}}
                named.update({f"feature.{n}": f for n, f in out.features.items()})
                for name, tensor in named.items():
                    chunks.setdefault(name, []).append(tensor.to(torch.float16))
            # rows view-major as computed, then sample-major: row i * views + v
            tensors = {name: torch.cat(parts).unflatten(0, (views, len(x_train))).transpose(0, 1).flatten(0, 1).contiguous()
                       for name, parts in chunks.items()}
            with atomic_path(path) as tmp:
                save_file(tensors, str(tmp))
            return cls(tensors, path, hit=False, plan=plan)

    def outputs(self, indices: torch.Tensor, x: torch.Tensor) -> TeacherOutputs:
        t = self._tensors
        return TeacherOutputs(
            logits=t["logits"][indices].float(),
            logits_each=[t[f"logits_each.{i}"][indices].float() for i in range(self._members)],
            features={k[len("feature.") :]: v[indices].float() for k, v in t.items() if k.startswith("feature.")},
        )
