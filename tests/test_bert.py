"""The zoo's ``bert`` encoder, ``hf:`` checkpoints (checked against transformers), teacher init and export."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.errors import ConfigError, ModelError
from edgekd.io import sha256_file
from edgekd.models import (
    BertClassifier,
    FeatureRecorder,
    create_model,
    hf_weights_sha256,
    init_from_teacher,
    load_model,
    resolve_hf_dir,
)

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
            max_position_embeddings=40, type_vocab_size=2, pad_token_id=0)
TEXT = {"vocab_size": 100, "pad_id": 0, "max_length": 40}


def perturbed(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random LayerNorms and biases too (HF's init leaves them at 1 and 0, which would hide a mapping error)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.2)
    return model.eval()


def padded_ids(lengths=(9, 5, 1), total=9, seed=0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 100, (len(lengths), total), generator=gen)
    for row, n in enumerate(lengths):
        ids[row, n:] = 0
    return ids


def make_bert(seed=0, **kwargs) -> BertClassifier:
    torch.manual_seed(seed)
    args = dict(layers=2, hidden=32, heads=4, ffn=64)
    return create_model("bert", num_classes=3, data_args=TEXT, **{**args, **kwargs}).eval()


@pytest.fixture(scope="module")
def hf_encoder(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.BertConfig(**TINY, attn_implementation="eager")
    model = perturbed(transformers.BertModel(config))
    folder = tmp_path_factory.mktemp("hf") / "tiny-bert"
    model.save_pretrained(folder)
    return folder, model


@pytest.fixture(scope="module")
def hf_classifier(tmp_path_factory):
    torch.manual_seed(1)
    config = transformers.BertConfig(**TINY, num_labels=3)
    model = perturbed(transformers.BertForSequenceClassification(config), seed=1)
    folder = tmp_path_factory.mktemp("hf") / "tiny-cls"
    model.save_pretrained(folder)
    return folder, model


# --- the zoo model ----------------------------------------------------------------------------------------


def test_zoo_bert_takes_data_arguments_and_names_its_hooks():
    model = make_bert(max_length=16)  # the user's kwargs win over the data's
    assert (model.num_layers, model.hidden_size, model.num_heads, model.pad_id) == (2, 32, 4, 0)
    assert model.embeddings.word_embeddings.num_embeddings == 100 and model.max_length == 16
    names = dict(model.named_modules())
    for name in ("embeddings", "encoder.layers.1", "encoder.layers.1.attention.scores", "pool", "classifier"):
        assert name in names, name
    assert isinstance(model.classifier, nn.Linear) and model.classifier.out_features == 3
    ids = padded_ids(total=9)
    with FeatureRecorder(model, ["embeddings", "encoder.layers.1", "encoder.layers.0.attention.scores", "pool"]) as rec:
        assert model(ids).shape == (3, 3)
    shapes = {k: tuple(v.shape) for k, v in rec.features.items()}
    assert shapes == {"embeddings": (3, 9, 32), "encoder.layers.1": (3, 9, 32),
                      "encoder.layers.0.attention.scores": (3, 4, 9, 9), "pool": (3, 32)}
    scores = rec.features["encoder.layers.0.attention.scores"]
    assert (scores[2, :, :, 1:] < -5000).all() and (scores[0] > -5000).all()  # the mask is added before the tap


@pytest.mark.parametrize("pooling", ["mean", "cls", "cls_pooler"])
def test_padding_does_not_change_the_prediction(pooling):
    model = make_bert(pooling=pooling)
    ids = padded_ids(lengths=(7, 4), total=7)
    longer = torch.cat([ids, torch.zeros(2, 5, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(longer), model(ids), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(ids[1:, :4]), model(ids)[1:], atol=1e-5, rtol=1e-5)


def test_image_models_ignore_text_arguments_and_bad_options_name_the_key():
    cnn = create_model("tiny_cnn", num_classes=4, in_channels=1, data_args=TEXT)
    assert cnn.classifier.out_features == 4
    with pytest.raises(ConfigError, match=r"student\.model.*needs in_channels"):
        create_model("tiny_cnn", num_classes=4, data_args=TEXT, key="student.model")
    with pytest.raises(ConfigError, match=r"student\.model.*hidden 30 must be a multiple of heads 4"):
        create_model("bert", num_classes=2, hidden=30, heads=4, key="student.model")
    with pytest.raises(ConfigError, match=r"student\.model.*pooling must be one of mean, cls, cls_pooler"):
        create_model("bert", num_classes=2, pooling="max", key="student.model")
    with pytest.raises(ConfigError, match=r"student\.model.*no argument 'width'"):
        create_model("bert", num_classes=2, width=0.5, key="student.model")
    with pytest.raises(ValueError, match="exceeds the model's 40 positions"):
        make_bert()(torch.ones(1, 41, dtype=torch.long))


def test_python_models_receive_the_data_arguments_they_accept(tmp_path):
    (tmp_path / "textnet.py").write_text(textwrap.dedent(
        """
        from torch import nn

        class Net(nn.Module):
            def __init__(self, num_classes, vocab_size, pad_id=5, hidden=8):
                super().__init__()
                self.pad_id = pad_id
                self.embed = nn.EmbeddingBag(vocab_size, hidden)
                self.classifier = nn.Linear(hidden, num_classes)
        """
    ))
    model = load_model("python:textnet:Net", kwargs={"pad_id": 3}, num_classes=2, data_args=TEXT, base_dir=tmp_path)
    assert model.embed.num_embeddings == 100 and model.pad_id == 3 and model.classifier.out_features == 2


# --- hf: checkpoints against transformers ------------------------------------------------------------------


def test_hf_encoder_matches_transformers_layer_by_layer(hf_encoder):
    folder, reference = hf_encoder
    model = load_model(f"hf:{folder}", num_classes=2, data_args={**TEXT, "max_length": 16}).eval()
    assert model.pooling == "mean" and model.max_length == 40  # the checkpoint's positions, all of them
    assert "classifier (the checkpoint has no classification head)" in model.source_note
    ids = padded_ids()
    mask = (ids != 0).long()
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
        names = ["embeddings", *(f"encoder.layers.{i}" for i in range(3)),
                 *(f"encoder.layers.{i}.attention.scores" for i in range(3)), "pool"]
        with FeatureRecorder(model, names) as rec:
            model(ids)
    got = rec.features
    for i, hidden in enumerate(expected.hidden_states):
        ours = got["embeddings"] if i == 0 else got[f"encoder.layers.{i - 1}"]
        torch.testing.assert_close(ours, hidden, atol=1e-5, rtol=1e-5, msg=f"hidden state {i}")
    for i, probs in enumerate(expected.attentions):
        torch.testing.assert_close(torch.softmax(got[f"encoder.layers.{i}.attention.scores"], -1), probs,
                                   atol=1e-5, rtol=1e-5, msg=f"attention {i}")
    last = expected.last_hidden_state
    mean = (last * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(got["pool"], mean, atol=1e-5, rtol=1e-5)
    assert hf_weights_sha256(folder) == sha256_file(folder / "model.safetensors")


def test_hf_sequence_classifier_logits_match_transformers(hf_classifier):
    folder, reference = hf_classifier
    model = load_model(f"hf:{folder.name}", num_classes=3, base_dir=folder.parent, data_args=TEXT).eval()
    assert model.pooling == "cls_pooler" and model.source_note.endswith("classification head from the checkpoint")
    ids = padded_ids(lengths=(9, 3, 6, 2))
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=(ids != 0).long()).logits
        torch.testing.assert_close(model(ids), expected, atol=1e-5, rtol=1e-5)
    other = load_model(f"hf:{folder}", num_classes=5)
    assert other.classifier.out_features == 5
    assert "trained here: classifier (its head has 3 classes, the data 5)" in other.source_note
    torch.testing.assert_close(other.pool.dense.weight, model.pool.dense.weight)  # the pooler still loads
    mean = load_model(f"hf:{folder}", num_classes=3, kwargs={"pooling": "mean", "dropout": 0.0})
    assert "pooling 'mean' is not the head's cls_pooler" in mean.source_note and mean.dropout.p == 0.0


def test_hf_weights_saved_by_edgekd_load_on_top(hf_encoder, tmp_path):
    from edgekd.models import save_weights

    folder, _ = hf_encoder
    tuned = load_model(f"hf:{folder}", num_classes=2)
    nn.init.normal_(tuned.classifier.weight)
    save_weights(tuned, tmp_path / "teacher.safetensors")
    again = load_model(f"hf:{folder}", num_classes=2, weights=tmp_path / "teacher.safetensors")
    torch.testing.assert_close(again.classifier.weight, tuned.classifier.weight)


def test_hf_errors_say_what_is_supported(hf_encoder, tmp_path):
    folder, _ = hf_encoder
    with pytest.raises(ModelError, match=r"teacher.*not found.*all-minilm-l6-v2"):
        load_model("hf:no-such-folder", num_classes=2, base_dir=tmp_path, key="teacher")
    roberta = tmp_path / "roberta"
    roberta.mkdir()
    (roberta / "config.json").write_text(json.dumps({"model_type": "roberta", "hidden_size": 32}))
    with pytest.raises(ModelError, match=r"teacher.*model_type 'roberta'.*supports model_type 'bert'"):
        load_model(f"hf:{roberta}", num_classes=2, key="teacher")
    with pytest.raises(ModelError, match=r"teacher.*has no config\.json"):
        load_model(f"hf:{tmp_path}", num_classes=2, key="teacher")
    with pytest.raises(ConfigError, match=r"teacher.*kwargs pooling, dropout; got layers"):
        load_model(f"hf:{folder}", kwargs={"layers": 2}, num_classes=2, key="teacher")
    with pytest.raises(ModelError, match=r"teacher.*max_length 128 exceeds the checkpoint's positions \(40\)"):
        load_model(f"hf:{folder}", num_classes=2, data_args={"max_length": 128}, key="teacher")
    with pytest.raises(ConfigError, match="kwargs only apply to zoo:, python: and hf:"):
        load_model("onnx:m.onnx", kwargs={"pooling": "cls"}, num_classes=2)


def test_packaged_minilm_resolves_once_and_matches_transformers(tmp_path, monkeypatch):
    pytest.importorskip("tokenizers")
    monkeypatch.setenv("EDGEKD_CACHE_DIR", str(tmp_path / "cache"))
    folder = resolve_hf_dir("all-minilm-l6-v2", tmp_path, "teacher")
    assert folder.parent == tmp_path / "cache" / "hf" and folder.name.startswith("all-minilm-l6-v2-")
    assert resolve_hf_dir("all-minilm-l6-v2", tmp_path, "teacher") == folder  # reused
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # no temporary folder left
    model = load_model("hf:all-minilm-l6-v2", num_classes=2, base_dir=tmp_path, data_args={"max_length": 128}).eval()
    assert (model.num_layers, model.hidden_size, model.num_heads, model.ffn_size) == (6, 384, 12, 1536)
    encoder = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("pool", "classifier")))
    # the checkpoint's 22,713,728 values less token types (2 x 384, folded), pooler (384 x 385, unused by
    # mean pooling) and HF's position_ids buffer (512)
    assert encoder == 22_713_728 - 2 * 384 - 384 * 385 - 512
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_padding(pad_id=0)
    batch = tokenizer.encode_batch(["a gripping, funny film", "dull."])
    ids = torch.tensor([e.ids for e in batch])
    reference = transformers.BertModel.from_pretrained(folder, local_files_only=True).eval()
    with torch.no_grad(), FeatureRecorder(model, ["pool"]) as rec:
        model(ids)
        last = reference(input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state
    mask = (ids != 0).float()[..., None]
    torch.testing.assert_close(rec.features["pool"], (last * mask).sum(1) / mask.sum(1), atol=1e-5, rtol=1e-4)


# --- initialising a student from the teacher ---------------------------------------------------------------


def test_init_from_teacher_copies_the_uniformly_mapped_layers():
    teacher = make_bert(seed=1, layers=6, pooling="cls_pooler")
    student = make_bert(seed=2, layers=3, pooling="cls_pooler", max_length=16)
    note = init_from_teacher(student, teacher)
    assert note == ("embeddings copied (words, positions, LayerNorm); layers 0,1,2 <- teacher layers 1,3,5; "
                    "pool and classifier copied")
    for i, j in enumerate((1, 3, 5)):
        ours, theirs = student.encoder.layers[i].state_dict(), teacher.encoder.layers[j].state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), (i, j)
    assert torch.equal(student.embeddings.position_embeddings.weight, teacher.embeddings.position_embeddings.weight[:16])
    assert init_from_teacher(make_bert(layers=2), make_bert(layers=6)).split("; ")[1] == "layers 0,1 <- teacher layers 2,5"


def test_init_from_teacher_says_what_did_not_fit():
    teacher = make_bert(seed=1, layers=4)
    narrow = make_bert(seed=2, hidden=16, ffn=32)
    before = {k: v.clone() for k, v in narrow.state_dict().items()}
    assert init_from_teacher(narrow, teacher) == "hidden 16 != 32: randomly initialised"
    assert all(torch.equal(before[k], v) for k, v in narrow.state_dict().items())
    thin = make_bert(seed=2, ffn=16)
    ffn_before = thin.encoder.layers[0].intermediate.weight.clone()
    note = init_from_teacher(thin, teacher)
    assert "layers 0,1 <- teacher layers 1,3, attention only (ffn 16 != 64)" in note
    assert torch.equal(thin.encoder.layers[0].intermediate.weight, ffn_before)
    assert torch.equal(thin.encoder.layers[0].attention.query.weight, teacher.encoder.layers[1].attention.query.weight)
    with pytest.raises(ModelError, match="not the zoo's bert model"):
        init_from_teacher(thin, nn.Linear(2, 2))


# --- export ------------------------------------------------------------------------------------------------

GRID = [(1, 5), (1, 17), (4, 5), (4, 17)]  # (batch, sequence)


def grid_ids(batch: int, length: int) -> torch.Tensor:
    ids = padded_ids(lengths=[max(1, length - 3 * r) for r in range(batch)], total=length, seed=batch * 100 + length)
    return ids


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")
def test_torch_export_and_onnx_have_dynamic_batch_and_sequence(tmp_path):
    import onnxruntime as ort
    from torch.export import Dim

    model = make_bert(pooling="cls_pooler")
    dims = ({0: Dim("batch"), 1: Dim("sequence", max=model.max_length)},)
    example = (grid_ids(2, 9),)
    exported = torch.export.export(model, example, dynamic_shapes=dims).module()
    path = tmp_path / "bert.onnx"
    torch.onnx.export(model, example, str(path), dynamo=True, input_names=["input_ids"], output_names=["logits"],
                      dynamic_shapes=dims, verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [("input_ids", "tensor(int64)")]
    for batch, length in GRID:
        ids = grid_ids(batch, length)
        with torch.no_grad():
            eager = model(ids)
            torch.testing.assert_close(exported(ids), eager, atol=1e-5, rtol=1e-5)
        (onnx_out,) = session.run(None, {"input_ids": ids.numpy()})
        np.testing.assert_allclose(onnx_out, eager.numpy(), atol=1e-5, rtol=1e-4, err_msg=f"{batch}x{length}")
