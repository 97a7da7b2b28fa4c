"""edgekd.models: zoo, loading, weights, stats and feature hooks."""

from __future__ import annotations

import copy
import textwrap

import pytest
import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

from edgekd.errors import ConfigError, ModelError
from edgekd.models import (
    MODELS,
    Ensemble,
    FeatureRecorder,
    OnnxModule,
    create_model,
    feature_shapes,
    load_model,
    model_stats,
    save_weights,
)

# torch's own deprecation notices for the legacy exporters the tests use on purpose
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*(jit|TorchScript|feature will be removed).*:DeprecationWarning"
)

ZOO = ["mobilenetv2", "resnet", "tiny_cnn"]


def make(name: str, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    kwargs.setdefault("num_classes", 10)
    kwargs.setdefault("in_channels", 1)
    return create_model(name, **kwargs).eval()


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def hand_model() -> nn.Module:
    """Conv(1->4, 3x3, pad 1) + Linear(4*28*28 -> 10): MACs easy to count by hand."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 28 * 28, 10)).eval()


HAND_MACS = 4 * 28 * 28 * (1 * 3 * 3) + 4 * 28 * 28 + 10 * 4 * 28 * 28 + 10  # conv + its bias + linear + bias


# --- zoo ---------------------------------------------------------------------------------------


def test_zoo_registers_the_three_models():
    assert set(ZOO) <= set(MODELS.names())  # the shipped zoo is registered (more may be added)


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 32, 32)])
def test_zoo_forward_any_input_size(name, shape):
    model = make(name, num_classes=7, in_channels=shape[0])
    assert isinstance(model.classifier, nn.Linear) and model.classifier.out_features == 7
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ZOO)
def test_width_changes_params_monotonically(name):
    counts = [params(make(name, width=w)) for w in (0.25, 0.5, 1.0, 2.0)]
    assert counts == sorted(counts) and len(set(counts)) == 4


@pytest.mark.parametrize("name", ZOO)
def test_init_is_deterministic_given_the_seed(name):
    a, b, c = make(name, seed=1).state_dict(), make(name, seed=1).state_dict(), make(name, seed=2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_blocks_add_their_input():
    # zeroing a block's last BN leaves only the shortcut: ResNet gives relu(x), MobileNetV2 gives x
    block = make("resnet").layer1[0]
    nn.init.zeros_(block.conv2.bn.weight)
    x = torch.randn(2, 24, 8, 8)
    torch.testing.assert_close(block(x), torch.relu(x))
    inverted = make("mobilenetv2").features[3]
    assert inverted.use_residual
    nn.init.zeros_(inverted.block.project.bn.weight)
    x = torch.randn(2, 24, 8, 8)
    torch.testing.assert_close(inverted(x), x)


def test_bad_model_arguments_name_the_key():
    with pytest.raises(ConfigError, match=r"teacher\.model.*'depth'"):
        create_model("resnet", num_classes=10, in_channels=1, key="teacher.model", depth=50)
    with pytest.raises(ConfigError, match=r"student\.model.*'vgg'"):
        create_model("vgg", num_classes=10, in_channels=1, key="student.model")
    with pytest.raises(ConfigError, match=r"student\.model.*width"):
        create_model("tiny_cnn", num_classes=10, in_channels=1, width=0, key="student.model")


def test_student_macs_are_a_tenth_of_the_teacher():
    teacher = model_stats(make("resnet"), torch.zeros(1, 1, 28, 28)).macs
    tiny = model_stats(make("tiny_cnn"), torch.zeros(1, 1, 28, 28)).macs
    mobile = model_stats(make("mobilenetv2", width=0.5), torch.zeros(1, 1, 28, 28)).macs
    assert 30e6 <= teacher <= 60e6
    assert 0 < tiny <= teacher / 10
    assert 0 < mobile <= teacher / 10


def test_mobilenetv2_imagenet_schedule():
    model = make("mobilenetv2", num_classes=1000, in_channels=3, small_input=False)
    assert feature_shapes(model, ["features.18"], torch.zeros(2, 3, 224, 224))["features.18"] == (2, 1280, 7, 7)
    # ~300M MACs for the published model; the counter also counts BN/ReLU element ops
    assert 290e6 < model_stats(model, torch.zeros(1, 3, 224, 224)).macs < 330e6
    small = make("mobilenetv2", in_channels=1)
    assert feature_shapes(small, ["features.18"], torch.zeros(2, 1, 28, 28))["features.18"][-2:] == (2, 2)


# --- stats -------------------------------------------------------------------------------------


def test_macs_are_counted_not_guessed():
    model = hand_model()
    stats = model_stats(model, torch.zeros(1, 1, 28, 28))
    assert stats.macs == HAND_MACS
    assert stats.params == (4 * 9 + 4) + (10 * 4 * 28 * 28 + 10)
    assert stats.size_bytes == len(safetensors_bytes(model.state_dict()))
    assert stats.to_dict()["macs"] == HAND_MACS


# --- loading -----------------------------------------------------------------------------------


def test_load_zoo_with_kwargs():
    model = load_model("zoo:tiny_cnn", kwargs={"width": 0.5}, num_classes=3, in_channels=1)
    assert params(model) == params(make("tiny_cnn", num_classes=3, width=0.5))


def test_load_python_module_from_base_dir(tmp_path):
    (tmp_path / "mynet.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            class Net(nn.Module):
                def __init__(self, num_classes, hidden=8):
                    super().__init__()
                    self.body = nn.Linear(28 * 28, hidden)
                    self.classifier = nn.Linear(hidden, num_classes)

                def forward(self, x):
                    return self.classifier(torch.relu(self.body(x.flatten(1))))
            """
        )
    )
    for spec in ("python:mynet:Net", "python:mynet.py:Net"):
        model = load_model(spec, kwargs={"hidden": 5}, num_classes=4, in_channels=1, base_dir=tmp_path)
        assert model.body.out_features == 5 and model(torch.zeros(2, 1, 28, 28)).shape == (2, 4)
    installed = load_model("python:edgekd.models.tiny_cnn:TinyCNN", num_classes=4, in_channels=1)
    assert installed.classifier.out_features == 4
    with pytest.raises(ModelError, match="Nett"):
        load_model("python:mynet:Nett", num_classes=4, in_channels=1, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="hiden"):
        load_model("python:mynet:Net", kwargs={"hiden": 3}, num_classes=4, in_channels=1, base_dir=tmp_path)


