"""A BERT-style encoder classifier written for edge export and INT8.

One int64 input, ``input_ids`` (batch, sequence), right-padded with ``pad_id``; the attention mask is
derived inside ``forward`` (``ids != pad_id``), so a device stages a single tensor. Every projection is
a plain ``nn.Linear`` (per-channel INT8, Torch-Pruning head pruning) and attention is written out
(no SDPA kernel): the pre-softmax scores pass through an ``nn.Identity`` that feature losses hook,
and torch.export / ONNX see ordinary matmuls. Hugging Face BERT weights load by name (``edgekd.models.hf``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .zoo import MODELS

POOLINGS = ("mean", "cls", "cls_pooler")
PAD_ROW, UNKNOWN_ROW = 0, 1  # in a trimmed word table (trim_vocabulary)
MASK_BIAS = -10000.0  # original BERT's additive mask: exp(-10000) is 0 in float32, and it stays finite in INT8 graphs


class Embeddings(nn.Module):
    """Word + position embeddings -> LayerNorm -> dropout. No token-type table: sequences are single
    segments, and a checkpoint's type-0 row is folded into the position table when it is loaded.

    ``kept_tokens``: a trimmed vocabulary (``trim_vocabulary``): the word table has that many rows (row 0 the
    pad token, row 1 the unknown token) and ``token_rows`` maps every tokenizer id to its row, so the model
    still takes the tokenizer's own ids."""

    def __init__(self, vocab_size: int, max_length: int, hidden: int, pad_id: int, dropout: float, eps: float,
                 kept_tokens: int | None = None) -> None:
        super().__init__()
        trimmed = kept_tokens is not None
        self.word_embeddings = nn.Embedding(kept_tokens if trimmed else vocab_size, hidden,
                                            padding_idx=PAD_ROW if trimmed else pad_id)
        # filled by trim_vocabulary or loaded with the weights
        self.register_buffer("token_rows", torch.zeros(vocab_size, dtype=torch.long) if trimmed else None)
        self.position_embeddings = nn.Embedding(max_length, hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: Tensor) -> Tensor:
        rows = ids if self.token_rows is None else self.token_rows[ids]
        # a slice of the table, not a gather: positions are 0..L-1 for every row
        positions = self.position_embeddings.weight[: ids.shape[1]]
        return self.dropout(self.norm(self.word_embeddings(rows) + positions))


