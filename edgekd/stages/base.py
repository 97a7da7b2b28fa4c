"""The stage interface and registry.

A stage reads the config section(s) it owns and the records of the stages it
requires, writes its files under ``run_dir/<name>/`` and returns a record (a
plain dataclass, saved as JSON). It never reaches into another stage's files
except through that stage's record.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from ..config import PipelineConfig
from ..data import DataBundle, prepare_data
from ..io import sha256_file
from ..registry import Registry


@dataclass
class StageContext:
    config: PipelineConfig
    run_dir: Path
    records: dict[str, dict] = field(default_factory=dict)  # upstream records, by stage name
    resume: bool = False
    keys: dict[str, str] = field(default_factory=dict)  # cache key of each stage run so far

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
        )

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
        model_file = None
        if scheme in ("torchscript", "export", "onnx"):
            model_file = rest
        elif scheme == "python":
            module = rest.split(":")[0]
            model_file = module if module.endswith(".py") else module.replace(".", "/") + ".py"
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


class Stage(ABC):
    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""

    @abstractmethod
    def cache_inputs(self, ctx: StageContext) -> dict[str, Any]:
        """Everything besides upstream records that decides this stage's output (config sections, seed)."""

    def validate(self, ctx: StageContext) -> None:
        """Check this stage's inputs before any stage runs, so bad input fails before hours of training."""

    @abstractmethod
    def run(self, ctx: StageContext, out_dir: Path) -> dict[str, Any]:
        """Do the work and return the record (JSON-able)."""

    def describe(self, record: dict[str, Any]) -> list[tuple[str, str]]:
        """Rows (label, value) printed after the stage runs."""
        return []


STAGES: Registry[type[Stage]] = Registry("stage")
