"""Structured pruning of a BERT-style encoder (issue 14): whole attention heads and FFN channels go, the hidden
size and the classifier stay; MACs counted with attention; pruned weights round-trip; the pruned model exports
to ONNX; the pipeline's prune stage runs on the tiny text setup of test_text_pipeline."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import yaml

from edgekd.models import create_model
from edgekd.prune import attention_heads, count, load_pruned, make_pruner, noop_problem, output_layers, save_pruned
from edgekd.stages.prune import recovery_losses

HEADS, HIDDEN, FFN, LAYERS = 4, 32, 64, 2


def tiny_bert() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("bert", num_classes=2, vocab_size=100, layers=LAYERS, hidden=HIDDEN, heads=HEADS, ffn=FFN,
                        pad_id=0).eval()


def ids(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    x = torch.randint(1, 100, (batch, length), generator=torch.Generator().manual_seed(seed))
    x[0, length // 2:] = 0  # one right-padded row
    return x


EXAMPLE = torch.full((1, 16), 5, dtype=torch.long)


def pruned(ratio: float = 0.5, steps: int = 1, **options) -> torch.nn.Module:
    model = tiny_bert()
    pruner = make_pruner(model, EXAMPLE, importance="l2", ratio=ratio, steps=steps, **options)
    for _ in range(steps):
        pruner.step()
    return model


@pytest.mark.parametrize("steps", [1, 2])
def test_half_the_heads_and_ffn_channels_go_hidden_size_stays(steps):
    model = pruned(0.5, steps)
    assert attention_heads(model) == {f"encoder.layers.{i}.attention": HEADS // 2 for i in range(LAYERS)}
    for layer in model.encoder.layers:
        a = layer.attention
        assert a.head_dim == HIDDEN // HEADS  # heads go whole: no head loses dimensions
        assert a.query.out_features == a.key.out_features == a.value.out_features == a.output.in_features == HIDDEN // 2
        assert a.output.out_features == HIDDEN and layer.output.out_features == HIDDEN
        assert layer.intermediate.out_features == layer.output.in_features == FFN // 2
        assert tuple(layer.attention_norm.normalized_shape) == tuple(layer.output_norm.normalized_shape) == (HIDDEN,)
    assert model.embeddings.word_embeddings.embedding_dim == HIDDEN
    assert (model.classifier.in_features, model.classifier.out_features) == (HIDDEN, 2)
    assert (model.num_heads, model.ffn_size) == (HEADS // 2, FFN // 2)  # the model's own figures follow its layers
    for length in (7, 16):
        assert model(ids(3, length)).shape == (3, 2)


def test_round_to_applies_to_ffn_channels_not_heads():
    model = pruned(0.3, round_to=16)
    assert all(layer.intermediate.out_features % 16 == 0 and layer.intermediate.out_features < FFN
               for layer in model.encoder.layers)
    assert set(attention_heads(model).values()) == {HEADS - 2}  # 4 - int(4 * 0.7): heads removed whole


def test_macs_count_attention_and_drop():
    model, example = tiny_bert(), EXAMPLE
    macs, params = count(model, example)
    # by hand: per layer 4 projections (H*H) and the FFN (2*H*F) per token, plus the two attention matmuls
    # (L*L*H), and the classifier; embeddings are lookups
    length = example.shape[1]
    per_layer = length * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN) + 2 * length * length * HIDDEN
    assert macs == LAYERS * per_layer + HIDDEN * 2
    assert params == sum(p.numel() for p in model.parameters())
    after, after_params = count(pruned(0.5), example)
    assert after < macs and after_params < params
    # attention matmuls scale with the heads left: half of everything per layer
    assert after == LAYERS * per_layer // 2 + HIDDEN * 2


def test_classifier_is_the_output_layer_and_kept():
    model = tiny_bert()
    assert output_layers(model, EXAMPLE) == ["classifier"]


def test_a_ratio_that_prunes_nothing_is_a_problem():
    assert noop_problem(tiny_bert(), EXAMPLE, ratio=0.5, importance="l2") is None
    # BN-scale importance has no BatchNorm to rank in a transformer: nothing would go
    problem = noop_problem(tiny_bert(), EXAMPLE, ratio=0.5, importance="bn_scale")
    assert problem is not None and problem.key == "prune.ratio" and "removes nothing" in problem.message


def test_save_load_round_trips_a_head_pruned_bert(tmp_path):
    model = pruned(0.5)
    path = tmp_path / "student_pruned.safetensors"
    save_pruned(model, path)
    raw = path.read_bytes()  # a safetensors file (8-byte header length, JSON header, raw tensors): no pickle
    header = json.loads(raw[8: 8 + int.from_bytes(raw[:8], "little")])
    assert "edgekd.structure" in header["__metadata__"]
    loaded = load_pruned(tiny_bert(), path).eval()
    assert attention_heads(loaded) == attention_heads(model)
    for length in (5, 16):
        x = ids(4, length)
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))


def test_pruned_bert_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from edgekd.onnx_export import export
    from edgekd.records import InputSpec, TokenizerPreprocess

    model = pruned(0.5)
    spec = InputSpec(name="input_ids", dtype="int64", shape=["batch", "sequence"], max_sizes={"sequence": 32},
                     preprocess=TokenizerPreprocess(tokenizer="tok", sha256="0" * 64, max_length=32, pad_id=0,
                                                    vocab_size=100))
    path = export(model, spec, tmp_path / "pruned.onnx", opset=18, dynamic_batch=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, length in ((1, 16), (4, 32), (2, 9)):
        x = ids(batch, length, seed=batch + length)
        with torch.no_grad():
            expected = model(x).numpy()
        np.testing.assert_allclose(session.run(None, {"input_ids": x.numpy()})[0], expected, atol=1e-5)


def test_recovery_drops_only_tinybert_attention_when_heads_went():
    losses = [{"name": "ce", "weight": 0.5}, {"name": "tinybert", "weight": 1.0, "hidden": 2.0}]
    assert recovery_losses(losses, {"a": 4}, {"a": 4}) is None
    assert recovery_losses(losses, {"a": 4}, {"a": 2}) == [{"name": "ce", "weight": 0.5},
                                                           {"name": "tinybert", "weight": 1.0, "hidden": 2.0,
                                                            "attention": 0.0}]
    only_attention = [{"name": "kd"}, {"name": "tinybert", "embedding": 0, "hidden": 0}]
    assert recovery_losses(only_attention, {"a": 4}, {"a": 2}) == [{"name": "kd"}]


# ---------------------------------------------------------------- the prune stage on the tiny text setup

from test_text_pipeline import CONFIG, text_dir  # noqa: E402,F401  (the module-scoped folder fixture)


@pytest.fixture(scope="module")
def prune_run(text_dir):  # noqa: F811
    import edgekd

    cfg = copy.deepcopy(CONFIG)
    cfg["prune"] = {"enabled": True, "ratio": 0.5, "steps": 1,
                    "recovery": {"epochs": 1, "lr": 0.001, "batch_size": 32}}
    (text_dir / "prune.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return edgekd.run(text_dir / "prune.yaml", text_dir / "prune-run", stages=["prune"])


def test_prune_stage_records_heads_and_ffn_pruned(prune_run):
    record = prune_run["prune"]
    c = record.compression
    assert c.pruned and c.ratio == 0.5 and len(c.steps) == 1
    assert 0.3 < c.macs_reduction < 0.7 and c.after.macs < c.before.macs and c.after.params < c.before.params
    assert 0.0 <= c.before.accuracy <= 1.0 and 0.0 <= record.figures.accuracy <= 1.0
    assert c.steps[0].val_accuracy is not None
    assert record.figures.macs == c.after.macs  # the figures count attention as the compression does


def test_prune_stage_student_reloads_with_its_heads(prune_run):
    from edgekd.config import load_config
    from edgekd.context import StageContext

    ctx = StageContext(config=load_config(prune_run.run_dir.parent / "prune.yaml"), run_dir=prune_run.run_dir)
    student = ctx.load_model(prune_run["prune"].model, key="student")
    assert set(attention_heads(student).values()) == {2}
    assert all(layer.intermediate.out_features == 32 for layer in student.encoder.layers)


def test_head_and_ffn_counts_are_per_layer_when_layers_differ():
    model = tiny_bert()
    layer = model.encoder.layers[1]
    layer.intermediate, layer.output = torch.nn.Linear(HIDDEN, 16), torch.nn.Linear(16, HIDDEN)
    assert model.ffn_size == (FFN, 16) and model.num_heads == HEADS
    assert model(ids(2, 8)).shape == (2, 2)