@pytest.mark.parametrize("how", ["script", "trace"])
def test_load_torchscript(tmp_path, how):
    model, x = make("tiny_cnn"), torch.randn(2, 1, 28, 28)
    scripted = torch.jit.script(model) if how == "script" else torch.jit.trace(model, x)
    scripted.save(str(tmp_path / "m.ts"))
    loaded = load_model("torchscript:m.ts", num_classes=10, in_channels=1, base_dir=tmp_path)
    torch.testing.assert_close(loaded(x), model(x))
    stats = model_stats(loaded, torch.zeros(1, 1, 28, 28))
    assert stats.macs > 0 and stats.params == params(model)


def test_load_torch_export(tmp_path):
    model, x = make("tiny_cnn"), torch.randn(2, 1, 28, 28)
    torch.export.save(torch.export.export(model, (x,)), str(tmp_path / "m.pt2"))
    loaded = load_model("export:m.pt2", num_classes=10, in_channels=1, base_dir=tmp_path)
    torch.testing.assert_close(loaded(x), model(x))


def export_onnx(model: nn.Module, path, shape=(1, 28, 28)) -> None:
    torch.onnx.export(
        model, (torch.zeros(1, *shape),), str(path), dynamo=False,
        input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )


def test_load_onnx_matches_torch(tmp_path):
    model, x = make("tiny_cnn"), torch.randn(3, 1, 28, 28)
    export_onnx(model, tmp_path / "m.onnx")
    loaded = load_model("onnx:m.onnx", num_classes=10, in_channels=1, base_dir=tmp_path)
    assert isinstance(loaded, OnnxModule) and loaded.is_onnx and loaded.input_name == "input"
    assert loaded.path == tmp_path / "m.onnx"
    out = loaded(x)
    assert out.dtype == torch.float32 and not out.requires_grad
    torch.testing.assert_close(out, model(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(copy.deepcopy(loaded)(x), out)  # the session is reopened on copy


def test_onnx_stats_count_the_same_macs(tmp_path):
    model = hand_model()
    export_onnx(model, tmp_path / "hand.onnx")
    stats = model_stats(OnnxModule(tmp_path / "hand.onnx"), torch.zeros(1, 1, 28, 28))
    assert stats.macs == HAND_MACS and stats.params == params(model)
    assert stats.size_bytes == (tmp_path / "hand.onnx").stat().st_size
    both = model_stats(Ensemble([OnnxModule(tmp_path / "hand.onnx")] * 2), torch.zeros(1, 1, 28, 28))
    assert both.macs == 2 * HAND_MACS


def test_load_errors_name_key_and_file(tmp_path):
    with pytest.raises(ConfigError, match="teacher"):
        load_model("hub:resnet", num_classes=10, in_channels=1, key="teacher")
    with pytest.raises(ModelError, match=r"teacher.*nope\.onnx"):
        load_model("onnx:nope.onnx", num_classes=10, in_channels=1, base_dir=tmp_path, key="teacher")
    with pytest.raises(ModelError, match=r"teacher.*missing\.safetensors"):
        load_model("zoo:resnet", weights="missing.safetensors", num_classes=10, in_channels=1,
                   base_dir=tmp_path, key="teacher")


# --- weights -----------------------------------------------------------------------------------


def test_weights_round_trip(tmp_path):
    model, x = make("resnet", seed=1), torch.randn(2, 1, 28, 28)
    save_weights(model, tmp_path / "w.safetensors")
    sd = model.state_dict()
    torch.save(sd, tmp_path / "flat.pt")
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "nested.pth")
    torch.save({"model": sd}, tmp_path / "model.pt")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left
    for name in ("w.safetensors", "flat.pt", "nested.pth", "model.pt"):
        torch.manual_seed(2)
        loaded = load_model("zoo:resnet", weights=name, num_classes=10, in_channels=1, base_dir=tmp_path).eval()
        assert torch.equal(loaded(x), model(x)), name


class Payload:
    pass


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"weight": torch.zeros(1), "extra": Payload()}, tmp_path / "evil.pt")
    torch.save(make("tiny_cnn"), tmp_path / "whole.pt")
    for name in ("evil.pt", "whole.pt"):
        with pytest.raises(ModelError, match="refused"):
            load_model("zoo:tiny_cnn", weights=tmp_path / name, num_classes=10, in_channels=1)


