"""Several processes on one or many machines, launched by ``torchrun``.

Under ``torchrun`` (its ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT`` environment) the
training stages train with DistributedDataParallel; without it nothing here does anything and every
helper answers as for one process (rank 0 of 1, the writer), so the single-process path is unchanged.

* Backend: NCCL when CUDA is available (each process on ``cuda:LOCAL_RANK``), gloo otherwise;
  ``EDGEKD_DIST_BACKEND`` overrides. Control traffic (barriers, metric sums, objects) always goes
  over a gloo group, so it works beside NCCL and needs no GPU tensors.
* Every collective has a timeout, ``EDGEKD_DIST_TIMEOUT_S`` seconds (default 120): a process that
  died or hangs ends the others with a :class:`DistributedError` naming what they were doing,
  instead of a hang. Waits for one process's solo work (filling the teacher-output cache; the
  export, compile, profile and gate stages on rank 0) are bounded by ``EDGEKD_DIST_WAIT_S`` (default 3600).
* Rank 0 alone writes run files (checkpoints, metrics, weights, records); the process with
  ``LOCAL_RANK`` 0 on each machine alone fills that machine's teacher-output cache.
* Nothing assumes one machine: checkpoints reach the other processes by broadcast, not by reading
  rank 0's file; the run directory (``--out``) must be on storage every machine sees, since later
  stages load the weights that rank 0 wrote (checked, with a clear message, by :func:`published`).
"""

from __future__ import annotations

import atexit
import datetime
import os
import re
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch

from .errors import ConfigError, EdgekdError

T = TypeVar("T")

TIMEOUT_ENV = "EDGEKD_DIST_TIMEOUT_S"
WAIT_ENV = "EDGEKD_DIST_WAIT_S"
BACKEND_ENV = "EDGEKD_DIST_BACKEND"
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_WAIT_S = 3600.0
VISIBLE_WAIT_S = 30.0  # how long a process waits for a file rank 0 wrote to show up (shared filesystems lag)


class DistributedError(EdgekdError):
    """A process of a torchrun job failed, died, hung or cannot see what rank 0 wrote."""


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device
    timeout_s: float
    wait_s: float
    host: str

    def where(self) -> str:
        return f"rank {self.rank} of {self.world_size} ({self.host})"


_ctx: DistContext | None = None
_control = None  # the gloo group for control traffic (the default group when the backend is gloo)
_patient = None  # a gloo group whose timeout is EDGEKD_DIST_WAIT_S: waiting for one process's solo work
_failed = False  # set once a collective failed: no clean shutdown then (it could wait on dead peers)


# ---------------------------------------------------------------- setup


def launched() -> bool:
    """True under torchrun (or any launcher that sets the ``env://`` variables)."""
    return all(os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def _seconds(env: str, default: float) -> float:
    text = os.environ.get(env)
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value != value or value == float("inf"):
        raise ConfigError(f"{env}={text!r}: expected a number of seconds > 0")
    return value


def timeout_s() -> float:
    """The timeout of every collective (``EDGEKD_DIST_TIMEOUT_S``, default 120 s)."""
    return _seconds(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)


def wait_s() -> float:
    """How long processes wait for one process's solo work (``EDGEKD_DIST_WAIT_S``, default 3600 s)."""
    return max(_seconds(WAIT_ENV, DEFAULT_WAIT_S), timeout_s())


def init() -> DistContext | None:
    """Join the process group once (lazily, on first use); None when not launched by torchrun.

    A process group the caller already initialised (e.g. in their own torchrun script) is reused.
    """
    global _ctx, _control, _patient
    if _ctx is not None:
        return _ctx
    import torch.distributed as dist

    if not dist.is_available() or not (launched() or dist.is_initialized()):
        return None
    timeout, wait = timeout_s(), wait_s()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():  # e.g. "gloo", "nccl" or "cpu:gloo,cuda:nccl": train where NCCL is, if it is
        backend = "nccl" if "nccl" in str(dist.get_backend()) else "gloo"
    else:
        backend = os.environ.get(BACKEND_ENV) or ("nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo")
    if backend not in ("gloo", "nccl"):
        raise ConfigError(f"{BACKEND_ENV}={backend!r}: expected 'gloo' or 'nccl'")
    device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    host = socket.gethostname()
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        try:
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
        except Exception as error:  # rendezvous timeout, unreachable MASTER_ADDR, bad backend
            raise DistributedError(
                f"rank {rank} of {world} ({host}): could not join the process group at "
                f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')} ({backend}, "
                f"timeout {timeout:g} s, {TIMEOUT_ENV}): {_cause(error)}"
            ) from None
    rank, world = dist.get_rank(), dist.get_world_size()
    # Every process creates the same groups in the same order. A group's timeout bounds each of its
    # operations on every rank (a barrier's own timeout argument does not, on the ranks that wait for rank 0).
    _control = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout)) if backend != "gloo" else dist.group.WORLD
    _patient = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=wait))
    _ctx = DistContext(rank=rank, world_size=world, local_rank=local_rank, backend=backend, device=device,
                       timeout_s=timeout, wait_s=wait, host=host)
    _install_sigterm_handler()
    atexit.register(_shutdown)
    return _ctx


