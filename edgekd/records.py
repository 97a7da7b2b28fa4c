"""Typed records that flow forward from stage to stage, saved as JSON in ``<run>/<stage>/stage.json``.

Each stage returns one of these pydantic models and downstream stages read its
fields, never string keys. The report schema (``edgekd report-schema``) is made
of the same models, so every field is declared once, here. A record that no
longer matches its model (a run folder from an older edgekd) is not loaded:
the pipeline re-runs that stage and says why.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Record(BaseModel):
    # NaN is a real value here (the accuracy of a class absent from the split): keep it through JSON.
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Measured(Record):
    """A block measured on a device: a device's own tool may add fields of its own, kept as they are."""

    model_config = ConfigDict(extra="allow", ser_json_inf_nan="constants")


# -- models and their figures ------------------------------------------------------------------------------


class ModelRef(Record):
    """How to rebuild a model: its spec plus the weights file (relative to the run dir, or as configured)."""

    model: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    weights: str | None = None
    weights_in_run: bool = False  # True when ``weights`` is relative to the run directory
    sha256: str = ""  # hash of the parameters and buffers
    format: Literal["state_dict", "pruned"] = "state_dict"  # pruned: Torch-Pruning state with the pruned structure


class ImagePreprocess(Record):
    """How a raw image becomes the input: ``x = (pixels / 255 - mean) / std`` per channel, NCHW."""

    kind: Literal["image"] = "image"
    layout: Literal["NCHW"] = "NCHW"
    mean: list[float]
    std: list[float]


class TokenizerPreprocess(Record):
    """How a raw text becomes the input: the tokenizer's ids, cut to ``max_length`` and right-padded with
    ``pad_id`` (the model masks the padding itself, so a device feeds the ids alone)."""

    kind: Literal["tokenize"] = "tokenize"
    tokenizer: str  # the tokenizer folder
    sha256: str  # of its tokenizer file: the ids mean nothing with another vocabulary
    max_length: int
    pad_id: int
    vocab_size: int
    truncated: int = 0  # texts longer than max_length in the data, cut


class InputSpec(Record):
    """One named model input: dtype, shape (a string names a dynamic axis, e.g. ``batch`` or ``sequence``),
    the largest size of each dynamic axis, and how it is made from a raw example."""

    name: str
    dtype: Literal["float32", "int64"]
    shape: list[int | str]
    max_sizes: dict[str, int] = Field(default_factory=dict)
    preprocess: Annotated[ImagePreprocess | TokenizerPreprocess, Field(discriminator="kind")]

    @property
    def is_text(self) -> bool:
        return self.preprocess.kind == "tokenize"

    def fixed_shape(self, **sizes: int) -> list[int]:
        """The shape with each dynamic axis set: ``sizes`` by name, else batch 1 and the axis's maximum."""
        return [d if isinstance(d, int) else sizes.get(d, 1 if d == "batch" else self.max_sizes.get(d, 1))
                for d in self.shape]


class Figures(Record):
    """A model's figures on the test split."""

    accuracy: float
    per_class_accuracy: list[float]
    ece: float | None = None
    params: int | None = None
    macs: int | None = None
    size_bytes: int | None = None
    embedding_params: int | None = None  # of ``params``, in embedding tables (text models' vocabulary)
    macs_note: str | None = None  # how MACs were counted when not by Torch-Pruning's hooks (e.g. at which sequence length)

    def size_line(self) -> str:
        """``params / MACs`` as the run prints it, with the embedding share and the sequence length for text."""
        params = f"{self.params:,}"
        if self.embedding_params:
            params += f" ({self.params - self.embedding_params:,} without the embedding table)"
        macs = f"{self.macs:,}"
        if self.macs_note and "at sequence" in self.macs_note:
            macs += " at sequence " + self.macs_note.rsplit("at sequence ", 1)[1]
        return f"{params} / {macs}"


class TrainSummary(Record):
    """What one training run did (``edgekd.train.Trainer.fit``)."""

    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    stopped_early: bool
    resumed_from_epoch: int
    history: list[dict[str, Any]] = Field(default_factory=list)
    final_train_loss: float
    member: int | None = None  # teacher ensembles: which member was trained


class TeacherCache(Record):
    used: bool = False
    hit: bool | None = None
    path: str | None = None
    reason: str | None = None
    views: int | None = None  # fixed augmented views cached per sample (distill.teacher_views)


class TeacherRecord(Record):
    members: list[ModelRef]
    ensemble_weights: list[float]
    temperature: float
    figures: Figures  # of the (ensembled) teacher on the test split
    val_accuracy: float
    ece_before_calibration: float
    trained: list[TrainSummary] = Field(default_factory=list)  # members trained here


