"""The ``edgekd`` command line. Every command has a Python equivalent in ``edgekd.pipeline``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from .errors import ConfigError, EdgekdError

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Turn a trained teacher into small, fast, verified edge binaries, driven by one YAML file.",
)
console = Console(stderr=True)

CONFIG = typer.Argument(..., help="Pipeline YAML, e.g. examples/mnist.yaml.")
OUT = typer.Option(None, "--out", "-o", help="Run directory (default: runs/<name from the config>).")
RESUME = typer.Option(False, "--resume", help="Continue an interrupted training from its last epoch checkpoint.")
FORCE = typer.Option(None, "--force", help="Re-run this stage and every later one even if cached.")
WAIT = typer.Option(False, "--wait", help="If another edgekd run is using the run directory, wait for it to finish instead of failing.")


def _run_stages(config: Path, out: Optional[Path], stages: list[str] | None, force: Optional[str], resume: bool,
                devices: Optional[str] = None, wait: bool = False, min_duration: Optional[float] = None) -> None:
    from .distributed import is_writer
    from .pipeline import as_config, run, stage_tables, summary_table  # heavy imports (torch) only when a command runs

    try:
        cfg = as_config(config)
        if devices:
            cfg = cfg.model_copy(update={"profile": cfg.profile.model_copy(update={"devices": devices.split(",")})})
        if min_duration is not None:
            if not math.isfinite(min_duration):  # click's range lets inf and nan through
                raise ConfigError(f"--min-duration {min_duration}: expected a number of seconds, such as 600")
            energy = cfg.profile.energy.model_copy(update={"min_duration_s": float(min_duration)})
            cfg = cfg.model_copy(update={"profile": cfg.profile.model_copy(update={"energy": energy})})
        result = run(cfg, out, stages=stages, force=force, resume=resume, wait=wait, console=console)
    except EdgekdError as error:
        console.print(f"[red]error:[/red] {escape(str(error))}")  # a value may hold [brackets]
        raise typer.Exit(2) from None
    if not is_writer():
        return  # under torchrun, rank 0 prints the tables
    out = Console(width=None if console.is_terminal else 180)  # logs and CI get the whole table
    out.print(summary_table(result))
    for table in stage_tables(result):  # compiled artifacts, the gate's violations
        out.print(table)
    if result.report is not None:
        from .report.terminal import report_table

        out.print(report_table(result.report))
        out.print(f"report: {result.run_dir / 'report.json'}, {result.run_dir / 'report.html'}")
        if result.gate_passed is not None:
            gate = result.report["gate"]
            out.print(f"gate: {'passed' if gate['passed'] else '[red]FAILED[/red]'} ({gate['failures']} of {gate['checks']} checks failed)")
    if result.gate_passed is False:
        raise typer.Exit(1)


@app.command("run")
def run_command(config: Path = CONFIG, out: Optional[Path] = OUT, force: Optional[str] = FORCE, resume: bool = RESUME,
                wait: bool = WAIT) -> None:
    """Run every stage of the pipeline; completed stages with unchanged inputs are reused."""
    _run_stages(config, out, None, force, resume, wait=wait)


@app.command("distill")
def distill_command(config: Path = CONFIG, out: Optional[Path] = OUT, force: Optional[str] = FORCE, resume: bool = RESUME,
                    wait: bool = WAIT) -> None:
    """Load or train the teacher, then distill it into the student."""
    _run_stages(config, out, ["distill"], force, resume, wait=wait)


def _stage_command(stage: str, help_text: str) -> None:
    def command(config: Path = CONFIG, out: Optional[Path] = OUT, force: Optional[str] = FORCE, resume: bool = RESUME,
                wait: bool = WAIT) -> None:
        _run_stages(config, out, [stage], force, resume, wait=wait)

    command.__doc__ = help_text
    app.command(stage)(command)


_stage_command("prune", "Prune the distilled student's channels and recover by distillation (runs earlier stages if needed).")
_stage_command("quantize", "INT8 quantization-aware distillation or calibration of the (pruned) student.")
_stage_command("export", "Export FP32 and INT8 QDQ ONNX and verify them with ONNX Runtime against PyTorch.")
_stage_command("compile", "Build every target's artifacts and check each in its own runtime (parity, accuracy, operators).")


@app.command("profile")
def profile_command(
    config: Path = CONFIG, out: Optional[Path] = OUT, force: Optional[str] = FORCE, resume: bool = RESUME, wait: bool = WAIT,
    devices: Optional[str] = typer.Option(None, "--devices", help="Comma-separated target names to profile (default: all); devices run concurrently."),
    min_duration: Optional[float] = typer.Option(
        None, "--min-duration", min=0.0, metavar="SECONDS", help="Energy windows last at least this long together, for a "
        "defensible figure (MLPerf Power runs 600 s); sets profile.energy.min_duration_s. The report states the duration used."),
) -> None:
    """Latency percentiles, accuracy, memory and energy of every artifact, on each target's device; writes report.json/html."""
    _run_stages(config, out, ["profile"], force, resume, devices, wait=wait, min_duration=min_duration)