def active() -> bool:
    return init() is not None


def context() -> DistContext | None:
    return init()


def rank() -> int:
    ctx = init()
    return ctx.rank if ctx else 0


def world_size() -> int:
    ctx = init()
    return ctx.world_size if ctx else 1


def local_rank() -> int:
    ctx = init()
    return ctx.local_rank if ctx else 0


def is_writer() -> bool:
    """True on the one process that writes run files (rank 0), and always without torchrun."""
    return rank() == 0


def is_local_leader() -> bool:
    """True on one process per machine (``LOCAL_RANK`` 0): it fills that machine's teacher-output cache."""
    return local_rank() == 0


def device() -> torch.device:
    """Where this process trains: ``cuda:LOCAL_RANK`` with NCCL, else the CPU."""
    ctx = init()
    return ctx.device if ctx else torch.device("cpu")


def where() -> str:
    ctx = init()
    return ctx.where() if ctx else "the only process"


def _shutdown() -> None:
    import torch.distributed as dist

    if not _failed and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


def _install_sigterm_handler() -> None:
    """torchrun stops every process with SIGTERM when one fails: say so, instead of dying silently."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        return  # the application has its own handler

    def on_sigterm(signum, frame):  # noqa: ARG001
        global _failed
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
        exiting = frame is not None and frame.f_code.co_name == "_shutdown" and frame.f_code.co_filename.endswith("threading.py")
        if _failed or exiting or sys.is_finalizing():
            return  # this process already reported its own error and is on its way out
        _failed = True
        raise DistributedError(
            f"{where()}: stopped by SIGTERM from the launcher. torchrun stops every process when one "
            "fails or is killed; the first error is in that process's output and in torchrun's summary."
        )

    signal.signal(signal.SIGTERM, on_sigterm)


# ---------------------------------------------------------------- errors of collectives

_GLOO_LOCATION = re.compile(r"^\s*\[[^\]]*\]\s*")
_DIST_WORDS = re.compile(r"gloo|nccl|c10d|connection|timed out|timeout|peer|socket|broken pipe|process group|monitoredbarrier", re.I)


def _cause(error: BaseException) -> str:
    """The first line of an error, without gloo's ``[file.cc:123]`` prefix and without square brackets
    (the CLI prints messages with rich markup, where ``[/...]`` is a closing tag)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = _GLOO_LOCATION.sub("", text)
    text = text.replace("This is typically caused by a remote worker hanging or bugs in the application. ", "")
    text = re.sub(r"\s*Check the logs of the remote worker before reporting an error\..*$", "", text)
    return text.replace("[", "(").replace("]", ")")


def _is_collective_error(error: BaseException) -> bool:
    import torch.distributed as dist

    return isinstance(error, getattr(dist, "DistError", ())) or (isinstance(error, RuntimeError) and bool(_DIST_WORDS.search(str(error))))


