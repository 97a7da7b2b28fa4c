"""ONNX Runtime's operator report names the nodes that fell back to the CPU provider (issue 16).

This machine has only the CPU provider, so asking for CUDA is the real fallback a user meets with a
CPU-only onnxruntime wheel: ORT warns once, runs every node on the CPU, and the report must say so.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekd.backends.onnxruntime.runtime import OnnxRuntimeModel


def tiny_model(path):
    weight = numpy_helper.from_array(np.ones((4, 3), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="project"), helper.make_node("Relu", ["h"], ["y"], name="act")],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_a_cpu_session_has_no_fallback(tmp_path):
    report = OnnxRuntimeModel(tiny_model(tmp_path / "m.onnx"), {}).operator_report()
    assert report["providers_used"] == ["CPUExecutionProvider"] and report["fallback_ops"] == []
    assert sum(report["executed_ops_by_provider"]["CPUExecutionProvider"].values()) >= 1


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA is available here: nothing falls back")
def test_nodes_on_the_cpu_are_named_when_another_provider_was_asked_for(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ORT: CUDAExecutionProvider is not in this build
        model = OnnxRuntimeModel(tiny_model(tmp_path / "m.onnx"), {"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]})
        report = model.operator_report()
    assert report["providers_requested"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert report["providers_used"] == ["CPUExecutionProvider"]
    executed = sum(report["executed_ops_by_provider"]["CPUExecutionProvider"].values())
    assert len(report["fallback_ops"]) == executed >= 1  # every node that ran, named with its op
    assert all(entry.endswith(")") and "(" in entry for entry in report["fallback_ops"])


@pytest.mark.parametrize("device", ["CPU", "HETERO:CPU"])
def test_openvino_reports_where_each_op_runs_from_the_device_query(tmp_path, device):
    """OpenVINO's report counts the model's ops per device as ``Core.query_model`` places them on the configured
    device; ops the first device of a HETERO list cannot run would be named in fallback_ops. This machine has only
    the CPU plugin, so every op lands on it, under HETERO too (which keeps no inference precision of its own)."""
    import openvino as ov

    from edgekd.backends.openvino.runtime import OpenVinoModel

    ir = tmp_path / "m.xml"
    ov.save_model(ov.convert_model(str(tiny_model(tmp_path / "m.onnx"))), str(ir))
    report = OpenVinoModel(ir, {"threads": 1, "device": device}).operator_report()
    # the MatMul, the Relu and the Convert that decompresses the weight save_model stored in fp16
    assert report["devices"] == {"CPU": 3} and report["fallback_ops"] == []
    assert report["inference_precision"] == ("f32" if device == "CPU" else None)
