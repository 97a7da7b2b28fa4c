"""Compression: pruning, INT8 quantization, ONNX export, parity, calibration sets, and the end-to-end pipeline."""

from __future__ import annotations

import copy
import json
import pickle
import shutil
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from safetensors import safe_open

import edgekd
from edgekd import calibration
from edgekd import onnx_export as ox
from edgekd.backends.onnxruntime.backend import cpu_has_vnni
from edgekd.config import parse_config
from edgekd.data import prepare_data
from edgekd.errors import ConfigError, DataError, ModelError, StageError
from edgekd.io import sha256_file
from edgekd.models import create_model
from edgekd.parity import compare, require
from edgekd.prune import count, load_pruned, make_pruner, ratio_for_target, save_pruned
from edgekd.quantize import load_state, prepare, save_state
from edgekd.inputs import image_spec

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")


@pytest.fixture(scope="module", autouse=True)
def _fast_torch():
    """Keep torch fast here without changing what is tested.

    * One intra-op thread: the models are tiny and the cores shared; OpenMP threads spinning against other
      processes make every op several times slower.
    * pytest 9 attaches its log capture to every non-propagating logger, torch's structured-trace logger
      included, so torch.export builds trace payloads for every graph. Let that logger propagate (pytest then
      leaves it alone) and drop the handlers already attached.
    """
    import logging

    trace_log = logging.getLogger("torch.__trace")
    propagate, handlers = trace_log.propagate, list(trace_log.handlers)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    trace_log.propagate = True
    for handler in handlers:
        if type(handler).__module__.startswith("_pytest"):
            trace_log.removeHandler(handler)
    yield
    trace_log.propagate = propagate
    torch.set_num_threads(threads)


SHAPE = (1, 28, 28)
EXAMPLE = torch.zeros(1, *SHAPE)
ZOO = ["resnet", "mobilenetv2", "tiny_cnn"]


def make(name: str, seed: int = 0, width: float = 0.5) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(name, num_classes=10, in_channels=1, width=width).eval()


def warm_batch_norm(model: torch.nn.Module, seed: int = 1, passes: int = 3) -> torch.nn.Module:
    """A few train-mode forwards so batch norm running statistics are not the init values."""
    g = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(passes):
            model(torch.randn(16, *SHAPE, generator=g) * 2 + 0.5)
    return model.eval()


def convs(model: torch.nn.Module) -> list[tuple[str, torch.nn.Conv2d]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]


def check_depthwise(model: torch.nn.Module) -> int:
    depthwise = [(n, m) for n, m in convs(model) if m.groups > 1]
    for name, conv in depthwise:
        assert conv.groups == conv.in_channels == conv.out_channels, name
        assert conv.weight.shape[:2] == (conv.out_channels, 1), name
    return len(depthwise)


# ---------------------------------------------------------------- pruning


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("round_to", [None, 8])
def test_pruning_keeps_the_graph_consistent(name, round_to):
    model = warm_batch_norm(make(name))
    macs_before, params_before = count(model, EXAMPLE)
    depthwise_before = check_depthwise(model)
    pruner = make_pruner(model, EXAMPLE, importance="l2", ratio=0.3, steps=1, round_to=round_to)
    pruner.step()
    model.eval()
    out = model(torch.randn(2, *SHAPE))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    macs_after, params_after = count(model, EXAMPLE)
    assert macs_after < macs_before and params_after < params_before
    # Depthwise convolutions stay depthwise (MobileNetV2 has 17 of them), and their count is unchanged.
    assert check_depthwise(model) == depthwise_before
    if name == "mobilenetv2":
        assert depthwise_before == 17
    # The structure attributes agree with the (pruned) weight shapes.
    for n, conv in convs(model):
        assert conv.weight.shape[0] == conv.out_channels, n
        assert conv.weight.shape[1] * conv.groups == conv.in_channels, n
    for n, bn in model.named_modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            assert bn.weight.shape == bn.running_mean.shape == (bn.num_features,), n
    assert model.classifier.out_features == 10
    assert model.classifier.weight.shape == (10, model.classifier.in_features)
    if round_to:
        assert all(conv.out_channels % round_to == 0 for _, conv in convs(model)), [
            (n, c.out_channels) for n, c in convs(model) if c.out_channels % round_to
        ]


