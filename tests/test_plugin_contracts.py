"""Contracts generated from the registries: every backend, power model and energy meter that registers
is tested here the day it is added, and nothing here lists them.

Backends build artifacts from the sources the compile stage gives them (the FP32 ONNX, the QDQ ONNX,
the PyTorch student and its converted PT2E graph) for two tiny students, one per modality: a CNN on
float32 NCHW images and a one-layer BERT encoder on int64 token ids (right-padded, the padding masked
inside the model, fixed-shape artifacts built at ``TEXT_LENGTH``). Each artifact is loaded in its own
runtime and must match the reference as the compile stage requires; a backend whose runtime is missing
here skips with its own reason. ``numpy-onnx-ref``, defined below and nowhere else, shows that a
backend registered from any module goes through the compile stage.

``tiny()`` and ``built()`` are cached per process and modality: test_backends_mobile.py reuses the
image ones, so the (slow, ~25 s) PT2E conversion and every artifact are made once.
"""

from __future__ import annotations

import ast
import atexit
import copy
import functools
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

import edgekd
from edgekd import onnx_export
from edgekd.backends import BACKENDS, DEVICE_TOOLS, Backend, CompileSources, Model, NotRunnable
from edgekd.config import CompileConfig, ExportConfig
from edgekd.errors import ConfigError, ModelError
from edgekd.ondevice.backend_info import BACKEND_INFO, BACKENDS_PACKAGE
from edgekd.ondevice.meters import METERS, MeterUnavailable
from edgekd.ondevice.meters.base import METHODS
from edgekd.ondevice.registry import Registry, discover
from edgekd.ondevice.runtimes import RUNTIMES
from edgekd.parity import compare
from edgekd.power_models import POWER_MODELS, estimate
from edgekd.inputs import image_spec
from edgekd.records import InputSpec, TokenizerPreprocess

INPUT_SHAPE = (1, 28, 28)
TEXT_LENGTH = 16  # the text student's max_length, and the length its fixed-shape artifacts are built at
MODALITIES = ("image", "text")
ROOT = Path(__file__).resolve().parents[1]
SYSFS = Path(__file__).parent / "fixtures" / "sysfs"


# ---------------------------------------------------------------- a backend registered from this module


@RUNTIMES.register("numpy-onnx-ref")
class ReferenceOnnxModel(Model):
    """The FP32 ONNX as exported, run by ONNX Runtime with no graph optimization."""

    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.path, self.session = path, ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.runtime = f"onnxruntime {ort.__version__}"

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.session.get_inputs()[0].name: x})[0]

    def operator_report(self) -> dict[str, Any]:
        import onnx

        return {"ops": dict(Counter(n.op_type for n in onnx.load(str(self.path)).graph.node)), "fallback_ops": []}


@BACKENDS.register("numpy-onnx-ref")
class ReferenceOnnxBackend(Backend):
    name = "numpy-onnx-ref"
    precisions = ("fp32",)
    suffix = ".onnx"

    def toolchain_version(self) -> str:
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"

    def build(self, sources: CompileSources, precision: str, out_dir: Path, options: dict[str, Any]) -> Path:
        path = Path(out_dir) / f"model_{precision}.onnx"
        shutil.copyfile(sources.fp32_onnx, path)
        return path


# ---------------------------------------------------------------- the tiny model, its sources and references


