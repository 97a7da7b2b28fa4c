"""Augmentation for distillation (issue 15): shifts, mixup, cutmix and token dropout, and consistent teaching
(Beyer et al., CVPR 2022): the teacher sees exactly the batch the student sees, live or from its cached views.

Checked by value: each augmentation against its definition, the mixed cross-entropy against the formula,
and in the trainer the teacher's inputs (or its cached logits) against the student's inputs batch by batch.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import edgekd
from edgekd.data import augment_batch
from edgekd.data.augment import Augmentation, ViewPlan, drop_tokens
from edgekd.losses import LOSSES, LossInputs

PAD = 0


def images(n=16, seed=0):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_shift_only_draws_exactly_what_augment_true_always_drew():
    """augment: true keeps its meaning, so every earlier image run keeps its figures."""
    x, y = images(), torch.arange(16)
    ours, _ = Augmentation(shift=2).apply(x, y, torch.Generator().manual_seed(5))
    assert torch.equal(ours, augment_batch(x, max_shift=2, generator=torch.Generator().manual_seed(5)))


def test_mixup_is_the_convex_mix_of_each_sample_and_its_partner():
    x, y = images(), torch.arange(16)  # labels = positions, so targets_b names each partner
    out, mix = Augmentation(mixup=0.4).apply(x, y, torch.Generator().manual_seed(1))
    assert 0.5 <= mix.lam <= 1.0
    partner = mix.targets_b
    assert sorted(partner.tolist()) == list(range(16))
    torch.testing.assert_close(out, mix.lam * x + (1 - mix.lam) * x[partner])


def test_cutmix_pastes_one_box_whose_area_is_what_lam_leaves_out():
    x, y = images(), torch.arange(16)
    for seed in range(6):
        out, mix = Augmentation(cutmix=1.0).apply(x, y, torch.Generator().manual_seed(seed))
        from_partner = (out == x[mix.targets_b]) & (out != x)
        from_self = out == x
        assert (from_partner | from_self).all()
        box = from_partner[0, 0] | from_partner[1:, 0].any(0)  # the same box in every image
        assert 1 - box.float().mean().item() == pytest.approx(mix.lam)
        assert mix.lam >= 0.5


def test_mixup_and_cutmix_on_together_each_batch_uses_one():
    x, y = images(), torch.arange(16)
    kinds = set()
    for seed in range(20):
        out, mix = Augmentation(mixup=0.4, cutmix=1.0).apply(x, y, torch.Generator().manual_seed(seed))
        is_mixup = torch.allclose(out, mix.lam * x + (1 - mix.lam) * x[mix.targets_b])
        kinds.add("mixup" if is_mixup else "cutmix")
    assert kinds == {"mixup", "cutmix"}


def test_token_dropout_masks_tokens_but_never_the_first_or_last_real_one():
    ids = torch.randint(5, 1000, (64, 40), generator=torch.Generator().manual_seed(0))
    lengths = torch.randint(3, 40, (64,), generator=torch.Generator().manual_seed(1))
    ids[torch.arange(40) >= lengths[:, None]] = PAD
    out = drop_tokens(ids, torch.ones(64, 40, dtype=torch.bool), PAD)  # drop everything droppable
    assert torch.equal(out[:, 0], ids[:, 0])
    assert torch.equal(out[torch.arange(64), lengths - 1], ids[torch.arange(64), lengths - 1])
    assert ((out != PAD).sum(1) == 2).all()
    rate = Augmentation(token_dropout=0.25)
    dropped, _ = rate.apply(ids, torch.zeros(64, dtype=torch.long), torch.Generator().manual_seed(2), PAD)
    droppable = (ids != PAD).sum() - 2 * 64
    assert ((dropped != ids).sum() / droppable).item() == pytest.approx(0.25, abs=0.04)


def test_a_fixed_view_depends_on_the_sample_and_view_only():
    x = images(10)
    plan = ViewPlan.draw(Augmentation(shift=2), views=4, samples=10, width=0, seed=3)
    pair = torch.tensor([2, 7])
    one = plan.apply(x[pair], pair, torch.tensor([1, 3]))
    other = plan.apply(x[pair.flip(0)], pair.flip(0), torch.tensor([3, 1]))
    assert torch.equal(one, other.flip(0))
    views = torch.stack([plan.apply(x[[2]], torch.tensor([2]), torch.tensor([v]))[0] for v in range(4)])
    assert len({v.numpy().tobytes() for v in views}) > 1
    with pytest.raises(ValueError, match="cannot hold cutmix"):
        ViewPlan.draw(Augmentation(cutmix=1.0), views=4, samples=10, width=0, seed=3)


def test_a_fixed_mixup_view_mixes_a_fixed_partner_shifted_as_in_its_own_view():
    x, y = images(10), torch.arange(10)
    plan = ViewPlan.draw(Augmentation(shift=2, mixup=0.4), views=3, samples=10, width=0, seed=5)
    pair, view = torch.tensor([4, 1]), torch.tensor([2, 0])
    got = plan.apply(x[pair], pair, view, source=x)
    again = plan.apply(x[pair.flip(0)], pair.flip(0), view.flip(0), source=x)
    assert torch.equal(got, again.flip(0))  # a function of (sample, view) alone
    for row, (i, v) in enumerate(zip(pair.tolist(), view.tolist())):
        partner, lam = int(plan.partners[v, i]), float(plan.lams[v, i])
        own = plan.apply(x[[i]], torch.tensor([i]), torch.tensor([v]), source=torch.zeros_like(x))  # partner blanked out
        partner_view = ViewPlan(views=3, shift=2, shifts=plan.shifts, dropped=None).apply(
            x[[partner]], torch.tensor([partner]), torch.tensor([v]))
        torch.testing.assert_close(got[row], own[0] + (1 - lam) * partner_view[0])
        assert lam >= 0.5
    mix = plan.mix(pair, view, y)
    assert torch.equal(mix.targets_b, plan.partners[view, pair]) and torch.equal(mix.lam, plan.lams[view, pair])
    assert len({round(float(v), 4) for v in plan.lams.flatten()}) > 20  # drawn per (sample, view), not per plan


def test_cross_entropy_on_a_mixed_batch_mixes_the_labels():
    s = torch.randn(8, 10, requires_grad=True)
    y, y_b = torch.randint(0, 10, (8,)), torch.randint(0, 10, (8,))
    got = LOSSES.get("ce")()(LossInputs(student_logits=s, targets=y, teacher_logits=None, targets_b=y_b, lam=0.7))
    torch.testing.assert_close(got, 0.7 * F.cross_entropy(s, y) + 0.3 * F.cross_entropy(s, y_b))
    lam = torch.rand(8) / 2 + 0.5  # one share per sample, as fixed mixup views give
    got = LOSSES.get("ce")()(LossInputs(student_logits=s, targets=y, teacher_logits=None, targets_b=y_b, lam=lam))
    expected = sum(lam[i] * F.cross_entropy(s[i:i + 1], y[i:i + 1]) + (1 - lam[i]) * F.cross_entropy(s[i:i + 1], y_b[i:i + 1])
                   for i in range(8)) / 8
    torch.testing.assert_close(got, expected)


# ---------------------------------------------------------------- consistent teaching in the trainer


class Spy(torch.nn.Module):
    """Wraps a model and keeps every input it sees."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.model(x)


