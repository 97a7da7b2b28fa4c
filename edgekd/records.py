"""Typed records that flow forward from stage to stage (saved as JSON in ``<stage>/stage.json``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


class Record:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class ModelRef(Record):
    """How to rebuild a model: its spec plus the weights file (relative to the run dir, or as configured)."""

    model: str
    kwargs: dict[str, Any]
    weights: str | None
    weights_in_run: bool  # True when ``weights`` is relative to the run directory
    sha256: str  # hash of the parameters and buffers
    format: str = "state_dict"  # "state_dict" | "pruned" (Torch-Pruning state with the pruned structure)


@dataclass
class Figures(Record):
    accuracy: float
    per_class_accuracy: list[float]
    ece: float
    params: int
    macs: int
    size_bytes: int


@dataclass
class TeacherRecord(Record):
    members: list[dict]  # ModelRef dicts
    ensemble_weights: list[float]
    temperature: float
    figures: dict  # Figures of the (ensembled) teacher on the test split
    val_accuracy: float
    ece_before_calibration: float
    trained: list[dict] = field(default_factory=list)  # TrainResult summaries of members trained here


@dataclass
class StudentRecord(Record):
    model: dict  # ModelRef
    figures: dict  # Figures on the test split
    val_accuracy: float
    train: dict  # TrainResult summary
    class_names: list[str]
    input_shape: list[int]
    normalization: dict
    data: dict  # data provenance
    teacher_cache: dict = field(default_factory=dict)
    compression: dict = field(default_factory=dict)  # what pruning did (before/after figures, ratio, steps)


@dataclass
class QuantizedRecord(Record):
    mode: str  # qad | ptq | none
    student: dict  # ModelRef of the FP32 student that was prepared
    observer: str  # the observer family used to prepare the graph
    state: str | None  # learned weights and quantization parameters (safetensors), relative to the run
    calibration: str | None  # manifest of the calibration set, relative to the run
    figures: dict  # fake-quantized accuracy on the test split
    train: dict = field(default_factory=dict)
    fp32_accuracy: float = float("nan")
