"""The runtime's own tool times the artifact beside edgekd's benchmark, in the same profile (issue 16).

OpenVINO's benchmark_app ships with the openvino wheel, so it runs here on a real IR; LiteRT's
benchmark_model is a C++ binary this machine does not have, so its Python tool (ai-edge-litert's
litert-benchmark) times LiteRT artifacts instead, and where neither is installed the profile says so.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekd.records import CompiledArtifact
from edgekd.runners.base import ProfileJob, bench_args
from edgekd.runners.local import LocalRunner
from edgekd.runners import native
from edgekd.runners.native import find_tool, native_latency
from edgekd.config import ProfileConfig
from edgekd.stages.profile import result_row


def tiny_ir(tmp_path, batch=1):
    """A 64 -> 10 MatMul as an OpenVINO IR; ``batch``: its batch size, or a name for a dynamic one."""
    import openvino as ov

    weight = numpy_helper.from_array(np.linspace(-1, 1, 64 * 10, dtype=np.float32).reshape(64, 10), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    ov.save_model(ov.convert_model(str(tmp_path / "m.onnx")), str(tmp_path / "m.xml"))
    return tmp_path / "m.xml"


def job(tmp_path, artifact, backend="openvino", inputs=None, **profile) -> ProfileJob:
    cfg = ProfileConfig.model_validate({"runs": 200, "min_seconds": 0.5, "warmup_s": 0.2, "repeats": 1,
                                        "energy": {"meter": "none"}, **profile})
    data = tmp_path / "data.npz"
    x = np.random.default_rng(0).normal(size=(16, 64)).astype(np.float32) if inputs is None else inputs
    np.savez(data, x=x, y=np.zeros(len(x), dtype=np.int64))
    return ProfileJob(artifact=artifact, files=[artifact], backend=backend, precision="fp32",
                      options={"threads": 1, "inference_precision": "f32"}, data=data, bench_args=bench_args(cfg),
                      timeout_s=300, settings=cfg.model_dump(mode="json"), work_dir=tmp_path)


@pytest.mark.skipif(find_tool("benchmark_app") is None, reason="benchmark_app is not installed (pip install openvino)")
def test_benchmark_app_times_the_artifact_beside_edgekd(tmp_path):
    bench = LocalRunner(None).profile(job(tmp_path, tiny_ir(tmp_path)))
    native = bench["native_latency"]
    assert native["status"] == "ok" and native["tool"] == "benchmark_app", native
    assert native["p50"] > 0 and native["runs"] >= 200
    assert "-nthreads 1" in native["command"] and "-infer_precision f32" in native["command"]  # the artifact's options
    latency = bench["latency_ms"]
    assert 0 < latency["harness_overhead_ms"] < latency["p50"]  # what the timing loop itself records around a call
    # Each run is OpenVINO's own C++ clock around infer, not a Python clock around the call: the Python call's median,
    # kept beside it, is the larger by what calling from Python costs.
    assert latency["clock"].startswith("InferRequest.latency")
    assert latency["python_call_p50"] > latency["p50"] > 0
    row = result_row(CompiledArtifact(target="cpu", backend="openvino", precision="fp32", status="ok"), bench, None, "local")
    assert row.latency_ms.measured_by == "edgekd.ondevice.bench"  # the gated figure stays edgekd's ...
    assert row.latency_ms.native.p50_ratio == pytest.approx(bench["latency_ms"]["p50"] / native["p50"])  # ... the tool's beside it
    json.dumps(row.to_dict())


@pytest.mark.skipif(find_tool("benchmark_app") is None, reason="benchmark_app is not installed (pip install openvino)")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: pinning to it changes nothing")
def test_the_tool_runs_on_the_cores_the_device_pins(tmp_path, monkeypatch):
    import edgekd.runners.native as native

    core = max(os.sched_getaffinity(0))
    seen = {}
    real_run = native.subprocess.run

    def run_and_look(command, **kwargs):  # the tool's process, started as native_latency starts it: where may it run?
        probe = [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"]
        seen["cores"] = real_run(probe, capture_output=True, text=True, preexec_fn=kwargs["preexec_fn"]).stdout.strip()
        return real_run(command, **kwargs)

    monkeypatch.setattr(native.subprocess, "run", run_and_look)
    bench = LocalRunner(None, {"pin": [core]}).profile(job(tmp_path, tiny_ir(tmp_path)))
    assert bench["host"]["affinity"] == [core]  # edgekd's benchmark ...
    assert seen["cores"] == f"[{core}]"  # ... and the tool, on the same core
    assert bench["native_latency"]["status"] == "ok"
    assert bench["native_latency"]["command"].startswith(f"taskset -c {core} ")  # the command as a user would repeat it


def test_native_tool_off_runs_nothing_beside(tmp_path):
    bench = LocalRunner(None).profile(job(tmp_path, tiny_ir(tmp_path), native_tool=False))
    assert bench["status"] == "ok" and "native_latency" not in bench


def test_a_missing_tool_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(native, "find_tool", lambda name: None)
    found = native_latency(job(tmp_path, tmp_path / "m.tflite", backend="litert"))
    assert found == {"tool": "benchmark_model", "status": "not run here",
                     "reason": "benchmark_model or litert-benchmark: not on PATH on this machine"}


@pytest.mark.skipif(find_tool("litert-benchmark") is None, reason="litert-benchmark is not installed (pip install ai-edge-litert)")
@pytest.mark.skipif(find_tool("benchmark_model") is not None, reason="benchmark_model is installed here: it is used first")
def test_litert_benchmark_times_litert_artifacts_where_benchmark_model_is_not_built(tmp_path):
    from test_plugin_contracts import built, tiny

    bench = LocalRunner(None).profile(job(tmp_path, built("litert", "fp32"), backend="litert",
                                          inputs=tiny().inputs[:16]))
    found = bench["native_latency"]
    assert found["status"] == "ok" and found["tool"] == "litert-benchmark", found
    # it counts runs only: it is given as many as edgekd's benchmark took, so both time the same work
    assert found["runs"] == bench["latency_ms"]["runs"] >= 200
    # the command as a user would repeat it: the tool's own, not the wrapper that reads the median unrounded
    assert found["command"].startswith("litert-benchmark --model ") and "-c" not in found["command"].split()
    assert f"--num_runs {found['runs']}" in found["command"] and "--num_threads 1" in found["command"]
    assert found["p50"] > 0 and round(found["p50"], 2) != found["p50"]  # read before the tool rounds it to 0.01 ms


LITERT_BENCHMARK_OUTPUT = """
========================================
 BENCHMARK RESULTS
