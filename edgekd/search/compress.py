"""``edgekd search``: budgets in, the best artifact per target out.

Each Optuna trial is a full pipeline run (``trial-N/``, a normal run folder) of the config with one choice
per dimension of the space (``edgekd.search.space``), gated against the budgets; every artifact it builds is
a candidate (``edgekd.search.candidates``). Completed stages go to a shared store (``stages/``), so trials
that share a prefix (the teacher always; the same student, the same pruning) copy it instead of training it.

The study lives in an Optuna storage, by default ``study.db`` (SQLite) in the output folder; any database URL
Optuna supports lets several processes or machines search one study. Trials send a heartbeat: a trial whose
process was killed is failed once its heartbeat is stale and retried (``RetryFailedTrialCallback``) in its
own folder, so its training resumes from the last epoch checkpoint. A trial with the same choices as a
finished one reuses its result; one that another process is running is waited for, not run twice.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.console import Console

from pydantic import ValidationError

from .. import __version__, yamlfile
from ..config import PipelineConfig, parse_config
from ..errors import ConfigError, EdgekdError
from ..gate import load_budgets
from ..gate.budgets import effective
from ..targets import load_target
from ..io import sha256_file, sha256_json, write_json, write_text
from ..problems import Problem, raise_problems
from ..yamlfile import read_yaml
from . import candidates as cands
from .relocate import relocate
from .space import SearchFile, default_space, describe, dimensions, load_search_file
from .tune import Options, set_key

STUDY = "edgekd-search"
WAIT_POLL_S = 2.0
MAX_COMBINATIONS = 5000  # combinations validated before the first trial
MAX_PROPOSALS_PER_TRIAL = 20


@dataclass
class SearchResult:
    """Every trial and candidate; per runtime its best candidate; per target the chosen one and the front."""

    out: Path
    trials: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    runtimes: dict[str, dict[str, Any]]  # "target/backend" -> the best candidate, passing or closest
    chosen: dict[str, dict[str, Any]]  # target -> the best candidate (passing or closest)
    fronts: dict[str, list[dict[str, Any]]]  # target -> its accuracy / p95 latency Pareto front
    configs: dict[str, Path] = field(default_factory=dict)  # target -> the chosen trial's config file

    @property
    def passed(self) -> bool:
        """Every target has a candidate that meets every budget."""
        return bool(self.chosen) and all(c["passed"] for c in self.chosen.values())

    def verdict(self) -> list[str]:
        """One line per target: the choice, or why none passed (the binding budget and the distance to it)."""
        if not self.chosen:
            errors = [t for t in self.trials if t.get("error")]
            first = f"; the first error (trial {errors[0]['number']}): {errors[0]['error']}" if errors else ""
            return [f"no trial produced an artifact to judge: {len(errors)} of {len(self.trials)} trials failed{first}"]
        lines = []
        for target, c in self.chosen.items():
            where = f"trial {c['trial']} {c['backend']} {c['precision']}"
            figures = f"accuracy {_pct(c['accuracy'])}, p95 {_ms(c['p95_ms'])}"
            if c["passed"]:
                lines.append(f"{target}: {where} meets every budget ({figures}); config {self.configs.get(target)}")
            elif c["distance"] is None:
                lines.append(f"{target}: no artifact built and ran; the first: {where}, {c['status']}")
            else:
                b = c["binding"] or {}
                lines.append(f"{target}: no candidate meets the budgets. Binding budget: {b.get('budget')} "
                             f"(limit {b.get('limit')}); the closest candidate, {where} ({figures}), misses it by "
                             f"{b.get('distance', 0):.1%} of the limit: {b.get('message')}")
        return lines


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2%}"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g} ms"


def trial_config(base: dict[str, Any], fixed: dict[str, Any], settings: dict[str, Any], budgets: Path) -> dict[str, Any]:
    cfg = copy.deepcopy(base)
    for key, value in {**fixed, **settings}.items():
        set_key(cfg, key, value)
    set_key(cfg, "gate.budgets", str(budgets))
    return cfg


def check(base: dict[str, Any], config_dir: Path, space: Sequence[Options], fixed: dict[str, Any], budgets: Path,
          out: Path) -> None:
    """Before any trial, one error naming every problem: the budgets file loads; every choice of every dimension,
    applied alone, passes the checks a run makes before training; every combination of choices is a valid config
    (pydantic only: two choices may clash, e.g. ``prune.ratio`` with ``prune.target_macs``)."""
    from .. import preflight
    from ..stages import StageContext

    load_budgets(budgets)
    found: list[Problem] = []
    data = None
    choices = [(None, "", {})] + [(d.name, label, s) for d in space for label, s in d.options.items()]
    for name, label, settings in choices:
        where = "the config" if name is None else f"search space {name}: {label}"
        cfg = _validated(base, fixed, settings, budgets, config_dir, where, found)
        if cfg is None:
            continue
        ctx = StageContext(config=cfg, run_dir=out)
        if data is not None and not any(k.startswith("data.") for k in settings):
            ctx.__dict__["data"] = data  # the base config's data: load it once
        try:
            found += [_within(where, p) for p in preflight.problems(ctx)]
            if name is None:
                data = ctx.data
        except EdgekdError as error:
            found.append(Problem(where, str(error)))
    if not found:
        for combination in itertools.islice(itertools.product(*(d.options.items() for d in space)), MAX_COMBINATIONS):
            settings = {k: v for _, option in combination for k, v in option.items()}
            where = "search space " + ", ".join(f"{d.name}: {label}" for d, (label, _) in zip(space, combination))
            _validated(base, fixed, settings, budgets, config_dir, where, found)
    raise_problems(found, "the search cannot run (checked before any trial; nothing was trained)")


def _validated(base, fixed, settings, budgets, config_dir, where: str, found: list[Problem]) -> PipelineConfig | None:
    try:
        return PipelineConfig.model_validate({**trial_config(base, fixed, settings, budgets), "base_dir": config_dir})
    except ValidationError as error:
        found += [_within(where, p) for p in yamlfile.problems(error, PipelineConfig)]
    except ConfigError as error:  # set_key: a key through a value that is not a section
        found.append(Problem(where, str(error)))
    return None


def space_size(space: Sequence[Options]) -> int:
    return math.prod(len(d.options) for d in space)


def float_layers_from_budgets(base: dict[str, Any], budgets: Path, config_dir: Path) -> dict[str, Any]:
    """Where the budgets bound an INT8 artifact's accuracy drop against the FP32 student and the config does not
    set ``compile.int8_max_accuracy_drop`` (null included), every trial sets it to the tightest such drop, read as
    the gate reads it (matching entries merged in order, later keys winning) for each INT8 artifact the config's
    targets build: an INT8 artifact that would break it returns its most sensitive layers to float
    (edgekd.mixed_precision) instead of dropping out."""
    if "int8_max_accuracy_drop" in (base.get("compile") or {}):
        return {}
    try:
        entries = load_budgets(budgets)
    except ConfigError:
        return {}  # check() reports the budgets file with every other problem
    drops = []
    for i, name in enumerate(base.get("targets") or ["host-cpu"]):
        try:
            target = load_target(name, config_dir, key=f"targets[{i}]")
        except EdgekdError:
            continue  # check() reports it
        for spec in target.artifacts:
            limits = effective(entries, target.name, spec.backend, "int8") if "int8" in spec.precisions else {}
            if limits.get("max_accuracy_drop") is not None and limits.get("against", "student") == "student":
                drops.append(limits["max_accuracy_drop"])
    return {"compile.int8_max_accuracy_drop": min(drops)} if drops else {}


def fingerprint(base: dict[str, Any], fixed: dict[str, Any], budgets: Path, space: Sequence[Options],
                objectives: str = "budgets") -> str:
    """What a study's results depend on: a study is continued only with the same config, budgets, space and
    objectives."""
    return sha256_json({"edgekd": __version__, "config": base, "fixed": fixed, "budgets": sha256_file(budgets),
                        "space": {d.name: d.options for d in space},
                        # studies made before --objectives existed had one objective: they stay valid
                        **({"objectives": objectives} if objectives != "budgets" else {})})


def _within(where: str, problem: Problem) -> Problem:
    return Problem(f"{where}: {problem.key}", problem.message, problem.accepted, problem.suggestions)


def _storage(url: str, heartbeat_s: float):
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    with _quiet_optuna():
        return RDBStorage(url, heartbeat_interval=max(1, int(heartbeat_s)), grace_period=max(2, int(3 * heartbeat_s)),
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2))


@contextlib.contextmanager
def _quiet_optuna():
    """Optuna marks heartbeats and retries experimental; the warning says nothing a user can act on."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def open_study(url: str, heartbeat_s: float, seed: int, attempts: int = 10, objectives: str = "budgets"):
    """The study in ``url``, created when missing. Processes starting together race to create the database's
    tables (one insert fails, or the file is locked): the loser tries again once the winner is done."""
    import optuna
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            store = _storage(url, heartbeat_s)
            try:
                existing = len(optuna.load_study(study_name=STUDY, storage=store).trials)
            except KeyError:
                existing = 0
            # Another process (or an earlier run) already proposed trials: a different seed keeps this process
            # from proposing the same first trials; a fresh single-process search is reproducible from ``seed``.
            several = cands.OBJECTIVES[objectives] is not None  # the budgets become each trial's constraint
            return optuna.create_study(study_name=STUDY, storage=store, load_if_exists=True,
                                       sampler=optuna.samplers.TPESampler(seed=seed + existing),
                                       directions=["maximize", "minimize"] if several else ["maximize"])
        except Exception as error:
            racing = (isinstance(error, sqlalchemy.exc.IntegrityError) or "locked" in str(error)
                      or "already exists" in str(error))  # processes creating the same tables at once
            if not racing or attempt == attempts - 1:
                raise ConfigError(f"--storage {url}: cannot open the study ({type(error).__name__}: "
                                  f"{str(error).splitlines()[0]}); expected an Optuna storage URL such as "
                                  "sqlite:///path/study.db or postgresql://user@host/db") from None
            time.sleep(0.5 + 0.5 * attempt)
    raise AssertionError("not reached")


