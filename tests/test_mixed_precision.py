"""Accuracy-aware mixed precision (compile.int8_max_accuracy_drop, edgekd.mixed_precision), used as a user would:
their own model (tests/fixtures/outlier_net.py, outside the zoo) whose head reads one input that always sits at
1000, so one INT8 scale per tensor rounds the head's other inputs to zero. Full INT8 must break the budget,
the head must be found the most sensitive layer, and returning the fewest layers to float must meet it, in
ONNX Runtime and OpenVINO (layers fed float in the QDQ ONNX model) as in LiteRT and ExecuTorch (in the PT2E
graph); the all-INT8 artifact is profiled beside for the latency cost."""

from __future__ import annotations

import json
from dataclasses import replace
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from edgekd.cli import app

FIXTURE = Path(__file__).parent / "fixtures" / "outlier_net.py"
MAX_DROP = 0.02  # 180 validation samples: one is 0.56 points


def config(folder: Path, teacher_weights: Path, **compile_options) -> Path:
    shutil.copy(FIXTURE, folder / "outlier_net.py")
    (folder / "cpu.yaml").write_text(yaml.safe_dump({"name": "cpu", "artifacts": [
        {"backend": "onnxruntime", "precisions": ["fp32", "int8"], "options": {"threads": 1}},
        {"backend": "openvino", "precisions": ["int8"], "options": {"threads": 1, "streams": 1, "inference_precision": "f32"}},
        {"backend": "litert", "precisions": ["int8"], "options": {"threads": 1}},
        {"backend": "executorch", "precisions": ["int8"], "options": {"threads": 1}}]}))
    path = folder / "mixed.yaml"
    path.write_text(yaml.safe_dump({
        "name": "mixed", "seed": 0, "data": {"source": "builtin:digits"},
        "teacher": {"model": "zoo:resnet", "kwargs": {"width": 0.25}, "weights": str(teacher_weights)},
        "student": {"model": "python:./outlier_net.py:OutlierNet"},
        "distill": {"losses": [{"name": "ce", "weight": 0.1}, {"name": "kd", "weight": 0.9, "temperature": 4.0}],
                    "train": {"epochs": 20, "batch_size": 64, "lr": 0.01, "warmup_epochs": 0}},
        "prune": {"enabled": False},
        "quantize": {"mode": "ptq", "calibration_size": 128},
        "export": {"int8_atol_steps": 60},  # 1000 x a weight's rounding: PyTorch and ONNX Runtime round apart
        "targets": ["cpu.yaml"],
        "compile": compile_options,
        "profile": {"runs": 100, "min_seconds": 0.1, "warmup_s": 0.1, "energy": {"meter": "none"}},
    }))
    return path


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, teacher_weights, single_thread):
    folder = tmp_path_factory.mktemp("mixed")
    result = CliRunner().invoke(app, ["run", str(config(folder, teacher_weights, int8_max_accuracy_drop=MAX_DROP)),
                                      "--out", str(folder / "run")])
    assert result.exit_code == 0, result.output
    report = json.loads((folder / "run" / "report.json").read_text())
    return folder / "run", {a["id"]: a for a in report["artifacts"]}


FROM_ONNX = ("onnxruntime", "openvino")


