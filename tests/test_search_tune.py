"""edgekd.search.tune: Optuna trials that are pipeline runs, scored on the validation split, resumable from
their SQLite study, and reproducible from the seed."""

from __future__ import annotations

import pytest

from edgekd.errors import ConfigError
from edgekd.search import Options, Range, set_key, tune


def test_set_key_walks_dicts_and_list_indices():
    cfg = {"distill": {"losses": [{"name": "ce", "weight": 0.1}, {"name": "kd", "weight": 0.9}]}}
    set_key(cfg, "distill.losses.1.weight", 0.7)
    set_key(cfg, "distill.losses[0].weight", 0.3)
    set_key(cfg, "distill.train.lr", 0.01)
    assert cfg["distill"]["losses"][1]["weight"] == 0.7 and cfg["distill"]["losses"][0]["weight"] == 0.3
    assert cfg["distill"]["train"] == {"lr": 0.01}
    with pytest.raises(ConfigError, match="distill.losses.5.weight"):
        set_key(cfg, "distill.losses.5.weight", 1.0)


SPACE = [
    Range("distill.train.lr", 1e-3, 5e-2, log=True),
    Range("distill.losses.1.weight", 0.5, 1.0, complement="distill.losses.0.weight"),
    Options("augment", {"off": {"data.augment": False},
                        "views": {"data.augment": {"shift": 1}, "distill.teacher_views": 2}}),
]


def test_each_trial_is_a_run_scored_on_validation_and_the_best_is_applied(pretrained_config, tmp_path):
    import edgekd

    base = pretrained_config({"distill": {"train": {"epochs": 1}}})
    tuned = tune(base, SPACE, trials=3, workdir=tmp_path / "study", seed=0)
    assert [t["state"] for t in tuned.trials] == ["COMPLETE"] * 3
    assert tuned.score == max(t["score"] for t in tuned.trials)
    for t in tuned.trials:  # each trial is a run folder whose validation accuracy is its score
        from edgekd.io import read_json

        stage = read_json(tmp_path / "study" / f"trial-{t['number']}" / "distill" / "stage.json")
        assert stage["record"]["val_accuracy"] == pytest.approx(t["score"])
        assert t["settings"]["distill.losses.0.weight"] == pytest.approx(1 - t["settings"]["distill.losses.1.weight"])
        assert 1e-3 <= t["settings"]["distill.train.lr"] <= 5e-2
    best = tuned.config
    assert best["distill"]["train"]["lr"] == tuned.best["distill.train.lr"]
    assert best["distill"]["losses"][1]["weight"] == tuned.best["distill.losses.1.weight"]
    rerun = edgekd.run(best, tmp_path / "best", stages=["distill"])  # the best settings, run again: the same score
    assert rerun["distill"].val_accuracy == pytest.approx(tuned.score)


def test_a_study_resumes_from_its_storage_and_a_seed_repeats_its_proposals(pretrained_config, tmp_path):
    base = pretrained_config({"distill": {"train": {"epochs": 1}}})
    first = tune(base, SPACE, trials=2, workdir=tmp_path / "a", seed=3)
    again = tune(base, SPACE, trials=2, workdir=tmp_path / "a", seed=3)  # complete: nothing new runs
    assert again.trials == first.trials
    more = tune(base, SPACE, trials=3, workdir=tmp_path / "a", seed=3)
    assert len(more.trials) == 3 and more.trials[:2] == first.trials
    twin = tune(base, SPACE, trials=2, workdir=tmp_path / "b", seed=3)
    assert [t["settings"] for t in twin.trials] == [t["settings"] for t in first.trials]


def test_set_key_through_a_value_that_is_not_a_section_is_named():
    with pytest.raises(ConfigError, match=r"student.model.width: student.model holds 'zoo:tiny_cnn', not a section"):
        set_key({"student": {"model": "zoo:tiny_cnn"}}, "student.model.width", 0.5)
