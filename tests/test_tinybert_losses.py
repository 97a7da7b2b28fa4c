"""TinyBERT's and DistilBERT's losses against direct reference computations, and the layer map."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from edgekd.errors import ConfigError
from edgekd.losses import LOSSES, FeaturePair, LossInputs, build_loss
from edgekd.losses.layer_map import layer_pairs, uniform_map
from edgekd.models.hooks import FeatureRecorder

B, L, K = 3, 5, 4


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# -- a stand-in BERT-style encoder with the module names of text-design.md -------------------------------


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads, self.qkv, self.out = heads, nn.Linear(hidden, 3 * hidden), nn.Linear(hidden, hidden)
        self.scores = nn.Identity()  # recorded: pre-softmax scores, mask added

    def forward(self, x, bias):
        b, n, h = x.shape
        q, k, v = (t.view(b, n, self.heads, h // self.heads).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        scores = self.scores(q @ k.transpose(-1, -2) / math.sqrt(h // self.heads) + bias)
        return self.out((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, h))


class Layer(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.attention, self.norm = Attention(hidden, heads), nn.LayerNorm(hidden)

    def forward(self, x, bias):
        return self.norm(x + self.attention(x, bias))


class Embeddings(nn.Module):
    def __init__(self, vocab: int, hidden: int) -> None:
        super().__init__()
        self.words, self.norm = nn.Embedding(vocab, hidden), nn.LayerNorm(hidden)

    def forward(self, ids):
        return self.norm(self.words(ids))


class Encoder(nn.Module):
    def __init__(self, layers: int, hidden: int, heads: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Layer(hidden, heads) for _ in range(layers))


class StandIn(nn.Module):
    pad_id = 0

    def __init__(self, layers: int, hidden: int = 8, heads: int = 2, vocab: int = 20) -> None:
        super().__init__()
        self.num_layers, self.hidden_size, self.num_heads = layers, hidden, heads
        self.embeddings, self.encoder = Embeddings(vocab, hidden), Encoder(layers, hidden, heads)
        self.classifier = nn.Linear(hidden, K)

    def forward(self, ids):
        bias = (ids == self.pad_id)[:, None, None, :] * -10000.0  # BERT's additive mask on padded keys
        x = self.embeddings(ids)
        for layer in self.encoder.layers:
            x = layer(x, bias)
        return self.classifier(x[:, 0])


def ids_with_padding() -> torch.Tensor:
    ids = torch.randint(1, 20, (B, L))
    ids[0, 3:], ids[1, 4:] = 0, 0  # right-padded; the last row has none
    return ids


# -- helpers ---------------------------------------------------------------------------------------------


def feature(*shape) -> torch.Tensor:
    return torch.randn(*shape).requires_grad_()


def inputs(sf: dict, tf: dict, s=None, t=None) -> LossInputs:
    s = torch.randn(B, K) if s is None else s
    return LossInputs(student_logits=s, targets=torch.zeros(B, dtype=torch.long), teacher_logits=t,
                      student_features=sf, teacher_features=tf)


def built(name: str, pairs: list[FeaturePair], sf: dict, tf: dict, **kwargs):
    loss = LOSSES.get(name)(**kwargs)
    loss.setup(pairs, {k: v.shape for k, v in sf.items()}, {k: v.shape for k, v in tf.items()})
    return loss


def check(value, reference, leaves):
    """Same value, and the same gradients w.r.t. each leaf (none of them zero, so the comparison can fail)."""
    assert_close(value, reference)
    got = torch.autograd.grad(value, leaves, retain_graph=True)
    want = torch.autograd.grad(reference, leaves)
    for g, w in zip(got, want):
        assert g.abs().sum() > 0
        assert_close(g, w)


def mse(a, b):
    return ((a - b) ** 2).sum() / a.numel()


def tinybert_case(s_width=6, t_width=8, heads=2):
    """Features for one embedding, two hidden and two attention pairs, with padded keys masked by -10000."""
    pairs = [FeaturePair("s.emb", "t.emb", "embedding")]
    pairs += [FeaturePair(f"s.h{i}", f"t.h{i}", "hidden") for i in range(2)]
    pairs += [FeaturePair(f"s.a{i}", f"t.a{i}", "attention") for i in range(2)]
    masked = torch.zeros(B, 1, 1, L, dtype=torch.bool)
    masked[0, ..., 3:], masked[1, ..., 4:] = True, True
    sf, tf = {}, {}
    for p in pairs:
        if p.kind == "attention":
            sf[p.student] = (torch.randn(B, heads, L, L) + masked * -10000.0).requires_grad_()
            tf[p.teacher] = torch.randn(B, heads, L, L) + masked * -10000.0
        else:
            sf[p.student], tf[p.teacher] = feature(B, L, s_width), torch.randn(B, L, t_width)
    return pairs, sf, tf, masked


# -- layer map -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("student, teacher, expected", [
    (2, 6, [2, 5]), (3, 6, [1, 3, 5]), (4, 6, [1, 2, 4, 5]),  # 6 -> 4: k = 1.5, g = round-half-up(1.5 m) = 2, 3, 5, 6
    (6, 6, [0, 1, 2, 3, 4, 5]), (1, 6, [5]), (4, 12, [2, 5, 8, 11]),
])
def test_uniform_map_is_g_of_m_equals_k_m(student, teacher, expected):
    assert uniform_map(student, teacher) == expected
    by_hand = [math.floor(m * teacher / student + 0.5) - 1 for m in range(1, student + 1)]
    assert uniform_map(student, teacher) == by_hand


@pytest.mark.parametrize("student, mapping", [(2, [2, 5]), (3, [1, 3, 5]), (4, [1, 2, 4, 5])])
def test_layer_pairs_names_every_pair_with_its_kind(student, mapping):
    pairs = layer_pairs(StandIn(student), StandIn(6))
    assert pairs[0] == FeaturePair("embeddings", "embeddings", "embedding")
    assert pairs[1:] == [FeaturePair(f"encoder.layers.{i}", f"encoder.layers.{j}", "hidden") for i, j in enumerate(mapping)] + [
        FeaturePair(f"encoder.layers.{i}.attention.scores", f"encoder.layers.{j}.attention.scores", "attention")
        for i, j in enumerate(mapping)
    ]


def test_an_explicit_layer_map_is_used_as_given():
    pairs = layer_pairs(StandIn(3), StandIn(6), [0, 2, 4])
    assert [p.teacher for p in pairs if p.kind == "hidden"] == ["encoder.layers.0", "encoder.layers.2", "encoder.layers.4"]


@pytest.mark.parametrize("layer_map, says", [
    ([1, 3], "has 2 entries for a student of 3 layers"),
    ([1, 3, 6], "outside 0..5"),
    ([-1, 3, 5], "outside 0..5"),
    ([1, 1, 5], "not strictly increasing"),
    ([3, 1, 5], "not strictly increasing"),
    ("every_other", "not 'uniform' nor a list of integers"),
    ([1.0, 3, 5], "not 'uniform' nor a list of integers"),
    ([True, 3, 5], "not 'uniform' nor a list of integers"),
])
def test_a_bad_layer_map_is_named_with_what_would_work(layer_map, says):
    with pytest.raises(ConfigError) as caught:
        layer_pairs(StandIn(3), StandIn(6), layer_map, key="distill.layer_map")
    message = str(caught.value)
    assert message.startswith("distill.layer_map: ") and says in message
    assert "'uniform' (here [1, 3, 5]) or a list of 3 strictly increasing teacher layer indices in 0..5" in message


def test_layer_pairs_refuse_models_that_are_not_bert_style_encoders():
    with pytest.raises(ConfigError, match=r"distill.layer_map: the teacher \(Linear\) has no num_layers"):
        layer_pairs(StandIn(2), nn.Linear(3, 3))
    with pytest.raises(ConfigError, match="the student has 4 layers and the teacher 2.*at most 2 layers"):
        layer_pairs(StandIn(4), StandIn(2))
    renamed = StandIn(2)
    renamed.embed = renamed.embeddings
    del renamed.embeddings
    with pytest.raises(ConfigError, match="the student has no module 'embeddings'"):
        layer_pairs(renamed, StandIn(4))


# -- tinybert --------------------------------------------------------------------------------------------


def test_tinybert_matches_the_paper_formulas_with_masked_scores_set_to_zero():
    pairs, sf, tf, masked = tinybert_case()
    loss = built("tinybert", pairs, sf, tf, embedding=0.5, hidden=2.0, attention=3.0)
    w_e, w_h = loss.w_e, loss.w_h
    assert isinstance(w_e, nn.Linear) and isinstance(w_h, nn.Linear) and w_e is not w_h  # 6 -> 8: learned

    def projected(x, w):  # x W^T + b, written out
        return torch.einsum("blh,oh->blo", x, w.weight) + w.bias

    embd = mse(projected(sf["s.emb"], w_e), tf["t.emb"])
    hidn = sum(mse(projected(sf[f"s.h{i}"], w_h), tf[f"t.h{i}"]) for i in range(2)) / 2
    attn = 0
    for i in range(2):
        s, t = sf[f"s.a{i}"], tf[f"t.a{i}"]
        total = 0
        for b in range(B):
            for col in range(L):  # a padded key column is 0 on both sides, so it adds nothing
                if not masked[b, 0, 0, col]:
                    total = total + ((s[b, :, :, col] - t[b, :, :, col]) ** 2).sum()
        attn = attn + total / s.numel() / 2
    reference = 0.5 * embd + 2.0 * hidn + 3.0 * attn
    check(loss(inputs(sf, tf)), reference, [*sf.values(), w_e.weight, w_h.weight])


def test_tinybert_zeroes_masked_scores_on_the_student_side_too():
    pairs = [FeaturePair("s", "t", "attention")]
    s, t = feature(B, 2, L, L), torch.randn(B, 2, L, L)
    student = s.detach().clone()
    student[..., -1] = -10000.0  # the student's own mask
    student.requires_grad_()
    loss = built("tinybert", pairs, {"s": student}, {"t": t}, embedding=0, hidden=0)
    value = loss(inputs({"s": student}, {"t": t}))
    reference = (((student[..., :-1] - t[..., :-1]) ** 2).sum() + (t[..., -1] ** 2).sum()) / t.numel()
    assert_close(value, reference)
    value.backward()
    assert (student.grad[..., -1] == 0).all() and (student.grad[..., :-1] != 0).all()


def test_tinybert_trains_its_projections_with_the_student():
    pairs, sf, tf, _ = tinybert_case()
    composite = build_loss([{"name": "tinybert"}])
    composite.setup(pairs, {k: v.shape for k, v in sf.items()}, {k: v.shape for k, v in tf.items()})
    term = composite.terms[0]
    params = list(composite.parameters())  # what the trainer's optimizer is given besides the student
    assert any(p is term.w_e.weight for p in params) and any(p is term.w_h.weight for p in params)
    optimizer = torch.optim.SGD([*params, *sf.values()], lr=0.05)
    before, _ = composite(inputs(sf, tf))
    before.backward()
    assert all(float(p.grad.abs().sum()) > 0 for p in [*params, *sf.values()])
    w_e = term.w_e.weight.detach().clone()
    optimizer.step()
    after, _ = composite(inputs(sf, tf))
    assert not torch.equal(term.w_e.weight, w_e) and float(after.detach()) < float(before.detach())


def test_tinybert_uses_no_projection_where_widths_match():
    pairs, sf, tf, _ = tinybert_case(s_width=8, t_width=8)
    loss = built("tinybert", pairs, sf, tf)
    assert isinstance(loss.w_e, nn.Identity) and isinstance(loss.w_h, nn.Identity) and not list(loss.parameters())
    same = {p.teacher: sf[p.student].detach().clone() for p in pairs}
    assert float(loss(inputs(sf, same)).detach()) == 0.0


def test_tinybert_refuses_different_head_counts_naming_both():
    pairs, sf, tf, _ = tinybert_case(heads=2)
    tf["t.a0"] = torch.randn(B, 4, L, L)
    with pytest.raises(ConfigError, match=r"'s.a0' has 2 heads and the teacher's 't.a0' 4"):
        built("tinybert", pairs, sf, tf)
    built("tinybert", pairs, sf, tf, attention=0)  # no attention part: heads need not match


def test_tinybert_without_pairs_of_a_kind_asks_for_the_layer_map():
    pairs, sf, tf, _ = tinybert_case()
    hidden_only = [p for p in pairs if p.kind == "hidden"]
    with pytest.raises(ConfigError, match="distill.layer_map: .*no feature pair of kind embedding or attention; set distill.layer_map"):
        built("tinybert", hidden_only, sf, tf)
    untyped = [FeaturePair(p.student, p.teacher) for p in pairs]  # listed by hand in distill.features
    with pytest.raises(ConfigError, match="kind embedding or hidden or attention"):
        built("tinybert", untyped, sf, tf)
    loss = built("tinybert", hidden_only, sf, tf, embedding=0, attention=0)
    assert float(loss(inputs(sf, tf)).detach()) > 0
    with pytest.raises(ConfigError, match="set distill.layer_map"):
        LOSSES.get("tinybert")()(inputs(sf, tf))  # never set up: the trainer had no pairs
    with pytest.raises(ValueError, match="not all 0"):
        LOSSES.get("tinybert")(embedding=0, hidden=0, attention=0)


def test_tinybert_refuses_hidden_pairs_of_different_widths():
    pairs, sf, tf, _ = tinybert_case()
    tf["t.h1"] = torch.randn(B, L, 10)
    with pytest.raises(ConfigError, match=r"widths \(student, teacher\) \[\(6, 8\), \(6, 10\)\]"):
        built("tinybert", pairs, sf, tf)


# -- soft_ce ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1.0, 2.5])
def test_soft_ce_is_soft_cross_entropy_with_temperature(T):
    s, t = (torch.randn(B, K) * 2).requires_grad_(), torch.randn(B, K) * 3
    value = LOSSES.get("soft_ce")(temperature=T)(inputs({}, {}, s, t))
    p_t = torch.exp(t / T) / torch.exp(t / T).sum(1, keepdim=True)
    log_p_s = s / T - torch.log(torch.exp(s / T).sum(1, keepdim=True))
    reference = sum(-(p_t[i] * log_p_s[i]).sum() for i in range(B)) / B
    check(value, reference, [s])
    # kd is T^2 KL; soft CE is KL plus the teacher's entropy, a constant for the student
    kd = LOSSES.get("kd")(temperature=T)(inputs({}, {}, s, t))
    entropy = -(p_t * torch.log(p_t)).sum() / B
    assert_close(value, kd / T**2 + entropy)


# -- distilbert_cosine -----------------------------------------------------------------------------------


def cosine_by_hand(s, t, keep=None):
    total, count = 0.0, 0
    for b in range(s.shape[0]):
        for pos in range(s.shape[1]):
            if keep is None or keep[b, pos]:
                dot = (s[b, pos] * t[b, pos]).sum()
                total = total + 1 - dot / (s[b, pos].norm() * t[b, pos].norm())
                count += 1
    return total / count


def test_distilbert_cosine_on_the_last_hidden_pair_over_every_position_without_a_mask():
    pairs = [FeaturePair(f"s.h{i}", f"t.h{i}", "hidden") for i in range(2)]
    sf, tf = {p.student: feature(B, L, 8) for p in pairs}, {p.teacher: torch.randn(B, L, 8) for p in pairs}
    loss = built("distilbert_cosine", pairs, sf, tf)
    check(loss(inputs(sf, tf)), cosine_by_hand(sf["s.h1"], tf["t.h1"]), [sf["s.h1"]])
    every = built("distilbert_cosine", pairs, sf, tf, layers="all")
    reference = (cosine_by_hand(sf["s.h0"], tf["t.h0"]) + cosine_by_hand(sf["s.h1"], tf["t.h1"])) / 2
    check(every(inputs(sf, tf)), reference, list(sf.values()))


def test_distilbert_cosine_leaves_out_pad_tokens_seen_in_the_teacher_scores():
    pairs, sf, tf, masked = tinybert_case(s_width=8, t_width=8)
    loss = built("distilbert_cosine", pairs, sf, tf)
    keep = ~masked[:, 0, 0, :]  # (B, L)
    check(loss(inputs(sf, tf)), cosine_by_hand(sf["s.h1"], tf["t.h1"], keep), [sf["s.h1"]])


def test_distilbert_cosine_takes_hand_listed_pairs_and_refuses_other_widths():
    pairs = [FeaturePair("s.h", "t.h")]  # distill.features, no kind
    sf, tf = {"s.h": feature(B, L, 8)}, {"t.h": torch.randn(B, L, 8)}
    check(built("distilbert_cosine", pairs, sf, tf)(inputs(sf, tf)), cosine_by_hand(sf["s.h"], tf["t.h"]), [sf["s.h"]])
    with pytest.raises(ConfigError, match=r"'s.h' has 8 and 't.h' 12; give the student the teacher's hidden size 12"):
        built("distilbert_cosine", pairs, sf, {"t.h": torch.randn(B, L, 12)})
    with pytest.raises(ConfigError, match="no hidden-state pair; set distill.layer_map"):
        built("distilbert_cosine", [FeaturePair("s.a", "t.a", "attention")], {"s.a": feature(B, 2, L, L)},
              {"t.a": torch.randn(B, 2, L, L)})
    with pytest.raises(ValueError, match="layers must be one of last, all"):
        LOSSES.get("distilbert_cosine")(layers="first")


# -- with recorded features ------------------------------------------------------------------------------


def recorded(model, names, ids):
    with FeatureRecorder(model, names) as recorder:
        logits = model(ids)
    return logits, dict(recorder.features)


def step(student, teacher, specs):
    """layer_pairs -> FeatureRecorder on both models -> loss setup -> one backward step; the loss and its parts."""
    pairs = layer_pairs(student, teacher)
    ids = ids_with_padding()
    with torch.no_grad():
        t_logits, tf = recorded(teacher, [p.teacher for p in pairs], ids)
    s_logits, sf = recorded(student, [p.student for p in pairs], ids)
    loss = build_loss(specs)
    loss.setup(pairs, {k: v.shape for k, v in sf.items()}, {k: v.shape for k, v in tf.items()})
    total, parts = loss(LossInputs(s_logits, torch.zeros(B, dtype=torch.long), t_logits, [t_logits], sf, tf))
    total.backward()
    return loss, parts, sf, tf, ids


def test_layer_pairs_and_the_losses_train_a_stand_in_student():
    student, teacher = StandIn(2, hidden=6), StandIn(4, hidden=8)
    specs = [{"name": "tinybert"}, {"name": "soft_ce", "temperature": 2.0}]
    loss, parts, sf, tf, ids = step(student, teacher, specs)
    assert set(parts) == {"tinybert", "soft_ce"} and all(math.isfinite(v) and v > 0 for v in parts.values())
    assert tf["encoder.layers.3.attention.scores"].min() <= -1e4  # the teacher's padded keys were masked
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.encoder.parameters())
    assert loss.terms[0].w_h.weight.grad.abs().sum() > 0
    # distilbert_cosine finds the padding from the teacher's scores: the ids' pad positions
    cosine = LOSSES.get("distilbert_cosine")()
    same_width = StandIn(4, hidden=8)
    pairs = layer_pairs(StandIn(2, hidden=8), same_width)
    cosine.setup(pairs, {p.student: tf[p.teacher].shape for p in pairs}, {p.teacher: tf[p.teacher].shape for p in pairs})
    assert torch.equal(cosine._not_padding(LossInputs(torch.zeros(B, K), ids, None, [], {}, tf)), ids != 0)


@pytest.mark.skipif(importlib.util.find_spec("edgekd.models.bert") is None, reason="edgekd/models/bert.py is not there yet")
def test_layer_pairs_on_two_zoo_bert_models():
    from edgekd.models import create_model

    teacher = create_model("bert", num_classes=2, layers=4, hidden=16, heads=2, ffn=32, vocab_size=100).eval()
    student = create_model("bert", num_classes=2, layers=2, hidden=8, heads=2, ffn=16, vocab_size=100)
    pairs = layer_pairs(student, teacher)
    assert [p.teacher for p in pairs if p.kind == "hidden"] == ["encoder.layers.1", "encoder.layers.3"]
    ids = torch.randint(1, 100, (B, L))
    ids[0, 3:] = teacher.pad_id
    with torch.no_grad():
        t_logits, tf = recorded(teacher, [p.teacher for p in pairs], ids)
    s_logits, sf = recorded(student, [p.student for p in pairs], ids)
    assert tf["embeddings"].shape == (B, L, 16) and sf["encoder.layers.1.attention.scores"].shape == (B, 2, L, L)
    loss = build_loss([{"name": "tinybert"}, {"name": "soft_ce"}])
    loss.setup(pairs, {k: v.shape for k, v in sf.items()}, {k: v.shape for k, v in tf.items()})
    total, _ = loss(LossInputs(s_logits, torch.zeros(B, dtype=torch.long), t_logits, [t_logits], sf, tf))
    total.backward()
    assert math.isfinite(float(total.detach()))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.encoder.parameters())
    assert loss.terms[0].w_h.weight.grad.abs().sum() > 0  # 8 -> 16: a learned projection, trained too
