"""What every stage sees: the config, the run folder, the upstream records and the data, plus model refs.

``StageContext`` is shared by the stages and by the helpers they have in common
(``edgekd.distillation``, ``edgekd.quantize.restore``); it knows no stage by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TypeVar

import torch

from .config import PipelineConfig
from .data import DataBundle, prepare_data
from .data.bundle import TextOptions
from .errors import StageError
from .io import sha256_file, state_dict_hash
from .records import ModelRef, Record
from .userimport import source_hash

R = TypeVar("R", bound=Record)


@dataclass
class StageContext:
    config: PipelineConfig
    run_dir: Path
    records: dict[str, Record] = field(default_factory=dict)  # upstream records, by stage name
    resume: bool = False
    keys: dict[str, str] = field(default_factory=dict)  # cache key of each stage run so far

    def record(self, stage: str, kind: type[R]) -> R:
        """The record of an upstream stage, checked to be of the type the caller expects."""
        found = self.records.get(stage)
        if not isinstance(found, kind):
            raise StageError(f"stage {stage!r} has no {kind.__name__} in this run (got {type(found).__name__})")
        return found

    def train_key(self, stage: str, part: str = "") -> str:
        """Identifies a training run inside a stage: a checkpoint is resumed only under the same key."""
        return f"{self.keys.get(stage, '')}:{part}"

    @cached_property
    def data(self) -> DataBundle:
        cfg = self.config
        return prepare_data(
            cfg.data.source,
            seed=cfg.data.split_seed,
            fractions=cfg.data.split,
            image_size=cfg.data.image_size,
            base_dir=cfg.base_dir,
            num_classes=cfg.data.num_classes,
            text=TextOptions(tokenizer=tokenizer_folder(cfg), max_length=cfg.data.max_length,
                             text_column=cfg.data.text_column, label_column=cfg.data.label_column),
        )

    def sequence_length(self) -> int | None:
        """Text: the length fixed-shape artifacts are built for and every artifact is checked and profiled at
        (``profile.sequence_length``, default ``data.max_length``); None for images."""
        if not self.data.is_text:
            return None
        return self.config.profile.sequence_length or self.config.data.max_length

    def artifact_inputs(self, split: str = "test") -> torch.Tensor:
        """A split (test or val) as artifacts take it: text right-padded to ``sequence_length`` (padding is masked)."""
        from .inputs import fit_length

        x = {"test": self.data.x_test, "val": self.data.x_val}[split]
        length = self.sequence_length()
        return x if length is None else fit_length(x, self.data.input, length)

    def file_hash(self, path: str | None) -> str | None:
        """sha256 of a file the config names (weights, a model file, a manifest), so replacing it at the
        same path re-runs what depends on it. None when there is no such file (the loader reports that)."""
        if not path:
            return None
        file = Path(path) if Path(path).is_absolute() else self.config.base_dir / path
        if file.is_dir():
            file = file / "manifest.json"
        return sha256_file(file) if file.is_file() else None

    def spec_hashes(self, spec) -> dict[str, str | None]:
        """File hashes behind a ModelSpec: its weights and, for file-based schemes, the model file."""
        scheme, _, rest = spec.model.partition(":")
        if scheme == "python":  # the module's source wherever it is imported from (beside the config, PYTHONPATH)
            return {"model": source_hash(spec.model, self.config.base_dir), "weights": self.file_hash(spec.weights)}
        if scheme == "hf":  # a checkpoint replaced in its folder must re-run what was built from it
            from .models.hf import resolve_hf_dir

            folder = resolve_hf_dir(rest, self.config.base_dir, "model")
            files = [folder / n for n in ("config.json", "model.safetensors", "pytorch_model.bin")]
            return {"model": ":".join(sha256_file(f) for f in files if f.is_file()), "weights": self.file_hash(spec.weights)}
        model_file = rest if scheme in ("torchscript", "export", "onnx") else None
        return {"model": self.file_hash(model_file), "weights": self.file_hash(spec.weights)}

    def stage_dir(self, name: str) -> Path:
        path = self.run_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def relative(self, path: Path) -> str:
        """Paths in records are relative to the run directory, so a run can be moved."""
        return str(Path(path).resolve().relative_to(self.run_dir.resolve()))

    def absolute(self, relative: str) -> Path:
        # Absolute, so loaders that resolve relative paths against the config's folder never see it as relative.
        return self.run_dir.resolve() / relative

    # -- models named by records -----------------------------------------------------------------------------

    def weights_path(self, ref: ModelRef) -> Path | None:
        if ref.weights is None:
            return None
        return self.absolute(ref.weights) if ref.weights_in_run else Path(ref.weights)

    def load_model(self, ref: ModelRef, *, key: str) -> torch.nn.Module:
        """The model a ModelRef names, with its weights (a pruned student with its pruned structure)."""
        from .models import load_model

        data = self.data
        path = self.weights_path(ref)
        args = data.model_args()
        common = dict(kwargs=ref.kwargs, num_classes=args.pop("num_classes"), in_channels=args.pop("in_channels", None),
                      data_args=args, base_dir=self.config.base_dir, key=key)
        if ref.format == "pruned":
            from .prune import load_pruned  # only pruned students need Torch-Pruning's loader

            return load_pruned(load_model(ref.model, weights=None, **common), path)
        return load_model(ref.model, weights=str(path) if path else None, **common)

    def save_model(self, model: torch.nn.Module, spec: str, kwargs: dict, path: Path) -> ModelRef:
        """Write ``model``'s weights under the run (rank 0 only under torchrun) and return their ModelRef."""
        from . import distributed
        from .models import save_weights

        if distributed.is_writer():
            save_weights(model, path)
        return ModelRef(model=spec, kwargs=dict(kwargs), weights=self.relative(path), weights_in_run=True,
                        sha256=state_dict_hash(model))


def tokenizer_folder(cfg: PipelineConfig) -> Path | None:
    """``data.tokenizer`` resolved to a folder; by default the first hf: teacher's own (None: no tokenizer)."""
    spec = cfg.data.tokenizer
    key = "data.tokenizer"
    if spec is None:
        spec = next((m.model for m in cfg.teacher.members if m.model.startswith("hf:")), None)
        key = "teacher.model"
    if spec is None:
        return None
    from .models.hf import resolve_hf_dir

    return resolve_hf_dir(spec.removeprefix("hf:"), cfg.base_dir, key)
