"""Bad input, as a hostile but realistic user gives it: each is refused with exit 2, no traceback, and a
message that names the key, file or value.

The battery is one table, ``CASES``: one line per case, ``case(id, recipe, *names)``. A recipe writes the
case's files into a temporary folder and returns the ``edgekd`` arguments (``run_with`` a config,
``gate_with`` a report and budgets, ``devices_with`` a target file, ``cli`` anything else); ``names``
are the substrings the message must hold (``absent``: substrings it must not hold, such as advice to load a
file unsafely). Every case fails while the config, data, models and files are checked or loaded, before
anything trains (asserted: no epoch is reported), so the battery takes seconds per case; the few that need a
real run folder copy one trained once per module (``trained_run``). No case may run code hidden in a pickle
(asserted: the payload's marker file never appears). Cases run in-process
through typer's ``CliRunner`` (the real ``edgekd.cli.app``; the console writes to the captured stderr);
those marked ``process=True`` run ``python -m edgekd`` in a subprocess, where the real stderr, the run
log's redirection of it and code a file could smuggle in (pickles) behave as they do for a user.

Messages are compared with all whitespace removed: the console wraps long lines (and folds long paths).
"""

from __future__ import annotations

import copy
import os
import pickle
import re
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file
from typer.testing import CliRunner

from edgekd.cli import app

from conftest import TINY  # tests/ is on sys.path (no package)

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "tests" / "fixtures" / "report" / "report.json"  # a real report: host-cpu, apple-mac, jetson-orin artifacts

# The tiny config (digits, quarter-width ResNet teacher, half-width tiny CNN student), one epoch per training:
# valid as it is (test_base_config_is_valid), so each case's one change is the only problem.
BASE = copy.deepcopy(TINY)
BASE["teacher"]["train"]["epochs"] = 1
BASE["distill"]["train"]["epochs"] = 1
DROP = object()  # an override value that removes the key

X = np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32)  # a valid npz data set: 2 classes of 10
Y = np.arange(20) % 2
MARKER = "payload-ran"  # the file a malicious pickle creates when it is unpickled


class Payload:
    """Unpickling this creates ``path``: a harmless stand-in for code a pickle can run."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


MODEL_PY = """
import torch.nn as nn

class Net(nn.Module):
    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.features = nn.Conv2d(in_channels, 4, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))

def broken(**kwargs):
    raise ValueError("the user's model refuses to build")

def not_a_module(**kwargs):
    return 42
"""

DATA_PY = """
import numpy as np

def raises():
    raise RuntimeError("the user's loader lost its files")

def wrong_type():
    return "not arrays"

def pairs_missing():
    return [(np.zeros((1, 8, 8)), 0, "extra")] * 2
"""


# ---------------------------------------------------------------- recipes: files and arguments


@dataclass
class Workspace:
    """What a recipe writes into: the case's folder, and the trained run (built on first use)."""

    tmp: Path
    trained: Callable[[], Path]
    marker: Path = field(init=False)

    def __post_init__(self) -> None:
        self.marker = self.tmp / MARKER


Recipe = Callable[[Workspace], list[str]]
FileSpec = Any  # str (text), bytes, or a callable(path, workspace) that writes it


def write_files(ws: Workspace, files: dict[str, FileSpec] | None) -> None:
    for name, content in (files or {}).items():
        path = ws.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            path.mkdir(exist_ok=True)
        elif isinstance(content, str):
            path.write_text(content)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            content(path, ws)