def _plain(settings: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(settings, sort_keys=True))


def search(
    config: str | Path | dict[str, Any],
    budgets: str | Path,
    *,
    trials: int,
    out: str | Path,
    space: str | Path | SearchFile | None = None,
    seed: int = 0,
    storage: str | None = None,
    console: Console | None = None,
    base_dir: str | Path = ".",
    heartbeat_s: float = 30.0,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
    objectives: str = "budgets",
) -> SearchResult:
    """Run trials until the study holds ``trials`` complete ones (counting those of earlier or other processes).

    ``config``: a YAML file or a dict (its relative paths resolved against ``base_dir``); ``space``: a search
    file (see ``edgekd.search.space``) or None for the default space; ``storage``: an Optuna database URL
    (default ``sqlite:///OUT/study.db``); ``objectives``: what the sampler optimises (``candidates.OBJECTIVES``:
    ``budgets``, or accuracy against latency or energy with the budgets as constraints).
    """
    import optuna

    from .. import pipeline
    from .live import TrialsView

    console = console or Console(stderr=True)
    out = Path(out)
    if isinstance(config, dict):
        base, config_dir = copy.deepcopy(config), Path(base_dir).resolve()
    else:
        base = read_yaml(config, what="config file") or {}
        config_dir = Path(config).resolve().parent
    if not isinstance(base, dict):
        raise ConfigError(f"config {config}: expected a mapping of sections, got {type(base).__name__}")
    budgets = Path(budgets).resolve()
    spec = space if isinstance(space, SearchFile) else load_search_file(space)
    dims = dimensions(spec.space) if spec.space else default_space(base)
    spec = spec.model_copy(update={"fixed": {**float_layers_from_budgets(base, budgets, config_dir), **spec.fixed}})
    if not dims:
        raise ConfigError("search: the space is empty; give --space FILE with a `space:` mapping")
    if trials < 1:
        raise ConfigError(f"--trials {trials}: expected at least 1")
    if objectives not in cands.OBJECTIVES:
        raise ConfigError(f"--objectives {objectives!r}: expected one of {', '.join(cands.OBJECTIVES)}")
    check(base, config_dir, dims, spec.fixed, budgets, out)
    pipeline.make_run_dir(out, "--out")
    console.print(f"[dim]search space: {describe(dims)}[/dim]", soft_wrap=True)
    if spec.fixed.get("compile.int8_max_accuracy_drop") is not None:
        console.print(f"[dim]INT8 artifacts more than {spec.fixed['compile.int8_max_accuracy_drop']:g} below the FP32 "
                      "student return their most sensitive layers to float (compile.int8_max_accuracy_drop)[/dim]",
                      soft_wrap=True)

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is shown in the table, not as a traceback
    study = open_study(storage or f"sqlite:///{(out / 'study.db').resolve()}", heartbeat_s, seed, objectives=objectives)
    mine = fingerprint(base, spec.fixed, budgets, dims, objectives)
    several = cands.OBJECTIVES[objectives] is not None
    theirs = study.user_attrs.get("fingerprint")
    if theirs is None:
        study.set_user_attr("fingerprint", mine)
    elif theirs != mine:
        raise ConfigError(f"{storage or out / 'study.db'} holds a search of another config, budgets file, space or objectives: its "
                          "results would not answer this one; give a new --out (or --storage), or delete the study")
    goal = min(trials, space_size(dims))  # distinct choices; a small space is done when every choice has run
    if goal < trials:
        console.print(f"[dim]the space has {goal} combinations of choices: the search ends when each has run[/dim]")
    view = TrialsView(Console(file=console.file, force_terminal=console.is_terminal,
                              width=None if console.is_terminal else 200), study, goal)

    def objective(trial) -> float | tuple[float, float]:
        try:
            return run_trial(trial)
        except optuna.TrialPruned:
            raise
        except Exception as error:  # one trial's failure (a converter's bug included) is that trial's result
            if "error" not in trial.user_attrs:
                trial.set_user_attr("error", str(error) if isinstance(error, EdgekdError) else f"{type(error).__name__}: {error}")
            raise

    def run_trial(trial) -> float | tuple[float, float]:
        settings: dict[str, Any] = {}
        for part in dims:
            settings.update(part.settings(trial))
        settings = _plain(settings)
        trial.set_user_attr("settings", settings)
        reused = _reuse(study, trial, settings, out / "claims")
        if reused is not None:
            return reused
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        with _quiet_optuna():
            retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
        folder = out / f"trial-{trial.number if retried is None else retried}"
        view.started(trial.number, trial.params)
        started = time.perf_counter()
        try:
            cfg = parse_config(trial_config(base, spec.fixed, settings, budgets), origin=f"search trial {trial.number}",
                               base_dir=config_dir)
            folder.mkdir(parents=True, exist_ok=True)
            # The stages' own progress lines go to the trial's folder; the screen shows the table of trials.
            with open(folder / "search-output.log", "a", encoding="utf-8") as log, \
                    contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                result = pipeline.run(cfg, folder, stage_store=out / "stages", resume=retried is not None,
                                      console=Console(file=log))
        finally:
            trial.set_user_attr("seconds", time.perf_counter() - started)
            trial.set_user_attr("folder", folder.name)
        found = cands.candidates(result.report or {}, trial.number)
        trial.set_user_attr("candidates", found)
        if several:  # feasible (0 or below) when every runtime's best candidate meets the budgets
            trial.set_constraint("budgets", cands.trial_constraint(found))
        return cands.trial_values(found, objectives)

    def enough(study, _trial) -> None:
        if finished(study) >= goal:
            study.stop()

    if finished(study) < goal:  # a finished search run again runs nothing
        previous_tqdm = os.environ.get("TQDM_DISABLE")
        os.environ["TQDM_DISABLE"] = "1"  # the trials' progress bars would tear the live table
        try:
            with view:
                # n_trials bounds the proposals: late in a small space most repeat a finished choice (cheap)
                study.optimize(objective, n_trials=MAX_PROPOSALS_PER_TRIAL * goal, catch=(Exception,),
                               callbacks=[enough, lambda s, t: view.finished(t)])
        finally:
            if previous_tqdm is None:
                os.environ.pop("TQDM_DISABLE", None)
            else:
                os.environ["TQDM_DISABLE"] = previous_tqdm
        done = finished(study)
        if done < goal:
            running = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))
            console.print(f"[yellow]search: stopped after {MAX_PROPOSALS_PER_TRIAL * goal} proposals with {done} of "
                          f"{goal} choices done ({running} running in other processes); this result leaves them "
                          "out: run the search again when they end[/yellow]", soft_wrap=True)
    result = summarise(study, out)
    _write(result, base, spec.fixed, budgets, config_dir)
    return result


