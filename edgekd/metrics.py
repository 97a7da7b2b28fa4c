"""Accuracy metrics shared by every stage and runtime.

They take plain logits and labels (numpy or torch), so the PyTorch model and a
compiled artifact running in its own runtime are scored by the same code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch


def _np(array) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def accuracy(logits, labels) -> float:
    logits, labels = _np(logits), _np(labels)
    return float((logits.argmax(axis=1) == labels).mean()) if len(labels) else float("nan")


def per_class_accuracy(logits, labels, num_classes: int) -> list[float]:
    """Recall of each class; NaN for a class absent from ``labels``."""
    predictions, labels = _np(logits).argmax(axis=1), _np(labels)
    result = []
    for cls in range(num_classes):
        mask = labels == cls
        result.append(float((predictions[mask] == cls).mean()) if mask.any() else float("nan"))
    return result


def expected_calibration_error(logits, labels, bins: int = 15) -> float:
    """ECE (Guo et al. 2017): sum_b |B_b|/N * |acc(B_b) - conf(B_b)| over equal-width confidence bins."""
    probs = torch.softmax(torch.as_tensor(_np(logits), dtype=torch.float64), dim=1).numpy()
    labels = _np(labels)
    confidence, predictions = probs.max(axis=1), probs.argmax(axis=1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        mask = (confidence > low) & (confidence <= high)
        if mask.any():
            ece += mask.mean() * abs((predictions[mask] == labels[mask]).mean() - confidence[mask].mean())
    return float(ece)


@dataclass
class EvalResult:
    accuracy: float
    loss: float
    per_class_accuracy: list[float]
    ece: float

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> EvalResult:
    logits = predict(model, x)
    return evaluate_logits(logits, y, num_classes)


def evaluate_logits(logits, y, num_classes: int) -> EvalResult:
    logits_t = torch.as_tensor(_np(logits)).float()
    y_t = torch.as_tensor(_np(y)).long()
    loss = float(torch.nn.functional.cross_entropy(logits_t, y_t)) if len(y_t) else float("nan")
    return EvalResult(
        accuracy=accuracy(logits_t, y_t),
        loss=loss,
        per_class_accuracy=per_class_accuracy(logits_t, y_t, num_classes),
        ece=expected_calibration_error(logits_t, y_t),
    )


def fit_temperature(logits, labels) -> float:
    """Temperature scaling: the T > 0 minimising NLL(softmax(logits / T)) on held-out data."""
    logits_t = torch.as_tensor(_np(logits), dtype=torch.float64)
    labels_t = torch.as_tensor(_np(labels)).long()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits_t / log_t.exp(), labels_t)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())