class PruneStep(Record):
    step: int
    macs: int
    params: int
    val_accuracy: float


class ModelSize(Record):
    macs: int
    params: int
    size_bytes: int | None = None
    accuracy: float | None = None


class Compression(Record):
    """What pruning did; ``pruned`` is false when the stage was off."""

    pruned: bool = False
    ratio: float | None = None
    importance: str | None = None
    steps: list[PruneStep] = Field(default_factory=list)
    before: ModelSize | None = None
    after: ModelSize | None = None
    macs_reduction: float | None = None


class StudentRecord(Record):
    """The FP32 student (distill stage; the prune stage returns the same form, pruned or not)."""

    model: ModelRef
    figures: Figures
    val_accuracy: float
    train: TrainSummary | None
    class_names: list[str]
    inputs: list[InputSpec]
    data: dict[str, Any]  # data provenance (edgekd.data.DataBundle.provenance)
    teacher_cache: TeacherCache = Field(default_factory=TeacherCache)
    compression: Compression = Field(default_factory=Compression)
    initialised: str | None = None  # what the student took from the teacher (student.init_from)
    vocabulary: str | None = None  # how the word table was trimmed (student.vocabulary: train), in words


class QuantizedRecord(Record):
    mode: Literal["qad", "ptq", "none"]
    student: ModelRef  # the FP32 student that was prepared
    observer: str = ""  # the observer family used to prepare the graph
    scheme: str = "full"  # which layers are INT8: full | transformer (edgekd.quantize.quantizer); older runs were full
    state: str | None = None  # learned weights and quantization parameters (safetensors), relative to the run
    calibration: str | None = None  # manifest of the calibration set, relative to the run
    figures: Figures | None = None  # fake-quantized accuracy on the test split
    train: TrainSummary | None = None
    fp32_accuracy: float


# -- checks and measurements (also the report's) ---------------------------------------------------------------


class Parity(Record):
    """A candidate's outputs against a reference on held-out inputs (``edgekd.parity.compare``)."""

    max_abs_diff: float
    top1_agreement: float
    ok: bool
    samples: int | None = None
    atol: float | None = None
    min_top1_agreement: float | None = None
    mean_abs_diff: float | None = None
    max_diff_steps: float | None = None  # INT8: max |diff| in output quantization steps (compared with atol / step)
    step: float | None = None  # INT8: the output quantizer's step
    sqnr_db: float | None = None  # 20 log10(|reference| / |difference|); None when the outputs are identical
    min_sqnr_db: float | None = None  # the SQNR floor: alone (INT8 with float sections) or beside a bound (compile.min_sqnr_db)

    def sqnr_text(self, unit: bool = True) -> str:
        """The SQNR as shown in tables; a record from before SQNR was kept has none, which is not identity."""
        if self.sqnr_db is not None:
            return f"SQNR {self.sqnr_db:.1f} dB" if unit else f"{self.sqnr_db:.1f}"
        return ("identical outputs" if unit else "identical") if self.max_abs_diff == 0 else ("SQNR —" if unit else "—")

    def describe(self) -> str:
        sqnr = self.sqnr_text()
        floor = f" (required {self.min_sqnr_db:g} dB)" if self.min_sqnr_db is not None else ""
        if self.min_sqnr_db is not None and self.atol is None:  # SQNR alone decides (the transformer scheme)
            steps = f" = {self.max_diff_steps:.3g} output steps" if self.max_diff_steps is not None else ""
            diff = f"{sqnr} (required {self.min_sqnr_db:g} dB), max |diff| {self.max_abs_diff:.3g}{steps}"
        elif self.step is not None and self.max_diff_steps is not None:
            # enough digits to tell 3.0000014 steps from 4
            diff = (f"max |diff| {self.max_abs_diff:.3g} = {self.max_diff_steps:.8g} output steps of {self.step:.3g} "
                    f"(limit {self.atol / self.step:.6g}), {sqnr}{floor}")
        else:
            diff = f"max |diff| {self.max_abs_diff:.3g} (tolerance {self.atol:.3g})" + (f", {sqnr}{floor}" if floor else "")
        return (
            f"{diff}, top-1 agreement {self.top1_agreement:.2%} (required {self.min_top1_agreement:.2%}) "
            f"on {self.samples} inputs"
        )


class Histogram(Record):
    edges_ms: list[float]  # len(counts) + 1 bin edges
    counts: list[int]


