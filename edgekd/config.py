"""The pipeline YAML, validated with pydantic.

Unknown keys are errors and every error names the key path, the bad value and
what was expected. Each stage owns one section; later stages add sections here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import NotRequired, TypedDict

from .ondevice.settings import ENERGY, LATENCY

if TYPE_CHECKING:
    from .data.augment import Augmentation
from .yamlfile import read_yaml, validate


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AugmentConfig(Section):
    """``data.augment`` spelled out: what is done to each training batch of the student (distill, prune
    recovery, QAD). The teacher sees the same augmented batch (live), or its cached views (distill.teacher_views)."""

    shift: int = Field(0, ge=0, le=16, description="images: random shifts of up to this many pixels")
    mixup: float = Field(0.0, ge=0, description="images: mixup with Beta(alpha, alpha) weights (0: off; 0.2-1 usual)")
    cutmix: float = Field(0.0, ge=0, description="images: cutmix with Beta(alpha, alpha) box areas (0: off; 1 usual); "
                          "with mixup on too, each batch uses one of them at random")
    token_dropout: float = Field(0.0, ge=0, lt=1, description="text: the chance each token (but [CLS] and the last) is "
                                 "dropped (masked out as padding)")


class DataConfig(Section):
    source: str = "builtin:mnist5k"
    image_size: tuple[int, int] | None = Field(None, description="(H, W); resize every image to this size")
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    split_seed: int = Field(0, description="seeds the train/val/test split only, so runs with other seeds share a test set")
    augment: bool | AugmentConfig = Field(False, description="the student's training batches: true = images shifted "
                                          "by up to 2 pixels, or {shift, mixup, cutmix, token_dropout}; the teacher "
                                          "then runs live on the same batch unless distill.teacher_views caches views")
    num_classes: int | None = Field(None, ge=2, description="classes expected; a label outside 0..num_classes-1 is an "
                                    "error (default: the source's class names, else the largest label + 1)")
    # text sources (text:PATH, builtin:rotten_tomatoes)
    tokenizer: str | None = Field(None, description="text: a Hugging Face tokenizer folder or hf:NAME (default: the "
                                  "hf: teacher's own tokenizer)")
    max_length: int = Field(128, ge=2, le=8192, description="text: tokens per text; longer texts are cut and counted")
    text_column: str = Field("text", description="text:PATH: the column (CSV) or key (JSONL) holding the texts")
    label_column: str = Field("label", description="text:PATH: the column or key holding the labels (names or integers)")

    @property
    def augmentation(self) -> Augmentation | None:
        """``augment`` as the trainer applies it; None when it does nothing."""
        from .data.augment import SHIFT, Augmentation

        if isinstance(self.augment, bool):
            return Augmentation(shift=SHIFT) if self.augment else None
        found = Augmentation(**self.augment.model_dump())
        return found if found != Augmentation() else None


class TrainConfig(Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    warmup_epochs: float = Field(1.0, ge=0)
    early_stopping_patience: int | None = Field(None, ge=1, description="epochs without val improvement")


class ModelSpec(Section):
    model: str = Field(..., description="zoo:NAME | python:module:Class | torchscript:PATH | export:PATH | onnx:PATH")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    weights: str | None = Field(None, description=".safetensors or a weights-only .pt/.pth")
    init_from: Literal["teacher"] | None = Field(None, description="student only: start from the teacher's weights "
                                                 "where shapes allow (a bert student from a bert/hf: teacher: every "
                                                 "k-th layer, as DistilBERT)")
    vocabulary: Literal["all", "train"] = Field("all", description="student only, text: 'train' keeps only the "
                                                "token embeddings the training split uses (every other token reads "
                                                "the unknown token's row); the vocabulary table is most of a small "
                                                "text student's size. The tokenizer stays the teacher's")


class TeacherConfig(Section):
    members: list[ModelSpec] = Field(default_factory=lambda: [ModelSpec(model="zoo:resnet")])
    ensemble: Literal["mean", "weighted"] = "mean"
    ensemble_weights: list[float] | None = None
    train: TrainConfig = TrainConfig(epochs=6, lr=3e-3)
    augment: bool | None = Field(None, description="random shifts while training the teacher (default: on for "
                                 "images; text has no augmentation)")
    calibrate_temperature: bool = False
    finetune: Literal["all", "head", "none"] = Field("all", description="hf: teachers: fine-tune every weight (all), "
                                                     "train only the classification head on the frozen encoder "
                                                     "(head), or use the checkpoint as it is (none)")

    @model_validator(mode="before")
    @classmethod
    def _single_member(cls, value: Any) -> Any:
        # A single teacher may be written inline: {model: ..., weights: ...}.
        if isinstance(value, dict) and "model" in value:
            inline = {k: value[k] for k in ("model", "kwargs", "weights") if k in value}
            rest = {k: v for k, v in value.items() if k not in inline}
            value = {**rest, "members": [inline]}
        return value

    @model_validator(mode="after")
    def _weights_match(self) -> "TeacherConfig":
        if self.ensemble == "weighted":
            if not self.ensemble_weights or len(self.ensemble_weights) != len(self.members):
                raise ValueError(
                    f"ensemble_weights must give one weight per member ({len(self.members)}) when ensemble is 'weighted'"
                )
        return self


class FeaturePairConfig(Section):
    student: str
    teacher: str


class LossSpec(TypedDict):
    """One term of a loss list: a registered loss, its weight and its constructor's arguments as further keys.

    A mapping (not a model) so a spec is passed on as the user wrote it; names and arguments are checked
    against the ``LOSSES`` registry before any stage runs (``edgekd.preflight``).
    """

    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]  # the loss's own arguments
    name: str
    weight: NotRequired[Annotated[float, Field(ge=0)]]


class DistillConfig(Section):
    losses: list[LossSpec] = Field(
        default_factory=lambda: [{"name": "ce", "weight": 0.1}, {"name": "kd", "weight": 0.9, "temperature": 4.0}]
    )
    features: list[FeaturePairConfig] = Field(default_factory=list)
    layer_map: Literal["uniform"] | list[int] | None = Field(None, description="BERT-style encoders: pair student and "
                                                             "teacher layers for feature losses (tinybert, "
                                                             "distilbert_cosine): uniform (TinyBERT's g(m) = k*m) or "
                                                             "the teacher layer (0-based) for each student layer")
    train: TrainConfig = TrainConfig(epochs=12, lr=5e-3)
    cache_teacher: bool = True
    teacher_views: int = Field(0, ge=0, le=64, description="with data.augment on: cache the teacher's outputs on this "
                               "many fixed augmented views of each training sample, and show each sample one of them "
                               "per epoch (consistent teaching at the cache's speed; shifts, mixup with a fixed partner per view, and "
                               "token dropout; not cutmix). "
                               "0: the teacher runs live on every augmented batch")


class PruneConfig(Section):
    enabled: bool = True
    importance: Literal["l1", "l2", "bn_scale", "taylor"] = "l2"
    global_pruning: bool = False
    ratio: float | None = Field(None, gt=0, lt=1, description="fraction removed from each prunable layer: its output "
                                "channels; in a transformer, its attention heads (whole) and FFN channels (the hidden "
                                "size is kept)")
    target_macs: int | None = Field(None, ge=1, description="prune until MACs are at most this")
    target_params: int | None = Field(None, ge=1, description="prune until parameters are at most this")
    steps: int = Field(2, ge=1, description="iterative steps, each followed by recovery")
    round_to: int | None = Field(None, ge=1, description="keep channel counts multiples of this (8 or 16 suit SIMD); "
                                 "in a transformer, FFN channels (heads go whole)")
    ignore: list[str] = Field(default_factory=list, description="layers left alone, besides the output layers (found "
                              "on the model's graph and never pruned)")
    recovery: TrainConfig = TrainConfig(epochs=4, lr=5e-3, warmup_epochs=0.5)

    @model_validator(mode="after")
    def _one_target(self) -> "PruneConfig":
        given = [k for k in ("ratio", "target_macs", "target_params") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of ratio, target_macs, target_params, not {' and '.join(given)}")
        if self.importance == "taylor" and given and given[0] != "ratio":
            raise ValueError("importance 'taylor' needs gradients, which the search for a MACs/params target cannot "
                             "compute; give a ratio, or use l1, l2 or bn_scale")
        return self

    @property
    def effective_ratio(self) -> float | None:
        if self.ratio is None and self.target_macs is None and self.target_params is None:
            return 0.3
        return self.ratio


class QuantizeConfig(Section):
    mode: Literal["qad", "ptq", "none"] = "qad"
    scheme: Literal["auto", "full", "transformer"] = Field(
        "auto", description="full: conv/linear outputs and residual adds in INT8 (a full-integer CNN); transformer: the "
        "inputs and weights of linear layers in INT8, residual adds, LayerNorm, softmax and GELU float; auto: "
        "transformer when the model has LayerNorm")
    calibration: str | None = Field(None, description="a calibration manifest (calibration/...); default: drawn here")
    calibration_size: int = Field(256, ge=1)
    freeze_observers_after: int = Field(100, ge=0, description="optimizer steps of QAD before scales are frozen")
    freeze_batch_norm_after: int = Field(150, ge=0, description="optimizer steps of QAD before BN statistics are frozen")
    fp32_student_as_teacher: bool = Field(False, description="add the FP32 student as a second teacher")
    losses: list[LossSpec] | None = Field(None, description="default: the distill losses without feature terms")
    train: TrainConfig = TrainConfig(epochs=3, lr=5e-4, warmup_epochs=0)


class ExportConfig(Section):
    opset: int = Field(18, ge=13, le=23)
    dynamic_batch: bool = False
    simplify: bool = True
    parity_samples: int = Field(256, ge=1, description="held-out test inputs compared against PyTorch")
    fp32_atol: float = Field(1e-4, gt=0)
    int8_atol_steps: float = Field(3.0, gt=0, description="INT8 tolerance in output quantization steps")
    int8_min_sqnr_db: float = Field(40.0, description="INT8 models of the transformer scheme (float logits): minimum SQNR "
                                    "in dB of ONNX Runtime against PyTorch")
    min_top1_agreement: float = Field(0.98, gt=0, le=1, description="near-tied logits may flip under INT8 rounding")


class SqnrFloors(Section):
    """``compile.min_sqnr_db``: a minimum SQNR in dB per precision, on top of its own bound."""

    fp32: float | None = Field(None, description="FP32 artifacts vs the PyTorch student")
    fp16: float | None = Field(None, description="FP16 artifacts vs the PyTorch student")
    int8: float | None = Field(None, description="INT8 artifacts vs the QDQ ONNX model (for the transformer scheme it "
                               "replaces int8_min_sqnr_db)")


class CompileConfig(Section):
    parity_samples: int = Field(256, ge=1, description="held-out test inputs compared against the reference")
    accuracy_samples: int | None = Field(None, ge=1, description="test inputs each artifact is scored on here "
                                         "(default: the whole test split; the profile stage scores again on its device)")
    fp32_atol: float = Field(1e-3, gt=0, description="FP32 artifacts vs the PyTorch student")
    fp16_atol: float = Field(5e-2, gt=0, description="FP16 artifacts vs the PyTorch student")
    int8_atol_steps: float | None = Field(None, gt=0, description="INT8 artifacts vs the QDQ ONNX model, in output "
                                          "steps; default: export.int8_atol_steps")
    int8_min_sqnr_db: float = Field(25.0, description="INT8 artifacts of the transformer scheme vs the QDQ ONNX model: "
                                    "minimum SQNR in dB (their float sections turn one rounding flip into several "
                                    "output steps, so a step bound does not fit them)")
    min_sqnr_db: SqnrFloors = Field(default_factory=SqnrFloors, description="per precision, a minimum SQNR in dB of "
                                    "the artifact's outputs against its reference, beside the bound above (e.g. "
                                    "{int8: 30}: 10 log10 of signal over quantization noise power, as torchao's "
                                    "compute_error); default: none")
    min_top1_agreement: float = Field(0.98, gt=0, le=1)
    int8_max_accuracy_drop: float | None = Field(
        None, ge=0, lt=1, description="accuracy-aware mixed precision: where an INT8 artifact's validation accuracy, "
        "in its own runtime, is more than this below the FP32 student's (0.01 = one point), return its most "
        "sensitive layers to float, fewest first, until it is not (ONNX Runtime, OpenVINO, TensorRT); the all-INT8 "
        "artifact is profiled beside it for the latency cost. Default: off")


# The profile defaults live with the device-side benchmark (edgekd.ondevice.settings), which runs where
# this module is not installed; these sections take them from there.
class EnergyConfig(Section):
    meter: str = Field(ENERGY.meter, description="auto | none | rapl | nvml | jetson-ina3221 | android-battery | powermetrics")
    windows: int = Field(ENERGY.windows, ge=1, description="energy windows; the median joules per inference is reported")
    window_s: float = Field(ENERGY.window_s, gt=0, description="seconds per window (MLPerf Tiny uses >= 10 s)")
    min_duration_s: float = Field(ENERGY.min_duration_s, ge=0, description="lengthen the windows so that together "
                                  "they last at least this long (MLPerf Power runs >= 600 s); the report states the "
                                  "duration measured")


class ProfileConfig(Section):
    # keys that were renamed: old -> (new, why); an old key is an error naming its replacement (edgekd.yamlfile)
    renamed_keys: ClassVar[dict[str, tuple[str, str]]] = {
        "cov_threshold": ("stability_threshold", "stability is judged on the spread of the median across blocks of "
                          "the timed runs (p50_spread), no longer on the per-sample std/mean"),
    }
    warmup_s: float = Field(LATENCY.warmup_s, ge=0, description="warm up for at least this long: CPUs take over a second to boost")
    warmup_runs: int = Field(LATENCY.warmup_runs, ge=0)
    runs: int = Field(LATENCY.runs, ge=10, description="timed batch-1 runs, at least")
    min_seconds: float = Field(LATENCY.min_seconds, ge=0, description="... and for at least this long")
    max_seconds: float = Field(LATENCY.max_seconds, gt=0)
    stability_threshold: float = Field(LATENCY.stability_threshold, gt=0,
                                       description="p50_spread (the spread of the medians of 5 consecutive blocks of the "
                                       "timed runs, over the median) above this repeats the measurement, then flags it "
                                       "unstable")
    repeats: int = Field(LATENCY.max_repeats, ge=1)
    samples: int | None = Field(None, ge=1, description="test inputs scored on the device (default: the whole test split)")
    sequence_length: int | None = Field(None, ge=1, description="text: inputs padded to this many tokens, batch 1, "
                                        "when compiling fixed-shape artifacts and profiling (default: data.max_length)")
    energy: EnergyConfig = EnergyConfig()
    native_tool: bool = Field(True, description="also time each artifact on this machine with its runtime's own "
                              "tool where installed (benchmark_app, benchmark_model, trtexec), after edgekd's "
                              "benchmark; kept beside edgekd's figure (latency_ms.native) with their ratio")
    timeout_s: float = Field(900.0, gt=0, description="per artifact and device")
    retries: int = Field(1, ge=0, description="attempts after a device failure (not after a measured failure)")
    devices: list[str] | None = Field(None, description="profile only these targets' devices (default: every target)")


class GateConfig(Section):
    budgets: str | None = Field(None, description="budgets YAML (see examples/budgets.yaml); no gate without one")


class PipelineConfig(Section):
    name: str = "edgekd"
    seed: int = 0
    data: DataConfig = DataConfig()
    teacher: TeacherConfig = TeacherConfig()
    student: ModelSpec = ModelSpec(model="zoo:tiny_cnn")
    distill: DistillConfig = DistillConfig()
    prune: PruneConfig = PruneConfig()
    quantize: QuantizeConfig = QuantizeConfig()
    export: ExportConfig = ExportConfig()
    targets: list[str] = Field(default_factory=lambda: ["host-cpu"], description="target names or YAML paths")
    compile: CompileConfig = CompileConfig()
    profile: ProfileConfig = ProfileConfig()
    gate: GateConfig = GateConfig()
    # Where relative paths in the config are resolved (the YAML file's folder).
    base_dir: Path = Field(Path("."), exclude=True)

    def section(self, name: str) -> dict[str, Any]:
        """The JSON form of one section, used in stage cache keys."""
        return getattr(self, name).model_dump(mode="json")


def parse_config(data: dict[str, Any] | None, *, origin: str = "<dict>", base_dir: Path = Path(".")) -> PipelineConfig:
    return validate(PipelineConfig, data, what="config", origin=origin, extra={"base_dir": base_dir})


def load_config(path: str | Path) -> PipelineConfig:
    path = Path(path)
    return parse_config(read_yaml(path, what="config file"), origin=str(path), base_dir=path.resolve().parent)
