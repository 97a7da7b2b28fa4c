"""What the contract tests (test_plugin_contracts.py) cannot say about LiteRT, Core ML and TensorRT.

The contract tests build, load and compare every backend's artifacts; here are the properties
particular to these three: LiteRT's INT8 file carries the learned scales (a tampered scale shows up in
the file and breaks parity against the fake-quant model), its FP16 file stores float16 weights and
XNNPACK runs every node; Core ML programs are verified statically (they run only on macOS); TensorRT
(only with a CUDA device; elsewhere it skips with the backend's own reason) keeps a timing cache.

The tiny model, its sources and the artifacts come from test_plugin_contracts (``tiny``, ``built``),
cached per process, so the ~25 s PT2E conversion and each artifact are made once.
"""

from __future__ import annotations

import copy
import dataclasses
import platform
import shutil
import sys

import numpy as np
import pytest
import torch
from test_plugin_contracts import built, tiny

from edgekd.backends.base import BACKENDS, NotRunnable
from edgekd.backends.coreml.backend import CoreMlBackend
from edgekd.backends.litert.backend import LiteRtBackend, quantized_tensors
from edgekd.backends.tensorrt.backend import TensorRtBackend

TRT_REASON = TensorRtBackend().unavailable()


@pytest.fixture(scope="module")
def student() -> torch.nn.Module:
    return tiny().student


@pytest.fixture(scope="module")
def prepared():
    return tiny().prepared


@pytest.fixture(scope="module")
def int8_graph() -> torch.fx.GraphModule:
    return tiny().int8_graph


@pytest.fixture(scope="module")
def sources():
    return tiny().sources


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    return tiny().inputs


@pytest.fixture(scope="module")
def litert_int8():
    return built("litert", "int8")


def _parity(reference: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    return float(np.abs(reference - out).max()), float((reference.argmax(1) == out.argmax(1)).mean())


# ---------------------------------------------------------------- LiteRT


def test_litert_fp32_runs_every_node_on_xnnpack():
    backend = LiteRtBackend()
    assert backend.unavailable() is None and "litert-torch" in backend.toolchain_version()
    path = built("litert", "fp32")
    assert path.name == "model_fp32.tflite" and not list(path.parent.glob("*.part"))
    info = backend.inspect(path)
    assert info["inputs"][0]["shape"] == [1, 1, 28, 28] and info["inputs"][0]["dtype"] == "float32"
    report = backend.load(path, {"threads": 1}).operator_report()
    assert report["delegate"] == "XNNPACK" and report["delegated_nodes"] == report["total_nodes"] > 0
    assert report["fallback_ops"] == [] and report["ops"]["CONV_2D"] == 2


def test_litert_fp16_stores_float16_weights():
    backend = LiteRtBackend()
    path = built("litert", "fp16")
    info = backend.inspect(path)
    assert info["tensor_dtypes"].get("float16", 0) == 4  # the 3 conv weights and the classifier weight
    assert info["ops"]["DEQUANTIZE"] == 4 and info["precision"].startswith("fp16")
    assert info["file_bytes"] < 0.8 * built("litert", "fp32").stat().st_size
    assert backend.load(path, {}).operator_report()["delegated_nodes"] > 0


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


def test_coreml_fp16_program(sources, tmp_path):
    backend = CoreMlBackend()
    assert backend.unavailable() is None and backend.toolchain_version().startswith("coremltools 9")
    path = built("coreml", "fp16")
    assert path.name == "model_fp16.mlpackage" and path.is_dir()
    shutil.copytree(path, tmp_path / path.name)
    again = backend.build(sources, "fp16", tmp_path, {})  # rebuilding replaces the package
    assert [p.name for p in tmp_path.iterdir()] == ["model_fp16.mlpackage"] and again.is_dir()
    info = backend.inspect(path)
    assert info["inputs"] == [{"name": "input", "shape": [1, 1, 28, 28], "dtype": "FLOAT32"}]
    assert info["outputs"] == [{"name": "logits", "shape": [1, 10], "dtype": "FLOAT32"}]
    assert info["ops"]["conv"] == 3 and info["ops"]["linear"] == 1 and info["ops"]["max_pool"] == 2
    assert info["precision"] == "fp16" and set(info["compute_dtypes"]) == {"FLOAT16"}
    assert info["weight_dtypes"] == {"FLOAT16": 4} and info["package_bytes"] > 0


def test_coreml_int8_weights():
    info = CoreMlBackend().inspect(built("coreml", "int8"))
    assert info["weight_dtypes"] == {"INT8": 4}
    assert info["weights"].startswith("int8 (weights only")
    assert info["precision"] == "fp16" and info["outputs"][0]["shape"] == [1, 10]


def test_coreml_inspect_rejects_a_program_with_other_io(tmp_path):
    import coremltools as ct

    from edgekd.errors import StageError

    backend = CoreMlBackend()
    path = built("coreml", "fp16")

    model = ct.models.MLModel(str(path), skip_model_load=True)
    model.user_defined_metadata["edgekd.output_shape"] = "[1, 12]"
    model.save(str(tmp_path / "bad.mlpackage"))
    with pytest.raises(StageError, match="does not match"):
        backend.inspect(tmp_path / "bad.mlpackage")


@pytest.mark.skipif(platform.system() == "Darwin", reason="on macOS Core ML loads and runs (the contract tests run it)")
def test_coreml_load_is_not_runnable_off_macos():
    with pytest.raises(NotRunnable, match="macOS"):
        CoreMlBackend().load(built("coreml", "fp16"), {})


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


@pytest.mark.skipif(TRT_REASON is not None, reason=str(TRT_REASON))
def test_tensorrt_keeps_a_timing_cache(sources, tmp_path):  # pragma: no cover - GPU only
    cache = tmp_path / "timing.cache"
    path = TensorRtBackend().build(sources, "fp16", tmp_path, {"workspace": 256, "timing_cache": str(cache)})
    assert path.is_file() and cache.is_file()
    assert TensorRtBackend().load(path, {}).operator_report()["layers"] > 0
