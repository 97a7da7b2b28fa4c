"""Texts -> fixed-length int64 token ids with a local Hugging Face tokenizer (offline, fast tokenizers only).

A text model takes one input, ``input_ids`` (N, max_length), right-padded with the tokenizer's pad id;
the model derives its attention mask from ``ids != pad_id``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError, ModelError

# The files a tokenizer is read from (any one of the first group is enough); all of them that exist are hashed.
VOCAB_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")
CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "merges.txt")


@dataclass
class TokenizedText:
    ids: np.ndarray  # int64 (N, max_length), right-padded with pad_id
    pad_id: int
    vocab_size: int  # every id is below it (added tokens included)
    max_length: int
    truncated: int  # texts longer than max_length tokens (special tokens included), cut to it
    max_tokens: int  # the longest text's length in tokens before cutting (special tokens included)


def load_tokenizer(folder: Path, *, key: str = "teacher.tokenizer") -> Any:
    """The fast tokenizer saved in ``folder`` (``AutoTokenizer``, local files only: nothing is downloaded)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{key}: tokenizer folder {folder} not found; expected a Hugging Face checkpoint "
                          f"directory with {VOCAB_FILES[0]} (or a vocab file) and {CONFIG_FILES[0]}")
    if not any((folder / name).is_file() for name in VOCAB_FILES):
        present = sorted(p.name for p in folder.iterdir())
        raise ModelError(f"{key}: {folder} holds no tokenizer (files there: {', '.join(present) or 'none'}); "
                         f"expected one of {', '.join(VOCAB_FILES)} (tokenizer.save_pretrained writes them)")
    from transformers import AutoTokenizer  # slow to import: only when a text model needs it

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{key}: cannot load the tokenizer in {folder} ({type(exc).__name__}: {exc}); "
                         "expected a tokenizer saved by save_pretrained") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"{key}: the tokenizer in {folder} is a slow (Python) tokenizer "
                         f"{type(tokenizer).__name__}; expected a fast one (a tokenizer.json)")
    if tokenizer.pad_token_id is None:
        raise ModelError(f"{key}: the tokenizer in {folder} has no pad token; expected one (ids are right-padded)")
    return tokenizer


def tokenizer_sha256(folder: Path) -> str:
    """sha256 over the tokenizer's files present in ``folder`` (vocabulary and configuration), by name and bytes:
    what decides the ids, for cache keys and records."""
    digest = hashlib.sha256()
    for name in sorted(VOCAB_FILES + CONFIG_FILES):
        path = Path(folder) / name
        if path.is_file():
            data = path.read_bytes()
            digest.update(f"{name}\0{len(data)}\0".encode())
            digest.update(data)
    return digest.hexdigest()


def tokenize(texts: Sequence[str], tokenizer: Any, max_length: int, *, key: str = "data.max_length") -> TokenizedText:
    """Token ids (N, max_length), special tokens included, longer texts cut and counted, right-padded."""
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length < 2:
        raise ConfigError(f"{key}: expected an integer of at least 2 (room for the special tokens), got {max_length!r}")
    texts = list(texts)
    if not texts:
        ids = np.zeros((0, int(max_length)), np.int64)
        return TokenizedText(ids, int(tokenizer.pad_token_id), len(tokenizer), int(max_length), 0, 0)
    # Full lengths first (verbose=False: the too-long-for-the-model warning is what truncation answers).
    full = tokenizer(texts, truncation=False, padding=False, return_attention_mask=False,
                     return_token_type_ids=False, verbose=False)["input_ids"]
    lengths = np.array([len(ids) for ids in full], dtype=np.int64)
    encoded = tokenizer(texts, truncation=True, max_length=int(max_length), padding="max_length",
                        padding_side="right", return_attention_mask=False, return_token_type_ids=False,
                        return_tensors="np", verbose=False)
    ids = np.ascontiguousarray(encoded["input_ids"], dtype=np.int64).reshape(len(texts), int(max_length))
    return TokenizedText(
        ids=ids,
        pad_id=int(tokenizer.pad_token_id),
        vocab_size=len(tokenizer),
        max_length=int(max_length),
        truncated=int((lengths > max_length).sum()),
        max_tokens=int(lengths.max()) if lengths.size else 0,
    )