class NativeLatency(Record):
    """The runtime's own tool on the same artifact, in the same profile (``edgekd.runners.native``)."""

    tool: str
    status: Literal["ok", "failed", "not run here"]
    reason: str = ""
    p50: float | None = None
    mean: float | None = None
    runs: int | None = None
    p50_ratio: float | None = Field(None, description="edgekd's p50 over the tool's: above 1 where edgekd times "
                                    "the Python call into the runtime (a C++ application does not pay it); near 1 "
                                    "where it reads the runtime's own clock (latency_ms.clock)")
    command: str = ""


class LatencyStats(Measured):
    """Single-stream, batch 1, steady state after the warm-up (see ``edgekd.ondevice.latency``).

    edgekd's own benchmark fills every field. A device's own tool (LiteRT
    ``benchmark_model``, ``trtexec``, ``benchmark_app``) prints only some: the rest
    are null, never interpolated, ``unknown`` lists them and ``measured_by`` names the tool.
    """

    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    cov: float | None = Field(None, description="per-sample coefficient of variation, std / mean: context only (OS "
                              "jitter and timer granularity dominate single runs of a fast model; stability is judged "
                              "on p50_spread)")
    p50_spread: float | None = Field(None, description="(max - min) of the medians of 5 consecutive blocks of the timed "
                                     "runs, over the median of all runs: what stability is judged on; null when the "
                                     "tool gave no per-run times or there were fewer than 50 runs")
    tail_spread: dict[str, float | None] | None = Field(
        None, description="the same spread for p90, p95 and p99 (each block's percentile); null where a block has fewer "
        "than 10 runs above it: context beside the gate's tail checks, judged only with max_percentile_spread")
    runs: int | None = None
    warmup_runs: int | None = None
    warmup_seconds: float | None = None
    load_ms: float | None = Field(None, description="loading/compiling the artifact in its runtime, apart from the steady state")
    first_inference_ms: float | None = None
    harness_overhead_ms: float | None = Field(None, description="median time the timing loop records around a call "
                                              "that does nothing: the part of each figure timed around the Python "
                                              "call that is the harness, not the runtime; none of it is in a runtime "
                                              "clock's figures (edgekd's benchmark only)")
    clock: str | None = Field(None, description="what timed each run: a clock around the Python call, or the "
                              "runtime's own clock around the inference where its API keeps one (OpenVINO: "
                              "InferRequest.latency), which is what a C++ application pays (edgekd's benchmark only)")
    python_call_p50: float | None = Field(None, description="median of the same runs timed around the Python call; "
                                          "above p50 by what calling from Python adds when the runtime's clock is used")
    stable: bool | None = Field(None, description="false when p50_spread stayed above stability_threshold after the "
                                "repeats (a device's own tool: see its parser); null when unknown")
    repeats: int = Field(1, description="measurements taken; more than 1 when the first was unstable")
    stability_threshold: float | None = Field(None, description="the largest p50_spread judged stable "
                                              "(profile.stability_threshold)")
    measured_by: str = Field("edgekd.ondevice.bench", description="the benchmark that took these numbers")
    unknown: list[str] = Field(default_factory=list, description="statistics the measuring tool did not print")
    histogram: Histogram | None = None
    native: NativeLatency | None = Field(None, description="the runtime's own tool beside this figure (this machine)")


EnergyStatus = Literal["measured", "estimated", "refused", "unavailable"]