def spied_trainer(base_run, tiny_config, augmentation, views=0, epochs=1):
    """A Trainer on the tiny config's data: a spied student and a spied live (or view-cached) teacher."""
    from edgekd.context import StageContext
    from edgekd.distillation import load_teachers
    from edgekd.losses import build_loss
    from edgekd.train import CachedTeacher, LiveTeacher, Trainer

    from edgekd.config import parse_config

    ctx = StageContext(config=parse_config(tiny_config()), run_dir=base_run.run_dir,
                       records={"teacher": base_run["teacher"]})
    (teacher,), _, _ = load_teachers(ctx)
    student = ctx.load_model(base_run["distill"].model, key="student")
    spy_t, spy_s = Spy(teacher).eval(), Spy(student)
    live = LiveTeacher([spy_t], [1.0], [])
    source = live
    if views:
        plan = ViewPlan.draw(augmentation, views, len(ctx.data.x_train), 0, seed=0)
        source = CachedTeacher.load_or_build(live, ctx.data.x_train, {"test": views, "augment": repr(augmentation)}, plan=plan)
        spy_t.seen.clear()
    loss = build_loss([{"name": "ce", "weight": 0.5}, {"name": "kd", "weight": 0.5}])
    from edgekd.config import TrainConfig

    trainer = Trainer(spy_s, loss, TrainConfig(epochs=epochs, batch_size=128, lr=1e-3, warmup_epochs=0), ctx.data,
                      base_run.run_dir / "spy", teacher=source, augment=None if views else augmentation)
    return trainer, spy_s, spy_t, source, ctx, teacher


@pytest.mark.parametrize("augmentation", [Augmentation(shift=2), Augmentation(shift=1, mixup=0.4, cutmix=1.0)],
                         ids=["shift", "shift+mixup+cutmix"])
def test_a_live_teacher_sees_exactly_the_students_augmented_batch(base_run, tiny_config, augmentation, tmp_path):
    trainer, spy_s, spy_t, _, ctx, _ = spied_trainer(base_run, tiny_config, augmentation)
    trainer.out_dir = tmp_path
    trainer.fit()
    training_inputs = spy_s.seen[: trainer.batches_per_epoch]  # then evaluation passes
    assert len(spy_t.seen) == len(training_inputs) == trainer.batches_per_epoch
    for t_in, s_in in zip(spy_t.seen, training_inputs):
        assert torch.equal(t_in, s_in)
    plain = {row.numpy().tobytes() for row in ctx.data.x_train}
    changed = sum(row.numpy().tobytes() not in plain for batch in training_inputs for row in batch)
    assert changed > 0.5 * len(ctx.data.x_train)  # the batches really were augmented


