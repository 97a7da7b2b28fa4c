"""The search's live table of trials (rich), with an estimate of the time left.

On a terminal the table redraws in place; in a log (CI) each finished trial prints one line instead.
"""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from . import candidates as cands


def _choices(params: dict[str, Any] | None) -> str:
    """The trial's choice per dimension (``student.kwargs.width=0.5, prune=off``)."""
    return ", ".join(f"{k}={v}" for k, v in (params or {}).items())


def summary(attrs: dict[str, Any]) -> tuple[str, str, str]:
    """Runtimes passing, and the best candidate's accuracy and p95, of one trial's candidates."""
    found = attrs.get("candidates") or []
    runtimes = cands.groups(found, "target", "backend")
    passing = sum(any(c["passed"] for c in group) for group in runtimes.values())
    top = cands.best(found)
    if top is None:
        return "-", "-", "-"
    accuracy = "-" if top["accuracy"] is None else f"{top['accuracy']:.2%}"
    p95 = "-" if top["p95_ms"] is None else f"{top['p95_ms']:.4g}"
    return f"{passing}/{len(runtimes)}", accuracy, p95


class TrialsView:
    def __init__(self, console: Console, study, trials: int) -> None:
        self.console, self.study, self.trials = console, study, trials
        self.current: tuple[int, dict[str, Any], float] | None = None
        self.durations: list[float] = []  # of trials run by this process (not reused ones)
        self.rows = []
        self.live: Live | None = None

    def __enter__(self) -> "TrialsView":
        self.rows = list(self.study.trials)
        if self.console.is_terminal:
            self.live = Live(console=self.console, get_renderable=self.render, refresh_per_second=1,
                             vertical_overflow="visible", redirect_stdout=False, redirect_stderr=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def started(self, number: int, params: dict[str, Any]) -> None:
        self.current = (number, params, time.monotonic())
        if self.live is None:
            self.console.print(f"trial {number}: {_choices(params)}")

    def finished(self, trial) -> None:
        attrs = trial.user_attrs
        if self.current is not None and self.current[0] == trial.number and attrs.get("duplicate_of") is None:
            self.durations.append(time.monotonic() - self.current[2])
        self.current = None
        self.rows = list(self.study.trials)
        if self.live is None:
            passing, accuracy, p95 = summary(attrs)
            note = (f"same as trial {attrs['duplicate_of']}" if attrs.get("duplicate_of") is not None
                    else f"(trial {attrs['running_elsewhere']} runs the same choices)" if attrs.get("running_elsewhere") is not None
                    else attrs.get("error") or "")
            self.console.print(f"trial {trial.number} {trial.state.name.lower()}: runtimes passing {passing}, best "
                               f"accuracy {accuracy}, p95 {p95} ms {note}".rstrip() + f"; {self.left()}")

    def left(self) -> str:
        # distinct choices finished, as the search counts them (a repeat reuses a result and does not count)
        complete = len({json.dumps(t.user_attrs.get("settings"), sort_keys=True) for t in self.rows
                        if t.state.name == "COMPLETE" or (t.state.name == "FAIL" and "error" in t.user_attrs)})
        text = f"{complete} of {self.trials} choices done"
        if self.durations and complete < self.trials:
            mean = sum(self.durations) / len(self.durations)
            text += f", about {(self.trials - complete) * mean / 60:.0f} min left ({mean:.0f} s per trial run)"
        return text

    def render(self) -> Group:
        table = Table(title="edgekd search", caption=self.left())
        for column in ("trial", "choices", "state", "runtimes passing", "best accuracy", "p95 ms", "time"):
            table.add_column(column, justify="right" if column in ("trial", "time") else "left")
        for t in self.rows:
            attrs = t.user_attrs
            passing, accuracy, p95 = summary(attrs)
            state = t.state.name.lower()
            if attrs.get("duplicate_of") is not None:
                state = f"same as {attrs['duplicate_of']}"
            elif attrs.get("running_elsewhere") is not None:
                state = f"skipped: {attrs['running_elsewhere']} runs it"
            elif attrs.get("error"):
                state = "error"
            seconds = attrs.get("seconds")
            if self.current is not None and t.number == self.current[0]:
                state, seconds = "running", time.monotonic() - self.current[2]
            table.add_row(str(t.number), _choices(t.params), state, passing, accuracy, p95,
                          "" if seconds is None else f"{seconds:.0f}s")
        if self.current is not None and all(t.number != self.current[0] for t in self.rows):
            table.add_row(str(self.current[0]), _choices(self.current[1]), "running", "", "", "",
                          f"{time.monotonic() - self.current[2]:.0f}s")
        return Group(table, Text(""))


def runtimes_table(result) -> Table:
    """Per target and runtime: the best candidate the search found, and whether it meets the budgets."""
    table = Table(title=f"edgekd search: {result.out} (best per runtime)")
    for column in ("target", "backend", "precision", "trial", "accuracy", "p95 ms", "size", "budgets"):
        table.add_column(column)
    for key, c in result.runtimes.items():
        target, backend = key.split("/", 1)
        verdict = "pass" if c["passed"] else f"fail: {(c['binding'] or {}).get('message', '')}"
        size = "-" if c["size_bytes"] is None else f"{c['size_bytes'] / 1024:.0f} KiB"
        table.add_row(target, backend, c["precision"], str(c["trial"]),
                      "-" if c["accuracy"] is None else f"{c['accuracy']:.2%}",
                      "-" if c["p95_ms"] is None else f"{c['p95_ms']:.4g}", size, verdict)
    return table