def test_mismatched_weights_name_the_layer(tmp_path):
    save_weights(make("tiny_cnn", width=0.5), tmp_path / "half.safetensors")
    with pytest.raises(ModelError, match=r"student.*half\.safetensors.*features\.block1\.conv\.weight"):
        load_model("zoo:tiny_cnn", weights="half.safetensors", num_classes=10, in_channels=1,
                   base_dir=tmp_path, key="student")
    with pytest.raises(ModelError, match=r"missing.*layer1\.0"):
        load_model("zoo:resnet", weights="half.safetensors", num_classes=10, in_channels=1, base_dir=tmp_path)


# --- ensemble ----------------------------------------------------------------------------------


class Const(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


def test_ensemble_mean_and_weighted():
    a, b, x = Const([1.0, 0.0]), Const([3.0, 4.0]), torch.zeros(2, 1)
    torch.testing.assert_close(Ensemble([a, b])(x), torch.tensor([[2.0, 2.0]] * 2))
    torch.testing.assert_close(Ensemble([a, b], [3, 1], "weighted")(x), torch.tensor([[1.5, 1.0]] * 2))
    assert len(Ensemble([a, b]).members) == 2
    with pytest.raises(ConfigError):
        Ensemble([a, b], [1.0], "weighted")
    with pytest.raises(ConfigError):
        Ensemble([a, b], [1.0, 2.0], "mean")


# --- feature hooks -----------------------------------------------------------------------------


def test_feature_recorder_shapes_and_cleanup():
    model = make("resnet")
    with FeatureRecorder(model, ["layer1", "layer2", "layer3"]) as rec:
        model(torch.zeros(2, 1, 28, 28))
    assert {k: tuple(v.shape) for k, v in rec.features.items()} == {
        "layer1": (2, 24, 28, 28), "layer2": (2, 48, 14, 14), "layer3": (2, 96, 7, 7)
    }
    rec.clear()
    model(torch.zeros(2, 1, 28, 28))
    assert rec.features == {}  # hooks are gone after the with block


def test_student_features_keep_gradients_and_pair_with_teacher():
    student = make("tiny_cnn").train()
    with FeatureRecorder(student, ["features.block2"]) as rec:
        student(torch.randn(2, 1, 28, 28))
    assert rec.features["features.block2"].requires_grad
    teacher = feature_shapes(make("resnet"), ["layer2", "layer3"], torch.zeros(2, 1, 28, 28))
    pupil = feature_shapes(student, ["features.block2", "features.block3"], torch.zeros(2, 1, 28, 28))
    assert teacher["layer2"][-2:] == pupil["features.block2"][-2:] == (14, 14)
    assert teacher["layer3"][-2:] == pupil["features.block3"][-2:] == (7, 7)
    assert student.training  # feature_shapes restores the mode


def test_feature_recorder_errors(tmp_path):
    with pytest.raises(ModelError, match=r"distill\.features.*'layer22'.*layer2"):
        FeatureRecorder(make("resnet"), ["layer22"])
    export_onnx(make("tiny_cnn"), tmp_path / "m.onnx")
    with pytest.raises(ModelError, match=r"features need a PyTorch model; 'features\.block1' is inside an ONNX model"):
        FeatureRecorder(OnnxModule(tmp_path / "m.onnx"), ["features.block1"])
    ens = Ensemble([make("resnet"), make("tiny_cnn")])
    assert feature_shapes(ens, ["members.0.layer3"], torch.zeros(2, 1, 28, 28))["members.0.layer3"] == (2, 96, 7, 7)
