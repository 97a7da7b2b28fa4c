"""Run stages in order, each cached by a hash of its inputs.

A stage is skipped when ``<run>/<stage>/stage.json`` holds the same key: the
hash of its config inputs, the keys of the stages it requires and the package
version. That file is written last and atomically, so a killed stage never
looks complete.

Under torchrun (see ``edgekd.distributed``) rank 0 alone reads and writes the
markers and reports and decides which stages are cached; the training stages
(``all_processes``) run on every process, the others on rank 0 alone while
the rest wait for its record.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from . import __version__, distributed, preflight, stagestore
from .config import PipelineConfig, load_config, parse_config
from .errors import ConfigError, EdgekdError
from .io import read_json, sha256_json, write_json
from .records import Record
from .runlock import run_lock
from .runlog import LOG_NAME, run_log
from .stages import STAGES, StageContext


@dataclass
class StageOutcome:
    name: str
    cached: bool
    seconds: float
    record: Record


@dataclass
class PipelineResult:
    run_dir: Path
    stages: dict[str, StageOutcome] = field(default_factory=dict)
    report: dict[str, Any] | None = None  # report.json's content, once the profile stage has run

    @property
    def gate_passed(self) -> bool | None:
        """None when no budgets were applied."""
        gate = (self.report or {}).get("gate")
        return None if gate is None else gate["passed"]

    def __getitem__(self, name: str) -> Record:
        return self.stages[name].record


def as_config(config: str | Path | dict | PipelineConfig) -> PipelineConfig:
    if isinstance(config, PipelineConfig):
        return config
    if isinstance(config, dict):
        return parse_config(config)
    return load_config(config)


def make_run_dir(run_dir: Path, what: str) -> None:
    """Create ``run_dir``; a file where it or a folder above it should be is bad input, named, not an OSError."""
    blocker = next((p for p in (run_dir, *run_dir.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        where = "is" if blocker == run_dir else f"lies under {blocker}, which is"
        raise ConfigError(f"{what} {run_dir} {where} a file, not a directory; expected a folder for the run "
                          "(created if missing)")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"{what} {run_dir}: cannot create the run folder ({error.strerror})") from None


def stage_order(names: list[str] | None = None) -> list[str]:
    """``names`` (default: every registered stage) and what they require, each after its requirements.

    The order comes from ``requires`` alone; ties are broken by name, so it is the same on every process.
    """
    wanted: dict[str, tuple[str, ...]] = {}

    def add(name: str) -> None:
        if name not in wanted:
            wanted[name] = STAGES.get(name, key="stage").requires
            for dep in wanted[name]:
                add(dep)

    for name in names or STAGES.names():
        add(name)
    sorter = TopologicalSorter(wanted)
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order.extend(ready)
        sorter.done(*ready)
    return order


def saved_record(stage, marker: Path, key: str, console: Console) -> Record | None:
    """The record in ``marker`` when it was made with ``key``; None when the stage must run."""
    try:
        saved = read_json(marker)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
        raise EdgekdError(f"{marker} is unreadable ({type(error).__name__}: {error}); it is written only by edgekd: "
                          f"re-run the stage with --force {stage.name}") from None
    if not isinstance(saved, dict) or saved.get("key") != key:
        return None
    try:
        return stage.record_type.model_validate(saved.get("record"))
    except ValidationError as error:
        first = error.errors()[0]
        console.print(f"[yellow]{stage.name}: re-running: {marker} was written by edgekd {saved.get('version', '?')} in an "
                      f"older form ({'.'.join(map(str, first['loc']))}: {first['msg']})[/yellow]")
        return None


def run(
    config: str | Path | dict | PipelineConfig,
    out: str | Path | None = None,
    *,
    stages: list[str] | None = None,
    force: str | None = None,
    resume: bool = False,
    wait: bool = False,
    console: Console | None = None,
    stage_store: str | Path | None = None,
) -> PipelineResult:
    """Run ``stages`` (default: all) and what they require; return every stage's record.

    ``force`` re-runs that stage and all later ones even when cached; ``resume``
    continues an interrupted training from its last epoch checkpoint. Another run holding the run
    folder fails this one at once naming it, or with ``wait`` this one waits for it (``edgekd.runlock``).
    ``stage_store``: a folder of completed stages shared by several runs (``edgekd.stagestore``); a stage
    found there with the same key is copied in instead of run, and each stage run here is added to it.
    """
    cfg = as_config(config)
    console = console or Console(stderr=True)
    if not distributed.is_writer():
        console = Console(stderr=True, quiet=True)  # rank 0 reports progress; errors still reach every process
    run_dir = Path(out) if out is not None else Path("runs") / cfg.name
    make_run_dir(run_dir, "--out" if out is not None else "the run folder (runs/<config name>)")
    order = stage_order(stages)
    if force is not None and force not in order:
        raise ConfigError(f"--force {force!r}: not a stage of this run; expected one of: {', '.join(order)}")
    ctx = StageContext(config=cfg, run_dir=run_dir, resume=resume)
    result = PipelineResult(run_dir=run_dir)
    # One writer per run folder: rank 0 holds the lock and the log (under torchrun the other processes write nothing).
    log = run_log(run_dir / LOG_NAME) if distributed.is_writer() else contextlib.nullcontext()
    with run_lock(run_dir, wait=wait, console=console), log:
        _run_stages(ctx, order, force, result, console, Path(stage_store) if stage_store is not None else None)
        from .report.outputs import write_outputs

        result.report = distributed.on_writer(lambda: write_outputs(ctx), "writing the report on rank 0")
    return result


def _run_stages(ctx: StageContext, order: list[str], force: str | None, result: PipelineResult, console: Console,
                store: Path | None = None) -> None:
    """Check the config, then run each stage unless its marker holds the same key."""
    run_dir = ctx.run_dir
    stages_ = {name: STAGES.get(name)() for name in order}
    preflight.check(ctx)  # every config problem at once, before anything trains
    console.print(f"[dim]data: {ctx.data.classes_note()}[/dim]")
    if ctx.data.text_note():
        console.print(f"[dim]data: {ctx.data.text_note()}[/dim]")
    for stage in stages_.values():
        stage.validate(ctx)
    keys: dict[str, str] = {}
    forcing = False
    for name in order:
        stage = stages_[name]
        forcing = forcing or name == force
        key = sha256_json({
            "version": __version__, "stage": name, "inputs": stage.cache_inputs(ctx),
            "upstream": {dep: keys[dep] for dep in stage.requires},
        })
        keys[name] = key
        marker = run_dir / name / "stage.json"
        saved = None
        if not forcing and distributed.is_writer() and marker.exists():
            saved = saved_record(stage, marker, key, console)
        restored = False
        if saved is None and not forcing and distributed.is_writer() and store is not None:
            restored = stagestore.restore(store, name, key, run_dir)
            saved = saved_record(stage, marker, key, console) if restored else None
        saved = distributed.broadcast_object(saved, what=f"stage {name}: sharing rank 0's marker")  # every process agrees
        if saved is not None:
            ctx.records[name] = saved
            result.stages[name] = StageOutcome(name, True, 0.0, saved)
            console.print(f"[dim]{name}: {'copied from the stage store ' + str(store) if restored else 'cached'} ({marker})[/dim]")
            if store is not None and distributed.is_writer():
                stagestore.publish(store, name, key, run_dir)
            continue
        console.print(f"[bold]{name}[/bold]: {stage.summary}")
        if distributed.is_writer():
            marker.unlink(missing_ok=True)  # a re-run that is killed must not leave the old record looking current
        ctx.keys[name] = key
        started = time.perf_counter()
        if stage.all_processes:
            record = stage.run(ctx, ctx.stage_dir(name))  # under torchrun: every process, training together
        else:
            record = distributed.on_writer(lambda: stage.run(ctx, ctx.stage_dir(name)), f"running stage {name} on rank 0")
        seconds = time.perf_counter() - started
        if distributed.is_writer():
            write_json(marker, {"stage": name, "key": key, "version": __version__, "seconds": seconds,
                                "record": record.model_dump(mode="json")})
            if store is not None:
                stagestore.publish(store, name, key, run_dir, replace=forcing)
        distributed.published(marker, what=f"finishing stage {name}")
        ctx.records[name] = record
        result.stages[name] = StageOutcome(name, False, seconds, record)
        for label, value in stage.describe(record):
            console.print(f"  {label}: {value}")


def summary_table(result: PipelineResult) -> Table:
    table = Table(title=f"edgekd run: {result.run_dir}")
    table.add_column("stage")
    table.add_column("status")
    table.add_column("time", justify="right")
    table.add_column("figures")
    for name, outcome in result.stages.items():
        stage = STAGES.get(name)()
        figures = "; ".join(f"{label} {value}" for label, value in stage.describe(outcome.record))
        table.add_row(name, "cached" if outcome.cached else "ran", f"{outcome.seconds:.1f}s", figures)
    return table


def stage_tables(result: PipelineResult) -> list[Any]:
    """The tables each stage of the run prints at its end (compiled artifacts, the gate's violations)."""
    return [table for name, outcome in result.stages.items() for table in STAGES.get(name)().tables(outcome.record)]