def _reuse(study, trial, settings: dict[str, Any], claims: Path) -> float | tuple[float, ...] | None:
    """A finished trial's result for the same choices (its candidates, or its error, copied); None when this
    trial must run. Choices another process is running are not run twice: their claim file (created atomically
    in ``claims/``) names that trial, and this one is pruned (it does not count) so the sampler proposes again.

    The claim comes first, the look for a finished twin second: the other order has a gap in which the twin is
    still running at the look and finished (no longer a holder) at the claim, and the choices would run twice."""
    import optuna

    holder = _claim(claims, settings, trial.number, study)
    if holder is not None:
        trial.set_user_attr("running_elsewhere", holder)
        time.sleep(WAIT_POLL_S)  # the sampler's next proposal comes after that trial has moved on
        raise optuna.TrialPruned(f"trial {holder} runs the same choices")
    State = optuna.trial.TrialState
    same = [t for t in study.get_trials(deepcopy=False, states=(State.COMPLETE, State.FAIL))
            if t.number != trial.number and t.user_attrs.get("settings") == settings
            and (t.state == State.COMPLETE or "error" in t.user_attrs)]
    if not same:
        return None
    first = min(same, key=lambda t: t.number)
    trial.set_user_attr("duplicate_of", first.user_attrs.get("duplicate_of", first.number))
    trial.set_user_attr("folder", first.user_attrs.get("folder"))
    if first.state == State.FAIL:
        trial.set_user_attr("error", first.user_attrs["error"])
        raise EdgekdError(first.user_attrs["error"])
    trial.set_user_attr("candidates", first.user_attrs["candidates"])
    if len(first.values) == 1:
        return float(first.value)
    for key, value in first.constraints.items():
        trial.set_constraint(key, value)
    return tuple(first.values)


