"""Each loss against an independent reference computation (values and gradients)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from edgekd.errors import ConfigError, StageError
from edgekd.losses import LOSSES, CompositeLoss, FeaturePair, LossInputs, build_loss

B, K = 6, 10


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def logits(*shape, dtype=torch.float32, scale=2.0):
    return (torch.randn(*shape, dtype=dtype) * scale).requires_grad_()


def inputs(s, t=None, *, each=(), sf=None, tf=None, y=None):
    return LossInputs(
        student_logits=s,
        targets=torch.randint(0, s.shape[1], (s.shape[0],)) if y is None else y,
        teacher_logits=t,
        teacher_logits_each=list(each),
        student_features=sf or {},
        teacher_features=tf or {},
    )


def check(value, reference, leaves):
    """Same value, and the same autograd gradients w.r.t. each leaf."""
    assert_close(value, reference)
    got = torch.autograd.grad(value, leaves, retain_graph=True)
    want = torch.autograd.grad(reference, leaves)
    for g, w in zip(got, want):
        assert g.abs().sum() > 0  # a zero gradient would make the comparison vacuous
        assert_close(g, w)


def kl_by_hand(s, t, T):
    """KL(softmax(t/T) || softmax(s/T)) summed over classes, averaged over the batch."""
    p_t = torch.exp(t / T) / torch.exp(t / T).sum(1, keepdim=True)
    log_p_s = s / T - torch.log(torch.exp(s / T).sum(1, keepdim=True))
    return (p_t * (torch.log(p_t) - log_p_s)).sum() / s.shape[0]


# -- logits -------------------------------------------------------------------------------


def test_registry_names():
    assert {"ce", "kd", "logit_mse", "fitnet", "at", "rkd", "sp", "multi_teacher"} <= set(LOSSES.names())  # more may be added


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_ce(smoothing):
    s = logits(B, K)
    y = torch.randint(0, K, (B,))
    loss = LOSSES.get("ce")(label_smoothing=smoothing)
    assert loss.needs_teacher is False
    logp = s - torch.log(torch.exp(s).sum(1, keepdim=True))
    nll = -logp[torch.arange(B), y]
    ref = ((1 - smoothing) * nll - smoothing * logp.mean(1)).mean()
    check(loss(inputs(s, y=y)), ref, [s])


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_kd_matches_t2_times_kl(T):
    s, t = logits(B, K), torch.randn(B, K) * 3
    loss = LOSSES.get("kd")(temperature=T)
    check(loss(inputs(s, t)), T**2 * kl_by_hand(s, t, T), [s])


def test_kd_default_temperature_is_4():
    assert LOSSES.get("kd")().temperature == 4.0


def test_kd_zero_when_student_equals_teacher():
    t = torch.randn(B, K) * 3
    s = t.clone().requires_grad_()
    value = LOSSES.get("kd")(temperature=4.0)(inputs(s, t))
    assert abs(float(value.detach())) < 1e-6
    (grad,) = torch.autograd.grad(value, s)
    assert grad.abs().max() < 1e-6


def test_kd_t2_keeps_gradient_magnitude():
    s, t = logits(B, K), torch.randn(B, K) * 2

    def grad_norm(T, scaled=True):
        value = LOSSES.get("kd")(temperature=T)(inputs(s, t))
        (g,) = torch.autograd.grad(value if scaled else value / T**2, s)
        return float(g.norm())

    # With T^2 the gradient stays within a small factor across temperatures...
    assert 0.25 < grad_norm(4.0) / grad_norm(1.0) < 4
    # ...without it, the soft gradient shrinks roughly as 1/T^2.
    assert grad_norm(4.0, scaled=False) / grad_norm(1.0) < 0.1


def test_kd_high_temperature_limit_is_logit_matching():
    # Hinton et al. sec. 2.1: for large T and zero-mean logits, d(T^2 KL)/ds = (s - t) / K (per sample).
    s = torch.randn(B, K)
    t = torch.randn(B, K)
    s = (s - s.mean(1, keepdim=True)).requires_grad_()
    t = t - t.mean(1, keepdim=True)
    value = LOSSES.get("kd")(temperature=100.0)(inputs(s, t))
    (g,) = torch.autograd.grad(value, s)
    assert_close(g, (s - t).detach() / (K * B), rtol=0.05, atol=1e-4)


def test_kd_accepts_float16_teacher_logits():
    s, t = logits(B, K), torch.randn(B, K)
    loss = LOSSES.get("kd")(temperature=2.0)
    assert_close(loss(inputs(s, t.half())), loss(inputs(s, t.half().float())))


def test_kd_without_teacher_logits_is_an_error():
    with pytest.raises(StageError, match="kd"):
        LOSSES.get("kd")()(inputs(logits(B, K)))


def test_logit_mse():
    s, t = logits(B, K), torch.randn(B, K)
    ref = sum((s[i, k] - t[i, k]) ** 2 for i in range(B) for k in range(K)) / (B * K)
    check(LOSSES.get("logit_mse")()(inputs(s, t)), ref, [s])


# -- multi-teacher ------------------------------------------------------------------------


def test_multi_teacher_weighted_average_of_kd_terms():
    s = logits(B, K)
    each = [torch.randn(B, K) * 2 for _ in range(2)]
    loss = LOSSES.get("multi_teacher")(temperature=3.0, weights=[1.0, 3.0])
    ref = 9.0 * (0.25 * kl_by_hand(s, each[0], 3.0) + 0.75 * kl_by_hand(s, each[1], 3.0))
    check(loss(inputs(s, None, each=each)), ref, [s])


def test_multi_teacher_uniform_default_differs_from_logit_ensemble():
    s = logits(B, K)
    each = [torch.randn(B, K) * 3 for _ in range(3)]
    value = LOSSES.get("multi_teacher")(temperature=2.0)(inputs(s, None, each=each))
    ref = 4.0 * sum(kl_by_hand(s, t, 2.0) for t in each) / 3
    assert_close(value, ref)
    # kd on the averaged logits is a different objective (see the class docstring).
    ensemble = LOSSES.get("kd")(temperature=2.0)(inputs(s, sum(each) / 3))
    assert float(value.detach()) > float(ensemble.detach()) + 1e-3


def test_multi_teacher_weight_count_must_match_teachers():
    loss = LOSSES.get("multi_teacher")(weights=[1.0, 1.0])
    with pytest.raises(ConfigError, match="2 weights given for 3 teachers"):
        loss(inputs(logits(B, K), None, each=[torch.randn(B, K)] * 3))


# -- feature losses -----------------------------------------------------------------------


def avg_pool_by_reshape(f, out):
    """Average-pool (B, C, H, W) to (out, out) when H, W are multiples of out."""
    b, c, h, w = f.shape
    return f.reshape(b, c, out, h // out, out, w // out).mean(dim=(3, 5))


def test_fitnet_conv_adapter_with_pooling():
    pair = FeaturePair("s.layer", "t.layer")
    fs = torch.randn(B, 8, 8, 8, requires_grad=True)
    ft = torch.randn(B, 16, 4, 4)
    loss = LOSSES.get("fitnet")()
    assert loss.needs_features
    loss.setup([pair], {"s.layer": fs.shape}, {"t.layer": ft.shape})
    (adapter,) = loss.adapters
    assert isinstance(adapter, nn.Conv2d) and adapter.weight.shape == (16, 8, 1, 1)
    assert {id(p) for p in loss.parameters()} == {id(adapter.weight), id(adapter.bias)}

    w, b = adapter.weight[:, :, 0, 0], adapter.bias
    pooled = avg_pool_by_reshape(fs, 4)
    regressed = torch.einsum("oc,bchw->bohw", w, pooled) + b[None, :, None, None]
    ref = ((regressed - ft) ** 2).mean()
    value = loss(inputs(logits(B, K), sf={"s.layer": fs}, tf={"t.layer": ft}))
    check(value, ref, [fs, adapter.weight, adapter.bias])


def test_fitnet_linear_adapter_and_identity_sum_over_pairs():
    pairs = [FeaturePair("s.a", "t.a"), FeaturePair("s.b", "t.b")]
    sa, ta = torch.randn(B, 5, requires_grad=True), torch.randn(B, 7)
    sb, tb = torch.randn(B, 3, 2, 2, requires_grad=True), torch.randn(B, 3, 2, 2)
    loss = LOSSES.get("fitnet")()
    loss.setup(pairs, {"s.a": sa.shape, "s.b": sb.shape}, {"t.a": ta.shape, "t.b": tb.shape})
    linear, identity = loss.adapters
    assert isinstance(linear, nn.Linear) and linear.weight.shape == (7, 5)
    assert isinstance(identity, nn.Identity)
    ref = ((sa @ linear.weight.T + linear.bias - ta) ** 2).mean() + ((sb - tb) ** 2).mean()
    value = loss(inputs(logits(B, K), sf={"s.a": sa, "s.b": sb}, tf={"t.a": ta, "t.b": tb}))
    check(value, ref, [sa, sb, linear.weight])


def test_fitnet_errors():
    loss = LOSSES.get("fitnet")()
    with pytest.raises(ConfigError, match="both 4-D"):
        loss.setup([FeaturePair("s", "t")], {"s": torch.Size([B, 4, 2, 2])}, {"t": torch.Size([B, 4])})
    loss.setup([FeaturePair("s", "t")], {"s": torch.Size([B, 4])}, {"t": torch.Size([B, 4])})
    with pytest.raises(StageError, match="'s'"):
        loss(inputs(logits(B, K), sf={}, tf={"t": torch.randn(B, 4)}))
    with pytest.raises(ConfigError, match="feature pair"):
        LOSSES.get("sp")()(inputs(logits(B, K)))


def test_at_with_different_spatial_sizes():
    fs = torch.randn(B, 4, 8, 8, requires_grad=True)
    ft = torch.randn(B, 12, 4, 4)
    fs2 = torch.randn(B, 2, 3, 3, requires_grad=True)
    ft2 = torch.randn(B, 5, 3, 3)
    loss = LOSSES.get("at")()
    loss.setup([FeaturePair("s", "t"), FeaturePair("s2", "t2")], {}, {})

    def attention(f):
        a = (f**2).mean(1).reshape(B, -1)
        return a / torch.sqrt((a**2).sum(1, keepdim=True))

    ref = ((attention(avg_pool_by_reshape(fs, 4)) - attention(ft)) ** 2).mean()
    ref = ref + ((attention(fs2) - attention(ft2)) ** 2).mean()
    value = loss(inputs(logits(B, K), sf={"s": fs, "s2": fs2}, tf={"t": ft, "t2": ft2}))
    check(value, ref, [fs, fs2])


def rkd_reference(s, t, wd=25.0, wa=50.0):
    """Park et al. written with explicit loops over samples."""
    s, t = s.reshape(len(s), -1), t.reshape(len(t), -1)
    n = len(s)

    def dist(e):
        rows = [[torch.linalg.vector_norm(e[i] - e[j]) if i != j else e.new_zeros(()) for j in range(n)] for i in range(n)]
        d = torch.stack([torch.stack(r) for r in rows])
        return d / (d.sum() / (n * (n - 1)))

    def angle(e):
        out = []
        for j in range(n):
            for i in range(n):
                for k in range(n):
                    if i == j or k == j:
                        out.append(e.new_zeros(()))
                    else:
                        u, v = e[i] - e[j], e[k] - e[j]
                        out.append((u @ v) / (torch.linalg.vector_norm(u) * torch.linalg.vector_norm(v)))
        return torch.stack(out)

    def huber(a, b):
        x = (a - b).abs()
        return torch.where(x < 1, 0.5 * x**2, x - 0.5).mean()

    return wd * huber(dist(s), dist(t)) + wa * huber(angle(s), angle(t))


def test_rkd_on_feature_pairs():
    fs = torch.randn(5, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    ft = torch.randn(5, 20, dtype=torch.float64) * 3
    loss = LOSSES.get("rkd")()
    loss.setup([FeaturePair("s", "t")], {}, {})
    value = loss(inputs(logits(5, K, dtype=torch.float64), sf={"s": fs}, tf={"t": ft}))
    check(value, rkd_reference(fs, ft), [fs])


def test_rkd_on_logits_when_no_pairs():
    s, t = logits(5, K, dtype=torch.float64), torch.randn(5, K, dtype=torch.float64)
    loss = LOSSES.get("rkd")(distance_weight=2.0, angle_weight=3.0)
    assert loss.needs_features is False
    check(loss(inputs(s, t)), rkd_reference(s, t, 2.0, 3.0), [s])


def test_sp():
    fs = torch.randn(B, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    ft = torch.randn(B, 10, dtype=torch.float64)
    loss = LOSSES.get("sp")()
    loss.setup([FeaturePair("s", "t")], {}, {})

    def gram(f):
        f = f.reshape(B, -1)
        g = torch.stack([torch.stack([f[i] @ f[j] for j in range(B)]) for i in range(B)])
        return g / torch.sqrt((g**2).sum(1, keepdim=True))

    ref = ((gram(fs) - gram(ft)) ** 2).sum() / B**2
    check(loss(inputs(logits(B, K, dtype=torch.float64), sf={"s": fs}, tf={"t": ft})), ref, [fs])


# -- composite and build_loss -------------------------------------------------------------


def test_composite_is_weighted_sum_of_terms():
    s, t = logits(B, K), torch.randn(B, K)
    y = torch.randint(0, K, (B,))
    composite = build_loss([
        {"name": "ce", "weight": 0.3},
        {"name": "kd", "weight": 0.7, "temperature": 2.0},
        {"name": "kd", "temperature": 5.0},
    ])
    assert isinstance(composite, CompositeLoss)
    assert composite.needs_teacher and not composite.needs_features
    total, terms = composite(inputs(s, t, y=y))
    ce = torch.nn.functional.cross_entropy(s, y)
    kd2, kd5 = 4.0 * kl_by_hand(s, t, 2.0), 25.0 * kl_by_hand(s, t, 5.0)
    check(total, 0.3 * ce + 0.7 * kd2 + 1.0 * kd5, [s])
    assert terms.keys() == {"ce", "kd[1]", "kd[2]"}
    assert terms["ce"] == pytest.approx(float(ce.detach()), rel=1e-5)
    assert terms["kd[1]"] == pytest.approx(float(kd2.detach()), rel=1e-5)
    assert terms["kd[2]"] == pytest.approx(float(kd5.detach()), rel=1e-5)


def test_composite_setup_and_parameters_reach_fitnet_adapters():
    composite = build_loss([{"name": "ce"}], key="teacher")
    assert not composite.needs_teacher
    composite = build_loss([{"name": "kd"}, {"name": "fitnet", "weight": 2.0}])
    assert composite.needs_features
    composite.setup([FeaturePair("s", "t")], {"s": torch.Size([B, 3])}, {"t": torch.Size([B, 4])})
    assert sum(p.numel() for p in composite.parameters()) == 3 * 4 + 4


def test_build_loss_unknown_name():
    with pytest.raises(ConfigError) as err:
        build_loss([{"name": "kd"}, {"name": "kdd"}])
    message = str(err.value)
    assert "distill.losses[1].name" in message and "'kdd'" in message
    for name in LOSSES.names():
        assert name in message


def test_build_loss_bad_kwarg_names_it_and_accepted_ones():
    with pytest.raises(ConfigError) as err:
        build_loss([{"name": "ce"}, {"name": "kd", "temprature": 2.0}], key="x.losses")
    message = str(err.value)
    assert "x.losses[1]" in message and "'temprature'" in message and "temperature" in message


def test_build_loss_names_every_problem_with_suggestions():
    with pytest.raises(ConfigError) as err:
        build_loss([{"name": "kdd"}, {"name": "ce", "label_smothing": 0.1}, {"name": "kd", "weight": -1}])
    lines = str(err.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "distill.losses[0].name", "distill.losses[1].label_smothing", "distill.losses[2].weight"]
    assert "did you mean 'kd'" in lines[0] and "did you mean 'label_smoothing'" in lines[1]


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"name": "kd", "weight": -0.5}, r"distill\.losses\[0\]\.weight"),
        ({"name": "kd", "weight": "high"}, r"distill\.losses\[0\]\.weight"),
        ({"name": "kd", "temperature": 0}, r"distill\.losses\[0\].*temperature must be > 0"),
        ({"name": "multi_teacher", "weights": [-1, 2]}, r"distill\.losses\[0\].*weights"),
        ({"weight": 1.0}, r"distill\.losses\[0\].*'name'"),
    ],
)
def test_build_loss_bad_values(spec, match):
    with pytest.raises(ConfigError, match=match):
        build_loss([spec])


def test_build_loss_needs_a_term_and_defaults_weight_to_one():
    with pytest.raises(ConfigError, match="at least one"):
        build_loss([])
    composite = build_loss([{"name": "logit_mse"}])
    assert composite.weights == [1.0]
    s, t = logits(B, K), torch.randn(B, K)
    total, terms = composite(inputs(s, t))
    assert float(total.detach()) == pytest.approx(float(((s - t) ** 2).mean().detach()), rel=1e-6)
    assert math.isclose(terms["logit_mse"], float(total.detach()), rel_tol=1e-6)


# -- DKD and DIST: each against its authors' published code, written out here -------------------------


def dkd_reference(s, t, y, alpha, beta, T):
    """mdistiller's dkd_loss (github.com/megvii-research/mdistiller, mdistiller/distillers/DKD.py)."""
    gt = torch.zeros_like(s).scatter_(1, y.unsqueeze(1), 1).bool()
    other = ~gt
    p_s, p_t = torch.softmax(s / T, 1), torch.softmax(t / T, 1)
    cat = lambda p: torch.cat([(p * gt).sum(1, keepdim=True), (p * other).sum(1, keepdim=True)], 1)  # noqa: E731
    b_s, b_t = cat(p_s), cat(p_t)
    tckd = torch.nn.functional.kl_div(torch.log(b_s), b_t, reduction="sum") * T**2 / y.shape[0]
    p_t2 = torch.softmax(t / T - 1000.0 * gt, 1)
    log_p_s2 = torch.log_softmax(s / T - 1000.0 * gt, 1)
    nckd = torch.nn.functional.kl_div(log_p_s2, p_t2, reduction="sum") * T**2 / y.shape[0]
    return alpha * tckd + beta * nckd