@dataclass
class Tiny:
    student: torch.nn.Module
    prepared: Any  # the fake-quant model the INT8 artifacts carry the scales of
    int8_graph: torch.fx.GraphModule  # converted, weights not folded (what litert-torch lowers)
    sources: CompileSources
    inputs: np.ndarray
    references: dict[str, np.ndarray]
    tolerance: dict[str, dict[str, float]]  # compare()'s keyword arguments per precision, as the compile stage
    min_top1_agreement: float
    work: Path


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _image_student() -> tuple[torch.nn.Module, InputSpec, torch.Tensor, torch.Tensor]:
    """A half-width tiny CNN with a random classifier (logits far apart, so argmax is not decided by ties),
    its spec, calibration images and the images parity is checked on."""
    from edgekd.models import create_model

    torch.manual_seed(0)
    student = create_model("tiny_cnn", num_classes=10, in_channels=1, width=0.5)
    torch.nn.init.normal_(student.classifier.weight, std=1.0)
    student.train()
    with torch.no_grad():
        for _ in range(3):
            student(torch.randn(32, *INPUT_SHAPE))
    return (student.eval(), image_spec(INPUT_SHAPE), torch.randn(128, *INPUT_SHAPE, generator=_seeded(1)),
            torch.randn(64, *INPUT_SHAPE, generator=_seeded(2)))


def text_spec() -> InputSpec:
    """int64 ids (batch, sequence) of a 100-token vocabulary, pad id 0; the tokenizer is never read here."""
    return InputSpec(name="input_ids", dtype="int64", shape=["batch", "sequence"], max_sizes={"sequence": TEXT_LENGTH},
                     preprocess=TokenizerPreprocess(tokenizer="test", sha256="0" * 64, max_length=TEXT_LENGTH, pad_id=0,
                                                    vocab_size=100))


def _padded_ids(rows: int, generator: torch.Generator) -> torch.Tensor:
    """Random ids right-padded with 0 to TEXT_LENGTH: lengths 1..TEXT_LENGTH, the first row full."""
    ids = torch.randint(1, 100, (rows, TEXT_LENGTH), generator=generator)
    lengths = torch.randint(1, TEXT_LENGTH + 1, (rows,), generator=generator)
    lengths[0] = TEXT_LENGTH
    return ids.masked_fill(torch.arange(TEXT_LENGTH) >= lengths[:, None], 0)


def _text_student() -> tuple[torch.nn.Module, InputSpec, torch.Tensor, torch.Tensor]:
    """A one-layer BERT encoder (hidden 32) with a random classifier, as the image student, and its ids."""
    from edgekd.models import create_model

    torch.manual_seed(0)
    student = create_model("bert", num_classes=3, vocab_size=100, pad_id=0, max_length=TEXT_LENGTH, layers=1,
                           hidden=32, heads=4, ffn=64)
    torch.nn.init.normal_(student.classifier.weight, std=1.0)
    calibration = _padded_ids(64, _seeded(1))  # padded like the texts it is checked on (real calibration sets are)
    return student.eval(), text_spec(), calibration, _padded_ids(64, _seeded(2))


STUDENTS = {"image": _image_student, "text": _text_student}


def tiny(modality: str = "image") -> Tiny:
    return _tiny(modality)