========================================
Model initialization:  3.21 ms
Warmup (first):        0.40 ms
Warmup (avg):          0.05 ms (20 runs)
Inference (avg):       0.04 ms (5000 runs)
Inference (min):       0.03 ms
Inference (max):       0.31 ms
Inference (median):    0.04 ms
Inference (std):       0.01 ms
Inference (p5):        0.03 ms
Inference (p95):       0.06 ms
Fully accelerated:     True
========================================
"""


@pytest.mark.parametrize("unrounded", [True, False])
def test_litert_benchmark_output_is_read_with_its_rounding_named(unrounded):
    from edgekd.backends.litert.tool import parse_litert_benchmark

    output = ("UNROUNDED_MEDIAN_MS 0.04187\n" if unrounded else "") + LITERT_BENCHMARK_OUTPUT
    latency = parse_litert_benchmark(output, 0.05)
    assert latency["p50"] == (0.04187 if unrounded else 0.04) and latency["mean"] == 0.04 and latency["p95"] == 0.06
    assert latency["runs"] == 5000 and latency["warmup_runs"] == 20 and latency["load_ms"] == 3.21
    assert latency["measured_by"] == "litert-benchmark" and latency["stable"] is None  # no per-run times: unknown
    assert latency["rounding"] == ("median unrounded; other figures to 0.01 ms" if unrounded else "every figure to 0.01 ms")
    with pytest.raises(ValueError, match="no litert-benchmark results"):
        parse_litert_benchmark("Traceback ...\nRuntimeError: cannot open model")


@pytest.mark.parametrize("batch", [1, "N"])
def test_openvino_timed_calls_run_the_input_they_were_bound_to(tmp_path, batch):
    """The timing loop's calls copy each input into the request's one input tensor: each must still compute its own
    input's output, in any order, and after predict() has run other inputs (for a dynamic batch, 8 rows at once)."""
    from edgekd.ondevice.runtimes import load

    model = load("openvino", tiny_ir(tmp_path, batch), {"threads": 1, "inference_precision": "f32"})
    inputs = np.random.default_rng(1).normal(size=(3, 1, 64)).astype(np.float32)
    calls = [model.bind(x) for x in inputs]
    expected = [model.predict(x) for x in inputs]
    for i in (2, 0, 1, 1, 2):
        calls[i]()
        np.testing.assert_allclose(model.request.get_output_tensor(0).data, expected[i], rtol=1e-6)
    model.predict(inputs[0] * 3)
    if batch == "N":
        model.predict(np.concatenate([inputs[0]] * 8))
    calls[1]()
    np.testing.assert_allclose(model.request.get_output_tensor(0).data, expected[1], rtol=1e-6)