@pytest.mark.parametrize("alpha,beta,T", [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0)])
def test_dkd_matches_the_authors_code(alpha, beta, T):
    s, t = logits(B, K), logits(B, K)
    y = torch.randint(0, K, (B,))
    value = LOSSES.get("dkd")(alpha=alpha, beta=beta, temperature=T)(inputs(s, t, y=y))
    check(value, dkd_reference(s, t.detach(), y, alpha, beta, T), [s])


def test_dkd_recombines_into_classic_kd():
    """The paper's identity: KD = TCKD + (1 - p_target of the teacher) * NCKD, per sample."""
    s, t = logits(B, K), logits(B, K)
    y = torch.randint(0, K, (B,))
    T = 3.0
    for i in range(B):
        weight = 1 - torch.softmax(t[i] / T, 0)[y[i]].item()
        dkd = LOSSES.get("dkd")(alpha=1.0, beta=weight, temperature=T)(inputs(s[i:i + 1], t[i:i + 1], y=y[i:i + 1]))
        kd = LOSSES.get("kd")(temperature=T)(inputs(s[i:i + 1], t[i:i + 1], y=y[i:i + 1]))
        assert_close(dkd, kd)


def test_dkd_stays_finite_for_a_certain_teacher():
    s = logits(B, K)
    t = torch.full((B, K), -60.0)
    y = torch.randint(0, K, (B,))
    t[torch.arange(B), y] = 60.0  # p_target = 1 in float32 at T = 1
    value = LOSSES.get("dkd")(temperature=1.0)(inputs(s, t, y=y))
    (grad,) = torch.autograd.grad(value, [s])
    assert torch.isfinite(value) and torch.isfinite(grad).all()