def explain(error: BaseException, what: str, *, patient: bool = False) -> DistributedError:
    """A DistributedError that says which process, doing what, lost which peer or waited how long.

    ``patient``: the wait was for one process's solo work, bounded by ``EDGEKD_DIST_WAIT_S``.
    """
    ctx = init()
    here = ctx.where() if ctx else "this process"
    cause = _cause(error)
    low = cause.lower()
    if "timed out" in low or "timeout" in low or "monitoredbarrier" in low:
        seconds = (ctx.wait_s if patient else ctx.timeout_s) if ctx else None
        limit = f"{seconds:g} s" if seconds else "the timeout"
        message = (f"{here}: {what} did not complete within {limit} ({WAIT_ENV if patient else TIMEOUT_ENV} sets it): "
                   "another process died, hangs or is far behind; see its output and torchrun's summary.")
    elif any(word in low for word in ("connection", "peer", "broken pipe", "socket", "closed")):
        message = (f"{here}: lost contact with another process during {what}: it died (killed, out of memory, or an "
                   "error of its own, which it printed). torchrun's summary names it.")
    else:
        message = f"{here}: {what} failed"
    return DistributedError(f"{message} (cause: {cause})")


@contextmanager
def collective(what: str, *, patient: bool = False) -> Iterator[None]:
    """Turn a failed or timed-out collective inside the block into a clear DistributedError."""
    global _failed
    try:
        yield
    except DistributedError:
        _failed = True
        raise
    except RuntimeError as error:
        if _ctx is None or not _is_collective_error(error):
            raise
        _failed = True
        raise explain(error, what, patient=patient) from None


# ---------------------------------------------------------------- collectives


def barrier(what: str, *, patient: bool = False) -> None:
    """Wait until every process got here: at most the collective timeout, or with ``patient`` (one
    process is doing solo work, e.g. filling the teacher cache) at most ``EDGEKD_DIST_WAIT_S``."""
    ctx = init()
    if ctx is None or ctx.world_size == 1:
        return
    import torch.distributed as dist

    group, seconds = (_patient, ctx.wait_s) if patient else (_control, ctx.timeout_s)
    with collective(what, patient=patient):
        dist.monitored_barrier(group=group, timeout=datetime.timedelta(seconds=seconds), wait_all_ranks=True)


def _all_ok(ok: bool, what: str, *, patient: bool = False) -> bool:
    import torch.distributed as dist

    barrier(what, patient=patient)
    flag = torch.tensor([1 if ok else 0], dtype=torch.int64)
    with collective(what):
        dist.all_reduce(flag, op=dist.ReduceOp.MIN, group=_control)
    return bool(flag.item())


@contextmanager
def together(what: str, *, patient: bool = False) -> Iterator[None]:
    """Every process runs the block (which may do nothing on most of them), then they agree on the outcome.

    A process whose block raised re-raises its error; every other process raises a DistributedError
    naming ``what``, so a failure on one process ends all of them with a message, never a hang.
    The wait for the slowest process is bounded by the collective timeout, or by ``EDGEKD_DIST_WAIT_S``
    with ``patient`` (the block is one process's solo work).
    """
    if init() is None:
        yield
        return
    failure: BaseException | None = None
    try:
        yield
    except DistributedError:
        raise  # peers are gone or the launcher is stopping us: agreeing would only wait
    except BaseException as error:  # noqa: BLE001 - re-raised below, after telling the others
        failure = error
    try:
        ok = _all_ok(failure is None, what, patient=patient)
    except DistributedError:
        if failure is not None:
            raise failure from None
        raise
    if failure is not None:
        raise failure
    if not ok:
        raise DistributedError(f"{where()}: another process failed while {what}; its own message says why")


def on_writer(fn: Callable[[], T], what: str) -> T:
    """Run ``fn`` on rank 0 alone; the others wait (``EDGEKD_DIST_WAIT_S``) and receive its result."""
    if init() is None:
        return fn()
    result = None
    with together(what, patient=True):
        if is_writer():
            result = fn()
    return broadcast_object(result, what=what)


def broadcast_object(obj: T, *, what: str = "sharing rank 0's state") -> T:
    """Rank 0's ``obj`` on every process (any picklable object); ``obj`` itself without torchrun."""
    ctx = init()
    if ctx is None or ctx.world_size == 1:
        return obj
    import torch.distributed as dist

    box = [obj if ctx.rank == 0 else None]
    with collective(what):
        dist.broadcast_object_list(box, src=0, group=_control)
    return box[0]