def _claim(claims: Path, settings: dict[str, Any], number: int, study) -> int | None:
    """Claim ``settings`` for trial ``number``; the number of a running trial holding them instead, if any.

    The claim file appears with its content at once (written aside, then hard-linked into place), so two
    processes on one machine never both hold it. Across machines (a shared --storage) the study's running trials
    with the same choices count as holders too. A claim left by a trial that is no longer running (killed, then
    failed by its heartbeat) is taken over."""
    import optuna

    State = optuna.trial.TrialState
    running = [t.number for t in study.get_trials(deepcopy=False, states=(State.RUNNING,))
               if t.number < number and t.user_attrs.get("settings") == settings]
    if running:
        return running[0]
    claims.mkdir(parents=True, exist_ok=True)
    path = claims / sha256_json(settings)
    aside = claims / f".{path.name}.{os.getpid()}.{number}"
    aside.write_text(str(number))
    try:
        os.link(aside, path)
        return None
    except FileExistsError:
        holder = int(path.read_text())
        states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
        if holder != number and states.get(holder) == State.RUNNING:
            return holder
        os.replace(aside, path)  # the holder ended without a result: this trial takes the choices over
        return None
    finally:
        aside.unlink(missing_ok=True)


def finished(study) -> int:
    """Distinct choices the study has finished: complete, or failed with an error of their own (a trial failed
    because its process was killed is retried, so it does not count; repeats count once)."""
    import optuna

    State = optuna.trial.TrialState
    done = {json.dumps(t.user_attrs.get("settings"), sort_keys=True)
            for t in study.get_trials(deepcopy=False, states=(State.COMPLETE, State.FAIL))
            if t.state == State.COMPLETE or "error" in t.user_attrs}
    return len(done)


