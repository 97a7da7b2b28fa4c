"""Shared fixtures: an isolated teacher cache, a tiny pipeline config and one trained base run.

The tiny config trains a quarter-width ResNet teacher for 2 epochs and distills
it into a half-width tiny CNN for 3 epochs on ``builtin:digits`` (8x8 images,
~1,250 training samples), so a full teacher + distill run takes seconds on CPU.
``base_run`` trains it once per session; tests that only need *a* trained
teacher reuse its weights (``teacher.weights``) instead of training another.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Callable

import pytest

TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 0,
    "data": {"source": "builtin:digits", "augment": False},
    "teacher": {
        "model": "zoo:resnet",
        "kwargs": {"width": 0.25},
        "augment": False,
        "train": {"epochs": 2, "batch_size": 64, "lr": 0.01, "warmup_epochs": 0},
    },
    "student": {"model": "zoo:tiny_cnn", "kwargs": {"width": 0.5}},
    "distill": {
        "losses": [{"name": "ce", "weight": 0.1}, {"name": "kd", "weight": 0.9, "temperature": 4.0}],
        "train": {"epochs": 3, "batch_size": 64, "lr": 0.02, "warmup_epochs": 0},
        "cache_teacher": True,
    },
}


def deep_merge(base: dict, overrides: dict) -> dict:
    """A copy of ``base`` with ``overrides`` merged in; nested dicts merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@pytest.fixture(scope="session", autouse=True)
def single_thread():
    """One intra-op thread (``EDGEKD_TEST_THREADS`` to change), here and in CLI subprocesses.

    The models are tiny, so a second thread gains little, while OpenMP threads on a
    busy 2-core machine can stall whole epochs; subprocesses get the same count so
    their results are bitwise comparable with in-process runs.
    """
    import torch

    threads = int(os.environ.get("EDGEKD_TEST_THREADS", "1"))
    previous, previous_env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    yield threads
    torch.set_num_threads(previous)
    if previous_env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = previous_env


@pytest.fixture(scope="session", autouse=True)
def edgekd_cache_dir(tmp_path_factory) -> Path:
    """Point the teacher-output cache at a per-session temp dir (never ~/.cache/edgekd)."""
    path = tmp_path_factory.mktemp("edgekd-cache")
    previous = os.environ.get("EDGEKD_CACHE_DIR")
    os.environ["EDGEKD_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("EDGEKD_CACHE_DIR", None)
    else:
        os.environ["EDGEKD_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., dict]:
    """Factory: ``tiny_config()`` is a fresh copy of the tiny config; ``tiny_config({...})`` deep-merges overrides."""

    def make(overrides: dict | None = None) -> dict:
        return deep_merge(TINY, overrides or {})

    return make


@pytest.fixture(scope="session")
def base_run(tiny_config, tmp_path_factory, edgekd_cache_dir, single_thread):
    """The tiny config run once (teacher trained here, then distilled); shared read-only by tests."""
    import edgekd

    out = tmp_path_factory.mktemp("base") / "run"
    result = edgekd.run(tiny_config(), out, stages=["distill"])
    return result


@pytest.fixture(scope="session")
def teacher_weights(base_run) -> Path:
    """The base run's trained teacher, for configs that load instead of train it."""
    ref = base_run["teacher"].members[0]
    assert ref.weights_in_run
    path = base_run.run_dir / ref.weights
    assert path.is_file()
    return path


@pytest.fixture(scope="session")
def pretrained_config(tiny_config, teacher_weights) -> Callable[..., dict]:
    """Like ``tiny_config`` but the teacher is loaded from ``teacher_weights`` (no teacher training)."""

    def make(overrides: dict | None = None) -> dict:
        cfg = tiny_config({"teacher": {"weights": str(teacher_weights)}})
        cfg["teacher"].pop("train")
        return deep_merge(cfg, overrides or {})

    return make
