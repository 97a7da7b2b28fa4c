"""What stages receive: model-ready tensors per split, their input spec, plus where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..inputs import example_input, trim_padding
from ..records import ImagePreprocess, InputSpec, TokenizerPreprocess
from .normalize import Normalization
from .raw import RawData, content_hash
from .sources import load_source
from .split import Split, stratified_split


@dataclass(frozen=True)
class TextOptions:
    """How texts become ids (``data.max_length``, ``data.text_column``/``label_column``, the tokenizer folder)."""

    tokenizer: Path | None = None
    max_length: int = 128
    text_column: str = "text"
    label_column: str = "label"


@dataclass
class DataBundle:
    """Per split (rows in ``split`` index order): normalised float32 images or int64 token ids, and labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: list[str]
    input: InputSpec
    split: Split
    data_hash: str
    source: str
    classes_from: str = "names"  # see RawData.classes_from
    _token_counts: torch.Tensor | None = field(default=None, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_text(self) -> bool:
        return self.input.is_text

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape as stored: (C, H, W) images, (sequence,) ids."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def normalization(self) -> Normalization | None:
        pre = self.input.preprocess
        return Normalization(pre.mean, pre.std) if isinstance(pre, ImagePreprocess) else None

    def example(self, batch: int = 1, **sizes: int) -> torch.Tensor:
        """A valid model input of this data's kind (tracing, MACs, pruning graphs)."""
        return example_input(self.input, batch, **sizes)

    def model_args(self) -> dict[str, Any]:
        """What a model is built with besides its own options: the data decides these."""
        if self.is_text:
            pre = self.input.preprocess
            return {"num_classes": self.num_classes, "vocab_size": pre.vocab_size, "pad_id": pre.pad_id,
                    "max_length": pre.max_length}
        return {"num_classes": self.num_classes, "in_channels": self.input_shape[0]}

    @property
    def pad_id(self) -> int | None:
        """Text: the id the model masks out (token dropout writes it); images: None."""
        return self.input.preprocess.pad_id if self.is_text else None

    def trim(self, x: torch.Tensor) -> torch.Tensor:
        """A training batch without all-padding trailing columns (text); images unchanged."""
        return trim_padding(x, self.input)

    def token_counts(self) -> torch.Tensor:
        """Text: the non-padding tokens of each training text (batching by length uses it)."""
        if self._token_counts is None:
            self._token_counts = (self.x_train != self.input.preprocess.pad_id).sum(1)
        return self._token_counts

    def classes_note(self) -> str:
        """One line saying how many classes there are and what decided it (printed once per run)."""
        n = self.num_classes
        if self.classes_from == "labels":
            return (f"{n} classes, inferred from the labels 0..{n - 1} ({self.source} has no class names); "
                    "set data.num_classes to have the labels checked against the count you expect")
        if self.classes_from == "data.num_classes":
            return f"{n} classes, as data.num_classes states; every label of {self.source} is below {n}"
        return f"{n} classes, named by {self.source}"

    def text_note(self) -> str | None:
        """For text: how many texts were cut to the maximum length (printed once per run)."""
        pre = self.input.preprocess
        if not isinstance(pre, TokenizerPreprocess):
            return None
        return (f"texts tokenized to at most {pre.max_length} tokens; {pre.truncated} were longer and cut"
                + ("" if not pre.truncated else " (raise data.max_length to keep them whole)"))

    def provenance(self) -> dict[str, Any]:
        """Everything that decides these tensors; stages put it in cache keys and records."""
        found = {
            "source": self.source,
            "data_hash": self.data_hash,
            "split_digest": self.split.digest(),
            "sizes": self.split.sizes(),
            "seed": self.split.seed,
            "fractions": list(self.split.fractions),
            "num_classes": self.num_classes,
            "classes_from": self.classes_from,
        }
        if self.is_text:  # the tokenizer by its hash, not by where it lies on this machine
            spec = self.input.to_dict()
            spec["preprocess"].pop("tokenizer")
            return {**found, "input": spec}
        # images: the keys runs had before input specs existed
        norm = self.normalization
        return {**found, "input_shape": list(self.input_shape), "normalization": norm.to_dict()}


def prepare_data(
    spec: str,
    *,
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    image_size: tuple[int, int] | None = None,
    base_dir: Path = Path("."),
    num_classes: int | None = None,
    text: TextOptions = TextOptions(),
) -> DataBundle:
    """Load + validate + split; images are normalised with statistics of the train split only, texts
    tokenized with ``text.tokenizer``.

    ``num_classes`` (``data.num_classes``): the class count expected; a label outside it is a DataError.
    """
    raw = load_source(spec, image_size=image_size, base_dir=base_dir, num_classes=num_classes,
                      text_column=text.text_column, label_column=text.label_column)
    split = stratified_split(raw.y, fractions=fractions, seed=seed)
    x, input_spec = _text_inputs(raw, text) if raw.texts is not None else _image_inputs(raw, split)

    def part(indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.ascontiguousarray(x[indices])), torch.from_numpy(raw.y[indices].astype(np.int64))

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = part(split.train), part(split.val), part(split.test)
    return DataBundle(
        x_train, y_train, x_val, y_val, x_test, y_test,
        class_names=list(raw.class_names), input=input_spec, split=split, data_hash=content_hash(raw),
        source=spec, classes_from=raw.classes_from,
    )


def _image_inputs(raw: RawData, split: Split) -> tuple[np.ndarray, InputSpec]:
    norm = Normalization.fit(raw.x[split.train])
    x = norm.apply(raw.x).astype(np.float32, copy=False)
    spec = InputSpec(name="input", dtype="float32", shape=["batch", *raw.input_shape],
                     preprocess=ImagePreprocess(mean=norm.mean, std=norm.std))
    return x, spec


def _text_inputs(raw: RawData, text: TextOptions) -> tuple[np.ndarray, InputSpec]:
    from ..errors import ConfigError
    from .tokenize import load_tokenizer, tokenize, tokenizer_sha256

    if text.tokenizer is None:
        raise ConfigError(f"data.tokenizer: {raw.source} holds texts, which need a tokenizer; set data.tokenizer to "
                          "a Hugging Face folder (or hf:all-minilm-l6-v2), or use an hf: teacher, whose tokenizer "
                          "is the default")
    tokenizer = load_tokenizer(text.tokenizer, key="data.tokenizer")
    tokens = tokenize(raw.texts, tokenizer, text.max_length)
    # stored only as wide as the longest text: the model masks padding, and the profile pads to its own length
    ids = tokens.ids[:, : max(1, min(text.max_length, tokens.max_tokens))]
    spec = InputSpec(
        name="input_ids", dtype="int64", shape=["batch", "sequence"], max_sizes={"sequence": text.max_length},
        preprocess=TokenizerPreprocess(tokenizer=str(text.tokenizer), sha256=tokenizer_sha256(text.tokenizer),
                                       max_length=text.max_length, pad_id=tokens.pad_id, vocab_size=tokens.vocab_size,
                                       truncated=tokens.truncated),
    )
    return ids.astype(np.int64, copy=False), spec
