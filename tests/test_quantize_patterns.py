"""fewer_pattern_exports() must leave torchao's conv-BN rewrites exactly as torchao makes them: the same prepared
and converted graphs (code and weights) and bit-identical outputs, for a conv kind it skips and one it rewrites."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

from edgekd.quantize import patterns
from edgekd.quantize.pt2e import QuantizedStudent
from edgekd.quantize.quantizer import Int8Quantizer


class Conv2dNet(nn.Module):  # the shape of the zoo's CNNs: conv2d + BN, with and without conv bias
    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4)
        self.b, self.bn_b = nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        x = torch.relu(self.bn_a(self.a(x)))
        x = torch.relu(self.bn_b(self.b(x)))
        return self.head(x.mean((2, 3)))


class MixedConvNet(nn.Module):  # conv1d and a transposed conv2d: the kinds the zoo never has
    def __init__(self) -> None:
        super().__init__()
        self.one, self.bn_one = nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4)
        self.up, self.bn_up = nn.ConvTranspose2d(4, 3, 2, stride=2), nn.BatchNorm2d(3)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        x = torch.relu(self.bn_one(self.one(x)))  # (N, 4, L)
        x = torch.relu(self.bn_up(self.up(x.unsqueeze(-1))))  # (N, 3, 2L, 2)
        return self.head(x.mean((2, 3)))


def _prepared(model: nn.Module, example: torch.Tensor, fast: bool) -> QuantizedStudent:
    torch.manual_seed(0)
    graph = torch.export.export(copy.deepcopy(model).train(), (example,)).module()
    if fast:
        with patterns.fewer_pattern_exports():
            prepared = prepare_qat_pt2e(graph, Int8Quantizer("moving_average", "full"))
    else:
        prepared = prepare_qat_pt2e(graph, Int8Quantizer("moving_average", "full"))
    student = QuantizedStudent(prepared, "full")
    calibration = torch.randn(16, *example.shape[1:], generator=torch.Generator().manual_seed(1))
    student.calibrate(calibration, batch_size=example.shape[0])  # exported with a static batch
    return student.eval()


def _converted(student: QuantizedStudent, fast: bool, fold: bool) -> torch.fx.GraphModule:
    if not fast:
        from torchao.quantization.pt2e import disable_observer, move_exported_model_to_eval

        graph = copy.deepcopy(student.graph)
        move_exported_model_to_eval(graph)
        graph.apply(disable_observer)
        return convert_pt2e(graph, fold_quantize=fold)
    return student.converted(fold_quantize=fold)  # the product's path, inside fewer_pattern_exports()


def _same_graph(a: torch.fx.GraphModule, b: torch.fx.GraphModule, x: torch.Tensor) -> None:
    assert a.code == b.code
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name
    assert torch.equal(a(x), b(x))


CONV2D, MIXED = (Conv2dNet, (2, 1, 8, 8)), (MixedConvNet, (2, 2, 6))


# Each case converts once with torchao unpatched (~20 s): the folded conv2d graph (ONNX, ExecuTorch) in the quick
# suite, the unfolded one (LiteRT) and the kinds edgekd skips with the slow tests.
@pytest.mark.parametrize("case, fold", [
    (CONV2D, True),
    pytest.param(CONV2D, False, marks=pytest.mark.slow),
    pytest.param(MIXED, True, marks=pytest.mark.slow),
    pytest.param(MIXED, False, marks=pytest.mark.slow),
], ids=["conv2d-folded", "conv2d-unfolded", "conv1d-and-transposed-folded", "conv1d-and-transposed-unfolded"])
def test_same_graphs_as_torchao(case, fold):
    model, shape = case[0](), case[1]
    example = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    reference, fast = _prepared(model, example, fast=False), _prepared(model, example, fast=True)
    _same_graph(reference.graph, fast.graph, example)
    _same_graph(_converted(reference, fast=False, fold=fold), _converted(fast, fast=True, fold=fold), example)


def test_patterns_restored_and_cached(monkeypatch):
    from torchao.quantization.pt2e import disable_observer, move_exported_model_to_eval, qat_utils

    before = {name: getattr(qat_utils, name) for name in patterns.PATCHES}
    student = _prepared(Conv2dNet(), torch.randn(2, 1, 8, 8), fast=True)
    assert {name: getattr(qat_utils, name) for name in patterns.PATCHES} == before
    student.converted(fold_quantize=True)
    # a second conversion exports no pattern graph at all (torch.export counted around convert_pt2e alone)
    graph = copy.deepcopy(student.graph)
    move_exported_model_to_eval(graph)
    graph.apply(disable_observer)
    exports, real = [], torch.export.export
    monkeypatch.setattr(torch.export, "export", lambda *a, **k: exports.append(a[0]) or real(*a, **k))
    with patterns.fewer_pattern_exports():
        convert_pt2e(graph, fold_quantize=True)
    assert exports == []
    # the originals come back when the conversion inside fails, too
    with pytest.raises(RuntimeError, match="converter failed"), patterns.fewer_pattern_exports():
        raise RuntimeError("converter failed")
    assert {name: getattr(qat_utils, name) for name in patterns.PATCHES} == before