# onnxruntime_perf_test's output as performance_runner.cc prints it (Run(), then DumpToFile with -s and no result file)
PERF_TEST_OUTPUT = """Session creation time cost: 0.0123 s
First inference time cost: 1 ms
Total inference time cost: 2.41 s
Total inference requests: 50000
Average inference time cost: 0.0482 ms
Total inference run time: 3.00012 s
Number of inferences per second: 16665.9
Avg CPU usage: 50 %
Peak working set size: 31457280 bytes
Avg CPU usage:50
Peak working set size:31457280
Runs:50000
Min Latency: 3.9e-05 s
Max Latency: 0.000912 s
P50 Latency: 4.61e-05 s
P90 Latency: 5.2e-05 s
P95 Latency: 5.6e-05 s
P99 Latency: 8.1e-05 s
P999 Latency: 0.000301 s
"""


def test_onnxruntime_perf_test_is_driven_with_the_profile_and_read_in_milliseconds():
    from edgekd.backends.base import DEVICE_TOOLS
    from edgekd.ondevice.backend_info import BACKEND_INFO

    assert BACKEND_INFO.get("onnxruntime").tools == ("onnxruntime_perf_test",)
    tool = DEVICE_TOOLS.get("onnxruntime_perf_test")()
    command = tool.command("onnxruntime_perf_test", "files/model_int8.ort", {"threads": 2},
                           {"min_seconds": 3, "warmup_s": 2}, [])
    # generated inputs, statistics printed, CPU provider, the profile's seconds plus its warm-up (it warms up once)
    assert command == ["onnxruntime_perf_test", "-I", "-s", "-e", "cpu", "-m", "duration", "-t", "5", "-x", "2",
                       "files/model_int8.ort"]
    latency = tool.parse(PERF_TEST_OUTPUT, 0.05)
    assert latency["p50"] == pytest.approx(0.0461) and latency["p95"] == pytest.approx(0.056)
    assert latency["p99"] == pytest.approx(0.081) and latency["min"] == pytest.approx(0.039)
    assert latency["mean"] == pytest.approx(0.0482) and latency["runs"] == 50000
    assert latency["load_ms"] == pytest.approx(12.3) and latency["first_inference_ms"] == 1
    assert latency["measured_by"] == "onnxruntime_perf_test" and latency["stable"] is None
    assert tool.peak_memory_mb(PERF_TEST_OUTPUT) == 30.0
    with pytest.raises(ValueError, match="no onnxruntime_perf_test summary"):
        tool.parse("there is no test data for model m\n")


def test_a_tool_that_only_counts_runs_is_given_the_counts_edgekd_took():
    from edgekd.backends.litert.tool import LiteRtBenchmark
    from edgekd.backends.openvino.tool import BenchmarkApp
    from edgekd.runners.base import tool_settings

    settings = {"runs": 1000, "warmup_runs": 20, "min_seconds": 2.0}
    took = {"runs": 400, "warmup_runs": 9000}  # a slow model stopped at max_seconds; a long warm-up
    assert tool_settings(LiteRtBenchmark(), settings, took) == {**settings, **took}
    assert tool_settings(LiteRtBenchmark(), settings, None) == settings  # nothing measured: the profile's
    assert tool_settings(BenchmarkApp(), settings, took) == settings  # it runs for the profile's duration itself


@pytest.mark.parametrize("shebang, interpreter", [
    ("#!/venv/bin/python", ["/venv/bin/python"]),
    ("#!/usr/bin/python3 -s", ["/usr/bin/python3", "-s"]),
    ("#!/usr/bin/env python3", ["/usr/bin/env", "python3"]),
    ("#!/bin/sh", None),  # a shell wrapper: run as it is, its median rounded
])
def test_litert_benchmark_runs_under_its_script_s_own_python(tmp_path, shebang, interpreter):
    from edgekd.backends.litert.tool import LiteRtBenchmark

    script = tmp_path / "litert-benchmark"
    script.write_text(f"{shebang}\nfrom ai_edge_litert.tools.benchmark_litert_model import main\n")
    command = LiteRtBenchmark().local_command(str(script), "m.tflite", {"threads": 1}, {"runs": 50, "warmup_runs": 5}, [])
    tail = ["--model", "m.tflite", "--num_runs", "50", "--warmup_runs", "5", "--num_threads", "1"]
    if interpreter is None:
        assert command == [str(script), *tail]
    else:
        assert command[:len(interpreter) + 1] == [*interpreter, "-c"] and command[-len(tail):] == tail
        assert "UNROUNDED_MEDIAN_MS" in command[len(interpreter) + 1]
    # a device's tool (the SSH runner's command) runs as it is, whatever file lies at that path on this machine
    assert LiteRtBenchmark().command(str(script), "m.tflite", {"threads": 1}, {"runs": 50, "warmup_runs": 5}, []) == [
        str(script), *tail]