class Energy(Measured):
    """Energy per inference and how it was taken (MLCommons' power work names the same fields).

    ``status``: measured (a meter's reading that passed every check); estimated (a power model's
    figure, named in ``meter``; ``reason`` says why no meter was read); refused (a meter was read
    but the reading cannot be right: a counter that did not advance, a negative delta, a window
    shorter than the meter updates, a charger powering the device; no figures, ``reason`` says
    which); unavailable (no meter here and no power model; ``reason`` says why).
    """

    status: EnergyStatus | None = Field(None, description="measured, estimated, refused or unavailable (read from "
                                        "`source` in reports older than 2.1)")
    reason: str = Field("", description="why energy is not measured, in one line: each meter's reason")
    mj_per_inference: float | None = Field(None, description="gross: everything inside the boundary during the windows")
    avg_power_w: float | None = Field(None, description="during the energy windows: the benchmark loop at full load")
    inferences_per_joule: float | None = None
    source: Literal["measured", "estimated"] | None = Field(None, description="what the figures are; null without figures")
    meter: str = Field("", description="the meter read (rapl, nvml, ...) or, for an estimate, the power model and its parameters")
    measurement_method: str | None = Field(None, description="power-analyzer, ina3221-rail, odpm-rail, battery-fuel-gauge, "
                                           "rapl-package, nvml-board, soc-power-model or model-estimate")
    boundary: str = Field("", description="what the number covers: cpu-package, gpu-board, module-input-rail, battery, wall, estimate")
    sampling_interval_s: float | None = Field(None, description="how often the meter's figure changes or is sampled")
    window_s: float | None = Field(None, description="seconds per energy window, as run (after min_duration_s)")
    window_count: int | None = None
    duration_s: float | None = Field(None, description="total seconds of the windows, idle not counted")
    inferences: int | float | None = Field(None, description="inferences the windows cover")
    idle_power_w: float | None = Field(None, description="measured just before the windows with the model loaded; for "
                                       "an estimate, the power model's idle power")
    idle_s: float | None = None
    idle_subtracted: bool = Field(False, description="false: mj_per_inference is gross (as MLPerf reports); "
                                  "net_mj_per_inference subtracts idle_power_w")
    net_mj_per_inference: float | None = Field(None, description="energy above idle per inference")
    windows: list[dict[str, Any]] = Field(default_factory=list)
    meters_unavailable: dict[str, str] = Field(default_factory=dict, description="why each meter was not read, or its "
                                               "reading refused ('refused: ...')")

    @model_validator(mode="before")
    @classmethod
    def _status_from_source(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("status") is None and data.get("source") is not None:
            data = {**data, "status": data["source"]}
        return data

    @property
    def has_figures(self) -> bool:
        return self.mj_per_inference is not None


class HostInfo(Measured):
    runner: str = Field("local", description="local, ssh:user@host, adb:SERIAL")
    cpu: str = ""
    cores: int | None = None
    frequency_mhz: float | None = None
    threads: int | None = None
    affinity: list[int] | None = None
    machine: str = ""
    runtime: str = ""


# -- artifacts -----------------------------------------------------------------------------------------------

ArtifactStatus = Literal["ok", "failed", "not run here"]


class OnnxArtifact(Record):
    """A verified ONNX file of the export stage."""

    path: str  # relative to the run
    sha256: str
    size_bytes: int
    parity: Parity
    accuracy: float
    per_class_accuracy: list[float]
    output_scale: float | None = None  # INT8: the output quantizer's step
    shapes_checked: list[list[int]] = Field(default_factory=list)  # input shapes checked against PyTorch (dynamic axes)


class ExportRecord(Record):
    opset: int
    dynamic_batch: bool
    artifacts: dict[str, OnnxArtifact]  # by precision: fp32, int8


class ArtifactKey(Record):
    target: str
    backend: str
    precision: str

    @property
    def id(self) -> str:
        return f"{self.target}/{self.backend}/{self.precision}"


class LayerSensitivity(Record):
    layer: str  # the ONNX node
    module: str | None = None  # the PyTorch module it came from, where known
    sqnr_db: float | None  # logits with this layer alone in INT8 vs the FP32 student; None: identical
    accuracy: float  # validation accuracy with this layer alone in INT8


class FloatLayerStep(Record):
    layers: list[str]  # returned to float, most sensitive first
    accuracy: float  # validation accuracy with them in float


class FloatLayers(Record):
    """Accuracy-aware mixed precision of one INT8 artifact (compile.int8_max_accuracy_drop; edgekd.mixed_precision)."""

    status: Literal["not needed", "met", "not met", "not supported", "failed"] = "not supported"
    reason: str = ""
    max_accuracy_drop: float
    reference_accuracy: float | None = None  # the FP32 student, validation split
    int8_accuracy: float | None = None  # every layer INT8, in this artifact's runtime, validation split
    accuracy: float | None = None  # with ``layers`` in float
    layers: list[str] = Field(default_factory=list)  # kept in float (ONNX nodes; PT2E graph nodes for LiteRT, ExecuTorch), most sensitive first
    modules: list[str | None] = Field(default_factory=list)  # their PyTorch modules, where known
    # per layer in float: fp32 (the student's), int8 grid, or pre-rounding (PT2E: the value its INT8 weight was rounded from)
    weights: dict[str, str] = Field(default_factory=dict)
    quantized_layers: int = 0  # INT8 layers the model has
    validation_samples: int = 0
    sensitivity: list[LayerSensitivity] = Field(default_factory=list)
    steps: list[FloatLayerStep] = Field(default_factory=list)
    full_int8: str | None = None  # the all-INT8 artifact, relative to the run: profiled beside this one for the cost
    # per layer, int8 where the runtime runs it as an integer kernel, float where not, from the runtime's own graph
    # (ONNX Runtime's optimized model, OpenVINO's compiled one); layers it does not name are left out
    runtime: dict[str, str] = Field(default_factory=dict)  # this artifact
    all_int8_runtime: dict[str, str] = Field(default_factory=dict)  # the all-INT8 one

    def runtime_int8(self, which: str = "runtime") -> str:
        """``k of n`` layers the runtime runs as integer kernels, or ``unknown``."""
        found = getattr(self, which)
        return f"{sum(v == 'int8' for v in found.values())} of {len(found)}" if found else "unknown"

    def ranked(self) -> list[LayerSensitivity]:
        """The layers most sensitive first: lowest SQNR with the layer alone INT8; identical outputs last."""
        return sorted(self.sensitivity, key=lambda s: float("inf") if s.sqnr_db is None else s.sqnr_db)

    def names(self) -> list[str]:
        """The layers in float by PyTorch module where known, else by ONNX node (records before modules existed)."""
        modules = self.modules if len(self.modules) == len(self.layers) else [None] * len(self.layers)
        return [module or layer for layer, module in zip(self.layers, modules)]


class CompiledArtifact(ArtifactKey):
    """One compile row: built, checked in its own runtime, or why not."""

    status: ArtifactStatus = "failed"
    reason: str = ""
    path: str | None = None  # relative to the run
    size_bytes: int | None = None
    sha256: str | None = None
    compile_seconds: float | None = None
    toolchain: str = ""
    accuracy: float | None = None
    per_class_accuracy: list[float] | None = None
    parity: Parity | None = None
    inspect: dict[str, Any] = Field(default_factory=dict)
    operators: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    float_layers: FloatLayers | None = None  # INT8 only, with compile.int8_max_accuracy_drop


class CompileRecord(Record):
    artifacts: list[CompiledArtifact]

    def counts(self) -> dict[str, int]:
        return {s: sum(a.status == s for a in self.artifacts) for s in ("ok", "failed", "not run here")}


ProfileStatus = Literal["ok", "failed", "not run here", "unreachable"]


class ProfiledArtifact(ArtifactKey):
    """One artifact's profile on its device."""

    runner: str | None = None
    status: ProfileStatus
    reason: str = ""
    latency_ms: LatencyStats | None = None
    accuracy: float | None = None
    per_class_accuracy: list[float] | None = None
    accuracy_source: str | None = None
    samples: int | None = None
    energy: Energy | None = None
    peak_memory_mb: float | None = None
    baseline_memory_mb: float | None = None
    cpu_utilization: float | None = None
    accuracy_per_watt: float | None = None  # at full load: over the power during the energy windows
    accuracy_per_joule: float | None = None  # accuracy x inferences per joule
    host: HostInfo | None = None
    measured_by: str | None = None
    logits_sha256: str | None = None
    float_layers_cost: FloatLayersCost | None = None  # INT8 artifacts with layers returned to float


class FloatLayersCost(Record):
    """What an artifact's float layers cost: the all-INT8 artifact profiled beside it, same device and settings."""

    layers: list[str]  # returned to float: their PyTorch modules (ONNX node names where unknown)
    all_int8_status: str  # the all-INT8 artifact's profile status
    all_int8_reason: str = ""
    all_int8_accuracy: float | None = None
    all_int8_latency_ms: LatencyStats | None = None
    p50_added_ms: float | None = None  # this artifact's p50 minus the all-INT8 one's
    p95_added_ms: float | None = None


class ProfileRecord(Record):
    artifacts: list[ProfiledArtifact]
    test_samples: int
    sequence_length: int | None = None  # text: every input padded to this many tokens (batch 1)

    def counts(self) -> dict[str, int]:
        return {s: sum(a.status == s for a in self.artifacts) for s in ("ok", "failed", "not run here", "unreachable")}


# -- the gate ------------------------------------------------------------------------------------------------


class GateCheck(Record):
    """One budget applied to one artifact."""

    target: str
    artifact: str
    budget: str  # e.g. min_accuracy, max_latency_ms.p95
    limit: float | bool | str
    measured: float | bool | str | None
    passed: bool
    message: str
    skipped: bool = Field(False, description="not evaluated: the artifact was not run here and the budgets allow that")


class GateSummary(Record):
    passed: bool
    checks: int
    failures: int
    budgets_file: str


class GateRecord(Record):
    applied: bool
    per_artifact: dict[str, list[GateCheck]] = Field(default_factory=dict)
    summary: GateSummary | None = None