@functools.lru_cache(maxsize=None)
def _tiny(modality: str) -> Tiny:
    """The modality's student, its FP32 and QDQ ONNX, INT8 graphs, sources and references."""
    from edgekd import quantize

    work = Path(tempfile.mkdtemp(prefix=f"edgekd-contracts-{modality}-"))
    atexit.register(shutil.rmtree, work, True)
    student, spec, calibration, x = STUDENTS[modality]()
    prepared = quantize.prepare(student, spec, observer="minmax")
    prepared.calibrate(calibration)
    prepared.freeze_observers()
    prepared.eval()
    int8_graph = prepared.converted(fold_quantize=False)
    fp32_onnx = onnx_export.export(student, spec, work / "fp32.onnx", opset=18, dynamic_batch=False)
    # The unfolded graph exports to the same QDQ ONNX (float weights behind QuantizeLinear) without a second conversion.
    int8_onnx = onnx_export.export(copy.deepcopy(int8_graph), spec, work / "int8.onnx", opset=18, dynamic_batch=False)
    sources = CompileSources(input=spec, sequence=TEXT_LENGTH if spec.is_text else None, fp32_onnx=fp32_onnx,
                             int8_onnx=int8_onnx, fp32_model=lambda: copy.deepcopy(student),
                             int8_graph=lambda: copy.deepcopy(int8_graph),
                             int8_graph_folded=lambda: prepared.converted(fold_quantize=True),
                             int8_scheme=prepared.scheme, int8_learned_float=lambda: prepared.with_learned_weights(student))
    inputs = x.numpy()
    with torch.no_grad():
        fp32 = student(x).numpy()
    # As the compile stage: FP32 and FP16 against PyTorch, INT8 against the QDQ ONNX in whole output steps.
    cfg = CompileConfig()
    steps = cfg.int8_atol_steps if cfg.int8_atol_steps is not None else ExportConfig().int8_atol_steps  # as int8_limit
    references = {"fp32": fp32, "fp16": fp32, "int8": onnx_export.run_session(onnx_export.session(int8_onnx), inputs)}
    tolerance = {"fp32": dict(atol=cfg.fp32_atol), "fp16": dict(atol=cfg.fp16_atol),
                 "int8": (dict(min_sqnr_db=cfg.int8_min_sqnr_db)
                          if prepared.scheme == "transformer" else dict(step=onnx_export.output_scale(int8_onnx), limit_steps=steps))}
    return Tiny(student, prepared, int8_graph, sources, inputs, references, tolerance, cfg.min_top1_agreement, work)


def built(backend_name: str, precision: str, modality: str = "image") -> Path:
    """The artifact ``backend_name`` builds for ``precision`` from the modality's sources, built once per process
    (a failed build too: its error is raised again rather than rebuilt)."""
    outcome = _built(backend_name, precision, modality)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


@functools.lru_cache(maxsize=None)
def _built(backend_name: str, precision: str, modality: str) -> Path | Exception:
    out = tiny(modality).work / backend_name
    out.mkdir(exist_ok=True)
    try:
        return BACKENDS.get(backend_name)().build(tiny(modality).sources, precision, out, {})
    except Exception as error:
        return error


def built_or_known_failure(name: str, precision: str, modality: str) -> Path:
    """``built``, except the one build failure known and accepted here: executorch 1.4.1's runtime corrupts the
    heap when it unloads an INT8 BERT program (a double free), which the backend's child-process probe turns
    into a ModelError saying so. That case xfails with the message; any other failure fails the test."""
    try:
        return built(name, precision, modality)
    except ModelError as error:
        if (name, precision, modality) == ("executorch", "int8", "text") and "ExecuTorch runtime aborts" in str(error):
            pytest.xfail(str(error))
        raise


def backend_or_skip(name: str) -> Backend:
    backend = BACKENDS.get(name)()
    reason = backend.unavailable()
    if reason:
        pytest.skip(f"{name}: {reason}")
    return backend


# Generated at collection from what registered; the backend folders are found by discovery.
PAIRS = [(name, precision) for name in BACKENDS.names() for precision in BACKENDS.get(name).precisions]


# Product bugs the text student finds, (modality, backend, precision) -> the exact error; strict, so the fix shows.
KNOWN_FAILURES: dict[tuple[str, str, str], str] = {}  # (modality, backend, precision) -> the expected error


@pytest.fixture(params=MODALITIES)
def modality(request) -> str:
    """Every backend contract runs on both students: images (float32 NCHW) and text (int64 ids, padded)."""
    params = getattr(request.node, "callspec", None)
    params = params.params if params else {}
    known = KNOWN_FAILURES.get((request.param, params.get("name"), params.get("precision")))
    if known:  # marked in setup, before pytest reads the test's xfail marks
        request.applymarker(pytest.mark.xfail(strict=True, raises=ModelError, reason=known))
    return request.param


# ---------------------------------------------------------------- backends


