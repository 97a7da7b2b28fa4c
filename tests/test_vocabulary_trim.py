"""``student.vocabulary: train`` (issue 14): a text student keeps only the word-table rows of the tokens its
training split uses; every other token reads the unknown token's row, and the model still takes the
tokenizer's own ids (a ``token_rows`` lookup), so deployment code is unchanged.

Checked against the untrimmed model: identical logits on texts whose tokens were kept, the unknown
token's logits for unseen tokens, and the same through save/load and ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.errors import ModelError
from edgekd.models import load_model, save_weights
from edgekd.models.bert import BertClassifier, trim_vocabulary

VOCAB, PAD, UNK = 500, 0, 100
KWARGS = {"layers": 2, "hidden": 32, "heads": 4, "ffn": 64, "vocab_size": VOCAB, "pad_id": PAD, "max_length": 16}


def pair(unknown_id=UNK) -> tuple[BertClassifier, BertClassifier, torch.Tensor]:
    """(full, trimmed copy, training ids): the training split uses ids 101..140 and 200..209."""
    torch.manual_seed(0)
    full = BertClassifier(num_classes=3, **KWARGS).eval()
    trimmed = BertClassifier(num_classes=3, **KWARGS).eval()
    trimmed.load_state_dict(full.state_dict())
    train = torch.cat([torch.arange(101, 141), torch.arange(200, 210), torch.tensor([PAD, PAD])]).reshape(2, 26)
    trim_vocabulary(trimmed, train, unknown_id)
    return full, trimmed, train


def test_kept_rows_are_the_training_tokens_plus_pad_and_unknown():
    full, trimmed, _ = pair()
    assert trimmed.kept_tokens == 2 + 50
    table = trimmed.embeddings.word_embeddings.weight
    assert table.shape == (52, 32)
    assert sum(p.numel() for p in trimmed.parameters()) == sum(p.numel() for p in full.parameters()) - (VOCAB - 52) * 32
    rows = trimmed.embeddings.token_rows
    assert rows[PAD] == 0 and rows[UNK] == 1 and rows[101] == 2 and rows[209] == 51
    assert torch.equal(table[rows[205]], full.embeddings.word_embeddings.weight[205])


def test_seen_tokens_give_the_untrimmed_logits_and_unseen_ones_the_unknown_tokens():
    full, trimmed, _ = pair()
    seen = torch.tensor([[101, 120, 205, 140, PAD, PAD], [209, 101, 103, 104, 105, 106]])
    assert torch.equal(trimmed(seen), full(seen))
    unseen = torch.tensor([[101, 300, 301, 205, 499, PAD]])
    as_unknown = torch.where((unseen >= 300), torch.tensor(UNK), unseen)
    assert torch.allclose(trimmed(unseen), full(as_unknown), atol=1e-6)
    assert not torch.allclose(trimmed(unseen), full(unseen), atol=1e-3)  # the unseen rows really were dropped


def test_without_an_unknown_token_unseen_ids_read_the_mean_of_the_dropped_rows():
    full, trimmed, _ = pair(unknown_id=None)
    table = full.embeddings.word_embeddings.weight
    dropped = torch.ones(VOCAB, dtype=torch.bool)
    dropped[101:141], dropped[200:210], dropped[PAD] = False, False, False
    assert torch.allclose(trimmed.embeddings.word_embeddings.weight[1], table[dropped].mean(0))
    assert trimmed.embeddings.token_rows[UNK] == 1  # id 100 is not special here: unseen like any other


def test_a_trimmed_student_reloads_from_its_kwargs_and_weights(tmp_path):
    _, trimmed, _ = pair()
    save_weights(trimmed, tmp_path / "student.safetensors")
    again = load_model("zoo:bert", kwargs={**KWARGS, "kept_tokens": trimmed.kept_tokens}, num_classes=3,
                       weights=tmp_path / "student.safetensors").eval()
    ids = torch.tensor([[101, 300, 205, PAD]])
    assert torch.equal(again(ids), trimmed(ids))
    with pytest.raises(ModelError, match="already trimmed"):
        trim_vocabulary(again, ids, UNK)


def test_onnx_runtime_takes_tokenizer_ids_and_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from edgekd.onnx_export import export
    from edgekd.records import InputSpec, TokenizerPreprocess

    _, trimmed, _ = pair()
    spec = InputSpec(name="input_ids", dtype="int64", shape=["batch", "sequence"], max_sizes={"sequence": 16},
                     preprocess=TokenizerPreprocess(tokenizer="-", sha256="0" * 64, max_length=16, pad_id=PAD,
                                                    vocab_size=VOCAB))
    path = export(trimmed, spec, tmp_path / "student.onnx", opset=18, dynamic_batch=True)
    ids = torch.tensor([[101, 300, 205, 140, 499, PAD, PAD, PAD], [209, 101, 7, 8, 9, 10, 11, 12]])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: ids.numpy()})
    np.testing.assert_allclose(got, trimmed(ids).detach().numpy(), atol=1e-5)