@pytest.mark.parametrize("backend", [*FROM_ONNX, "litert", "executorch"])
def test_the_fewest_most_sensitive_layers_return_to_float_until_the_budget_holds(mixed_run, backend):
    _, artifacts = mixed_run
    row = artifacts[f"cpu/{backend}/int8"]
    fl = row["float_layers"]
    assert fl["status"] == "met", fl
    # full INT8 breaks the budget in this runtime; with the chosen layers in float it holds
    assert fl["reference_accuracy"] - fl["int8_accuracy"] > MAX_DROP
    assert fl["reference_accuracy"] - fl["accuracy"] <= MAX_DROP + 1e-9
    # the head, which reads the outlier, is the most sensitive layer by far and the first returned
    ranked = sorted(fl["sensitivity"], key=lambda s: math.inf if s["sqnr_db"] is None else s["sqnr_db"])
    assert ranked[0]["layer"] == fl["layers"][0] and ranked[0]["module"] == fl["modules"][0] == "head"
    assert fl["layers"][0] == ("node_linear" if backend in FROM_ONNX else "linear")  # ONNX node / PT2E graph node
    assert {s["module"] for s in fl["sensitivity"]} == {"features.0", "features.2", "head", "classifier"}
    assert ranked[0]["sqnr_db"] < ranked[1]["sqnr_db"] - 10
    assert len(fl["layers"]) < fl["quantized_layers"] == 4
    assert set(fl["weights"]) == set(fl["layers"])
    assert set(fl["weights"].values()) <= ({"fp32", "int8 grid"} if backend in FROM_ONNX else {"fp32", "pre-rounding"})
    assert fl["weights"][fl["layers"][0]] == "fp32"  # PTQ: the head's weights are the student's, taken back
    if backend in FROM_ONNX:
        # what the runtime made of it, from its own graph: the layers returned run float; ONNX Runtime ran every
        # layer of the all-INT8 artifact as an integer kernel (OpenVINO leaves some float itself)
        assert set(fl["runtime"]) == {s["layer"] for s in fl["sensitivity"]}
        assert all(fl["runtime"][layer] == "float" for layer in fl["layers"])
        assert "int8" in fl["all_int8_runtime"].values()
    else:  # LiteRT's and ExecuTorch's Python APIs do not say which kernel each layer got
        assert fl["runtime"] == {} and fl["all_int8_runtime"] == {}
    if backend == "onnxruntime":
        assert set(fl["all_int8_runtime"].values()) == {"int8"} and len(fl["all_int8_runtime"]) == 4
    # each step of the search is recorded, the last one being the choice
    assert fl["steps"][-1]["layers"] == fl["layers"] and len(fl["steps"]) == len(fl["layers"])
    # on the test split, which chose nothing: the artifact beats the all-INT8 one profiled beside it
    cost = row["float_layers_cost"]
    assert cost["layers"] == fl["modules"] and cost["all_int8_status"] == "ok"
    assert row["accuracy"] > cost["all_int8_accuracy"] + 0.1
    assert cost["p95_added_ms"] == pytest.approx(row["latency_ms"]["p95"] - cost["all_int8_latency_ms"]["p95"])
    assert row["status"] == "ok" and row["parity"]["ok"]


def test_every_graph_layer_in_float_computes_the_fp32_model(monkeypatch):
    """The PT2E side (LiteRT, ExecuTorch): every layer in float, and the pairs left serving no INT8 layer
    dropped, is the float model; one layer in float leaves the others INT8; folding the result is what
    convert_pt2e(fold_quantize=True) does."""
    import importlib.util

    import torch

    from edgekd.quantize import float_layers as fl

    spec = importlib.util.spec_from_file_location("outlier_net", FIXTURE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model = module.OutlierNet(in_channels=1).eval()
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    student, graph = _unfolded_graph(model, x)
    layers = fl.quantized_layers(graph)
    assert fl.module_names(graph, layers) == dict(zip(layers, ["features.0", "features.2", "head", "classifier"]))
    every = fl.with_float_layers(graph, layers)
    assert not any("quantize" in str(n.target) for n in every.graph.nodes)
    with torch.no_grad():
        torch.testing.assert_close(every(x), model(x), atol=1e-5, rtol=1e-5)
    head_float = fl.with_float_layers(graph, ["linear"])
    head = next(n for n in head_float.graph.nodes if n.name == "linear")
    assert not any("dequantize" in str(arg.target) for arg in head.args[:2])  # float activations and weight
    assert fl.quantized_layers(head_float) == [layer for layer in layers if layer != "linear"]  # the rest stay INT8
    # the first conv alone INT8: its consumer went float, so its output is no longer quantized and its weight
    # becomes the float constant of its INT8 value (XNNPACK cannot run it as an integer kernel; ExecuTorch 1.4.1
    # miscomputes the weight's dequantize left outside the delegate), computing the same numbers
    first_alone = fl.with_float_layers(graph, layers[1:])
    assert [n.name for n in first_alone.graph.nodes if n.op == "get_attr" and "int8_grid" in n.name] == ["conv2d_int8_grid_1"]
    monkeypatch.setattr(fl, "_constant_weights_where_output_is_float", lambda graph: None)
    with torch.no_grad():
        torch.testing.assert_close(first_alone(x), fl.with_float_layers(graph, layers[1:])(x), atol=1e-6, rtol=0)
    assert fl.folded(graph).code == student.converted(fold_quantize=True).code
    # a float layer takes the student's weight and bias back where they pair (PTQ: the same values, unrounded)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert fl.take_student_weights(fl.with_float_layers(graph, ["linear"]), ["linear"], state) == {"linear": "fp32"}
    state["head.weight"] += 1.0  # another layer's weights, not this one's before rounding
    assert fl.take_student_weights(fl.with_float_layers(graph, ["linear"]), ["linear"], state) == {"linear": "pre-rounding"}
    with pytest.raises(ValueError, match="not layers of the converted graph: nope"):
        fl.with_float_layers(graph, ["nope"])


def test_every_layer_in_float_computes_the_fp32_model(mixed_run, tmp_path):
    import onnxruntime as ort

    from edgekd.mixed_precision import quantized_layers, with_float_layers

    run_dir, _ = mixed_run
    qdq, fp32 = run_dir / "export" / "student_int8_qdq.onnx", run_dir / "export" / "student_fp32.onnx"
    layers = quantized_layers(qdq)
    x = np.load(run_dir / "profile" / "test.npz")["x"][:32]

    def outputs(path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(None, {session.get_inputs()[0].name: x[i: i + 1]})[0] for i in range(len(x))])

    every = tmp_path / "every.onnx"
    assert with_float_layers(qdq, layers, every, fp32) == {layer: "fp32" for layer in layers}
    np.testing.assert_allclose(outputs(every), outputs(fp32), atol=1e-5)
    assert not any(n.op_type.endswith("QuantizeLinear") for n in __import__("onnx").load(str(every)).graph.node)
    with pytest.raises(ValueError, match="not INT8 layers of student_int8_qdq.onnx: node_nope"):
        with_float_layers(qdq, ["node_nope"], tmp_path / "nope.onnx")


