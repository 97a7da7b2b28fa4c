"""Recording intermediate features by module name (for feature distillation)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..errors import ModelError
from ..problems import Problem, close_matches

_MAX_SUGGESTIONS = 20


class FeatureRecorder:
    """Context manager that stores the outputs of named submodules in ``.features`` on each forward.

    ``with FeatureRecorder(model, ["layer2", "layer3"]) as rec: model(x); rec.features["layer2"]``.
    Outputs are kept as-is (not detached) so feature losses can backpropagate
    into a student; a tuple output records its first tensor. Hooks are removed
    on exit; ``.features`` survives until ``.clear()``.
    """

    def __init__(self, model: nn.Module, names: Sequence[str], key: str = "distill.features") -> None:
        self.model = model
        self.names = list(dict.fromkeys(names))
        self.key = key
        self.features: dict[str, Tensor] = {}
        self._modules = {name: _resolve(model, name, key) for name in self.names}
        self._handles: list[Any] = []

    def __enter__(self) -> "FeatureRecorder":
        for name, module in self._modules.items():
            try:
                self._handles.append(module.register_forward_hook(self._hook(name)))
            except RuntimeError as exc:  # ScriptModules do not support hooks
                self.__exit__(None, None, None)
                raise ModelError(
                    f"{self.key}: cannot hook {name!r} ({exc}); features need an eager PyTorch model"
                ) from exc
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def clear(self) -> None:
        self.features.clear()

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, (tuple, list)):
                output = next((o for o in output if isinstance(o, Tensor)), None)
            if not isinstance(output, Tensor):
                raise ModelError(f"{self.key}: module {name!r} did not return a tensor")
            self.features[name] = output

        return hook


def _resolve(model: nn.Module, name: str, key: str) -> nn.Module:
    """``model.get_submodule(name)``, refusing ONNX models and naming close matches for typos."""
    problem = layer_problem(model, name, key)
    if problem is not None:
        raise ModelError(str(problem))
    return model.get_submodule(name)


def layer_problem(model: nn.Module, name: str, key: str, *, what: str = "the model") -> Problem | None:
    """Why features cannot be recorded at module ``name`` of ``model`` (None when they can): no such module,
    with close matches and the names there are, or a module inside an ONNX model, which has no hooks."""
    module, parts = model, name.split(".") if name else []
    for depth in range(len(parts) + 1):
        if getattr(module, "is_onnx", False):
            return Problem(key, f"features need a PyTorch model; {name!r} is inside an ONNX model ({what})")
        if depth == len(parts):
            return None
        try:
            module = model.get_submodule(".".join(parts[: depth + 1]))
        except AttributeError:
            break
    return missing_layer(model, name, key, what=what)


def missing_layer(model: nn.Module, name: str, key: str, *, what: str = "the model") -> Problem:
    """``key: <what> has no module 'name'; did you mean ...?; accepted: <close and top-level names>``."""
    available = [n for n, _ in model.named_modules() if n]
    close = close_matches(name, available, n=3, cutoff=0.5)
    top = [n for n in available if "." not in n and n not in close]  # orientation when nothing is close
    shown = [*close, *top][:_MAX_SUGGESTIONS]
    more = len(available) - len(shown)
    listing = ", ".join(shown) + (f" (and {more} nested ones)" if more > 0 else "") if shown else "(none)"
    return Problem(key, f"{what} has no module {name!r}", listing, close)


def feature_shapes(
    model: nn.Module, names: Sequence[str], example: torch.Tensor, key: str = "distill.features"
) -> dict[str, torch.Size]:
    """Output shapes of the named modules for one eval-mode forward on ``example`` (``DataBundle.example(2)``)."""
    first = next(model.parameters(), None)
    x = example.to(first.device if first is not None else "cpu")
    was_training = model.training
    model.eval()  # eval: BatchNorm must not update its running stats on zeros
    try:
        with torch.no_grad(), FeatureRecorder(model, names, key) as recorder:
            model(x)
    finally:
        model.train(was_training)
    silent = [name for name in recorder.names if name not in recorder.features]
    if silent:
        raise ModelError(f"{key}: modules {silent} are not called by the model's forward")
    return {name: recorder.features[name].shape for name in recorder.names}
