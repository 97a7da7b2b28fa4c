"""LiteRT, Core ML and TensorRT backends on a tiny CNN.

LiteRT artifacts are run (XNNPACK) and compared with PyTorch: FP32 against the float student, INT8
against the fake-quant model whose scales it must carry (a tampered scale must show up in the file
and break parity). Core ML programs are built and verified statically (they run only on macOS).
TensorRT builds and runs only where it is installed with a CUDA device; elsewhere those tests skip
with the backend's own reason.

Costs (2 CPU cores): torchao's convert_pt2e takes ~20 s (it exports ~100 conv-BN patterns), so the
converted graph is made once and copied; the INT8 QDQ ONNX (another convert_pt2e) is exported only
for the TensorRT tests.
"""

from __future__ import annotations

import copy
import dataclasses
import platform
import sys

import numpy as np
import pytest
import torch

from edgekd import onnx_export
from edgekd.backends.base import BACKENDS, CompileSources, NotRunnable
from edgekd.backends.coreml import CoreMlBackend
from edgekd.backends.litert import LiteRtBackend, quantized_tensors
from edgekd.backends.tensorrt import TensorRtBackend
from edgekd.models import create_model

INPUT_SHAPE = (1, 28, 28)
TRT_REASON = TensorRtBackend().unavailable()


@pytest.fixture(scope="module")
def student() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("tiny_cnn", num_classes=10, in_channels=1, width=0.5)
    # A random classifier gives logits far apart (top-2 gaps > 0.4), so argmax is not decided by ties.
    torch.nn.init.normal_(model.classifier.weight, std=1.0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, *INPUT_SHAPE))
    return model.eval()


@pytest.fixture(scope="module")
def prepared(student):
    from edgekd import quantize

    q = quantize.prepare(student, INPUT_SHAPE, observer="minmax")
    q.calibrate(torch.randn(128, *INPUT_SHAPE, generator=torch.Generator().manual_seed(1)))
    q.freeze_observers()
    return q.eval()


@pytest.fixture(scope="module")
def int8_graph(prepared) -> torch.fx.GraphModule:
    return prepared.converted(fold_quantize=False)


@pytest.fixture(scope="module")
def sources(student, int8_graph, tmp_path_factory) -> CompileSources:
    onnx_dir = tmp_path_factory.mktemp("onnx")
    fp32_onnx = onnx_export.export(student, INPUT_SHAPE, onnx_dir / "fp32.onnx", opset=18, dynamic_batch=False)
    return CompileSources(
        input_shape=INPUT_SHAPE,
        fp32_onnx=fp32_onnx,
        int8_onnx=None,  # exported in trt_sources: only TensorRT reads it here
        fp32_model=lambda: copy.deepcopy(student),
        int8_graph=lambda: copy.deepcopy(int8_graph),
    )


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    return torch.randn(64, *INPUT_SHAPE, generator=torch.Generator().manual_seed(2)).numpy()


@pytest.fixture(scope="module")
def litert_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("litert")


@pytest.fixture(scope="module")
def litert_int8(sources, litert_dir):
    return LiteRtBackend().build(sources, "int8", litert_dir, {})


