"""Tune a config's settings with Optuna: every trial is a pipeline run, scored on the validation split.

A search space is a list of ``Range`` (a number under one config key) and ``Options`` (named choices,
each setting one or more keys together). Trials run into ``workdir/trial-N`` (each one a normal,
cached run folder) and the study lives in an Optuna storage, by default ``workdir/study.db``
(SQLite), so a killed search picks up where it stopped and several processes may share one study.
The sampler is seeded: the same space, budget and seed propose the same trials.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import ConfigError

_PART = re.compile(r"[^.\[\]]+")


def set_key(config: dict, key: str, value: Any) -> dict:
    """Set ``key`` (``distill.train.lr``, ``distill.losses.1.weight`` or ``distill.losses[1].weight``) in the
    nested ``config`` in place, creating dicts on the way; integer parts index lists. Returns ``config``."""
    parts = _PART.findall(key)
    node: Any = config
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"search: {key}: {part!r} is not an index of a {len(node)}-item list")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif not isinstance(node, dict):
            where = ".".join(parts[:i])
            raise ConfigError(f"search: {key}: {where} holds {node!r}, not a section of keys")
        elif last:
            node[part] = value
        else:
            node = node.setdefault(part, {})
    return config


@dataclass(frozen=True)
class Range:
    """A number under ``key`` between ``low`` and ``high`` (``log``: sampled on a log scale; ``integer``);
    ``complement``: another key set to ``1 - value`` (e.g. the hard-label weight beside a KD weight)."""

    key: str
    low: float
    high: float
    log: bool = False
    integer: bool = False
    complement: str | None = None

    def settings(self, trial) -> dict[str, Any]:
        if self.integer:
            value = trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        else:
            value = trial.suggest_float(self.key, self.low, self.high, log=self.log)
        return {self.key: value, **({self.complement: 1.0 - value} if self.complement else {})}


@dataclass(frozen=True)
class Options:
    """One of several named settings, each a ``{key: value}`` applied together (e.g. augmentation on with
    cached teacher views, or off)."""

    name: str
    options: dict[str, dict[str, Any]]

    def settings(self, trial) -> dict[str, Any]:
        return dict(self.options[trial.suggest_categorical(self.name, list(self.options))])


@dataclass
class Tuned:
    """The best trial's settings and score, the base config with them applied, and every trial."""

    best: dict[str, Any]
    score: float
    config: dict
    trials: list[dict] = field(default_factory=list)


def validation_accuracy(result) -> float:
    """The default score: the distilled student's accuracy on the validation split (the test split stays unseen)."""
    return float(result["distill"].val_accuracy)


def tune(
    config: dict,
    space: Sequence[Range | Options],
    *,
    trials: int,
    workdir: Path,
    seed: int = 0,
    stages: Sequence[str] = ("distill",),
    score: Callable[[Any], float] = validation_accuracy,
    storage: str | None = None,
    study_name: str = "tune",
    console=None,
) -> Tuned:
    """Run ``trials`` trials (counting those already complete in the study) maximising ``score``."""
    import optuna

    import edgekd

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name, storage=storage or f"sqlite:///{workdir / 'study.db'}", direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed), load_if_exists=True,
    )

    def settings_of(trial) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for part in space:
            found.update(part.settings(trial))
        return found

    def objective(trial) -> float:
        settings = settings_of(trial)
        trial.set_user_attr("settings", settings)
        cfg = copy.deepcopy(config)
        for key, value in settings.items():
            set_key(cfg, key, value)
        return score(edgekd.run(cfg, workdir / f"trial-{trial.number}", stages=list(stages), console=console))

    done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    if trials > done:
        study.optimize(objective, n_trials=trials - done)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(complete, key=lambda t: (t.value, -t.number))  # ties: the earliest trial
    best_config = copy.deepcopy(config)
    for key, value in best.user_attrs["settings"].items():
        set_key(best_config, key, value)
    return Tuned(best=best.user_attrs["settings"], score=float(best.value), config=best_config,
                 trials=[{"number": t.number, "settings": t.user_attrs.get("settings"), "score": t.value,
                          "state": t.state.name} for t in study.trials])
