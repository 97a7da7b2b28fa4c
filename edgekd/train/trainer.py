"""The trainer: one loop for teacher training, distillation, pruning recovery and QAD.

Determinism on CPU: the shuffle, augmentation and any dropout of epoch ``e``
draw from generators seeded by ``(seed, e)``, so an epoch replayed after a
resume sees exactly what the interrupted one saw. A checkpoint is written
atomically after every epoch.

Under torchrun (see :mod:`edgekd.distributed`) the same loop trains with
DistributedDataParallel. Every process draws the same epoch permutation and
augmentation, cuts each global batch (``batch_size`` as configured) into
contiguous per-process shares (``batch_size / world_size`` each), and weights
its loss by its share of the batch, so the averaged gradient is the gradient of
the whole global batch, exactly as in one process; only the batch-norm batch
statistics differ (each process normalises its own share; no SyncBatchNorm: it
does not run on the CPU, cannot enter the captured QAD graph, and costs two
all-reduces per layer; DDP gives every process rank 0's running statistics).
Train metrics are summed over the processes, validation runs on a
DistributedSampler share of the split, gathered so the metrics are exact; rank
0 alone writes the checkpoint and ``metrics.jsonl``, and a resume reads rank 0's
checkpoint and broadcasts it, so every process continues from the same state.
"""

from __future__ import annotations

import copy
import gc
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import distributed
from ..config import TrainConfig
from ..data import DataBundle
from ..data.augment import Augmentation, Mix
from ..errors import ModelError, StageError
from ..io import torch_save, write_text
from ..losses import CompositeLoss, FeaturePair, LossInputs
from ..metrics import evaluate
from ..models import FeatureRecorder
from ..models.loading import load_tensors
from .evaluation import evaluate as evaluate_split
from .teacher_outputs import LiveTeacher, TeacherOutputs, TeacherSource


@dataclass
class TrainResult:
    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    stopped_early: bool
    resumed_from_epoch: int
    history: list[dict] = field(default_factory=list)

    @property
    def final_train_loss(self) -> float:
        return self.history[-1]["train_loss"] if self.history else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "final_train_loss": self.final_train_loss}


def cosine_with_warmup(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class _TrainStep(torch.nn.Module):
    """Student and loss as one module, so DDP averages the gradients of both (FitNets adapters live in the loss)."""

    def __init__(self, model: torch.nn.Module, loss: CompositeLoss) -> None:
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, x: torch.Tensor, y: torch.Tensor, teacher: TeacherOutputs | None, recorder: FeatureRecorder,
                mix: Mix | None = None):
        return _train_step(self.model, self.loss, x, y, teacher, recorder, mix)


def group_by_length(order: torch.Tensor, lengths: torch.Tensor, batch_size: int, generator: torch.Generator,
                    window: int = 50) -> torch.Tensor:
    """``order`` regrouped so each batch holds texts of similar length (as transformers' ``group_by_length``):
    windows of ``window`` batches of the shuffled order are sorted by length, cut into batches, and the
    batches shuffled again. A function of the seeded order only, so resumed and torchrun epochs match."""
    span = batch_size * window
    batches = []
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        chunk = chunk[torch.argsort(lengths[chunk], descending=True, stable=True)]
        batches += list(chunk.split(batch_size))
    # the remainder batch keeps the last place, where the epoch loop expects it
    head, tail = (batches[:-1], batches[-1:]) if len(order) % batch_size else (batches, [])
    shuffled = [head[i] for i in torch.randperm(len(head), generator=generator).tolist()]
    return torch.cat(shuffled + tail) if batches else order


def _train_step(model: torch.nn.Module, loss: CompositeLoss, x: torch.Tensor, y: torch.Tensor,
                teacher: TeacherOutputs | None, recorder: FeatureRecorder, mix: Mix | None = None):
    """The student's forward pass and the combined loss: (loss, logits, loss terms)."""
    logits = model(x)
    total, terms = loss(LossInputs(
        student_logits=logits,
        targets=y,
        targets_b=mix.targets_b if mix else None,
        lam=mix.lam if mix else 1.0,
        teacher_logits=teacher.logits if teacher else None,
        teacher_logits_each=teacher.logits_each if teacher else [],
        student_features=dict(recorder.features),
        teacher_features=teacher.features if teacher else {},
    ))
    return total, logits, terms