@pytest.mark.parametrize("augmentation", [Augmentation(shift=2), Augmentation(shift=2, mixup=0.5)], ids=["shift", "shift+mixup"])
def test_cached_views_give_the_teacher_logits_of_the_view_the_student_sees(base_run, tiny_config, augmentation, tmp_path):
    trainer, spy_s, _, source, ctx, teacher = spied_trainer(base_run, tiny_config, augmentation, views=4)
    assert source.plan is not None and source._tensors["logits"].shape[0] == 4 * len(ctx.data.x_train)
    rows_used = []
    original = source.outputs

    def recording(rows, x):
        rows_used.append(rows.clone())
        return original(rows, x)

    source.outputs = recording
    trainer.out_dir = tmp_path
    trainer.fit()
    seen = spy_s.seen[: trainer.batches_per_epoch]
    assert len(rows_used) == len(seen)
    views = torch.cat(rows_used) % 4
    assert len(set(views.tolist())) == 4  # every view is used
    for rows, x in zip(rows_used, seen):
        with torch.no_grad():
            live = teacher.eval()(x)
        torch.testing.assert_close(source._tensors["logits"][rows].float(), live, atol=2e-2, rtol=1e-2)  # float16 cache


# ---------------------------------------------------------------- the config


def test_teacher_views_cache_is_built_once_and_recorded(pretrained_config, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKD_CACHE_DIR", str(tmp_path / "cache"))
    cfg = pretrained_config({"data": {"augment": {"shift": 2}}, "distill": {"teacher_views": 3, "train": {"epochs": 1}}})
    first = edgekd.run(cfg, tmp_path / "run", stages=["distill"])["distill"].teacher_cache
    assert first.used and first.views == 3 and first.hit is False
    again = edgekd.run(cfg, tmp_path / "run", stages=["distill"], force="distill")
    assert again["distill"].teacher_cache.hit is True
    other_seed = edgekd.run({**cfg, "seed": 1}, tmp_path / "run1", stages=["distill"])["distill"].teacher_cache
    assert other_seed.hit is False and other_seed.path != first.path  # other seed, other views


def test_qad_reuses_distills_views_or_runs_live_when_that_takes_fewer_teacher_passes(pretrained_config, tmp_path, monkeypatch):
    """QAD with the distill teachers reads distill's cached views; with the FP32 student added as a teacher it
    needs a cache of its own: 3 views cost 3 teacher passes, 1 live epoch 1, so it runs live; 3 epochs cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("EDGEKD_CACHE_DIR", str(cache))
    cfg = pretrained_config({"data": {"augment": {"shift": 2}}, "distill": {"teacher_views": 3, "train": {"epochs": 1}},
                             "quantize": {"mode": "qad", "calibration_size": 32, "train": {"epochs": 1}}})
    edgekd.run(cfg, tmp_path / "shared", stages=["distill", "quantize"])
    assert len(list(cache.rglob("*.safetensors"))) == 1  # distill's views, read by QAD too
    cfg["quantize"]["fp32_student_as_teacher"] = True
    edgekd.run(cfg, tmp_path / "short", stages=["distill", "quantize"])
    assert len(list(cache.rglob("*.safetensors"))) == 1  # QAD ran its two teachers live
    cfg["quantize"]["train"]["epochs"] = 3
    edgekd.run(cfg, tmp_path / "long", stages=["distill", "quantize"])
    assert len(list(cache.rglob("*.safetensors"))) == 2  # QAD's own views


def test_augmentation_settings_that_cannot_work_are_refused_before_training(tiny_config):
    from edgekd.config import parse_config
    from edgekd.preflight import augment_problems

    def problems(overrides, is_text=False):
        return {p.key: p for p in augment_problems(parse_config(tiny_config(overrides)), is_text)}

    assert set(problems({"data": {"augment": {"token_dropout": 0.1}}})) == {"data.augment.token_dropout"}
    assert set(problems({"data": {"augment": {"mixup": 0.2}}}, is_text=True)) == {"data.augment.mixup"}
    assert set(problems({"data": {"augment": True}}, is_text=True)) == {"data.augment"}
    assert set(problems({"distill": {"teacher_views": 4}})) == {"distill.teacher_views"}
    mixed = problems({"data": {"augment": {"shift": 2, "cutmix": 1.0}}, "distill": {"teacher_views": 4}})
    assert "fixed views do not hold" in mixed["distill.teacher_views"].message
    assert problems({"data": {"augment": {"shift": 2, "mixup": 0.5}}, "distill": {"teacher_views": 4}}) == {}
    assert problems({"data": {"augment": {"shift": 2, "mixup": 0.2}}}) == {}
    assert problems({"data": {"augment": {"token_dropout": 0.1}}, "distill": {"teacher_views": 2}}, is_text=True) == {}
