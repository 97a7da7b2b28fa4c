"""A user's own model through ``python:module:Class`` on an npz data set (issue 12).

The end-to-end test runs every stage with a MobileNet-style network written by the test (its head is
called ``head``, not ``classifier``) and no ``prune.ignore``, on every host-cpu backend: every artifact
is ok, keeps the 10 classes and passes INT8 parity. The unit tests around it pin the parts one by one:
output layers found on the graph, a ratio that prunes nothing refused before training, parity counted
in whole output steps, and the class count said and checked.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import edgekd
from edgekd.config import PruneConfig, parse_config
from edgekd.data import prepare_data
from edgekd.errors import ConfigError, DataError
from edgekd.parity import compare
from edgekd.prune import count, dry_run_problems, ignore_problems, make_pruner, output_layers

MODEL_SOURCE = textwrap.dedent('''
    """A MobileNet-style network of the user's own: depthwise-separable blocks, a head called ``head``."""
    import torch
    from torch import nn


    def separable(cin, cout, stride):
        return nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(),
        )


    class EdgeNet(nn.Module):
        def __init__(self, num_classes=10, in_channels=1, width=16):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU6())
            self.blocks = nn.Sequential(separable(width, 2 * width, 2), separable(2 * width, 2 * width, 1),
                                        separable(2 * width, 4 * width, 2))
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.head = nn.Linear(4 * width, num_classes)

        def forward(self, x):
            return self.head(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


    class ConvHeadNet(nn.Module):
        """Classes from a 1x1 convolution and its BatchNorm, averaged: no Linear at all."""

        def __init__(self, num_classes=10, in_channels=1):
            super().__init__()
            self.body = separable(in_channels, 16, 1)
            self.logits = nn.Conv2d(16, num_classes, 1)
            self.norm = nn.BatchNorm2d(num_classes)

        def forward(self, x):
            return self.norm(self.logits(self.body(x))).mean((2, 3))
''')

SHAPE = (1, 16, 16)
EXAMPLE = torch.zeros(1, *SHAPE)


def write_module(folder: Path, name: str = "usernet") -> Path:
    path = folder / f"{name}.py"
    path.write_text(MODEL_SOURCE)
    return path


@pytest.fixture(scope="module")
def usernet(tmp_path_factory):
    """The test's model module, imported from its file (as edgekd imports it from beside the config)."""
    path = write_module(tmp_path_factory.mktemp("usernet"), "usernet_unit")
    spec = importlib.util.spec_from_file_location("usernet_unit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.pop("usernet_unit", None)
    return module


def digits_npz(path: Path, *, per_class: int = 60, extra_label: int | None = None) -> Path:
    """A few hundred sklearn digits, upsampled to 16x16 uint8, no class names (as a user's own npz)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = np.concatenate([np.flatnonzero(digits.target == c)[:per_class] for c in range(10)])
    images = torch.from_numpy(digits.images[keep][:, None] / 16.0).float()
    x = torch.nn.functional.interpolate(images, size=SHAPE[1:], mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()[:, 0]
    y = digits.target[keep].astype(np.int64)
    if extra_label is not None:  # half of the last class becomes a stray class
        y[-(per_class // 2):] = extra_label
    np.savez(path, x=x, y=y)
    return path


# ---------------------------------------------------------------- output layers and prune.ignore


def test_output_layer_found_whatever_its_name(usernet):
    assert output_layers(usernet.EdgeNet(), EXAMPLE) == ["head"]
    assert output_layers(usernet.ConvHeadNet(), EXAMPLE) == ["logits", "norm"]  # conv head and its BatchNorm
    torch.manual_seed(0)
    for net in (usernet.EdgeNet(), usernet.ConvHeadNet()):
        macs = count(net, EXAMPLE)[0]
        make_pruner(net, EXAMPLE, importance="l2", ratio=0.5, ignore=[]).step()
        assert net(torch.randn(2, *SHAPE)).shape == (2, 10)  # the class count survives
        assert count(net, EXAMPLE)[0] < macs


def test_ignore_error_names_layers_that_fit(usernet):
    [problem] = ignore_problems(usernet.EdgeNet(), ["stem.0", "classifier"], key="prune.ignore")
    text = str(problem)
    assert text.startswith("prune.ignore[1]: the student has no module 'classifier'")
    assert "stem.0" in text and "blocks.0.3" in text and "head" in text  # layers with channels, head among them


def test_ratio_that_prunes_nothing_is_refused_before_training(usernet):
    net = usernet.EdgeNet()
    [problem] = dry_run_problems(net, PruneConfig(ratio=0.99), EXAMPLE)
    text = str(problem)
    assert problem.key == "prune.ratio" and "0.99" in text and "removes nothing" in text
    macs = f"{count(net, EXAMPLE)[0]:,}"
    assert f"MACs {macs} -> {macs}" in text
    assert "ratio 0.9 prunes" in text or "ratio 0.75 prunes" in text  # what would work instead
    assert dry_run_problems(net, PruneConfig(ratio=0.3), EXAMPLE) == []
    assert dry_run_problems(net, PruneConfig(ratio=0.99, enabled=False), EXAMPLE) == []


def test_run_refuses_a_ratio_that_prunes_nothing_before_any_stage(tmp_path):
    write_module(tmp_path)
    cfg = {
        "data": {"source": f"npz:{digits_npz(tmp_path / 'digits.npz', per_class=20)}"},
        "teacher": {"model": "python:usernet:EdgeNet"},
        "student": {"model": "python:usernet:EdgeNet", "kwargs": {"width": 8}},
        "prune": {"ratio": 0.99},
    }
    with pytest.raises(ConfigError, match=r"prune\.ratio: pruning at ratio 0\.99 removes nothing") as info:
        edgekd.run(parse_config(cfg, base_dir=tmp_path), tmp_path / "run")
    assert "nothing was trained" in str(info.value)
    assert not (tmp_path / "run" / "teacher" / "stage.json").exists()


# ---------------------------------------------------------------- parity in whole output steps


def test_differences_exactly_on_step_multiples_pass_at_that_limit():
    rng = np.random.default_rng(0)
    scale = np.float32(0.0612745)
    reference = (np.round(rng.normal(0, 40, (64, 10))) * scale).astype(np.float32)  # dequantized: k * scale
    moved = reference + np.float32(3) * scale  # every logit three whole steps up, computed in float32
    # float32 rounding puts some of those differences a hair above 3 * scale: take one of them
    over = np.argwhere(moved.astype(np.float64) - reference > 3 * float(scale))
    assert len(over), "no rounding overshoot in this draw"
    candidate = reference.copy()
    candidate[tuple(over[0])] = moved[tuple(over[0])]
    assert not compare(reference, candidate, atol=3 * float(scale), min_top1_agreement=0.9).ok  # the old check failed it
    parity = compare(reference, candidate, step=float(scale), limit_steps=3, min_top1_agreement=0.9)
    assert parity.ok, parity.describe()
    assert parity.max_diff_steps == pytest.approx(3, abs=1e-4) and parity.step == pytest.approx(float(scale))
    assert "output steps of 0.0613 (limit 3)" in parity.describe()
    candidate[tuple(over[0])] += scale  # a fourth step is a real mismatch
    failed = compare(reference, candidate, step=float(scale), limit_steps=3, min_top1_agreement=0.9)
    assert not failed.ok and "= 4" in failed.describe()


def test_describe_shows_enough_digits():
    scale = 0.06
    reference = np.zeros((4, 10))
    candidate = reference.copy()
    candidate[0, 0] = 3.0000014 * scale
    parity = compare(reference, candidate, step=scale, limit_steps=3, min_top1_agreement=0.0)
    assert parity.ok and "3.0000014 output steps" in parity.describe()


def test_compile_int8_tolerance_defaults_to_the_exports():
    from edgekd.stages.compile import int8_limit

    assert int8_limit(parse_config({"export": {"int8_atol_steps": 5}})) == 5
    assert int8_limit(parse_config({"export": {"int8_atol_steps": 5}, "compile": {"int8_atol_steps": 2}})) == 2


# ---------------------------------------------------------------- class count


def test_class_count_is_said_and_can_be_stated(tmp_path):
    path = digits_npz(tmp_path / "eleven.npz", per_class=24, extra_label=10)  # labels 0..10, no names
    data = prepare_data(f"npz:{path}")
    assert data.num_classes == 11 and "11 classes, inferred from the labels 0..10" in data.classes_note()
    with pytest.raises(DataError) as info:
        prepare_data(f"npz:{path}", num_classes=10)
    text = str(info.value)
    assert "label 10 at index" in text and str(path) in text and "data.num_classes" in text and "10 classes" in text


def test_inferred_class_count_is_recorded(tmp_path):
    path = digits_npz(tmp_path / "ten.npz", per_class=12)
    inferred = prepare_data(f"npz:{path}")
    assert inferred.num_classes == 10 and inferred.provenance()["classes_from"] == "labels"
    assert "10 classes, inferred from the labels 0..9" in inferred.classes_note()
    stated = prepare_data(f"npz:{path}", num_classes=10)
    assert stated.provenance()["classes_from"] == "data.num_classes" and stated.data_hash == inferred.data_hash
    with pytest.raises(DataError, match="class '10'.* no samples"):
        prepare_data(f"npz:{path}", num_classes=11)  # a class stated but never seen
    assert prepare_data("builtin:digits").provenance()["classes_from"] == "names"


# ---------------------------------------------------------------- end to end


# at least these (host-cpu.yaml may list more runtimes; each of them must be ok as well)
HOST_CPU = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "fp16"),
            ("openvino", "int8"), ("litert", "fp32"), ("litert", "fp16"), ("litert", "int8")]


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    """Every stage up to compile: the user's EdgeNet as teacher (wider) and student, no prune.ignore."""
    folder = tmp_path_factory.mktemp("user-model")
    write_module(folder)
    npz = digits_npz(folder / "digits.npz")  # 600 images, 16x16, labels 0..9, no class names
    train = {"batch_size": 32, "lr": 0.01, "warmup_epochs": 0}
    cfg = parse_config({
        "name": "user-model",
        "data": {"source": "npz:digits.npz"},
        "teacher": {"model": "python:usernet:EdgeNet", "kwargs": {"width": 24}, "augment": False,
                    "train": {"epochs": 8, **train}},
        "student": {"model": "python:usernet:EdgeNet", "kwargs": {"width": 16}},
        "distill": {"train": {"epochs": 8, **train}},
        "prune": {"ratio": 0.3, "steps": 1, "recovery": {"epochs": 2, **train}},
        "quantize": {"mode": "ptq", "calibration_size": 128},
        "targets": ["host-cpu"],
    }, base_dir=folder)
    assert cfg.prune.ignore == [] and npz.is_file()
    return edgekd.run(cfg, folder / "run", stages=["compile"])


@pytest.mark.slow  # trains three models and converts for three runtimes: minutes on 2 busy cores
def test_user_model_keeps_its_classes_through_pruning(user_run):
    pruned = user_run["prune"]
    c = pruned.compression
    assert c.pruned and c.after.macs < c.before.macs  # pruned for real, with no layer named classifier
    assert pruned.class_names == [str(i) for i in range(10)] and pruned.data["classes_from"] == "labels"
    assert pruned.data["num_classes"] == 10


@pytest.mark.slow  # trains three models and converts for three runtimes: minutes on 2 busy cores
def test_every_host_cpu_artifact_is_ok_with_ten_outputs(user_run):
    from edgekd.backends import BACKENDS

    rows = user_run["compile"].artifacts
    assert set(HOST_CPU) <= {(r.backend, r.precision) for r in rows}
    x = np.zeros((3, *SHAPE), np.float32)
    for row in rows:
        assert row.status == "ok", (row.backend, row.precision, row.reason)
        assert row.parity.ok, row.parity.describe()
        assert row.accuracy >= 0.6, (row.backend, row.precision, row.accuracy)  # it learned (about 0.8 here)
        if row.precision == "int8":  # counted in whole output steps, within the export's limit
            steps = row.parity.max_diff_steps
            assert row.parity.step > 0 and steps <= 3 + 1e-3, row.parity.describe()
            assert abs(steps - round(steps)) < 1e-3, row.parity.describe()  # differences sit on step multiples
        model = BACKENDS.get(row.backend)().load(user_run.run_dir / row.path, dict(row.options))
        assert np.asarray(model.predict_batched(x)).shape == (3, 10), (row.backend, row.precision)
    export = user_run["export"].artifacts
    assert export["int8"].parity.ok and export["int8"].parity.max_diff_steps is not None
    meta = json.loads(json.dumps(export["int8"].model_dump(mode="json")))
    assert meta["parity"]["step"] == pytest.approx(export["int8"].output_scale)