class SelfAttention(nn.Module):
    """Multi-head self-attention; ``scores`` sees the scaled, masked logits (batch, heads, L, L)."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.head_dim = hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.scores = nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden, hidden)

    @property
    def num_heads(self) -> int:
        # derived from the projection, so pruning whole heads (Torch-Pruning) needs no attribute update
        return self.query.out_features // self.head_dim

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        batch, length, _ = x.shape
        heads, head_dim = self.num_heads, self.head_dim
        q = self.query(x).view(batch, length, heads, head_dim).transpose(1, 2)
        k = self.key(x).view(batch, length, heads, head_dim).transpose(1, 2)
        v = self.value(x).view(batch, length, heads, head_dim).transpose(1, 2)
        scores = self.scores(torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(head_dim)) + bias)
        probs = self.dropout(torch.softmax(scores, dim=-1))
        context = torch.matmul(probs, v).transpose(1, 2).reshape(batch, length, heads * head_dim)
        return self.output(context)


class EncoderLayer(nn.Module):
    """Post-norm BERT layer: attention -> residual + LayerNorm -> Linear, GELU (erf), Linear -> residual + LayerNorm."""

    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.attention = SelfAttention(hidden, heads, dropout)
        self.attention_norm = nn.LayerNorm(hidden, eps=eps)
        self.intermediate = nn.Linear(hidden, ffn)
        self.act = nn.GELU()  # exact erf form, as BERT's "gelu"
        self.output = nn.Linear(ffn, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        x = self.attention_norm(x + self.dropout(self.attention(x, bias)))
        return self.output_norm(x + self.dropout(self.output(self.act(self.intermediate(x)))))


class Encoder(nn.Module):
    def __init__(self, layers: int, hidden: int, heads: int, ffn: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(hidden, heads, ffn, dropout, eps) for _ in range(layers))

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x, bias)
        return x


class Pool(nn.Module):
    """(batch, L, H) -> (batch, H): masked mean (sentence-transformers), [CLS], or [CLS] -> dense -> tanh
    (BertForSequenceClassification's pooler, whose layer is ``dense``)."""

    def __init__(self, mode: str, hidden: int) -> None:
        super().__init__()
        self.mode = mode
        self.dense = nn.Linear(hidden, hidden) if mode == "cls_pooler" else None

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if self.mode == "mean":
            weights = mask.unsqueeze(-1).to(x.dtype)
            return (x * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        first = x[:, 0]
        return first if self.dense is None else torch.tanh(self.dense(first))


def _same_or_each(values) -> int | tuple[int, ...]:
    values = tuple(values)
    return values[0] if len(set(values)) == 1 else values


@MODELS.register("bert")
class BertClassifier(nn.Module):
    """BERT-style encoder -> ``pool`` -> dropout -> ``classifier``; input ``input_ids`` (batch, L), int64.

    Hook names: ``embeddings`` (batch, L, H) after LayerNorm; ``encoder.layers.{i}`` (batch, L, H) after
    layer i; ``encoder.layers.{i}.attention.scores`` (batch, heads, L, L) pre-softmax, mask added;
    ``pool`` (batch, H); ``classifier`` (nn.Linear). Inside a layer: ``attention.{query,key,value,output}``,
    ``attention_norm``, ``intermediate``, ``act``, ``output``, ``output_norm``.
    ``max_length`` is the number of positions (the longest sequence the model accepts). ``kept_tokens``:
    the rows of a trimmed word table (``trim_vocabulary`` sets it; the distill stage records it in kwargs).
    """

    def __init__(
        self,
        num_classes: int,
        vocab_size: int = 30522,
        pad_id: int = 0,
        max_length: int = 512,
        layers: int = 4,
        hidden: int = 384,
        heads: int = 12,
        ffn: int = 1536,
        pooling: str = "mean",
        dropout: float = 0.1,
        layer_norm_eps: float = 1e-12,
        kept_tokens: int | None = None,
    ) -> None:
        super().__init__()
        _check(num_classes, vocab_size, pad_id, max_length, layers, hidden, heads, ffn, pooling, dropout, layer_norm_eps)
        if kept_tokens is not None and not (isinstance(kept_tokens, int) and 2 <= kept_tokens <= vocab_size):
            raise ValueError(f"kept_tokens must be an integer in [2, vocab_size={vocab_size}], got {kept_tokens!r}")
        self.num_layers, self.hidden_size = int(layers), int(hidden)
        self.pad_id, self.max_length = int(pad_id), int(max_length)
        self.vocab_size = int(vocab_size)
        self.pooling, self.kept_tokens = pooling, kept_tokens
        self.embeddings = Embeddings(vocab_size, max_length, hidden, pad_id, dropout, layer_norm_eps, kept_tokens)
        self.encoder = Encoder(layers, hidden, heads, ffn, dropout, layer_norm_eps)
        self.pool = Pool(pooling, hidden)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_classes)
        self.source_note: str | None = None  # set by loaders that take weights from elsewhere (hf:)
        init_bert_weights(self)

    # Read from the layers, not stored: structured pruning removes whole heads and FFN channels, per layer.
    @property
    def num_heads(self) -> int | tuple[int, ...]:
        """Attention heads: one number when every layer has as many, else one per layer."""
        return _same_or_each(layer.attention.num_heads for layer in self.encoder.layers)

    @property
    def ffn_size(self) -> int | tuple[int, ...]:
        """FFN channels: one number when every layer has as many, else one per layer."""
        return _same_or_each(layer.intermediate.out_features for layer in self.encoder.layers)

    def forward(self, input_ids: Tensor) -> Tensor:
        if input_ids.shape[1] > self.max_length:
            raise ValueError(f"sequence length {input_ids.shape[1]} exceeds the model's {self.max_length} positions")
        mask = input_ids != self.pad_id
        x = self.embeddings(input_ids)
        bias = (1.0 - mask.to(x.dtype))[:, None, None, :] * MASK_BIAS  # (batch, 1, 1, L): broadcast over heads, queries
        x = self.encoder(x, bias)
        return self.classifier(self.dropout(self.pool(x, mask)))


def init_bert_weights(model: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation (normal(0, 0.02), zero biases, unit LayerNorms), a pure function of the seed."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _check(num_classes, vocab_size, pad_id, max_length, layers, hidden, heads, ffn, pooling, dropout, eps) -> None:
    # ValueError is turned into a ConfigError naming the config key by create_model.
    for name, value in (("num_classes", num_classes), ("vocab_size", vocab_size), ("max_length", max_length),
                        ("layers", layers), ("hidden", hidden), ("heads", heads), ("ffn", ffn)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if hidden % heads:
        raise ValueError(f"hidden {hidden} must be a multiple of heads {heads}")
    if not isinstance(pad_id, int) or not 0 <= pad_id < vocab_size:
        raise ValueError(f"pad_id must be an integer in [0, vocab_size={vocab_size}), got {pad_id!r}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if not float(eps) > 0:
        raise ValueError(f"layer_norm_eps must be > 0, got {eps!r}")


def init_from_teacher(student: BertClassifier, teacher: BertClassifier) -> str:
    """Copy the teacher's weights into ``student`` where shapes allow; return what was copied, in words.

    Student layer i takes teacher layer ``(i + 1) * T // S - 1`` (the uniform map: with S = T / 2 it is
    DistilBERT's every other layer, and the last student layer is always the teacher's last). Copies
    are all-or-nothing per part, never slices: the embeddings (word table when the vocabularies match;
    the first ``student.max_length`` positions) need equal hidden sizes; a layer's attention needs equal
    hidden and heads, its FFN equal hidden and FFN sizes; ``pool`` and ``classifier`` need equal pooling
    and shapes. When the hidden sizes differ nothing fits and the student stays randomly initialised
    (TinyBERT's answer to that case is its general distillation, which a training loss does, not an init).
    """
    from ..errors import ModelError

    for role, model in (("student", student), ("teacher", teacher)):
        if not isinstance(model, BertClassifier):
            raise ModelError(f"init_from_teacher: the {role} is a {type(model).__name__}, not the zoo's bert model")
    s_hidden, t_hidden = student.hidden_size, teacher.hidden_size
    if s_hidden != t_hidden:
        return f"hidden {s_hidden} != {t_hidden}: randomly initialised"
    done: list[str] = []
    with torch.no_grad():
        se, te = student.embeddings, teacher.embeddings
        parts = ["positions", "LayerNorm"]
        rows = min(student.max_length, teacher.max_length)
        se.position_embeddings.weight[:rows].copy_(te.position_embeddings.weight[:rows])
        se.norm.load_state_dict(te.norm.state_dict())
        if se.word_embeddings.weight.shape == te.word_embeddings.weight.shape:
            se.word_embeddings.weight.copy_(te.word_embeddings.weight)
            parts.insert(0, "words")
        else:
            parts.insert(0, f"not words (vocabulary {student.vocab_size} != {teacher.vocab_size})")
        done.append("embeddings copied (" + ", ".join(parts) + ")")
        done.append(_copy_layers(student, teacher))
        if student.pooling == teacher.pooling and student.classifier.weight.shape == teacher.classifier.weight.shape:
            student.pool.load_state_dict(teacher.pool.state_dict())
            student.classifier.load_state_dict(teacher.classifier.state_dict())
            done.append("pool and classifier copied")
        else:
            done.append("pool and classifier randomly initialised (pooling or classes differ)")
    return "; ".join(done)


def _copy_layers(student: BertClassifier, teacher: BertClassifier) -> str:
    s_count, t_count = student.num_layers, teacher.num_layers
    if s_count > t_count:
        return f"layers randomly initialised (student has {s_count} layers, teacher {t_count})"
    mapping = [(i + 1) * t_count // s_count - 1 for i in range(s_count)]
    attention = student.num_heads == teacher.num_heads
    ffn = student.ffn_size == teacher.ffn_size
    for i, j in enumerate(mapping):
        src, dst = teacher.encoder.layers[j], student.encoder.layers[i]
        names = ((["attention", "attention_norm"] if attention else [])
                 + (["intermediate", "output", "output_norm"] if ffn else []))
        for name in names:
            getattr(dst, name).load_state_dict(getattr(src, name).state_dict())
    where = f"layers {','.join(map(str, range(s_count)))} <- teacher layers {','.join(map(str, mapping))}"
    if attention and ffn:
        return where
    if not attention and not ffn:
        return (f"layers randomly initialised (heads {student.num_heads} != {teacher.num_heads}, "
                f"ffn {student.ffn_size} != {teacher.ffn_size})")
    if attention:
        return f"{where}, attention only (ffn {student.ffn_size} != {teacher.ffn_size})"
    return f"{where}, FFN only (heads {student.num_heads} != {teacher.num_heads})"


def trim_vocabulary(model: BertClassifier, used_ids: Tensor, unknown_id: int | None) -> int:
    """Keep only the word-table rows of the ids in ``used_ids`` (plus pad and unknown); return the row count.

    Every other id then reads the unknown token's row (or, for a tokenizer without one, the mean of the
    dropped rows). The model keeps taking the tokenizer's own ids through ``token_rows``, so tokenizer
    and deployment code stay the teacher's; only the table, most of a small student's size, shrinks.
    """
    from ..errors import ModelError

    if not isinstance(model, BertClassifier):
        raise ModelError(f"student.vocabulary: train needs the zoo's bert model, not a {type(model).__name__}")
    if model.kept_tokens is not None:
        raise ModelError(f"student.vocabulary: the student's vocabulary is already trimmed to {model.kept_tokens} tokens")
    table = model.embeddings.word_embeddings.weight.detach()
    vocab, pad = model.vocab_size, model.pad_id
    unknown_id = None if unknown_id == pad else unknown_id
    used = torch.unique(used_ids.reshape(-1))
    used = used[(used >= 0) & (used < vocab) & (used != pad) & (used != (-1 if unknown_id is None else unknown_id))]
    if unknown_id is None:  # the "unseen" row starts as the mean of what it stands for
        dropped = torch.ones(vocab, dtype=torch.bool)
        dropped[used], dropped[pad] = False, False
        unknown_row = table[dropped].mean(0, keepdim=True) if dropped.any() else table[pad:pad + 1]
    else:
        unknown_row = table[unknown_id:unknown_id + 1]
    rows = torch.full((vocab,), UNKNOWN_ROW, dtype=torch.long)
    rows[pad] = PAD_ROW
    rows[used] = torch.arange(2, 2 + len(used))
    if unknown_id is not None:
        rows[unknown_id] = UNKNOWN_ROW
    kept = 2 + len(used)
    words = nn.Embedding(kept, table.shape[1], padding_idx=PAD_ROW)
    with torch.no_grad():
        words.weight.copy_(torch.cat([table[pad:pad + 1], unknown_row, table[used]]))
    model.embeddings.word_embeddings = words
    model.embeddings.token_rows = rows
    model.kept_tokens = kept
    return kept