@app.command("gate")
def gate_command(
    report: Path = typer.Argument(..., help="report.json of a run (edgekd run / edgekd profile)."),
    budgets: Path = typer.Option(..., "--budgets", "-b", help="Budgets YAML (see examples/budgets.yaml)."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML here: one test case per target and budget."),
    summary: Optional[Path] = typer.Option(None, "--summary", help="Write the Markdown summary here (also appended to $GITHUB_STEP_SUMMARY when set)."),
    show_all: bool = typer.Option(False, "--all", help="List every check, not only the violations."),
) -> None:
    """Check a report against budgets. Exit 0 when every budget holds, 1 when any fails, 2 on bad input."""
    from .gate import evaluate, gate_table, load_budgets, write_junit, write_markdown
    from .gate.inputs import check_budgets_apply, check_output, read_report

    try:
        check_output(junit, "--junit")
        check_output(summary, "--summary")
        data = read_report(report)  # strictly: the report is machine-written, so "0.95" for 0.95 is an error
        budgets_file = load_budgets(budgets)
        check_budgets_apply(budgets_file, data, budgets, report)  # an entry that matches nothing would pass unseen
        result = evaluate(data, budgets_file, str(budgets))
    except EdgekdError as error:
        console.print(f"[red]error:[/red] {escape(str(error))}")
        raise typer.Exit(2) from None
    Console(width=None if console.is_terminal else 180).print(gate_table(result, all_checks=show_all))
    if junit:
        write_junit(result, junit)
    write_markdown(result, summary)
    raise typer.Exit(0 if result["summary"]["passed"] else 1)


@app.command("search")
def search_command(
    config: Path = CONFIG,
    budgets: Path = typer.Option(..., "--budgets", "-b", help="Budgets YAML every candidate is gated against (see examples/budgets.yaml)."),
    trials: int = typer.Option(30, "--trials", "-n", help="Distinct choices to run, counting those of an earlier or a parallel search on the same study (a proposal repeating a finished choice reuses its result and does not count; a smaller space ends when every choice has run)."),
    out: Path = typer.Option(Path("runs/search"), "--out", "-o", help="Output folder: study.db, trial-N/ run folders, stages/ (shared), search.json/html, best.yaml."),
    space: Optional[Path] = typer.Option(None, "--space", help="Search file: `space:` (key -> list of values, or named choices) and `fixed:` settings (default space: student size, prune ratio off/0.2/0.4, quantize none/ptq/qad)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL shared by several processes or machines (default: sqlite:///OUT/study.db)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the sampler: the same space, budgets and seed propose the same trials."),
    heartbeat_s: float = typer.Option(30.0, "--heartbeat-s", min=1, help="Seconds between a running trial's heartbeats; a trial silent for 3 times this (its process was killed) is failed and retried in its own folder."),
    objectives: str = typer.Option("budgets", "--objectives", help="What the sampler optimises: budgets (one objective: meet every budget, then the most accurate), accuracy-latency or accuracy-energy (two objectives, accuracy up and p95 latency or energy per inference down, with the budgets as constraints). The choice and best.yaml follow the budgets either way."),
) -> None:
    """Search student size, pruning and quantization for the artifact that meets the budgets on each target.

    Every trial is a full pipeline run reusing the stages it shares with earlier ones; every artifact is a
    candidate. Writes best.yaml (the chosen trial's config: `edgekd run best.yaml` rebuilds it), search.json
    and search.html (every candidate, the Pareto front). Exit 0 when every target has a candidate meeting
    every budget, 1 when one has none (the binding budget and the closest candidate are named), 2 on bad input.
    A killed search resumes when run again with the same --out (or --storage).
    """
    from .search import search

    try:
        result = search(config, budgets, trials=trials, out=out, space=space, seed=seed, storage=storage, console=console,
                        heartbeat_s=heartbeat_s, objectives=objectives)
    except EdgekdError as error:
        console.print(f"[red]error:[/red] {escape(str(error))}")
        raise typer.Exit(2) from None
    from .search.live import runtimes_table

    Console(width=None if console.is_terminal else 180).print(runtimes_table(result))
    for line in result.verdict():
        console.print(escape(line), soft_wrap=True)  # one line each, also in a CI log
    console.print(f"search: {out / 'search.json'}, {out / 'search.html'}")
    raise typer.Exit(0 if result.passed else 1)


@app.command("report-schema")
def report_schema_command() -> None:
    """Print the JSON Schema of report.json (its version is schema_version)."""
    import json

    from .report.schema import Report

    print(json.dumps(Report.model_json_schema(), indent=2))


@app.command("targets")
def targets_command(base_dir: Path = typer.Option(Path("."), help="Also look in BASE_DIR/targets.")) -> None:
    """List the hardware targets (targets/*.yaml) and what each builds."""
    from rich.table import Table

    from .backends import BACKENDS
    from .targets import list_targets

    table = Table(title="targets")
    for column in ("name", "artifacts", "device", "description", "file"):
        table.add_column(column)
    for target in list_targets(base_dir):
        artifacts = []
        for spec in target.artifacts:
            note = ""
            if spec.backend in BACKENDS:
                reason = BACKENDS.get(spec.backend)().unavailable()
                note = f" (not here: {reason})" if reason else ""
            artifacts.append(f"{spec.backend} {'/'.join(spec.precisions)}{note}")
        device = target.device.ssh or target.device.adb or "this machine"
        table.add_row(target.name, "\n".join(artifacts), device, target.description, target.source)
    Console().print(table)


devices_app = typer.Typer(no_args_is_help=True, help="The targets' devices (device: ssh / adb in targets/*.yaml).")
app.add_typer(devices_app, name="devices")


def _check_device(target) -> dict:
    """One target's device check; this machine's when the target names no device. Never raises."""
    from .runners import runner_for

    try:
        if not (target.device.ssh or target.device.adb):
            from .ondevice.probe import probe

            return {"device": "this machine", "reachable": True, **probe()}
        runner = runner_for(target.device, Path(target.source).parent if target.source else None)
        return {"device": runner.label, **runner.check()}
    except Exception as error:  # one broken target must not hide the others' answers
        return {"device": str(target.device.ssh or target.device.adb or "this machine"), "reachable": False,
                "reason": f"{type(error).__name__}: {error}"}


@devices_app.command("check")
def devices_check_command(
    targets: Optional[str] = typer.Option(None, "--targets", help="Comma-separated target names or YAML files (default: every target with a device: block)."),
    base_dir: Path = typer.Option(Path("."), help="Also look in BASE_DIR/targets."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (one object per target) instead of a table."),
) -> None:
    """Per device: reachable or why not, its Python, which runtimes import and which energy meter it has. Devices are checked concurrently."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    from rich.table import Table

    from .targets import list_targets, load_target

    try:
        chosen = ([load_target(t.strip(), base_dir, key="--targets") for t in targets.split(",") if t.strip()] if targets
                  else [t for t in list_targets(base_dir) if t.device.ssh or t.device.adb])
    except EdgekdError as error:
        console.print(f"[red]error:[/red] {escape(str(error))}")  # a value may hold [brackets]
        raise typer.Exit(2) from None
    if not chosen:
        console.print("no target has a device: block (device: {ssh: user@host} or {adb: SERIAL}); see docs/devices.md")
        raise typer.Exit(0)
    with ThreadPoolExecutor(max_workers=len(chosen)) as pool:
        checks = [{"target": t.name, **c} for t, c in zip(chosen, pool.map(_check_device, chosen))]
    if as_json:
        print(json.dumps(checks, indent=1))
        raise typer.Exit(0)
    table = Table(title="devices")
    for column in ("target", "device", "reachable", "python", "runtimes", "energy meter"):
        table.add_column(column)
    for c in checks:
        runtimes = c.get("runtimes") or {}
        ok = [f"{name} ({r.get('version', '')})" for name, r in runtimes.items() if r.get("ok")]
        missing = [name for name, r in runtimes.items() if not r.get("ok")]
        meters = c.get("meters") or {}
        meter = meters.get("available") or ("none: " + "; ".join(f"{k}: {v}" for k, v in (meters.get("unavailable") or {}).items())
                                            if meters else "")
        reachable = "yes" if c.get("reachable") else f"no: {c.get('reason', '')}"
        if c.get("reachable") and c.get("reason"):
            reachable += f" ({c['reason']})"
        table.add_row(c["target"], c["device"], reachable, str(c.get("python") or ""),
                      "\n".join(ok + ([f"not: {', '.join(missing)}"] if missing else [])), meter)
    Console(width=None if console.is_terminal else 200).print(table)


def main() -> None:
    app()
