"""Energy estimates for targets without a meter, from the target's ``power:`` block.

An estimate is labelled ``estimated`` and names its model and parameters
wherever it appears; it is never reported as measured, and a budget can
require measured energy. One module per model in this package; each registers itself
(``@power_model``) and is found by ``discover``.
"""

from __future__ import annotations

from typing import Any, Callable

from ..registry import Registry, discover

# name -> fn(the target's power block, one benchmark result) -> energy dict
POWER_MODELS: Registry[Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]] = Registry("power model")


def power_model(name: str, *, example: dict[str, Any]):
    """Register ``fn(params, bench)`` as ``name``; ``example`` is a valid power block (without ``model``), for the contract tests."""

    def register(fn):
        fn.example = dict(example)
        return POWER_MODELS.register(name, fn)

    return register


def estimate(power: dict[str, Any] | None, bench: dict[str, Any]) -> dict[str, Any] | None:
    """The target's power model applied to one benchmark result; None when the target has none."""
    if not power:
        return None
    return POWER_MODELS.get(power.get("model"), key="power.model")(power, bench)


discover(__name__)