@pytest.mark.parametrize("name, precision", PAIRS, ids=[f"{n}-{p}" for n, p in PAIRS])
def test_backend_builds_loads_and_matches_the_reference(name, precision, modality):
    backend = backend_or_skip(name)
    path = built_or_known_failure(name, precision, modality)
    assert path.exists() and path.suffix == backend.suffix
    assert isinstance(backend.inspect(path), dict)
    try:
        model = backend.load(path, {})
    except NotRunnable as why:  # built and inspected here; its runtime is elsewhere (Core ML off macOS)
        pytest.skip(f"{name} {precision}: {why}")
    t = tiny(modality)
    parity = compare(t.references[precision], model.predict_batched(t.inputs), min_top1_agreement=t.min_top1_agreement,
                     **t.tolerance[precision])
    assert parity.ok, f"{name} {precision} {modality}: {parity.describe()}"
    report = model.operator_report()
    assert report and isinstance(report.get("fallback_ops"), list), report


def _weights_encodings(student: torch.nn.Module) -> list[tuple[bytes, bytes]]:
    """The first classifier row's leading weights as stored in float artifacts, and a copy with those weights x -8."""
    row = student.classifier.weight.detach().numpy()[0, :8]
    return [(row.astype(dtype).tobytes(), (row * -8).astype(dtype).tobytes()) for dtype in (np.float32, np.float16)]


@functools.lru_cache(maxsize=None)
def _int8_classifier_row(modality: str) -> np.ndarray:
    """The classifier's first row of int8 weights, as the learned scales fold them (what INT8 artifacts store)."""
    t = tiny(modality)
    graph, shape = t.prepared.converted(fold_quantize=True), tuple(t.student.classifier.weight.shape)
    for node in graph.graph.nodes:
        value = functools.reduce(getattr, node.target.split("."), graph) if node.op == "get_attr" else None
        if isinstance(value, torch.Tensor) and value.dtype == torch.int8 and tuple(value.shape) == shape:
            return value[0].numpy()
    raise AssertionError(f"no int8 tensor of the classifier's shape {shape} in the folded graph")


def _int8_weights_encodings(modality: str):
    def encodings(student: torch.nn.Module) -> list[tuple[bytes, bytes]]:
        """The first classifier row's int8 weights (the whole row: a few bytes alone may occur anywhere), negated."""
        row = _int8_classifier_row(modality)
        return [(row.tobytes(), np.clip(-row.astype(np.int16), -127, 127).astype(np.int8).tobytes())]

    return encodings


def tamper(path: Path, target: Path, student: torch.nn.Module, encodings=_weights_encodings) -> bool:
    """Copy the artifact (a file, an .xml and its .bin, or a package folder) to ``target`` with some weights changed."""
    if path.is_dir():
        shutil.copytree(path, target)
        files = [p for p in target.rglob("*") if p.is_file()]
    else:
        shutil.copy(path, target)
        files = [target]
        if path.suffix == ".xml":
            shutil.copy(path.with_suffix(".bin"), target.with_suffix(".bin"))
            files.append(target.with_suffix(".bin"))
    for file in files:
        data = file.read_bytes()
        for honest, changed in encodings(student):
            if honest in data:
                file.write_bytes(data.replace(honest, changed, 1))
                return True
    return False


def assert_noticed(name: str, backend, precision: str, target: Path, modality: str) -> None:
    """The tampered artifact at ``target`` refuses to load or run, or fails parity against the reference."""
    t = tiny(modality)
    try:
        out = backend.load(target, {}).predict_batched(t.inputs)
    except NotRunnable as why:
        pytest.skip(f"{name}: {why}")
    except Exception:
        return  # refused to load or run: the tampering was noticed
    parity = compare(t.references[precision], out, min_top1_agreement=t.min_top1_agreement, **t.tolerance[precision])
    assert not parity.ok, f"{name} {precision} {modality}: a tampered artifact passed parity ({parity.describe()})"