def _to(outputs: TeacherOutputs | None, device: torch.device) -> TeacherOutputs | None:
    if outputs is None or device.type == "cpu":
        return outputs
    return TeacherOutputs(
        logits=outputs.logits.to(device), logits_each=[t.to(device) for t in outputs.logits_each],
        features={k: v.to(device) for k, v in outputs.features.items()},
    )


class Trainer:
    """Trains ``model`` on ``data`` with ``loss``; the teacher (if any) supplies targets.

    ``out_dir`` receives ``checkpoints/last.pt`` each epoch and ``metrics.jsonl`` (from rank 0 only
    under torchrun). Call :meth:`fit`; the model ends holding the weights of the best validation epoch.
    ``batch_key`` names the config key of ``config.batch_size`` in the error a torchrun job gets when
    the processes cannot share the batch evenly.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss: CompositeLoss,
        config: TrainConfig,
        data: DataBundle,
        out_dir: Path,
        *,
        teacher: TeacherSource | None = None,
        feature_pairs: list[FeaturePair] = (),
        augment: Augmentation | None = None,
        seed: int = 0,
        description: str = "train",
        run_key: str = "",
        step_hook=None,
        batch_key: str = "train.batch_size",
    ) -> None:
        self.dist = distributed.init()  # None unless launched by torchrun
        if self.dist is not None:
            distributed.check_batch_size(batch_key, config.batch_size)
        if loss.needs_teacher and teacher is None:
            raise StageError(f"{description}: the configured losses need a teacher, but none was given")
        self.model, self.loss, self.config, self.data = model, loss, config, data
        self.out_dir = Path(out_dir)
        self.teacher = teacher
        self.feature_pairs = list(feature_pairs)
        self.augment, self.seed, self.description = augment, seed, description
        self.run_key = run_key  # a checkpoint from another configuration is never resumed
        self.step_hook = step_hook  # called with the global step after each optimizer step (QAD freezes observers)
        self.checkpoint_path = self.out_dir / "checkpoints" / "last.pt"
        self.metrics_path = self.out_dir / "metrics.jsonl"
        self.writer = distributed.is_writer()  # rank 0 writes checkpoints and metrics; always True without torchrun
        self.device = distributed.device()
        self._ddp: torch.nn.Module | None = None

        params = list(model.parameters()) + list(loss.parameters())
        # foreach: one multi-tensor kernel per update instead of a Python loop over parameters (torch defaults to
        # it on GPUs only); bit-identical updates, and AdamW's step on a text student's 15M parameters drops from
        # about 140 to 80 ms on 2 cores. (fused=True is faster still but rounds differently, moving every figure.)
        if config.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, foreach=True)
        else:
            self.optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                             weight_decay=config.weight_decay, nesterov=True, foreach=True)
        n = len(data.x_train)
        self.batches_per_epoch = max(1, n // config.batch_size if n % config.batch_size == 1 else math.ceil(n / config.batch_size))
        total = self.batches_per_epoch * config.epochs
        warmup = int(round(config.warmup_epochs * self.batches_per_epoch))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine_with_warmup(total, warmup))

    # -- checkpoints -----------------------------------------------------------------
    def _state(self, epoch: int, best: dict, history: list[dict]) -> dict:
        return {
            "run_key": self.run_key,
            "epoch": epoch,
            "model": self.model.state_dict(),
            "loss": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best": best,
            "history": history,
            "torch_rng": torch.get_rng_state(),
        }

    def _read_checkpoint(self) -> dict | None:
        """The checkpoint to resume from; None when there is none or it is another configuration's.

        Read as tensors only: a damaged or planted file is an error naming it, never unpickled."""
        path = self.checkpoint_path
        if not path.exists():
            return None
        advice = "edgekd writes it after each epoch: delete it, or run without --resume to train from the first epoch"
        what = f"{self.description}: checkpoint {path}"
        state = load_tensors(path, what, advice, kind="checkpoint")
        if not isinstance(state, dict) or not {"run_key", "epoch", "model"} <= state.keys():
            raise ModelError(f"{what} is not an edgekd checkpoint (a {type(state).__name__} without run_key, epoch "
                             f"and model); {advice}")
        if state["run_key"] != self.run_key:
            return None
        return state

    def _load_checkpoint(self) -> dict | None:
        if self.dist is None:
            state = self._read_checkpoint()
        else:  # rank 0 reads it (its error ends every process); all resume from that same state, on any machine
            state = distributed.on_writer(self._read_checkpoint, what=f"{self.description}: sharing the checkpoint")
        if state is None:
            return None
        self.model.load_state_dict(state["model"])
        self.loss.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        return state

    def _write_metrics(self, history: list[dict]) -> None:
        # Rewritten from the checkpoint's history, so a resumed run has no duplicate epochs.
        write_text(self.metrics_path, "".join(json.dumps(row) + "\n" for row in history))

    # -- training --------------------------------------------------------------------
    def fit(self, *, resume: bool = False) -> TrainResult:
        data, config = self.data, self.config
        history: list[dict] = []
        best = {"epoch": -1, "val_accuracy": -1.0, "state": None}
        start_epoch = 0
        if self.dist is not None:
            self._place(self.device)
        state = self._load_checkpoint() if resume else None
        if state is not None:
            start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
        student_names = [p.student for p in self.feature_pairs]
        try:
            with FeatureRecorder(self.model, student_names, key="distill.features[].student") as recorder:
                if self.dist is not None:
                    self._ddp = self._wrap()
                for epoch in range(start_epoch, config.epochs):
                    if self._patience_exhausted(history, best):
                        break
                    row = self._train_epoch(epoch, recorder)
                    if self.dist is None:
                        val = evaluate(self.model, data.x_val, data.y_val, data.num_classes)
                    else:
                        distributed.broadcast_buffers(self.model, self.loss, what=f"{self.description}: sharing batch-norm statistics")
                        val = evaluate_split(self.model, data.x_val, data.y_val, data.num_classes)
                    row.update(val_accuracy=val.accuracy, val_loss=val.loss)
                    history.append(row)
                    if val.accuracy > best["val_accuracy"]:
                        best = {"epoch": epoch, "val_accuracy": val.accuracy, "state": copy.deepcopy(self.model.state_dict())}
                    if self.writer:
                        torch_save(self._state(epoch, best, history), self.checkpoint_path)
                        self._write_metrics(history)
                        tqdm.write(
                            f"{self.description} epoch {epoch + 1}/{config.epochs}: loss {row['train_loss']:.4f}, "
                            f"train acc {row['train_accuracy']:.2%}, val acc {val.accuracy:.2%}"
                        )
        finally:
            if self.dist is not None:
                self._ddp = None
                gc.collect()  # the wrapper's gradient hooks go now, before another Trainer wraps the same model (prune steps)
                self._place(torch.device("cpu"))  # later stage code (stats, export) runs on the CPU
        if best["state"] is not None:
            self.model.load_state_dict(best["state"])
        return TrainResult(
            best_epoch=best["epoch"],
            best_val_accuracy=best["val_accuracy"],
            epochs_run=len(history),
            stopped_early=len(history) < config.epochs,
            resumed_from_epoch=start_epoch,
            history=history,
        )

    # -- several processes ----------------------------------------------------------
    def _place(self, device: torch.device) -> None:
        """Model, loss and a live teacher on ``device`` (a GPU under torchrun with NCCL; a no-op on the CPU)."""
        if device.type == "cpu" and all(t.device.type == "cpu" for t in self.model.parameters()):
            return
        self.model.to(device)
        self.loss.to(device)
        if isinstance(self.teacher, LiveTeacher):
            self.teacher.to(device)

    def _wrap(self) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        step = _TrainStep(self.model, self.loss)
        with distributed.collective(f"{self.description}: setting up DistributedDataParallel"):
            return DistributedDataParallel(step, device_ids=[self.device] if self.device.type == "cuda" else None)

    def _share(self, indices: torch.Tensor, x: torch.Tensor, y: torch.Tensor, mix: Mix | None):
        """This process's share of a global batch, how many of its samples are real, its loss weight, and its
        share of the mixing partners' labels.

        DDP averages gradients over the processes, so weighting each process's mean loss by
        ``share * world / batch`` makes the average the gradient of the global batch's mean loss
        even when the last batch does not split evenly. A process left with no sample (a last batch
        smaller than the number of processes) repeats one sample with weight 0.
        """
        count, world = len(indices), self.dist.world_size
        part = distributed.shard(count, rank_=self.dist.rank, world=world)
        real = part.stop - part.start
        if real == 0:
            part = slice(0, 1)
        mix = mix.part(part) if mix else None
        return indices[part], x[part], y[part], real, real * world / count, mix

    def _augment(self, indices: torch.Tensor, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        """(teacher rows, the augmented batch, how it was mixed). With cached views (the teacher's ``plan``) each
        sample shows one of its fixed views and the teacher's row is that view's; otherwise ``augment`` draws
        a fresh view and the row is the sample's."""
        plan = getattr(self.teacher, "plan", None)
        if plan is not None:
            view = torch.randint(plan.views, (len(indices),), generator=generator)
            x = plan.apply(x, indices, view, self.data.pad_id, source=self.data.x_train)
            return indices * plan.views + view, x, plan.mix(indices, view, self.data.y_train)
        if self.augment is None:
            return indices, x, None
        x, mix = self.augment.apply(x, y, generator, self.data.pad_id)
        return indices, x, mix

    def _patience_exhausted(self, history: list[dict], best: dict) -> bool:
        patience = self.config.early_stopping_patience
        return bool(patience and history and history[-1]["epoch"] - best["epoch"] >= patience)

    def _train_epoch(self, epoch: int, recorder: FeatureRecorder) -> dict:
        data, config = self.data, self.config
        epoch_seed = self.seed * 100_003 + epoch
        generator = torch.Generator().manual_seed(epoch_seed)
        torch.manual_seed(epoch_seed)
        order = torch.randperm(len(data.x_train), generator=generator)
        if data.is_text:  # batches of similar lengths: each is cut to its longest text, so less padding is computed
            order = group_by_length(order, data.token_counts(), config.batch_size, generator)
        self.model.train()
        self.loss.train()
        started = time.perf_counter()
        total_loss, correct, seen = 0.0, 0, 0
        terms_sum: dict[str, float] = {}
        bar = tqdm(range(self.batches_per_epoch), desc=f"{self.description} {epoch + 1}/{config.epochs}", unit="batch", leave=False,
                   disable=None if self.writer else True)
        for b in bar:
            indices = order[b * config.batch_size : (b + 1) * config.batch_size]
            if b == self.batches_per_epoch - 1:
                indices = order[b * config.batch_size :]  # the remainder joins the last batch
            x, y = data.trim(data.x_train[indices]), data.y_train[indices]  # text: cut to the batch's longest
            # augmented once, for the whole global batch (same draws as one process); the teacher sees this batch
            rows, x, mix = self._augment(indices, x, y, generator)
            if self._ddp is None:
                real = len(y)
                teacher = self.teacher.outputs(rows, x) if self.teacher is not None and self.loss.needs_teacher else None
                recorder.clear()
                loss, logits, terms = _train_step(self.model, self.loss, x, y, teacher, recorder, mix)
            else:
                rows, x, y, real, weight, mix = self._share(rows, x, y, mix)
                if self.device.type != "cpu":
                    x, y = x.to(self.device), y.to(self.device)
                    mix = mix.part(slice(None), self.device) if mix else None
                teacher = self.teacher.outputs(rows, x) if self.teacher is not None and self.loss.needs_teacher else None
                recorder.clear()
                with distributed.collective(f"{self.description} epoch {epoch + 1}, batch {b + 1} (forward)"):
                    loss, logits, terms = self._ddp(x, y, _to(teacher, self.device), recorder, mix)
            if not torch.isfinite(loss):
                raise StageError(f"{self.description}: the loss became {float(loss)} at epoch {epoch + 1}, batch {b + 1}; lower the learning rate")
            self.optimizer.zero_grad(set_to_none=True)
            if self._ddp is None:
                loss.backward()
            else:
                with distributed.collective(f"{self.description} epoch {epoch + 1}, batch {b + 1} (gradient all-reduce)"):
                    (loss * weight).backward()
            self.optimizer.step()
            self.scheduler.step()
            if self.step_hook is not None:
                self.step_hook(epoch * self.batches_per_epoch + b + 1)
            total_loss += float(loss.detach()) * real
            correct += int((logits[:real].argmax(1) == y[:real]).sum())
            seen += real
            for name, value in terms.items():
                terms_sum[name] = terms_sum.get(name, 0.0) + value * real
            if seen:
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}")
        bar.close()
        extra = {}
        if self._ddp is not None:  # sums over every process: the metrics of the whole global batches
            names = list(terms_sum)
            sums = distributed.all_reduce_sum(
                [total_loss, correct, seen, *(terms_sum[n] for n in names)], what=f"{self.description}: summing epoch {epoch + 1} metrics"
            )
            total_loss, correct, seen = sums[0], int(round(sums[1])), int(round(sums[2]))
            terms_sum = dict(zip(names, sums[3:]))
            extra = {"world_size": self.dist.world_size}
        return {
            "epoch": epoch,
            "train_loss": total_loss / seen,
            "train_accuracy": correct / seen,
            "terms": {k: v / seen for k, v in terms_sum.items()},
            "lr": self.scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - started,
            **extra,
        }