def all_gather_object(obj: Any, *, what: str = "gathering values") -> list[Any]:
    ctx = init()
    if ctx is None or ctx.world_size == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * ctx.world_size
    with collective(what):
        dist.all_gather_object(out, obj, group=_control)
    return out


def all_reduce_sum(values: Sequence[float], *, what: str = "summing metrics") -> list[float]:
    """Element-wise sums over all processes, in float64 (metric sums and sample counts)."""
    ctx = init()
    if ctx is None or ctx.world_size == 1:
        return [float(v) for v in values]
    import torch.distributed as dist

    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64)
    with collective(what):
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=_control)
    return tensor.tolist()


def all_gather_rows(tensor: torch.Tensor, *, what: str = "gathering outputs") -> list[torch.Tensor]:
    """Every process's ``tensor`` (same shape on all, e.g. a padded DistributedSampler shard), on the CPU."""
    ctx = init()
    if ctx is None or ctx.world_size == 1:
        return [tensor]
    import torch.distributed as dist

    tensor = tensor.detach().cpu().contiguous()
    out = [torch.empty_like(tensor) for _ in range(ctx.world_size)]
    with collective(what):
        dist.all_gather(out, tensor, group=_control)
    return out


def broadcast_buffers(*modules: torch.nn.Module, what: str = "sharing batch-norm statistics") -> None:
    """Copy rank 0's buffers (batch-norm running statistics, observer ranges) to every process."""
    ctx = init()
    if ctx is None or ctx.world_size == 1:
        return
    import torch.distributed as dist

    with collective(what):
        for module in modules:
            for buffer in module.buffers():
                dist.broadcast(buffer.data, src=0)


def check_same(value: Any, what: str) -> None:
    """Fail clearly when processes computed different ``value`` (e.g. different pruned shapes)."""
    values = all_gather_object(value, what=f"comparing {what}")
    if any(v != values[0] for v in values[1:]):
        shown = "; ".join(f"rank {i}: {v!r}" for i, v in enumerate(values))
        raise DistributedError(f"{where()}: the processes disagree on {what} ({shown}); they must compute the same")


def published(*paths: Path, what: str) -> None:
    """After rank 0 wrote ``paths``: every process waits for it, then checks it can see them.

    A process that cannot see a file rank 0 wrote is on another machine without the shared run
    directory that later stages need.
    """
    ctx = init()
    if ctx is None or ctx.world_size == 1:
        return
    barrier(what, patient=True)
    if ctx.rank == 0:
        return
    deadline = time.monotonic() + VISIBLE_WAIT_S
    for path in paths:
        while not Path(path).exists():
            if time.monotonic() > deadline:
                raise DistributedError(
                    f"{ctx.where()}: cannot see {path}, which rank 0 wrote while {what}. Every machine must see the "
                    "run directory (--out) at the same path, e.g. on a shared filesystem: only rank 0 writes it, "
                    "and later stages load what it wrote."
                )
            time.sleep(0.2)


# ---------------------------------------------------------------- batches


def check_batch_size(key: str, batch_size: int) -> None:
    """The configured batch size is global: it must split evenly over the processes."""
    world = world_size()
    if world == 1 or batch_size % world == 0:
        return
    lower = batch_size // world * world
    options = " or ".join(str(b) for b in (lower, lower + world) if b > 0)
    raise ConfigError(
        f"{key}: the global batch size {batch_size} must be a multiple of the world size {world} (the processes of "
        f"this torchrun job), so that each process gets batch_size / {world} samples; {batch_size} % {world} = "
        f"{batch_size % world}. Use {options}, or another number of processes."
    )


def shard(count: int, *, rank_: int | None = None, world: int | None = None) -> slice:
    """This process's contiguous share of ``count`` items (sizes differ by at most one; earlier ranks get more)."""
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    base, extra = divmod(count, world)
    start = rank_ * base + min(rank_, extra)
    return slice(start, start + base + (1 if rank_ < extra else 0))