@pytest.mark.parametrize("name", BACKENDS.names())
def test_a_tampered_backend_artifact_fails_parity_or_loading(name, modality, tmp_path):
    backend = backend_or_skip(name)
    float_precisions = [p for p in backend.precisions if p in ("fp32", "fp16")]
    if not float_precisions:
        pytest.skip(f"{name} builds no float artifact whose weights this test can find")
    precision = float_precisions[0]
    path = built(name, precision, modality)
    target = tmp_path / path.name
    if not tamper(path, target, tiny(modality).student):
        pytest.fail(f"{name} {precision} {modality}: the classifier's weights are in none of the artifact's files (float32 or float16)")
    assert_noticed(name, backend, precision, target, modality)


@pytest.mark.parametrize("name", [n for n in BACKENDS.names() if "int8" in BACKENDS.get(n).precisions])
def test_a_tampered_int8_artifact_fails_parity_or_loading(name, modality, tmp_path):
    """The same with the classifier's int8 weights; a backend that re-lays them out (packed, transposed) skips."""
    backend = backend_or_skip(name)
    path = built_or_known_failure(name, "int8", modality)
    target = tmp_path / path.name
    if not tamper(path, target, tiny(modality).student, _int8_weights_encodings(modality)):
        pytest.skip(f"{name} int8 {modality}: the classifier's int8 weights are not stored as one plain row (packed or re-laid out)")
    assert_noticed(name, backend, "int8", target, modality)


@pytest.mark.parametrize("name", BACKEND_INFO.names())
def test_backend_folders_declare_a_runtime_and_their_tools(name):
    info = BACKEND_INFO.get(name)
    assert name in BACKENDS and name in RUNTIMES, f"{name} is declared but has no backend.py or runtime.py registered under its name"
    assert info.modules and all(isinstance(m, str) for m in info.modules)
    if info.tool:
        assert info.tool in DEVICE_TOOLS, f"{name} declares device tool {info.tool!r} but no tool.py registers it"