def merge(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` deep-merged; a ``DROP`` value removes the key."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is DROP:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def run_with(overrides: dict | str | None = None, files: dict[str, FileSpec] | None = None, *, command: str = "run",
             args: tuple[str, ...] = (), out: str = "run") -> Recipe:
    """``edgekd COMMAND config.yaml --out run ARGS``: BASE with ``overrides`` (or this YAML text), beside ``files``."""

    def recipe(ws: Workspace) -> list[str]:
        write_files(ws, files)
        config = ws.tmp / "config.yaml"
        if isinstance(overrides, str):
            config.write_text(overrides)
        else:
            config.write_text(yaml.safe_dump(merge(BASE, overrides or {}), sort_keys=False))
        return [command, str(config), "--out", str(ws.tmp / out), *(a.format(tmp=ws.tmp) for a in args)]

    return recipe


def gate_with(report: FileSpec = None, budgets: FileSpec = None, args: tuple[str, ...] = (),
              files: dict[str, FileSpec] | None = None) -> Recipe:
    """``edgekd gate report.json --budgets budgets.yaml ARGS``; the real fixture report and a budget that holds by default.

    ``report`` is a dict (merged into the fixture report's JSON), a callable taking that JSON, or raw text."""

    def recipe(ws: Workspace) -> list[str]:
        import json

        data = json.loads(REPORT.read_text())
        text = (REPORT.read_text() if report is None else json.dumps(merge(data, report)) if isinstance(report, dict)
                else json.dumps(report(data)) if callable(report) else report)
        (ws.tmp / "report.json").write_text(text)
        budget_text = budgets if isinstance(budgets, str) else yaml.safe_dump(
            budgets or {"budgets": [{"target": "host-cpu", "min_accuracy": 0.5}]})
        (ws.tmp / "budgets.yaml").write_text(budget_text)
        write_files(ws, files)
        return ["gate", str(ws.tmp / "report.json"), "--budgets", str(ws.tmp / "budgets.yaml"),
                *(a.format(tmp=ws.tmp) for a in args)]

    return recipe


def target(**fields: Any) -> str:
    """A target file's YAML: one ONNX Runtime FP32 artifact, with ``fields`` merged in."""
    return yaml.safe_dump(merge({"name": "t", "artifacts": [{"backend": "onnxruntime", "precisions": ["fp32"]}]}, fields))


def run_target(text: str) -> Recipe:
    """``edgekd run`` with the config's one target being this target file."""
    return run_with({"targets": ["t.yaml"]}, {"t.yaml": text})


def devices_with(text: str) -> Recipe:
    """``edgekd devices check --targets t.yaml`` on this target file."""
    return cli("devices", "check", "--targets", "{tmp}/t.yaml", files={"t.yaml": text})


def cli(*args: str, files: dict[str, FileSpec] | None = None) -> Recipe:
    def recipe(ws: Workspace) -> list[str]:
        write_files(ws, files)
        return [a.format(tmp=ws.tmp) for a in args]

    return recipe


# File writers (callables for ``files``).


def npz(**arrays: Any) -> Callable[[Path, Workspace], None]:
    """An .npz holding the valid X, Y with ``arrays`` replacing or adding arrays (None drops one)."""

    def write(path: Path, ws: Workspace) -> None:
        merged = {k: v for k, v in {"x": X, "y": Y, **arrays}.items() if v is not None}
        with open(path, "wb") as fh:  # np.savez on a path would append .npz to other suffixes
            np.savez(fh, **merged)

    return write


def npz_object_array(path: Path, ws: Workspace) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, x=np.array([Payload(ws.marker)] * 20, dtype=object), y=Y)


def npz_object_names(path: Path, ws: Workspace) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, x=X, y=Y, class_names=np.array([Payload(ws.marker), "b"], dtype=object))


def npy(path: Path, ws: Workspace) -> None:
    with open(path, "wb") as fh:
        np.save(fh, X)


def png(size: tuple[int, int] = (8, 8)) -> Callable[[Path, Workspace], None]:
    def write(path: Path, ws: Workspace) -> None:
        from PIL import Image

        Image.new("L", size, color=128).save(path)

    return write


def torch_file(obj: Any) -> Callable[[Path, Workspace], None]:
    """``torch.save(obj)``; ``obj`` may be a callable taking the workspace (for a payload naming its marker)."""

    def write(path: Path, ws: Workspace) -> None:
        torch.save(obj(ws) if callable(obj) else obj, path)

    return write


def safetensors_file(tensors: dict[str, torch.Tensor]) -> Callable[[Path, Workspace], None]:
    def write(path: Path, ws: Workspace) -> None:
        save_file(tensors, str(path))

    return write


def truncated(writer: Callable[[Path, Workspace], None], keep: float = 0.5) -> Callable[[Path, Workspace], None]:
    """What ``writer`` writes, cut to ``keep`` of its length (a copy killed mid-way)."""

    def write(path: Path, ws: Workspace) -> None:
        writer(path, ws)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])

    return write


def from_trained(*parts: str, change: Callable[[Path], None] | None = None) -> Recipe:
    """``edgekd distill`` into a copy of the trained run, with ``change`` applied to the file at ``parts``."""

    def recipe(ws: Workspace) -> list[str]:
        import shutil

        shutil.copytree(ws.trained(), ws.tmp / "run")
        if change is not None:
            change(ws.tmp / "run" / Path(*parts))
        (ws.tmp / "config.yaml").write_text(yaml.safe_dump(BASE, sort_keys=False))
        return ["distill", str(ws.tmp / "config.yaml"), "--out", str(ws.tmp / "run")]

    return recipe


RANDOM = bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8))


def resnet_state(ws: Workspace) -> dict[str, torch.Tensor]:
    """A half-width ResNet's weights: the right keys for BASE's quarter-width teacher, every shape wrong."""
    from edgekd.models.zoo import create_model

    return create_model("resnet", num_classes=10, in_channels=1, width=0.5).state_dict()

ZOO_SAFETENSORS = safetensors_file({"conv.weight": torch.zeros(2, 2)})
NET = {"mymodel.py": MODEL_PY}
CHECKPOINT = "run/teacher/member0/checkpoints/last.pt"  # the teacher's, read by --resume before it trains


def data(source: str, **more: Any) -> dict:
    return {"data": {"source": source, **more}}


def teacher(model: str | None = None, weights: str | None = None, **more: Any) -> dict:
    """BASE's teacher with another model (its zoo kwargs dropped unless given) or weights."""
    spec = {k: v for k, v in (("model", model), ("weights", weights)) if v is not None}
    if model is not None and "kwargs" not in more:
        spec["kwargs"] = DROP
    return {"teacher": {**spec, **more}}


# ---------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    recipe: Recipe
    names: tuple[str, ...]  # substrings the message must hold
    code: int = 2
    process: bool = False  # run in a subprocess (python -m edgekd)
    absent: tuple[str, ...] = ()  # substrings the output must not hold


def case(id: str, recipe: Recipe, *names: str, code: int = 2, process: bool = False, absent: tuple[str, ...] = (),
         marks: Any = ()):
    return pytest.param(Case(recipe, names, code, process, absent), id=id, marks=marks)



def bad_report_field(path: str, value: Any) -> Callable[[dict], dict]:
    """The fixture report with the field at ``artifacts.0.accuracy``-style ``path`` set to ``value``."""

    def change(report: dict) -> dict:
        node: Any = report
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        for part in parents:
            node = node[part]
        if value is DROP:
            del node[last]
        else:
            node[last] = value
        return report

    return change


def write_bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


CASES = [
    # ---- the config file
    case("config-missing", cli("run", "{tmp}/nope.yaml"), "nope.yaml", "does not exist"),
    case("config-not-yaml", run_with("data: [1, 2\n"), "config.yaml", "not valid YAML"),
    case("config-is-list", run_with("- teacher\n- student\n"), "config.yaml", "mapping", "list"),
    case("config-is-scalar", run_with("42\n"), "config.yaml", "mapping", "int"),
    case("config-not-utf8", cli("run", "{tmp}/config.yaml", files={"config.yaml": b"name: \xff\xfe\n"}), "config.yaml", "cannot be read"),
    case("config-unknown-top-key", run_with({"techer": {}}), "techer", "did you mean 'teacher'"),
    case("config-unknown-nested-key", run_with({"distill": {"train": {"epocs": 3}}}), "distill.train.epocs", "'epochs'"),
    case("config-epochs-not-int", run_with({"teacher": {"train": {"epochs": "ten"}}}), "teacher.train.epochs", "'ten'"),
    case("config-epochs-zero", run_with({"teacher": {"train": {"epochs": 0}}}), "teacher.train.epochs", "0"),
    case("config-batch-negative", run_with({"distill": {"train": {"batch_size": -8}}}), "distill.train.batch_size", "-8"),
    case("config-lr-zero", run_with({"distill": {"train": {"lr": 0}}}), "distill.train.lr"),
    case("config-optimizer", run_with({"teacher": {"train": {"optimizer": "adam"}}}), "teacher.train.optimizer", "'adam'", "adamw"),
    case("config-momentum-one", run_with({"teacher": {"train": {"momentum": 1.0}}}), "teacher.train.momentum"),
    case("config-seed-text", run_with({"seed": "lucky"}), "seed", "'lucky'"),
    case("config-split-two", run_with({"data": {"split": [0.8, 0.2]}}), "data.split"),
    case("config-split-sum", run_with({"data": {"split": [0.9, 0.5, 0.5]}}), "data.split", "0.9"),
    case("config-image-size-zero", run_with({"data": {"image_size": [0, 8]}}), "data.image_size", "0"),
    case("config-augment-text", run_with({"data": {"augment": "sometimes"}}), "data.augment", "'sometimes'"),
    case("config-prune-ratio", run_with({"prune": {"ratio": 1.5}}), "prune.ratio", "1.5"),
    case("config-prune-two-targets", run_with({"prune": {"ratio": 0.3, "target_macs": 1000}}), "prune", "ratio", "target_macs"),
    case("config-prune-importance", run_with({"prune": {"importance": "l3"}}), "prune.importance", "'l3'"),
    case("config-prune-target-macs", run_with({"prune": {"target_macs": 10**12}}), "prune.target_macs", "1,000,000,000,000"),
    case("config-prune-ignore", run_with({"prune": {"ignore": ["clasifier"]}}), "prune.ignore", "clasifier", "classifier"),
    case("config-quantize-mode", run_with({"quantize": {"mode": "int4"}}), "quantize.mode", "'int4'"),
    case("config-export-opset", run_with({"export": {"opset": 7}}), "export.opset", "7"),
    case("config-profile-runs", run_with({"profile": {"runs": 3}}), "profile.runs", "3"),
    case("config-ensemble-weights", run_with({"teacher": {"ensemble": "weighted"}}), "teacher", "ensemble_weights"),
    case("config-targets-not-list", run_with({"targets": "host-cpu"}), "targets", "'host-cpu'"),
    case("config-unknown-target", run_with({"targets": ["host-cpuu"]}), "targets[0]", "host-cpuu", "did you mean 'host-cpu'"),
    case("config-target-file-missing", run_with({"targets": ["nothere.yaml"]}), "targets[0]", "nothere.yaml", "does not exist"),
    case("config-budgets-missing", run_with({"gate": {"budgets": "nobudgets.yaml"}}), "gate.budgets", "nobudgets.yaml"),
    case("config-budget-matches-nothing", run_with({"gate": {"budgets": "b.yaml"}}, {"b.yaml": "budgets: [{target: host_cpu, min_accuracy: 0.5}]\n"}),
         "budgets[0]", "host_cpu", "host-cpu/onnxruntime/fp32"),
    case("config-profile-devices-unknown", run_with({"profile": {"devices": ["jetson"]}}), "profile.devices", "'jetson'", "host-cpu"),
    # ---- losses
    case("loss-unknown", run_with({"distill": {"losses": [{"name": "ce"}, {"name": "kdd"}]}}), "distill.losses[1].name", "'kdd'", "did you mean 'kd'"),
    case("loss-unknown-argument", run_with({"distill": {"losses": [{"name": "kd", "temprature": 4}]}}), "distill.losses[0]", "temprature", "temperature"),
    case("loss-negative-weight", run_with({"distill": {"losses": [{"name": "kd", "weight": -1}]}}), "distill.losses[0].weight", "-1"),
    case("loss-no-name", run_with({"distill": {"losses": [{"weight": 1.0}]}}), "distill.losses[0].name", "missing"),
    case("loss-feature-without-pairs", run_with({"distill": {"losses": [{"name": "fitnet"}]}}), "distill.losses[0].name", "fitnet", "distill.features"),
    case("loss-quantize-feature", run_with({"quantize": {"losses": [{"name": "at"}]}}), "quantize.losses[0].name", "'at'"),
    case("features-unknown-layer", run_with({"distill": {"features": [{"student": "blok1", "teacher": "layer1"}]}}),
         "distill.features[0].student", "blok1"),
    # ---- models
    case("zoo-unknown-student", run_with({"student": {"model": "zoo:tiny_cnnn"}}), "student", "tiny_cnnn", "tiny_cnn"),
    case("zoo-unknown-teacher", run_with(teacher("zoo:resnet50")), "teacher.members[0]", "resnet50"),
    case("zoo-unknown-kwarg", run_with({"student": {"kwargs": {"widht": 0.5}}}), "student", "widht"),
    case("model-bad-scheme", run_with({"student": {"model": "hub:mobilenet"}}), "student", "hub:mobilenet", "zoo"),
    case("model-no-scheme", run_with({"student": {"model": "tiny_cnn"}}), "student", "'tiny_cnn'", "SCHEME:TARGET"),
    case("python-student-module-missing", run_with({"student": {"model": "python:nomodule:Net"}}), "student", "nomodule"),
    case("python-student-file-missing", run_with({"student": {"model": "python:models/net.py:Net"}}), "student", "net.py", "not found"),
    case("python-student-class-missing", run_with({"student": {"model": "python:mymodel:Nett"}}, NET), "student", "'Nett'", "Net"),
    case("python-student-spec", run_with({"student": {"model": "python:mymodel"}}, NET), "student", "python:MODULE:CLASS"),
    case("python-student-raises", run_with({"student": {"model": "python:mymodel:broken"}}, NET),
         "student.model", "ValueError", "the user's model refuses to build"),
    case("python-student-import-raises", run_with({"student": {"model": "python:bad:Net"}}, {"bad.py": "raise ImportError('no such dependency: tensorflow')\n"}),
         "student", "bad.py", "no such dependency: tensorflow"),
    case("python-student-syntax-error", run_with({"student": {"model": "python:bad:Net"}}, {"bad.py": "class Net(:\n"}), "student", "bad.py", "SyntaxError"),
    case("python-student-not-module", run_with({"student": {"model": "python:mymodel:not_a_module"}}, NET), "student", "not_a_module", "int"),
    case("python-teacher-bad-kwargs", run_with(teacher("python:mymodel:Net", kwargs={"depth": 3}), NET), "teacher.members[0]", "depth"),
    case("kwargs-for-onnx", run_with(teacher("onnx:t.onnx", kwargs={"width": 1}), {"t.onnx": RANDOM}), "teacher.members[0]", "kwargs"),
    case("onnx-teacher-corrupt", run_with(teacher("onnx:t.onnx"), {"t.onnx": RANDOM}), "teacher.members[0]", "t.onnx"),
    case("onnx-teacher-missing", run_with(teacher("onnx:gone.onnx")), "teacher.members[0]", "gone.onnx", "not found"),
    case("onnx-teacher-with-weights", run_with(teacher("onnx:t.onnx", "w.safetensors"), {"t.onnx": RANDOM}), "teacher.members[0]", "weights"),
    case("onnx-student", run_with({"student": {"model": "onnx:s.onnx", "kwargs": DROP}}, {"s.onnx": RANDOM}), "student", "s.onnx"),
    case("torchscript-teacher-corrupt", run_with(teacher("torchscript:t.pt"), {"t.pt": RANDOM}), "teacher.members[0]", "t.pt", "torchscript"),
    case("export-teacher-corrupt", run_with(teacher("export:t.pt2"), {"t.pt2": RANDOM}), "teacher.members[0]", "t.pt2"),
    # ---- weights
    case("weights-missing", run_with(teacher(weights="gone.safetensors")), "teacher.members[0]", "gone.safetensors", "not found"),
    case("weights-suffix", run_with(teacher(weights="w.bin"), {"w.bin": RANDOM}), "teacher.members[0]", "w.bin", ".safetensors"),
    case("weights-safetensors-random", run_with(teacher(weights="w.safetensors"), {"w.safetensors": RANDOM}),
         "teacher.members[0]", "w.safetensors", "not a readable weights file"),
    case("weights-safetensors-truncated", run_with(teacher(weights="w.safetensors"), {"w.safetensors": truncated(safetensors_file({"a": torch.zeros(1000)}))}),
         "teacher.members[0]", "w.safetensors", "not a readable weights file"),
    case("weights-pt-random", run_with(teacher(weights="w.pt"), {"w.pt": RANDOM}), "teacher.members[0]", "w.pt", "not a readable weights file",
         absent=("holds more than tensors", "weights_only")),
    case("weights-pt-truncated", run_with(teacher(weights="w.pt"), {"w.pt": truncated(torch_file({"a": torch.zeros(1000)}))}),
         "teacher.members[0]", "w.pt", "not a readable weights file", absent=("weights_only",)),
    case("weights-pt-pickle-payload", run_with(teacher(weights="w.pt"), {"w.pt": torch_file(lambda ws: {"a": Payload(ws.marker)})}),
         "teacher.members[0]", "w.pt", "refused", absent=("weights_only",)),
    case("weights-pt-plain-pickle", run_with(teacher(weights="w.pt"), {"w.pt": lambda p, ws: p.write_bytes(pickle.dumps(Payload(ws.marker)))}),
         "teacher.members[0]", "w.pt", absent=("weights_only",)),
    case("weights-pt-tensor", run_with(teacher(weights="w.pt"), {"w.pt": torch_file(torch.zeros(3))}), "teacher.members[0]", "w.pt", "Tensor", "state dict"),
    case("weights-pt-non-tensor", run_with(teacher(weights="w.pt"), {"w.pt": torch_file({"conv.weight": 3})}), "teacher.members[0]", "conv.weight", "non-tensor"),
    case("weights-wrong-model", run_with(teacher(weights="w.pt"), {"w.pt": torch_file(resnet_state)}), "teacher.members[0]", "w.pt", "shape mismatches"),
    case("weights-wrong-keys", run_with(teacher(weights="w.safetensors"), {"w.safetensors": ZOO_SAFETENSORS}), "teacher.members[0]", "missing", "unexpected", "conv.weight"),
    case("weights-student-corrupt", run_with({"student": {"weights": "s.safetensors"}}, {"s.safetensors": RANDOM}), "student", "s.safetensors"),
    # ---- data: sources, npz
    case("data-markup-in-path", run_with(data("npz:[/x].npz")), "data.source", "[/x].npz", "not found"),
    case("model-markup-in-name", run_with({"student": {"model": "zoo:[bold]net"}}), "student", "[bold]net"),
    case("data-no-scheme", run_with(data("digits")), "data.source", "'digits'", "SCHEME:ARG"),
    case("data-unknown-scheme", run_with(data("csv:d.csv")), "data.source", "csv", "npz"),
    case("data-unknown-builtin", run_with(data("builtin:mnist")), "data.source", "mnist", "mnist5k"),
    case("npz-missing", run_with(data("npz:gone.npz")), "data.source", "gone.npz", "not found"),
    case("npz-is-npy", run_with(data("npz:d.npy"), {"d.npy": npy}), "data.source", "d.npy", ".npy"),
    case("npz-random-bytes", run_with(data("npz:d.npz"), {"d.npz": RANDOM}), "data.source", "d.npz", "not an .npz archive",
         absent=("allow_pickle",)),
    case("npz-truncated", run_with(data("npz:d.npz"), {"d.npz": truncated(npz())}), "data.source", "d.npz"),
    case("npz-no-y", run_with(data("npz:d.npz"), {"d.npz": npz(y=None, labels=Y)}), "data.source", "d.npz", "'y'", "labels"),
    case("npz-object-array", run_with(data("npz:d.npz"), {"d.npz": npz_object_array}), "data.source", "d.npz", "'x'",
         "never unpickled", absent=("allow_pickle=",)),
    case("npz-nan", run_with(data("npz:d.npz"), {"d.npz": npz(x=np.where(X > 0.99, np.nan, X))}), "data.source", "NaN", "sample"),
    case("npz-inf", run_with(data("npz:d.npz"), {"d.npz": npz(x=np.where(X > 0.99, np.inf, X))}), "data.source", "inf"),
    case("npz-length-mismatch", run_with(data("npz:d.npz"), {"d.npz": npz(y=Y[:19])}), "data.source", "20 samples", "19 labels"),
    case("npz-x-2d", run_with(data("npz:d.npz"), {"d.npz": npz(x=X.reshape(20, 64))}), "data.source", "x must be", "(20, 64)"),
    case("npz-x-strings", run_with(data("npz:d.npz"), {"d.npz": npz(x=np.array(["a"] * 20))}), "data.source", "numeric"),
    case("npz-y-2d", run_with(data("npz:d.npz"), {"d.npz": npz(y=Y[:, None])}), "data.source", "y must be 1-D"),
    case("npz-y-fractional", run_with(data("npz:d.npz"), {"d.npz": npz(y=Y + 0.5)}), "data.source", "non-integer", "0.5"),
    case("npz-y-negative", run_with(data("npz:d.npz"), {"d.npz": npz(y=Y - 1)}), "data.source", "label -1"),
    case("npz-one-class", run_with(data("npz:d.npz"), {"d.npz": npz(y=np.zeros(20, np.int64))}), "data.source", "at least 2"),
    case("npz-empty", run_with(data("npz:d.npz"), {"d.npz": npz(x=X[:0], y=Y[:0])}), "data.source", "no samples"),
    case("npz-names-too-few", run_with(data("npz:d.npz"), {"d.npz": npz(y=Y * 2, class_names=np.array(["a", "b"]))}), "data.source", "label 2", "0..1"),
    case("npz-class-without-samples", run_with(data("npz:d.npz"), {"d.npz": npz(class_names=np.array(["a", "b", "c"]))}), "data.source", "'c'", "no samples"),
    case("npz-label-beyond-num-classes", run_with(data("npz:d.npz", num_classes=2), {"d.npz": npz(y=np.r_[Y[:-1], 2])}),
         "data.source", "label 2", "data.num_classes"),
    case("npz-names-not-strings", run_with(data("npz:d.npz"), {"d.npz": npz_object_names}), "data.source", "'class_names'",
         "never unpickled", absent=("allow_pickle=",)),
    # ---- data: imagefolder
    case("imagefolder-missing", run_with(data("imagefolder:imgs")), "data.source", "imgs", "not found"),
    case("imagefolder-no-classes", run_with(data("imagefolder:imgs"), {"imgs/": None}), "data.source", "imgs", "no class subfolders"),
    case("imagefolder-no-images", run_with(data("imagefolder:imgs"), {"imgs/a/": None, "imgs/b/": None}), "data.source", "no PNG/JPEG"),
    case("imagefolder-empty-class", run_with(data("imagefolder:imgs"), {"imgs/a/1.png": png(), "imgs/a/2.png": png(), "imgs/b/1.png": png(), "imgs/c/": None}),
         "data.source", "'c'", "no samples"),
    case("imagefolder-corrupt-png", run_with(data("imagefolder:imgs"), {"imgs/a/1.png": png(), "imgs/b/broken.png": RANDOM}),
         "data.source", "broken.png", "cannot read image"),
    case("imagefolder-truncated-png", run_with(data("imagefolder:imgs"), {"imgs/a/1.png": png(), "imgs/b/cut.png": truncated(png((64, 64)), 0.6)}),
         "data.source", "cut.png"),
    case("imagefolder-sizes-differ", run_with(data("imagefolder:imgs"), {"imgs/a/1.png": png(), "imgs/b/big.png": png((16, 16))}),
         "data.source", "big.png", "data.image_size"),
    # ---- data: python sources
    case("python-data-raises", run_with(data("python:loader:raises"), {"loader.py": DATA_PY}),
         "data.source", "RuntimeError", "the user's loader lost its files", process=True),
    case("python-data-missing-function", run_with(data("python:loader:load"), {"loader.py": DATA_PY}), "data.source", "'load'"),
    case("python-data-wrong-type", run_with(data("python:loader:wrong_type"), {"loader.py": DATA_PY}), "data.source", "wrong_type", "str"),
    case("python-data-bad-items", run_with(data("python:loader:pairs_missing"), {"loader.py": DATA_PY}), "data.source", "pairs_missing"),
    case("python-data-module-missing", run_with(data("python:noloader:load")), "data.source", "noloader"),
    case("python-data-import-raises", run_with(data("python:loader:raises"), {"loader.py": "import numpy\n1 / 0\n"}), "data.source", "ZeroDivisionError"),
    # ---- targets and device addresses
    case("target-is-list", run_target("- name: t\n"), "t.yaml", "mapping", "list"),
    case("target-not-yaml", run_target("name: [t\n"), "t.yaml", "not valid YAML"),
    case("target-unknown-key", run_target(target(artefacts=[])), "t.yaml", "artefacts", "did you mean 'artifacts'"),
    case("target-no-artifacts", run_target(yaml.safe_dump({"name": "t"})), "t.yaml", "artifacts", "missing"),
    case("target-unknown-backend", run_target(target(artifacts=[{"backend": "onnxrt", "precisions": ["fp32"]}])), "t.yaml", "'onnxrt'", "onnxruntime"),
    case("target-unknown-precision", run_target(target(artifacts=[{"backend": "onnxruntime", "precisions": ["fp8"]}])), "t.yaml", "precisions[0]", "'fp8'"),
    case("target-option-nested", run_target(target(artifacts=[{"backend": "onnxruntime", "precisions": ["fp32"], "options": {"threads": [1]}}])),
         "t.yaml", "options.threads"),
    case("target-power-unknown", run_target(target(power={"model": "tdp"})), "t.yaml", "power.model", "'tdp'", "tdp-fraction"),
    case("target-ssh-option-injection", devices_with(target(device={"ssh": "-oProxyCommand=x"})), "device.ssh", "-oProxyCommand=x"),
    case("target-ssh-spaces", devices_with(target(device={"ssh": "user@host touch pwned"})), "device.ssh", "user@host touch pwned"),
    case("target-ssh-empty", devices_with(target(device={"ssh": ""})), "device.ssh"),
    case("target-ssh-semicolon", devices_with(target(device={"ssh": "host;reboot"})), "device.ssh", "host;reboot"),
    case("target-adb-option", devices_with(target(device={"adb": "-s x shell reboot"})), "device.adb"),
    case("target-macos-runner-newline", devices_with(target(device={"macos_runner": "mac\nrm -rf ~"})), "device.macos_runner"),
    case("target-device-unknown-key", devices_with(target(device={"host": "pi@pi"})), "device.host", "ssh"),
    case("target-device-tool", devices_with(target(device={"ssh": "pi@pi", "tool": "benchmark-app"})), "device.tool", "benchmark_app"),
    case("target-device-pin-text", devices_with(target(device={"ssh": "pi@pi", "pin": ["big"]})), "device.pin[0]", "'big'"),
    case("target-device-timeout", devices_with(target(device={"ssh": "pi@pi", "connect_timeout_s": 0})), "device.connect_timeout_s"),
    case("devices-unknown-target", cli("devices", "check", "--targets", "jetsn-orin"), "--targets", "jetsn-orin", "jetson-orin"),
    case("devices-target-list", devices_with("[]\n"), "t.yaml", "mapping"),
    # ---- budgets (edgekd gate)
    case("budgets-missing", cli("gate", str(REPORT), "--budgets", "{tmp}/none.yaml"), "none.yaml", "does not exist"),
    case("budgets-not-yaml", gate_with(budgets="budgets: [\n"), "budgets.yaml", "not valid YAML"),
    case("budgets-list", gate_with(budgets="- target: '*'\n"), "budgets.yaml", "mapping"),
    case("budgets-empty", gate_with(budgets="budgets: []\n"), "budgets.yaml", "budgets"),
    case("budgets-unknown-key", gate_with(budgets={"budgets": [{"target": "*", "max_latency": 2}]}), "budgets[0].max_latency", "max_latency_ms"),
    case("budgets-no-target", gate_with(budgets={"budgets": [{"min_accuracy": 0.9}]}), "budgets[0].target", "missing"),
    case("budgets-accuracy-range", gate_with(budgets={"budgets": [{"target": "*", "min_accuracy": 97}]}), "budgets[0].min_accuracy", "97"),
    case("budgets-percentile", gate_with(budgets={"budgets": [{"target": "*", "max_latency_ms": {"p42": 1.0}}]}), "budgets[0].max_latency_ms", "p42"),
    case("budgets-match-nothing", gate_with(budgets={"budgets": [{"target": "host_cpu", "min_accuracy": 0.5}]}),
         "budgets[0]", "host_cpu", "host-cpu/onnxruntime/fp32"),
    case("budgets-backend-matches-nothing", gate_with(budgets={"budgets": [{"target": "*", "backend": "tflite", "min_accuracy": 0.5}]}),
         "budgets[0]", "tflite", "litert"),
    # ---- reports (edgekd gate)
    case("report-missing", cli("gate", "{tmp}/none.json", "--budgets", str(REPO / "examples" / "budgets.yaml")), "none.json", "does not exist"),
    case("report-not-json", gate_with(report="{not json"), "report.json", "not JSON", "line 1"),
    case("report-empty-list", gate_with(report="[]"), "report.json", "an array", "not a JSON object"),
    case("report-empty-file", gate_with(report=""), "report.json"),
    case("report-accuracy-string", gate_with(report=bad_report_field("artifacts.0.accuracy", "0.95")), "artifacts[0].accuracy", "'0.95'", process=True),
    case("report-accuracy-word", gate_with(report=bad_report_field("artifacts.2.accuracy", "high")), "artifacts[2].accuracy", "'high'"),
    case("report-latency-string", gate_with(report=bad_report_field("artifacts.1.latency_ms.p95", "1 ms")), "artifacts[1].latency_ms.p95", "'1 ms'"),
    case("report-size-float-text", gate_with(report=bad_report_field("artifacts.0.size_bytes", "87412")), "artifacts[0].size_bytes"),
    case("report-no-artifacts", gate_with(report=bad_report_field("artifacts", DROP)), "artifacts", "missing"),
    case("report-unknown-status", gate_with(report=bad_report_field("artifacts.0.status", "fine")), "artifacts[0].status", "'fine'"),
    case("report-unknown-key", gate_with(report=bad_report_field("artifacts.0.acuracy", 0.9)), "artifacts[0].acuracy"),
    case("report-accuracy-bool", gate_with(report=bad_report_field("teacher.accuracy", True)), "teacher.accuracy"),
    case("gate-junit-directory", gate_with(args=("--junit", "{tmp}/outdir"), files={"outdir/": None}), "--junit", "outdir", "directory"),
    case("gate-junit-under-file", gate_with(args=("--junit", "{tmp}/plain/gate.xml"), files={"plain": "x"}), "--junit", "plain", "not a directory"),
    case("gate-summary-directory", gate_with(args=("--summary", "{tmp}/outdir"), files={"outdir/": None}), "--summary", "outdir", "directory"),
    # ---- run folders
    case("out-is-file", run_with(None, {"taken": "x"}, out="taken"), "--out", "taken", "not a directory"),
    case("out-under-file", run_with(None, {"taken": "x"}, out="taken/run"), "--out", "taken", "not a directory"),
    case("force-unknown-stage", run_with(None, args=("--force", "distil")), "--force", "'distil'", "distill"),
    case("stage-json-corrupt", run_with(None, {"run/teacher/stage.json": '{"stage": "teacher", "key": '}), "stage.json", "--force teacher", process=True),
    case("stage-json-binary", run_with(None, {"run/teacher/stage.json": RANDOM}), "stage.json", "--force teacher"),
    case("resume-corrupt-checkpoint", run_with(None, {CHECKPOINT: RANDOM}, command="distill", args=("--resume",)),
         "last.pt", "not a readable checkpoint", "--resume", absent=("weights_only",)),
    case("resume-truncated-checkpoint", run_with(None, {CHECKPOINT: truncated(torch_file({"epoch": 0, "model": {}}))},
                                                 command="distill", args=("--resume",)), "last.pt", "not a readable checkpoint", absent=("weights_only",)),
    case("resume-malicious-checkpoint", run_with(None, {CHECKPOINT: torch_file(lambda ws: {"epoch": Payload(ws.marker)})},
                                                 command="distill", args=("--resume",)), "last.pt", "untrusted", absent=("weights_only",), process=True),
    case("resume-checkpoint-not-dict", run_with(None, {CHECKPOINT: torch_file([1, 2])}, command="distill", args=("--resume",)),
         "last.pt", "--resume"),
    case("run-teacher-weights-truncated", from_trained("teacher", "member0.safetensors", change=lambda p: p.write_bytes(p.read_bytes()[:100])),
         "member0.safetensors"),
    case("run-stage-json-truncated", from_trained("teacher", "stage.json", change=lambda p: p.write_bytes(p.read_bytes()[:50])),
         "teacher/stage.json", "--force teacher"),
    case("profile-devices-unknown", run_with(None, command="profile", args=("--devices", "host-cpu,pixel8")), "'pixel8'", "host-cpu"),
]


# ---------------------------------------------------------------- running them


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """BASE's teacher stage, run once (one epoch on digits), for cases that damage a real run folder."""
    import edgekd

    tmp = tmp_path_factory.mktemp("trained")
    (tmp / "config.yaml").write_text(yaml.safe_dump(BASE, sort_keys=False))
    edgekd.run(tmp / "config.yaml", tmp / "run", stages=["teacher"])
    return tmp / "run"


def flat(text: str) -> str:
    return "".join(text.split())


def invoke(argv: list[str], tmp: Path, process: bool) -> tuple[int, str, str]:
    """(exit code, stdout + stderr, what escaped as an exception) of ``edgekd ARGV``."""
    if process:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-m", "edgekd", *argv], cwd=tmp, env=env, capture_output=True, text=True,
                              timeout=300)
        return done.returncode, done.stdout + done.stderr, ""
    result = CliRunner().invoke(app, argv)
    escaped = ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        escaped = "".join(traceback.format_exception(result.exception))
    return result.exit_code, result.output, escaped


@pytest.mark.parametrize("bad", CASES)
def test_bad_input_is_refused_by_name(bad: Case, tmp_path, monkeypatch, request):
    monkeypatch.chdir(tmp_path)
    ws = Workspace(tmp_path, lambda: request.getfixturevalue("trained_run"))
    argv = bad.recipe(ws)
    code, output, escaped = invoke(argv, tmp_path, bad.process)
    shown = f"edgekd {' '.join(argv)}\n--- output:\n{output}\n{escaped}"
    assert not escaped and "Traceback" not in output, shown
    assert code == bad.code, shown
    missing = [name for name in bad.names if flat(name) not in flat(output)]
    assert not missing, f"the message does not name {missing}\n{shown}"
    present = [name for name in bad.absent if name in output]
    assert not present, f"the output holds {present}\n{shown}"
    assert not re.search(r"epoch \d+/\d+", output), f"a model trained before the input was refused\n{shown}"
    assert not ws.marker.exists(), f"a pickle in the input ran code\n{shown}"


def test_battery_size():
    assert len(CASES) >= 80
    assert len({c.id for c in CASES}) == len(CASES)


def test_base_config_is_valid(tmp_path, monkeypatch):
    """The cases' starting point has no problem of its own, so each case's message is about its one change."""
    from edgekd import preflight
    from edgekd.config import parse_config
    from edgekd.stages import StageContext

    monkeypatch.chdir(tmp_path)
    ctx = StageContext(config=parse_config(BASE), run_dir=tmp_path / "run", resume=False)
    assert preflight.problems(ctx) == []


def test_real_report_passes_the_strict_gate(tmp_path):
    """Strict validation still takes a real report, NaN per-class accuracies (a class absent from the split) included."""
    import json

    data = json.loads(REPORT.read_text())
    data["artifacts"][0]["per_class_accuracy"][3] = float("nan")
    (tmp_path / "report.json").write_text(json.dumps(data))
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(yaml.safe_dump({"budgets": [{"target": "host-cpu", "min_accuracy": 0.5, "max_class_drop": 1.0}]}))
    result = CliRunner().invoke(app, ["gate", str(tmp_path / "report.json"), "--budgets", str(budgets)])
    assert result.exit_code == 0, result.output