def test_a_budget_already_met_keeps_every_layer_int8(tmp_path, teacher_weights, single_thread):
    result = CliRunner().invoke(app, ["run", str(config(tmp_path, teacher_weights, int8_max_accuracy_drop=0.9)),
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    row = next(a for a in report["artifacts"] if a["id"] == "cpu/onnxruntime/int8")
    assert row["float_layers"]["status"] == "not needed" and row["float_layers"]["layers"] == []
    assert row["float_layers_cost"] is None and not (tmp_path / "run" / "compile" / "cpu" / "onnxruntime" / "all-int8").exists()


@pytest.mark.parametrize("value", [-0.1, 1.5, "a lot"])
def test_a_bad_budget_is_refused_before_training_naming_the_key(tmp_path, teacher_weights, value):
    result = CliRunner().invoke(app, ["run", str(config(tmp_path, teacher_weights, int8_max_accuracy_drop=value)),
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "compile.int8_max_accuracy_drop" in result.output
    assert not (tmp_path / "run" / "distill").exists()


def _budget(reference_accuracy: float, max_drop: float):
    from edgekd.mixed_precision import Budget

    labels = np.arange(100) % 2
    return Budget(max_drop=max_drop, reference_accuracy=reference_accuracy, labels=labels, num_classes=2,
                  reference_logits=np.eye(2)[labels])


def _logits(accuracy: float) -> np.ndarray:
    """Two-class logits on _budget's labels, right on the first ``accuracy`` share of them."""
    labels = np.arange(100) % 2
    right = np.arange(100) < round(accuracy * 100)
    return np.eye(2)[np.where(right, labels, 1 - labels)]


def test_when_no_layer_set_meets_the_budget_the_most_accurate_candidate_is_kept_all_int8_included():
    from edgekd.mixed_precision import choose_float_layers

    # every layer in float is worse than all-INT8 here (a model whose float layers interact badly)
    accuracy = {(): 0.75, ("a",): 0.5, ("a", "b"): 0.6, ("b",): 0.7}
    record = choose_float_layers(["a", "b"], _budget(0.9, 0.01), lambda layers: _logits(accuracy[tuple(sorted(layers))]))
    assert record.status == "not met" and record.layers == [] and record.accuracy == 0.75
    assert "every layer INT8, reaches 75.00%" in record.reason and "allowed: 1.00%" in record.reason
    # no INT8 layer at all: nothing to return, said so, no crash
    empty = choose_float_layers([], _budget(0.9, 0.01), lambda layers: _logits(0.5))
    assert empty.status == "not met" and empty.layers == [] and empty.steps == []


def test_layers_return_most_sensitive_first_and_stop_at_the_budget():
    from edgekd.mixed_precision import choose_float_layers

    # with b alone in INT8 the logits are the noisiest (lowest SQNR), then c, then a: returned in that order,
    # until the budget holds (b and c in float: the float set that was also "a alone in INT8")
    table = {(): 0.5, ("b", "c"): 0.9, ("a", "c"): 0.6, ("a", "b"): 0.85, ("b",): 0.8}
    record = choose_float_layers(["a", "b", "c"], _budget(0.9, 0.01), lambda layers: _logits(table[tuple(sorted(layers))]))
    assert [s.layer for s in sorted(record.sensitivity, key=lambda s: s.sqnr_db)] == ["b", "c", "a"]
    assert record.status == "met" and record.layers == ["b", "c"] and record.accuracy == 0.9
    assert [s.layers for s in record.steps] == [["b"], ["b", "c"]] and record.int8_accuracy == 0.5


def test_the_model_card_names_the_layers_in_float(mixed_run):
    run_dir, artifacts = mixed_run
    row = artifacts["cpu/onnxruntime/int8"]
    card = (run_dir / (row["path"] + ".card.md")).read_text()
    line = next(line for line in card.splitlines() if line.startswith("| layers in float |"))
    assert line.startswith(f"| layers in float | head") and f"{len(row['float_layers']['layers'])} of 4" in line


def test_report_html_shows_the_layers_in_float_most_sensitive_first(mixed_run):
    run_dir, artifacts = mixed_run
    html = (run_dir / "report.html").read_text()
    section = html[html.index('<section id="float-layers">'): html.index('<section id="not-run">')]
    assert '<a href="#float-layers">' in html
    for backend, node, weights in (("onnxruntime", "node_linear", "fp32"), ("openvino", "node_linear", "fp32"),
                                   ("litert", "linear", "fp32"), ("executorch", "linear", "fp32")):
        part = section[section.index(f'data-artifact="cpu/{backend}/int8"'):]
        rows = part[: part.index("</table>")].split("<tr>")[2:]  # after the header row
        assert f"<td>head</td><td><code>{node}</code>" in rows[0] and f"<td>{weights}</td>" in rows[0]
        assert len(rows) == 4 and sum(f"<td>{w}</td>" in r for r in rows for w in ("fp32", "int8 grid", "pre-rounding")) == len(
            artifacts[f"cpu/{backend}/int8"]["float_layers"]["layers"])


def test_a_hand_built_qdq_model_with_initializers_listed_as_inputs_keeps_one_input(tmp_path):
    """Older exporters list every initializer as a graph input too: those that go unused with their Q/DQ pair
    must leave the input list, or the runtime would ask for them."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgekd.mixed_precision import quantized_layers, with_float_layers

    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (4, 3), dtype=np.int8)
    inits = [numpy_helper.from_array(w, "w_q"), numpy_helper.from_array(np.array(0.01, np.float32), "w_s"),
             numpy_helper.from_array(np.array(0, np.int8), "zp"), numpy_helper.from_array(np.array(0.02, np.float32), "x_s")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "zp"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "x_s", "zp"], ["xd"], name="dq"),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "zp"], ["wd"], name="wdq"),
             helper.make_node("Gemm", ["xd", "wd"], ["y"], name="fc", transB=1)]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])] + [
        helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in inits]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    source = tmp_path / "qdq.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), source)
    assert quantized_layers(source) == ["fc"]
    assert with_float_layers(source, ["fc"], tmp_path / "float.onnx") == {"fc": "int8 grid"}
    session = ort.InferenceSession(str(tmp_path / "float.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x"]
    x = rng.random((1, 3), dtype=np.float32)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], x @ (w.astype(np.float32) * 0.01).T, rtol=1e-5, atol=1e-6)


def test_dynamic_range_int8_has_no_activations_to_return_and_says_so(tmp_path):
    """The transformer scheme's LiteRT and ExecuTorch artifacts are dynamic-range INT8 built from the learned float
    weights: the choice is refused with the reason."""
    from edgekd.backends import BACKENDS, CompileSources
    from edgekd.inputs import image_spec
    from edgekd.stages.float_layers import layer_source

    sources = CompileSources(input=image_spec((1, 8, 8)), fp32_onnx=tmp_path / "fp32.onnx", int8_onnx=None,
                             fp32_model=lambda: None, int8_graph=lambda: None, int8_scheme="transformer")
    for name in ("litert", "executorch"):
        reason = layer_source(BACKENDS.get(name)(), name, sources)
        assert isinstance(reason, str) and reason.startswith(f"{name} builds this INT8 model as dynamic-range weights")
    # Core ML quantizes the FP32 model's weights itself: never sent down the PT2E graph's path, whatever the scheme
    for scheme in ("full", "transformer"):
        reason = layer_source(BACKENDS.get("coreml")(), "coreml", replace(sources, int8_scheme=scheme))
        assert isinstance(reason, str) and reason.startswith("coreml builds INT8 from neither the QDQ ONNX model nor")


def test_convs_with_batch_norm_folded_in_keep_their_own_weights_and_linears_take_the_students(tmp_path):
    """torchao folds batch norm into the conv under the conv's names: its weight and bias are no longer the
    student's, so a conv of a student with batch norm keeps the value its INT8 weight was rounded from, while a
    linear (nothing folded into it) takes the student's; the float conv then computes the folded conv+BN."""
    import torch
    from torch import nn

    from edgekd.inputs import image_spec
    from edgekd.quantize import float_layers as fl

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, bias=True), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():  # batch norm close to identity: the conv weights alone would pass the closeness check
        model[1].running_mean.fill_(0.5)
        model[1].running_var.fill_(1.0)
    model.eval()
    x = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    _, graph = _unfolded_graph(model, x)
    layers = fl.quantized_layers(graph)
    assert fl.module_names(graph, layers) == dict(zip(layers, ["0", "5"]))
    every = fl.with_float_layers(graph, layers)
    weights = fl.take_student_weights(every, layers, model.state_dict(), convs_folded=True)
    assert weights == dict(zip(layers, ["pre-rounding", "fp32"]))
    with torch.no_grad():  # the conv's own (folded) weights and bias: the float model, BN's shift included
        torch.testing.assert_close(every(x), model(x), atol=1e-4, rtol=1e-4)
    # the compile stage finds the batch norm in the student itself
    from edgekd.backends import CompileSources
    from edgekd.stages.float_layers import graph_layers

    sources = CompileSources(input=image_spec((1, 8, 8)), fp32_onnx=tmp_path / "fp32.onnx", int8_onnx=None,
                             fp32_model=lambda: model, int8_graph=lambda: graph)
    mixed, origin = graph_layers(sources).with_float(layers, tmp_path)
    assert origin == weights and mixed.int8_float_layers == tuple(layers)


def test_a_branching_graph_every_layer_in_float_keeps_no_quantizer():
    """A tensor read by two consumers gets one dequantize each (torchao's DuplicateDQPass): with every layer in
    float, the pair serving both goes too, and the graph computes the float model."""
    import torch
    from torch import nn

    from edgekd.quantize import float_layers as fl

    class Branching(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.side, self.head = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 1), nn.Linear(8, 3)

        def forward(self, x):
            h = torch.relu(self.stem(x))
            side = self.side(h).mean((2, 3))  # one consumer of h: a layer
            pooled = nn.functional.max_pool2d(h, 2).mean((2, 3))  # the other: pooling, then the head
            return self.head(torch.cat([side, pooled], dim=1))

    torch.manual_seed(0)
    model = Branching().eval()
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    _, graph = _unfolded_graph(model, x)
    layers = fl.quantized_layers(graph)
    relu = next(n for n in graph.graph.nodes if n.name == "relu")
    quantize = next(iter(relu.users))
    assert len(quantize.users) == 2  # h's one quantize, a dequantize per consumer
    every = fl.with_float_layers(graph, layers)
    assert not any("quantize" in str(n.target) for n in every.graph.nodes)
    with torch.no_grad():
        torch.testing.assert_close(every(x), model(x), atol=1e-5, rtol=1e-5)


def _unfolded_graph(model, x):
    """``model`` prepared with the full INT8 scheme, calibrated on ``x``, frozen and converted unfolded (the graph
    LiteRT builds from): the student and its graph."""
    from edgekd.inputs import image_spec
    from edgekd.quantize.pt2e import prepare

    student = prepare(model, image_spec(tuple(x.shape[1:])), scheme="full")
    student.calibrate(x)
    student.freeze_observers()
    student.freeze_batch_norm()
    student.eval()
    return student, student.converted(fold_quantize=False)