@pytest.mark.parametrize("folder", sorted(p.name for p in (ROOT / "edgekd" / "backends").iterdir() if (p / "runtime.py").is_file()))
def test_device_side_of_a_backend_imports_only_stdlib_numpy_and_its_runtime(folder):
    """__init__.py and runtime.py are copied to devices: relative imports of the ondevice base, else stdlib and numpy
    at the top; the vendor runtime only inside functions (so listing the runtimes imports none of them)."""
    allowed = set(sys.stdlib_module_names) | {"numpy"}
    for path in (ROOT / "edgekd" / "backends" / folder / "__init__.py", ROOT / "edgekd" / "backends" / folder / "runtime.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # top level only
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    assert node.level == 3 and (node.module or "").startswith("ondevice"), f"{path}: from {'.' * node.level}{node.module}"
                    continue
                names = [node.module or ""]
            else:
                continue
            assert all(n.split(".")[0] in allowed for n in names), f"{path} imports {names} at the top"


def test_the_profiler_process_imports_no_torch(tmp_path):
    """The local profiler's fresh process reports its peak memory: importing the benchmark and loading an
    ONNX Runtime artifact through the runtime registry must not pull in torch or a converter."""
    code = ("import sys; from edgekd.ondevice.bench import load; import numpy as np; "
            f"m = load('onnxruntime', {str(tiny().sources.fp32_onnx)!r}); m.predict(np.zeros((2, 1, 28, 28), np.float32)); "
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'onnx', 'openvino', 'ai_edge_litert', 'litert_torch')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_a_backend_registered_from_a_test_module_goes_through_the_compile_stage(pretrained_config, tmp_path):
    target = tmp_path / "reference-host.yaml"
    target.write_text(yaml.safe_dump({"name": "reference-host", "artifacts": [{"backend": "numpy-onnx-ref", "precisions": ["fp32"]}]}))
    cfg = pretrained_config({"prune": {"enabled": False}, "quantize": {"mode": "none"}, "targets": [str(target)],
                             "distill": {"train": {"epochs": 1}}})
    result = edgekd.run(cfg, tmp_path / "run", stages=["compile"])
    (row,) = [r for r in result["compile"].artifacts if r.backend == "numpy-onnx-ref"]
    assert row.status == "ok", row.reason
    assert row.parity.ok and row.operators["ops"] and row.toolchain.startswith("onnxruntime")


# ---------------------------------------------------------------- registries


def test_a_registry_refuses_duplicates_and_suggests_near_misses():
    registry: Registry[int] = Registry("widget", error=KeyError)
    registry.register("sprocket", 1)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("sprocket", 2)
    with pytest.raises(KeyError, match=r"unknown widget 'sprockt' \(did you mean 'sprocket'\?\); expected one of: sprocket"):
        registry.get("sprockt")
    with pytest.raises(ConfigError, match="unknown backend 'openvno'.*did you mean 'openvino'"):
        BACKENDS.get("openvno", key="targets[0].artifacts.backend")


def test_discover_imports_every_plugin_folder():
    assert set(discover(BACKENDS_PACKAGE, "runtime")) == {f"{BACKENDS_PACKAGE}.{p.name}.runtime"
                                                          for p in (ROOT / "edgekd" / "backends").iterdir() if (p / "runtime.py").is_file()}


# ---------------------------------------------------------------- power models


BENCH = {"latency_ms": {"mean": 2.0}, "cpu_utilization": 1.0}


@pytest.mark.parametrize("name", POWER_MODELS.names())
def test_power_model_estimates_energy_and_says_so(name):
    example = POWER_MODELS.get(name).example
    energy = estimate({"model": name, **example}, BENCH)
    assert energy["source"] == "estimated" and energy["boundary"] and name in energy["meter"]
    assert energy["measurement_method"] == "model-estimate"
    assert energy["idle_power_w"] is not None and 0 <= energy["net_mj_per_inference"] <= energy["mj_per_inference"]  # rate_hz needs both
    assert energy["mj_per_inference"] > 0 and energy["avg_power_w"] > 0
    slower = estimate({"model": name, **example}, {**BENCH, "latency_ms": {"mean": 4.0}})
    assert slower["mj_per_inference"] > energy["mj_per_inference"]  # a longer inference costs more energy
    with pytest.raises(ConfigError):
        estimate({"model": name, "no_such_parameter": 1}, BENCH)


def test_an_unknown_power_model_is_a_config_error():
    with pytest.raises(ConfigError, match="power.model: unknown power model 'tdp'"):
        estimate({"model": "tdp"}, BENCH)


# ---------------------------------------------------------------- energy meters


@pytest.mark.parametrize("name", METERS.names())
def test_meter_opens_on_a_recorded_tree_and_measures(name, tmp_path, monkeypatch):
    """Each meter against the recorded sysfs trees (tests/fixtures/sysfs); one that opens on none of them skips with why."""
    monkeypatch.setitem(sys.modules, "pynvml", None)  # a GPU on this machine must not stand in for a recorded tree
    cls, reasons = METERS.get(name), {}
    for tree in sorted(p for p in SYSFS.iterdir() if p.is_dir()):
        root = tmp_path / tree.name
        shutil.copytree(tree, root, symlinks=True)
        try:
            meter = cls.open(root)
        except MeterUnavailable as why:
            reasons[tree.name] = why.reason
            continue
        assert meter.name == name and meter.update_period_s > 0 and meter.boundary
        assert meter.method in METHODS and meter.sampling_interval_s >= meter.update_period_s  # how it measures, named
        meter.start()
        try:
            assert meter.joules() >= 0.0
        finally:
            meter.stop()
        assert meter.joules() >= 0.0
        assert {"meter", "measurement_method", "boundary", "update_period_s", "sampling_interval_s"} <= set(meter.describe())
        return
    assert all(reasons.values())  # every refusal says why
    pytest.skip(f"{name} opens on none of the recorded trees: " + "; ".join(sorted(set(reasons.values()))))