def summarise(study, out: Path) -> SearchResult:
    import optuna

    rows, found = [], []
    for t in study.trials:
        attrs = t.user_attrs
        values = t.values or [None]
        rows.append({"number": t.number, "state": t.state.name, "settings": attrs.get("settings"),
                     "value": values[0] if len(values) == 1 else list(values),
                     "seconds": attrs.get("seconds"), "folder": attrs.get("folder"), "error": attrs.get("error"),
                     "duplicate_of": attrs.get("duplicate_of")})
        if t.state == optuna.trial.TrialState.COMPLETE and attrs.get("duplicate_of") is None:
            found += attrs.get("candidates") or []
    runtimes = {k: cands.best(v) for k, v in cands.groups(found, "target", "backend").items()}
    by_target = cands.groups(found, "target")
    chosen = {k: cands.best(v) for k, v in by_target.items()}
    fronts = {k: cands.front(v) for k, v in by_target.items()}
    return SearchResult(out=out, trials=rows, candidates=found, runtimes=runtimes, chosen=chosen, fronts=fronts)


def _write(result: SearchResult, base: dict[str, Any], fixed: dict[str, Any], budgets: Path, config_dir: Path) -> None:
    """search.json; per target the chosen trial's config (``best-TARGET.yaml``, and ``best.yaml`` for the
    first target's choice); search.html with every candidate and the fronts."""
    import yaml

    from .html import write_search_html

    settings = {row["number"]: row["settings"] for row in result.trials}
    for i, (target, chosen) in enumerate(result.chosen.items()):
        cfg = relocate(trial_config(base, fixed, settings[chosen["trial"]], budgets), config_dir, result.out)
        header = (f"# edgekd search: trial {chosen['trial']}, chosen for {target} ({chosen['backend']} "
                  f"{chosen['precision']}: {'meets every budget' if chosen['passed'] else 'the closest; no candidate met the budgets'}).\n"
                  f"# Choices: {json.dumps(settings[chosen['trial']])}\n# Run it: edgekd run {result.out / f'best-{target}.yaml'}\n")
        text = header + yaml.safe_dump(cfg, sort_keys=False)
        path = result.out / f"best-{target}.yaml"
        write_text(path, text)
        result.configs[target] = path
        if i == 0:
            write_text(result.out / "best.yaml", text)
    write_json(result.out / "search.json", {
        "passed": result.passed, "verdict": result.verdict(), "trials": result.trials,
        "chosen": result.chosen, "runtimes": result.runtimes, "fronts": result.fronts, "candidates": result.candidates,
        "configs": {k: str(v) for k, v in result.configs.items()},
    })
    write_search_html(result, result.out / "search.html")
