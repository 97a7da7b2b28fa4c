"""``text:PATH``: labelled texts in a CSV/TSV file (with a header row) or a JSON Lines file, UTF-8.

One example per row; ``data.text_column`` / ``data.label_column`` (default ``text`` / ``label``) name
the columns. Labels are class names (the classes are then their sorted unique values) or integers
0..K-1 (class names "0".."K-1"). Every message names the file and the row or line at fault.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from pathlib import Path
from typing import Any

from ...errors import DataError
from ...problems import close_matches
from ..raw import RawData
from . import SOURCES, SourceOptions, _resolve, make_text_raw

DELIMITERS = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".json": None}  # None: JSON Lines
Rows = list[tuple[str, dict[str, Any]]]  # (where in the file, e.g. "row 3 (line 4)"; the record)


@SOURCES.register("text")
def load_text(arg: str, options: SourceOptions, base_dir: Path) -> RawData:
    spec, path = f"text:{arg}", _resolve(arg, base_dir)
    accepted = "a .csv or .tsv file with a header row, or a .jsonl file of JSON objects"
    if not path.is_file():
        raise DataError(f"{spec}: file {path} not found; expected {accepted}")
    suffix = path.suffix.lower()
    if suffix not in DELIMITERS:
        raise DataError(f"{spec}: {path} has suffix {suffix!r}; expected {accepted} (.csv, .tsv, .jsonl, .json)")
    content = _decode(path, spec)
    if not content.strip():
        raise DataError(f"{spec}: {path} is empty; expected {accepted}, one example per row")
    delimiter = DELIMITERS[suffix]
    where = f"{spec}: {path}"
    columns, rows = _csv_rows(content, delimiter, where) if delimiter else _jsonl_rows(content, where)
    if not rows:
        raise DataError(f"{where} has a header but no rows; expected one example per row")
    for column, key, what in ((options.text_column, "data.text_column", "texts"),
                              (options.label_column, "data.label_column", "labels")):
        if column not in columns:
            hint = close_matches(column, columns)
            raise DataError(f"{where} has no column {column!r} ({key}); columns there: {', '.join(map(repr, columns))}"
                            + (f"; did you mean {' or '.join(map(repr, hint))}?" if hint else "")
                            + f"; set {key} to the column that holds the {what}")
    for place, record in rows:  # JSON Lines: every object must have both keys, not just the first
        missing = [c for c in (options.text_column, options.label_column) if c not in record]
        if missing:
            raise DataError(f"{where}: {place} has no {missing[0]!r} key (it has {', '.join(map(repr, record))}); "
                            "expected every line to hold the text and the label")
    texts = [record[options.text_column] for _, record in rows]
    odd = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if odd is not None:
        raise DataError(f"{where}: {rows[odd][0]} has {options.text_column!r} = {texts[odd]!r} "
                        f"({type(texts[odd]).__name__}); expected a string of text")
    labels = [record[options.label_column] for _, record in rows]
    return make_text_raw(texts, labels, None, spec, num_classes=options.num_classes,
                         row=lambda i: f"{path.name} {rows[i][0]}")


def _decode(path: Path, spec: str) -> str:
    data = path.read_bytes()
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0  # Excel's UTF-8 marker is fine
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + bom
        line = data[:offset].count(b"\n") + 1
        raise DataError(
            f"{spec}: {path} is not UTF-8: byte offset {offset} (line {line}) holds {data[offset:offset + 4]!r}, "
            f"which UTF-8 cannot decode ({exc.reason}); expected UTF-8 text: re-save the file as UTF-8 "
            "(e.g. iconv -f latin1 -t utf-8)"
        ) from None


def _csv_rows(content: str, delimiter: str, where: str) -> tuple[list[str], Rows]:
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    rows: Rows = []
    header: list[str] | None = None
    end = 0  # the line the previous record ended on: a quoted text may span lines
    try:
        for record in reader:
            start, end = end + 1, reader.line_num
            if not record or all(not field.strip() for field in record):
                continue  # blank lines carry no example
            if header is None:
                header = [name.strip() for name in record]
                duplicate = next((n for n in header if header.count(n) > 1), None)
                if duplicate is not None:
                    raise DataError(f"{where}: the header names column {duplicate!r} twice; expected unique names")
                continue
            place = f"row {len(rows) + 1} (line {start})"
            if len(record) != len(header):
                raise DataError(f"{where}: {place} has {len(record)} fields but the header has {len(header)}; "
                                "expected one field per column (quote a text that holds the delimiter)")
            rows.append((place, dict(zip(header, record))))
    except csv.Error as exc:
        raise DataError(f"{where}: line {reader.line_num} is not valid CSV ({exc})") from None
    return header or [], rows


def _jsonl_rows(content: str, where: str) -> tuple[list[str], Rows]:
    if content.lstrip().startswith("["):
        raise DataError(f"{where} holds a JSON array; expected JSON Lines: one JSON object per line")
    rows: Rows = []
    columns: dict[str, None] = {}  # every key seen, in order of first appearance
    for number, line in enumerate(content.split("\n"), start=1):  # "\n" only: JSON strings may hold U+2028
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: line {number} is not valid JSON ({exc.msg} at column {exc.colno}); "
                            "expected one JSON object per line") from None
        if not isinstance(record, dict):
            raise DataError(f"{where}: line {number} holds a JSON {type(record).__name__}; "
                            "expected a JSON object with the text and the label")
        columns.update(dict.fromkeys(record))
        rows.append((f"line {number}", record))
    return list(columns), rows


def _example(folder: Path) -> str:
    """A valid argument for this source (the contract test in tests/test_data_source_contracts.py uses it)."""
    lines = ["text,label"] + [f"\"{word} number {i}, said the {word}\",{word}"
                              for word in ("cat", "dog", "fox") for i in range(10)]
    (folder / "example.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return "example.csv"


load_text.example = _example