def _parity(reference: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    return float(np.abs(reference - out).max()), float((reference.argmax(1) == out.argmax(1)).mean())


# ---------------------------------------------------------------- LiteRT


def test_litert_fp32_matches_pytorch(student, sources, litert_dir, inputs):
    backend = LiteRtBackend()
    assert backend.unavailable() is None and "litert-torch" in backend.toolchain_version()
    path = backend.build(sources, "fp32", litert_dir, {})
    assert path.name == "model_fp32.tflite" and not list(litert_dir.glob("*.part"))
    runner = backend.load(path, {"threads": 1})
    out = runner.predict_batched(inputs[:32])
    with torch.no_grad():
        reference = student(torch.from_numpy(inputs[:32])).numpy()
    max_diff, agreement = _parity(reference, out)
    assert max_diff < 1e-4 and agreement == 1.0
    info = backend.inspect(path)
    assert info["inputs"][0]["shape"] == [1, 1, 28, 28] and info["inputs"][0]["dtype"] == "float32"
    report = runner.operator_report()
    assert report["delegate"] == "XNNPACK" and report["delegated_nodes"] == report["total_nodes"] > 0
    assert report["fallback_ops"] == [] and report["ops"]["CONV_2D"] == 2


def test_litert_fp16_stores_float16_weights(student, sources, litert_dir, inputs):
    backend = LiteRtBackend()
    path = backend.build(sources, "fp16", litert_dir, {})
    info = backend.inspect(path)
    assert info["tensor_dtypes"].get("float16", 0) == 4  # the 3 conv weights and the classifier weight
    assert info["ops"]["DEQUANTIZE"] == 4 and info["precision"].startswith("fp16")
    assert info["file_bytes"] < 0.8 * (litert_dir / "model_fp32.tflite").stat().st_size
    runner = backend.load(path, {})
    with torch.no_grad():
        reference = student(torch.from_numpy(inputs[:32])).numpy()
    max_diff, agreement = _parity(reference, runner.predict_batched(inputs[:32]))
    assert max_diff < 1e-2 and agreement == 1.0
    assert runner.operator_report()["delegated_nodes"] > 0


def test_litert_int8_is_full_integer_and_matches_fake_quant(prepared, litert_int8, inputs):
    backend = LiteRtBackend()
    info = backend.inspect(litert_int8)
    assert info["full_integer"] and info["precision"] == "int8 (full integer)"
    assert set(info["tensor_dtypes"]) <= {"int8", "int32"}
    assert info["inputs"][0]["dtype"] == "int8" and info["outputs"][0]["dtype"] == "int8"
    runner = backend.load(litert_int8, {"threads": 2})
    with torch.no_grad():
        reference = prepared(torch.from_numpy(inputs)).numpy()
    out = runner.predict_batched(inputs)
    step = info["outputs"][0]["quantization"]["scale"]
    max_diff, agreement = _parity(reference, out)
    assert max_diff <= 3 * step + 1e-7, (max_diff, step)
    assert agreement >= 0.97
    report = runner.operator_report()
    assert report["delegate"] == "XNNPACK" and report["delegated_nodes"] > 0 and report["fallback_ops"] == []
    assert "float32" not in report["tensor_dtypes"]


def test_litert_int8_carries_the_learned_scales(prepared, litert_int8):
    learned = prepared.learned_qparams()
    per_channel = [scale for scale, _ in learned.values() if scale.size > 1]
    weights = [t for t in quantized_tensors(litert_int8) if t["dtype"] == "int8"]
    assert len(weights) == len(per_channel) == 4
    for tensor in weights:  # each int8 weight's scale vector is one of the learned ones, exactly
        assert any(s.shape == tensor["scales"].shape and np.allclose(s, tensor["scales"], rtol=1e-6, atol=0) for s in per_channel), tensor["name"]
        assert not tensor["zero_points"].any()
    info = LiteRtBackend().inspect(litert_int8)
    per_tensor = {(float(s[0]), int(z[0])) for s, z in learned.values() if s.size == 1}
    for io in (info["inputs"][0], info["outputs"][0]):  # IO quantization = the learned input and output quantizers
        q = io["quantization"]
        assert any(np.isclose(q["scale"], s, rtol=1e-6) and q["zero_point"] == z for s, z in per_tensor)


def test_litert_int8_uses_the_scales_it_is_given(prepared, int8_graph, sources, litert_int8, tmp_path, inputs):
    """Multiply the second conv's learned weight scales by 8 in the graph: the file holds the 8x scales and parity breaks.

    (Coarser weights, not garbage: the weights are dequantized with the same 8x scales, so the
    error grows to several output steps rather than exploding.)
    """
    tampered = copy.deepcopy(int8_graph)
    quantize = torch.ops.quantized_decomposed.quantize_per_channel.default
    node = next(n for n in tampered.graph.nodes if n.target is quantize and "block2" in str(n.args[0].target))
    scale = getattr(tampered, node.args[1].target)  # shared by the weight's quantize and dequantize nodes
    original = scale.clone().numpy()
    scale.mul_(8)
    path = LiteRtBackend().build(dataclasses.replace(sources, int8_graph=lambda: tampered), "int8", tmp_path, {})
    scales = [t["scales"] for t in quantized_tensors(path) if t["dtype"] == "int8"]
    assert any(s.shape == original.shape and np.allclose(s, 8 * original, rtol=1e-6) for s in scales)
    assert not any(s.shape == original.shape and np.allclose(s, original, rtol=1e-6) for s in scales)
    with torch.no_grad():
        reference = prepared(torch.from_numpy(inputs)).numpy()
    step = LiteRtBackend().inspect(path)["outputs"][0]["quantization"]["scale"]
    max_diff, agreement = _parity(reference, LiteRtBackend().load(path, {}).predict_batched(inputs))
    honest_diff, _ = _parity(reference, LiteRtBackend().load(litert_int8, {}).predict_batched(inputs))
    # The parity check the honest artifact passes (<= 3 output steps, >= 97 % argmax) now fails.
    assert max_diff > 3 * step or agreement < 0.97, (max_diff, step, agreement)
    assert max_diff > 3 * honest_diff, (max_diff, honest_diff)


def test_litert_rejects_int8_without_a_quantized_graph(sources, tmp_path):
    with pytest.raises(ValueError, match="no INT8 model"):
        LiteRtBackend().build(dataclasses.replace(sources, int8_graph=None), "int8", tmp_path, {})


# ---------------------------------------------------------------- Core ML


@pytest.fixture(scope="module")
def coreml_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("coreml")


def test_coreml_fp16_program(sources, coreml_dir):
    backend = CoreMlBackend()
    assert backend.unavailable() is None and backend.toolchain_version().startswith("coremltools 9")
    path = backend.build(sources, "fp16", coreml_dir, {})
    assert path.name == "model_fp16.mlpackage" and path.is_dir()
    path = backend.build(sources, "fp16", coreml_dir, {})  # rebuilding replaces the package
    assert [p.name for p in coreml_dir.iterdir()] == ["model_fp16.mlpackage"]
    info = backend.inspect(path)
    assert info["inputs"] == [{"name": "input", "shape": [1, 1, 28, 28], "dtype": "FLOAT32"}]
    assert info["outputs"] == [{"name": "logits", "shape": [1, 10], "dtype": "FLOAT32"}]
    assert info["ops"]["conv"] == 3 and info["ops"]["linear"] == 1 and info["ops"]["max_pool"] == 2
    assert info["precision"] == "fp16" and set(info["compute_dtypes"]) == {"FLOAT16"}
    assert info["weight_dtypes"] == {"FLOAT16": 4} and info["package_bytes"] > 0


def test_coreml_int8_weights(sources, coreml_dir):
    backend = CoreMlBackend()
    path = backend.build(sources, "int8", coreml_dir, {})
    info = backend.inspect(path)
    assert info["weight_dtypes"] == {"INT8": 4}
    assert info["weights"].startswith("int8 (weights only")
    assert info["precision"] == "fp16" and info["outputs"][0]["shape"] == [1, 10]


def test_coreml_inspect_rejects_a_program_with_other_io(sources, coreml_dir, tmp_path):
    from edgekd.errors import StageError

    backend = CoreMlBackend()
    path = coreml_dir / "model_fp16.mlpackage"
    if not path.exists():
        path = backend.build(sources, "fp16", coreml_dir, {})
    import coremltools as ct

    model = ct.models.MLModel(str(path), skip_model_load=True)
    model.user_defined_metadata["edgekd.output_shape"] = "[1, 12]"
    model.save(str(tmp_path / "bad.mlpackage"))
    with pytest.raises(StageError, match="does not match"):
        backend.inspect(tmp_path / "bad.mlpackage")


@pytest.mark.skipif(platform.system() == "Darwin", reason="on macOS Core ML loads and runs")
def test_coreml_load_is_not_runnable_off_macos(coreml_dir):
    with pytest.raises(NotRunnable, match="macOS"):
        CoreMlBackend().load(coreml_dir / "model_fp16.mlpackage", {})


@pytest.mark.skipif(platform.system() != "Darwin", reason="Core ML runs only on macOS")
def test_coreml_runs_on_macos(student, sources, coreml_dir, inputs):  # pragma: no cover - macOS only
    backend = CoreMlBackend()
    runner = backend.load(backend.build(sources, "fp16", coreml_dir, {}), {"compute_units": "CPU_ONLY"})
    with torch.no_grad():
        reference = student(torch.from_numpy(inputs[:32])).numpy()
    max_diff, agreement = _parity(reference, runner.predict_batched(inputs[:32]))
    assert max_diff < 5e-2 and agreement == 1.0


# ---------------------------------------------------------------- TensorRT


def test_tensorrt_registers_without_tensorrt_and_says_why():
    assert "tensorrt" in BACKENDS and BACKENDS.get("tensorrt") is TensorRtBackend
    backend = TensorRtBackend()
    try:
        import tensorrt  # noqa: F401

        installed = True
    except ImportError:
        installed = False
    if not installed:
        assert backend.unavailable() == TRT_REASON and "TensorRT is not installed" in TRT_REASON
        assert "tensorrt" not in sys.modules
    elif not torch.cuda.is_available():
        assert "no CUDA device" in TRT_REASON
    else:
        assert TRT_REASON is None


@pytest.fixture(scope="module")
def trt_sources(sources, prepared, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx_int8") / "int8.onnx"
    int8_onnx = onnx_export.export(prepared.converted(fold_quantize=True), INPUT_SHAPE, path, opset=18, dynamic_batch=False)
    return dataclasses.replace(sources, int8_onnx=int8_onnx)


@pytest.mark.skipif(TRT_REASON is not None, reason=str(TRT_REASON))
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_tensorrt_builds_and_runs(precision, student, prepared, trt_sources, tmp_path, inputs):  # pragma: no cover - GPU only
    backend = TensorRtBackend()
    cache = tmp_path / "timing.cache"
    path = backend.build(trt_sources, precision, tmp_path, {"workspace": 256, "timing_cache": str(cache)})
    assert path.is_file() and cache.is_file()
    runner = backend.load(path, {})
    with torch.no_grad():
        reference = (prepared if precision == "int8" else student)(torch.from_numpy(inputs)).numpy()
    max_diff, agreement = _parity(reference, runner.predict_batched(inputs))
    assert agreement >= 0.97 and max_diff < (0.1 if precision == "int8" else 1e-2)
    report = runner.operator_report()
    assert report["layers"] > 0