def test_pruning_removes_about_the_ratio_of_channels():
    model = make("tiny_cnn", width=1.0)  # 16, 32, 64 channels
    make_pruner(model, EXAMPLE, importance="l2", ratio=0.5, steps=1).step()
    assert [c.out_channels for _, c in convs(model)] == [8, 16, 32]
    assert model.classifier.in_features == 32


def test_iterative_steps_reach_the_ratio_in_the_last_step():
    model = make("tiny_cnn", width=1.0)
    pruner = make_pruner(model, EXAMPLE, importance="l2", ratio=0.5, steps=2)
    pruner.step()
    first = [c.out_channels for _, c in convs(model)]
    pruner.step()
    second = [c.out_channels for _, c in convs(model)]
    assert second == [8, 16, 32]
    assert all(full > a > b for full, a, b in zip([16, 32, 64], first, second))


@pytest.mark.parametrize("importance", ["l1", "l2", "bn_scale", "taylor"])
def test_each_importance_prunes(importance):
    model = warm_batch_norm(make("tiny_cnn"))
    macs_before, _ = count(model, EXAMPLE)
    pruner = make_pruner(model, EXAMPLE, importance=importance, ratio=0.3, steps=1)
    if importance == "taylor":  # first-order Taylor needs gradients of the task loss
        model.train()
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(32, *SHAPE, generator=g), torch.randint(0, 10, (32,), generator=g)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        model.eval()
    pruner.step()
    assert model(torch.randn(2, *SHAPE)).shape == (2, 10)
    assert count(model, EXAMPLE)[0] < macs_before