def dist_reference(s, t, beta, gamma, tau):
    """DIST's loss (github.com/hunto/DIST_KD, classification/lib/models/losses/dist_kd.py)."""
    def pearson(a, b, eps=1e-8):
        a, b = a - a.mean(1).unsqueeze(1), b - b.mean(1).unsqueeze(1)
        return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)

    y_s, y_t = (s / tau).softmax(1), (t / tau).softmax(1)
    inter = tau**2 * (1 - pearson(y_s, y_t).mean())
    intra = tau**2 * (1 - pearson(y_s.transpose(0, 1), y_t.transpose(0, 1)).mean())
    return beta * inter + gamma * intra


@pytest.mark.parametrize("beta,gamma,T", [(1.0, 1.0, 1.0), (2.0, 0.5, 4.0)])
def test_dist_matches_the_authors_code(beta, gamma, T):
    s, t = logits(B, K), logits(B, K)
    value = LOSSES.get("dist")(beta=beta, gamma=gamma, temperature=T)(inputs(s, t))
    check(value, dist_reference(s, t.detach(), beta, gamma, T), [s])


def test_dist_inter_class_term_ignores_a_shift_and_scale_of_the_probabilities():
    """Correlation, not equality: a student whose probabilities are an affine image of the teacher's has
    no inter-class loss (where KD would still push it)."""
    t = logits(B, K).detach()
    p_t = torch.softmax(t, 1)
    p_s = 0.5 * p_t + 0.05  # rows still sum to 1 with K = 10
    s = torch.log(p_s)
    inter_only = LOSSES.get("dist")(beta=1.0, gamma=0.0)(inputs(s, t))
    assert inter_only.abs() < 1e-6
    assert LOSSES.get("kd")(temperature=1.0)(inputs(s, t)) > 1e-3