def test_l1_importance_keeps_the_largest_filters():
    """Filters scaled 1..10 (shuffled), the next layer's weights equal per channel: the 7 largest filters stay."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 10, 3), torch.nn.Flatten(), torch.nn.Linear(10 * 26 * 26, 4))
    scales = torch.randperm(10).float() + 1
    with torch.no_grad():
        model[0].weight.copy_(torch.sign(torch.randn(10, 1, 3, 3)) * scales.view(10, 1, 1, 1))
        model[2].weight.fill_(0.01)
    expected = set(torch.argsort(scales, descending=True)[:7].tolist())
    original = model[0].weight.detach().clone()
    make_pruner(model, EXAMPLE, importance="l1", ratio=0.3, ignore=["2"]).step()
    assert model[0].out_channels == 7 and model[2].in_features == 7 * 26 * 26
    kept = {i for i in range(10) for row in model[0].weight.detach() if torch.equal(row, original[i])}
    assert kept == expected


def test_ratio_for_target_meets_a_macs_target():
    model = warm_batch_norm(make("tiny_cnn"))
    macs, _ = count(model, EXAMPLE)
    target = int(0.6 * macs)
    ratio = ratio_for_target(model, EXAMPLE, target_macs=target, importance="l2")
    assert 0 < ratio < 0.95
    assert count(model, EXAMPLE)[0] == macs  # bisection works on copies
    pruned = copy.deepcopy(model)
    make_pruner(pruned, EXAMPLE, importance="l2", ratio=ratio).step()
    achieved = count(pruned, EXAMPLE)[0]
    assert achieved <= target
    assert achieved > 0.3 * macs  # not wildly over-pruned
    with pytest.raises(ModelError, match="not below"):
        ratio_for_target(model, EXAMPLE, target_macs=macs + 1, importance="l2")


def test_save_and_load_pruned_round_trip_without_pickle(tmp_path, monkeypatch):
    model = warm_batch_norm(make("mobilenetv2"))
    make_pruner(model, EXAMPLE, importance="l2", ratio=0.3, steps=1).step()
    warm_batch_norm(model, seed=5)  # running stats after pruning differ from a fresh model's
    model.eval()
    path = tmp_path / "pruned.safetensors"
    save_pruned(model, path)
    with safe_open(str(path), framework="pt") as handle:
        assert "edgekd.structure" in handle.metadata()
        assert set(handle.keys()) == set(model.state_dict())
    assert path.read_bytes()[:1] != b"\x80" and path.read_bytes()[:2] != b"PK"  # neither pickle nor torch zip

    def no_pickle(*args, **kwargs):
        raise AssertionError("load_pruned must not unpickle")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "Unpickler", no_pickle)
    monkeypatch.setattr(torch, "load", no_pickle)
    fresh = make("mobilenetv2", seed=123)
    x = torch.randn(4, *SHAPE)
    assert fresh(x).shape == (4, 10)
    loaded = load_pruned(fresh, path).eval()
    monkeypatch.undo()
    with torch.no_grad():
        expected, got = model(x), loaded(x)
    assert torch.equal(expected, got)
    assert (expected - got).abs().max().item() == 0
    assert count(loaded, EXAMPLE) == count(model, EXAMPLE)
    for (n1, c1), (n2, c2) in zip(convs(model), convs(loaded)):
        assert n1 == n2 and (c1.in_channels, c1.out_channels, c1.groups) == (c2.in_channels, c2.out_channels, c2.groups)


def test_load_pruned_errors(tmp_path):
    with pytest.raises(ModelError, match="do not exist"):
        load_pruned(make("tiny_cnn"), tmp_path / "missing.safetensors")
    model = make("tiny_cnn")
    make_pruner(model, EXAMPLE, importance="l2", ratio=0.3).step()
    save_pruned(model, tmp_path / "tiny.safetensors")
    with pytest.raises(ModelError, match="not in the rebuilt model"):
        load_pruned(make("resnet"), tmp_path / "tiny.safetensors")


# ---------------------------------------------------------------- errors


def test_unknown_ignored_layer_names_the_key():
    with pytest.raises(ModelError) as info:
        make_pruner(make("tiny_cnn"), EXAMPLE, importance="l2", ratio=0.3, ignore=["does_not_exist"])
    assert "prune.ignore[0]" in str(info.value) and "does_not_exist" in str(info.value)
    with pytest.raises(ModelError, match=r"prune\.ignore\[1\].*classifer.*classifier"):
        make_pruner(make("tiny_cnn"), EXAMPLE, importance="l2", ratio=0.3, ignore=["pool", "classifer"])


def test_unknown_importance_in_make_pruner():
    with pytest.raises(ConfigError, match="prune.importance"):
        make_pruner(make("tiny_cnn"), EXAMPLE, importance="nope", ratio=0.3)


@pytest.mark.parametrize(
    "section, key",
    [
        ({"ratio": 1.5}, "prune.ratio"),
        ({"ratio": 0}, "prune.ratio"),
        ({"ratio": -0.2}, "prune.ratio"),
        ({"importance": "random"}, "prune.importance"),
        ({"steps": 0}, "prune.steps"),
        ({"ratio": 0.3, "target_macs": 1000}, "prune"),
        ({"target_macs": 1000, "target_params": 10}, "prune"),
    ],
)
def test_prune_config_errors(section, key):
    with pytest.raises(ConfigError) as info:
        parse_config({"prune": section})
    message = str(info.value)
    assert f"  {key}:" in message
    if len(section) > 1:
        assert "give one of" in message


def test_prune_config_defaults_and_valid_values():
    cfg = parse_config({}).prune
    assert cfg.effective_ratio == 0.3 and cfg.importance == "l2"
    assert parse_config({"prune": {"ratio": 0.5}}).prune.effective_ratio == 0.5
    assert parse_config({"prune": {"target_macs": 1000}}).prune.effective_ratio is None
    assert parse_config({"quantize": {"mode": "ptq"}}).quantize.mode == "ptq"
    with pytest.raises(ConfigError, match="quantize.mode"):
        parse_config({"quantize": {"mode": "int4"}})
    with pytest.raises(ConfigError, match="export.opset"):
        parse_config({"export": {"opset": 9}})


class DataDependent(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent Python control flow with different output shapes
            return x * 2
        return x.flatten(1)[:, :3]


def test_export_failure_names_the_model(tmp_path):
    path = tmp_path / "bad.onnx"
    with pytest.raises(ModelError) as info:
        ox.export(DataDependent(), image_spec((1, 4, 4)), path, opset=18, dynamic_batch=False)
    assert "DataDependent" in str(info.value)
    assert not path.exists()


# ---------------------------------------------------------------- quantization


def onnx_values(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def axis_of(node: onnx.NodeProto) -> int | None:
    for attr in node.attribute:
        if attr.name == "axis":
            return onnx.helper.get_attribute_value(attr)
    return None


@pytest.fixture(scope="module")
def qat(tmp_path_factory):
    """tiny_cnn: BN warmed, prepared, calibrated, a few SGD steps, observers frozen, eval; exported to ONNX."""
    fp32 = warm_batch_norm(make("tiny_cnn"))
    student = prepare(fp32, image_spec(SHAPE))
    g = torch.Generator().manual_seed(0)
    student.calibrate(torch.randn(128, *SHAPE, generator=g))
    student.train()
    opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
    teacher_weights = torch.randn(10, int(np.prod(SHAPE)), generator=g)
    for _ in range(6):  # a learnable task, so logits have margins
        x = torch.randn(32, *SHAPE, generator=g)
        y = (x.flatten(1) @ teacher_weights.T).argmax(1)
        loss = torch.nn.functional.cross_entropy(student(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    student.freeze_observers()
    student.eval()
    learned = student.learned_qparams()
    path = tmp_path_factory.mktemp("qat") / "int8.onnx"
    ox.export(student.converted(fold_quantize=True), image_spec(SHAPE), path, opset=18, dynamic_batch=False)
    return SimpleNamespace(fp32=fp32, student=student, learned=learned, path=path, onnx=onnx.load(str(path)))


def test_learned_qparams_follow_the_scheme(qat):
    vectors = {k: v for k, v in qat.learned.items() if v[0].size > 1}
    scalars = {k: v for k, v in qat.learned.items() if v[0].size == 1}
    # tiny_cnn: 3 convs + classifier have per-channel weight quantizers
    assert sorted(len(s) for s, _ in vectors.values()) == sorted([c.out_channels for _, c in convs(qat.fp32)] + [10])
    for scale, zero_point in vectors.values():
        assert (scale > 0).all() and (zero_point == 0).all()
    for scale, zero_point in scalars.values():
        assert scale.shape == (1,) and scale[0] > 0 and -128 <= zero_point[0] <= 127
    assert bool(qat.student.observers_frozen)


def test_onnx_weights_are_per_channel_symmetric_int8(qat):
    model = qat.onnx
    values = onnx_values(model)
    producers = {out: node for node in model.graph.node for out in node.output}
    layers = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    assert [n.op_type for n in layers] == ["Conv", "Conv", "Conv", "Gemm"]
    expected_channels = [c.out_channels for _, c in convs(qat.fp32)] + [10]
    for layer, channels in zip(layers, expected_channels):
        dq = producers[layer.input[1]]
        assert dq.op_type == "DequantizeLinear", layer.name
        weight, scale, zero_point = (values[name] for name in dq.input)
        assert weight.dtype == np.int8 and weight.shape[0] == channels
        assert weight.min() >= -127 and weight.max() <= 127  # symmetric range, -128 unused
        assert scale.ndim == 1 and scale.shape == (channels,) and scale.dtype == np.float32
        assert zero_point.dtype == np.int8 and zero_point.shape == (channels,) and (zero_point == 0).all()
        assert axis_of(dq) == 0
        if layer.op_type == "Gemm":
            trans_b = [onnx.helper.get_attribute_value(a) for a in layer.attribute if a.name == "transB"]
            assert trans_b == [1]  # weight is (out, in): axis 0 is the output channel
        # the activation input is per-tensor
        act = producers[layer.input[0]]
        assert act.op_type == "DequantizeLinear"
        assert values[act.input[1]].size == 1 and values[act.input[2]].size == 1
    # every other (de)quantizer is per-tensor int8
    weight_dqs = {producers[layer.input[1]].name for layer in layers}
    others = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.name not in weight_dqs]
    assert others
    for node in others:
        assert values[node.input[1]].size == 1
        assert values[node.input[2]].dtype == np.int8 and values[node.input[2]].size == 1


def test_onnx_scales_are_the_learned_ones(qat):
    model = qat.onnx
    values = onnx_values(model)
    dqs = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    exported_vectors = [values[n.input[1]] for n in dqs if values[n.input[1]].ndim == 1 and values[n.input[1]].size > 1]
    learned_vectors = [s for s, _ in qat.learned.values() if s.size > 1]
    assert len(exported_vectors) == len(learned_vectors) == 4
    for vector in exported_vectors:
        matches = [s for s in learned_vectors if s.shape == vector.shape and np.allclose(s, vector, rtol=1e-6, atol=0)]
        assert len(matches) == 1, vector
    learned_pairs = [(float(s[0]), int(z[0])) for s, z in qat.learned.values() if s.size == 1]
    exported_pairs = {(float(values[n.input[1]]), int(values[n.input[2]])) for n in dqs if values[n.input[1]].size == 1}
    assert len(exported_pairs) >= 4
    for scale, zero_point in exported_pairs:
        assert any(np.isclose(scale, s, rtol=1e-6, atol=0) and zero_point == z for s, z in learned_pairs), (scale, zero_point)


def test_onnx_runtime_matches_fake_quant(qat):
    g = torch.Generator().manual_seed(42)
    x = torch.randn(64, *SHAPE, generator=g)
    with torch.no_grad():
        reference = qat.student(x).numpy()
    got = ox.run_session(ox.session(qat.path), x)
    values = onnx_values(qat.onnx)
    last = next(n for n in qat.onnx.graph.node if n.output[0] == ox.OUTPUT_NAME)
    assert last.op_type == "DequantizeLinear"
    step = float(values[last.input[1]])
    assert step > 0
    # ORT's fused integer kernels round differently from fake-quant; on x86 CPUs without VNNI they also saturate
    # 16-bit pair sums (AVX2's VPMADDUBSW; OpenVINO's docs call it the saturation issue), one step more here
    steps = 2 if cpu_has_vnni() else 3
    parity = compare(reference, got, atol=steps * step, min_top1_agreement=1.0)
    assert parity.max_abs_diff <= steps * step + 1e-7, parity.describe()
    assert parity.top1_agreement == 1.0, parity.describe()
    # the logits really are quantized: every output is an integer number of steps from the zero point
    zero_point = int(values[last.input[2]])
    assert np.allclose(got / step - zero_point, np.round(got / step - zero_point), atol=1e-3)
    # and the fake-quant model is not trivially constant
    assert reference.std() > 10 * step


def test_save_and_load_state_round_trip(qat, tmp_path):
    path = tmp_path / "state.safetensors"
    save_state(qat.student, path)
    with safe_open(str(path), framework="pt") as handle:
        assert "observers_frozen" in handle.keys()
    fresh = prepare(qat.fp32, image_spec(SHAPE))
    loaded = load_state(fresh, path)
    assert bool(loaded.observers_frozen) and not loaded.training
    x = torch.randn(16, *SHAPE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(qat.student(x), loaded(x))
    # the fake-quantizers' scales used in the forward pass are restored exactly
    for name, module in qat.student.graph.named_modules():
        if hasattr(module, "calculate_qparams") and hasattr(module, "scale"):
            other = loaded.graph.get_submodule(name)
            assert torch.equal(module.scale, other.scale) and torch.equal(module.zero_point, other.zero_point), name


def test_load_state_restores_learned_qparams(qat, tmp_path):
    path = tmp_path / "state.safetensors"
    save_state(qat.student, path)
    loaded = load_state(prepare(qat.fp32, image_spec(SHAPE)), path)
    # the qparams convert_pt2e will bake into the exported model must be the trained ones
    assert qparams_equal(qat.learned, loaded.learned_qparams())


def qparams_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k][0], b[k][0]) and np.array_equal(a[k][1], b[k][1]) for k in a)


def test_frozen_observers_do_not_move(qat):
    student = copy.deepcopy(qat.student)
    before = student.learned_qparams()
    assert qparams_equal(before, qat.learned)
    student.train()
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for _ in range(3):
            student(torch.randn(32, *SHAPE, generator=g) * 50)
    assert qparams_equal(before, student.learned_qparams())
    student.eval()
    with torch.no_grad():
        student(torch.randn(32, *SHAPE, generator=g) * 100)
    assert qparams_equal(before, student.learned_qparams())


def test_eval_mode_never_updates_observers(qat):
    student = prepare(qat.fp32, image_spec(SHAPE))  # observers live (not frozen)
    student.calibrate(torch.randn(64, *SHAPE, generator=torch.Generator().manual_seed(0)))
    assert not bool(student.observers_frozen)
    student.eval()
    before = student.learned_qparams()
    with torch.no_grad():
        student(torch.randn(32, *SHAPE) * 100)
    assert qparams_equal(before, student.learned_qparams())
    # sanity: the same data in train mode with live observers does move the scales
    student.train()
    with torch.no_grad():
        student(torch.randn(32, *SHAPE) * 100)
    assert not qparams_equal(before, student.learned_qparams())


# ---------------------------------------------------------------- parity


def logits(n: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 10)).astype(np.float32)


def test_parity_identical_outputs():
    ref = logits()
    parity = compare(ref, ref.copy(), atol=1e-4, min_top1_agreement=0.99)
    assert parity.ok and parity.max_abs_diff == 0 and parity.top1_agreement == 1.0 and parity.samples == 64
    assert require(parity, "same") is parity
    assert parity.to_dict()["ok"] is True


def test_parity_beyond_tolerance_fails_with_numbers():
    ref = logits()
    cand = ref.copy()
    atol = 1e-3
    cand[5, 3] += 10 * atol
    parity = compare(ref, cand, atol=atol, min_top1_agreement=0.0)
    assert not parity.ok and parity.to_dict()["ok"] is False
    assert parity.max_abs_diff == pytest.approx(10 * atol, rel=1e-3)
    with pytest.raises(StageError) as info:
        require(parity, "candidate")
    message = str(info.value)
    assert "candidate" in message
    assert f"{parity.max_abs_diff:.3g}" in message and f"{atol:.3g}" in message


def test_parity_top1_agreement_counts_flipped_rows():
    ref = logits()
    cand = ref.copy()
    for row in range(0, 8):  # swap the top two logits in 8 of 64 rows
        top2 = np.argsort(-cand[row])[:2]
        cand[row, top2] = cand[row, top2[::-1]]
    parity = compare(ref, cand, atol=100.0, min_top1_agreement=0.99)
    assert parity.top1_agreement == pytest.approx(56 / 64)
    assert parity.max_abs_diff <= 100 and not parity.ok
    with pytest.raises(StageError, match="87.50%"):
        require(parity, "flipped")
    assert compare(ref, cand, atol=100.0, min_top1_agreement=0.8).ok


def test_parity_shape_mismatch():
    with pytest.raises(StageError, match="shapes differ"):
        compare(logits(4), logits(5), atol=1.0, min_top1_agreement=0.5)


# ---------------------------------------------------------------- calibration


@pytest.fixture(scope="module")
def digits():
    return prepare_data("builtin:digits", seed=0)


def test_calibration_draw_is_stratified_and_seeded(digits):
    cal = calibration.draw(digits, size=100, seed=0)
    assert cal.size == 100 and len(cal.indices) == 100 and len(set(cal.indices)) == 100
    assert set(cal.indices) <= set(digits.split.train.tolist())
    x, y = cal.tensors(digits)
    assert x.shape == (100, *digits.input_shape) and y.shape == (100,)
    # the tensors are the training rows at those indices
    positions = np.searchsorted(digits.split.train, cal.indices)
    assert torch.equal(x, digits.x_train[positions]) and torch.equal(y, digits.y_train[positions])
    labels, train_labels = y.numpy(), digits.y_train.numpy()
    for c in range(digits.num_classes):
        proportional = (train_labels == c).mean() * 100
        assert abs((labels == c).sum() - proportional) < 1, c
        assert cal.per_class[digits.class_names[c]] == (labels == c).sum()
    assert sum(cal.per_class.values()) == 100
    assert calibration.draw(digits, size=100, seed=0).indices == cal.indices
    assert calibration.draw(digits, size=100, seed=1).indices != cal.indices
    assert len(calibration.draw(digits, size=10**6, seed=0).indices) == len(digits.split.train)


def test_calibration_save_load_and_mismatch(digits, tmp_path):
    cal = calibration.draw(digits, size=100, seed=0)
    path = tmp_path / "cal" / "manifest.json"
    calibration.save(cal, path)
    manifest = json.loads(path.read_text())
    assert manifest["indices"] == cal.indices and manifest["data_hash"] == digits.data_hash
    loaded = calibration.load(path)
    assert loaded == cal
    assert calibration.load(path.parent) == cal  # a folder holding manifest.json
    assert torch.equal(loaded.tensors(digits)[0], cal.tensors(digits)[0])
    manifest["data_hash"] = "0" * 64
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="does not match"):
        calibration.load(path).tensors(digits)
    other_split = prepare_data("builtin:digits", seed=1)
    with pytest.raises(DataError):
        cal.tensors(other_split)
    with pytest.raises(DataError, match="does not exist"):
        calibration.load(tmp_path / "nothing.json")


# ---------------------------------------------------------------- end to end

E2E = {
    "name": "compression",
    "seed": 0,
    "data": {"source": "builtin:digits"},
    "teacher": {"model": "zoo:resnet", "kwargs": {"width": 0.25}, "augment": False, "train": {"epochs": 2}},
    "student": {"model": "zoo:tiny_cnn", "kwargs": {"width": 0.5}},
    "distill": {"train": {"epochs": 3}},
    "prune": {"ratio": 0.3, "steps": 1, "recovery": {"epochs": 1}},
    "quantize": {"mode": "qad", "freeze_observers_after": 5, "train": {"epochs": 1}},
}


def with_quantize(mode: str) -> dict:
    cfg = copy.deepcopy(E2E)
    cfg["quantize"] = {**cfg["quantize"], "mode": mode}
    return cfg


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    """The pipeline up to export with qad; then ptq and none in copies of that run (upstream stages cached)."""
    root = tmp_path_factory.mktemp("e2e")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEKD_CACHE_DIR", str(root / "cache"))
        qad = edgekd.run(copy.deepcopy(E2E), root / "run", stages=["export"])
        qad_meta = {k: ox.metadata(qad.run_dir / a.path) for k, a in qad["export"].artifacts.items()}
        results = {"qad": qad}
        for mode in ("ptq", "none"):
            shutil.copytree(root / "run", root / mode)
            results[mode] = edgekd.run(with_quantize(mode), root / mode, stages=["export"])
    return SimpleNamespace(**results, qad_meta=qad_meta)


def test_pipeline_prunes_quantizes_and_exports(e2e):
    run = e2e.qad
    prune = run["prune"].compression
    assert prune.pruned and prune.macs_reduction > 0
    assert prune.after.macs < prune.before.macs
    assert run["quantize"].mode == "qad" and run["quantize"].observer == "moving_average"
    artifacts = run["export"].artifacts
    assert set(artifacts) == {"fp32", "int8"}
    for name, art in artifacts.items():
        path = run.run_dir / art.path
        assert path.is_file() and path.suffix == ".onnx", name
        assert sha256_file(path) == art.sha256
        assert art.parity.ok is True and art.parity.samples > 0, name
        if art.parity.step is None:  # FP32: an absolute tolerance
            assert art.parity.max_abs_diff <= art.parity.atol
        else:  # INT8: whole output steps, with the float-rounding allowance of edgekd.parity
            assert art.parity.max_diff_steps <= art.parity.atol / art.parity.step + 1e-3
        meta = e2e.qad_meta[name]
        assert json.loads(meta["class_names"]) == [str(i) for i in range(10)]
        pre = json.loads(meta["preprocessing"])
        assert pre["input_shape"] == [1, 8, 8] and pre["layout"] == "NCHW" and "normalize" in pre
        prov = json.loads(meta["provenance"])
        assert prov["data_hash"] == prepare_data("builtin:digits", seed=0).data_hash
        assert prov["student"] == run["prune"].model.sha256
    assert artifacts["fp32"].parity.atol == pytest.approx(1e-4)
    assert e2e.qad_meta["int8"]["quantization"] == "qad"
    # the exported INT8 model behaves like the fake-quantized one
    assert abs(artifacts["int8"].accuracy - run["quantize"].figures.accuracy) <= 0.01  # the graph itself: at most one output step from fake-quant
    assert abs(artifacts["fp32"].accuracy - run["prune"].figures.accuracy) < 1e-9
    assert artifacts["int8"].size_bytes < artifacts["fp32"].size_bytes


def test_pipeline_ptq(e2e):
    run = e2e.ptq
    assert run.stages["prune"].cached and not run.stages["quantize"].cached
    assert run["quantize"].mode == "ptq" and run["quantize"].observer == "minmax"
    assert run["quantize"].train is None  # calibrated, not trained
    int8 = run["export"].artifacts["int8"]
    path = run.run_dir / int8.path
    assert path.is_file() and int8.parity.ok is True
    assert ox.metadata(path)["quantization"] == "ptq"
    assert abs(int8.accuracy - run["quantize"].figures.accuracy) <= 0.01


def test_pipeline_without_quantization(e2e):
    run = e2e.none
    assert run["quantize"].mode == "none" and run["quantize"].state is None
    artifacts = run["export"].artifacts
    assert set(artifacts) == {"fp32"}
    assert artifacts["fp32"].parity.ok is True
    assert (run.run_dir / artifacts["fp32"].path).is_file()


@pytest.mark.parametrize("mode", ["ptq", "qad"])
def test_every_layer_back_in_float_takes_the_students_weights_and_leaves_no_quantizer(e2e, mode, tmp_path):
    """A CNN with batch norm (folded into the convolutions, whose nodes the two exports name apart): layers pair
    with their FP32 twins by order; PTQ rounded the very FP32 weights, so every layer takes them and the model
    computes the FP32 one; QAD moved the weights on, so its float layers keep the learned (INT8 grid) values."""
    import onnx
    import onnxruntime as ort

    from edgekd.mixed_precision import quantized_layers, with_float_layers

    run = getattr(e2e, mode)
    qdq, fp32 = (run.run_dir / run["export"].artifacts[k].path for k in ("int8", "fp32"))
    layers = quantized_layers(qdq)
    every = tmp_path / "every.onnx"
    weights = with_float_layers(qdq, layers, every, fp32)
    assert set(weights) == set(layers) and len(layers) >= 3
    assert not [n.op_type for n in onnx.load(str(every)).graph.node if n.op_type.endswith("QuantizeLinear")]
    x = np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32) * 2 - 1

    def outputs(path):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(None, {session.get_inputs()[0].name: x[i: i + 1]})[0] for i in range(len(x))])

    if mode == "ptq":
        assert set(weights.values()) == {"fp32"}
        np.testing.assert_allclose(outputs(every), outputs(fp32), atol=1e-4)
    else:
        assert "int8 grid" in weights.values()
    # what ONNX Runtime runs: float weights as constants, no dequantization left on every call
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(every), options, providers=["CPUExecutionProvider"])
    assert not [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node if "Quantize" in n.op_type]
