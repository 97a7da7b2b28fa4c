"""The report as a terminal table, printed at the end of a run."""

from __future__ import annotations

from typing import Any

from ..gate.check import verdict


def report_table(report: dict[str, Any]):
    from rich.table import Table

    table = Table(title=f"profile: {report['run']} (teacher {report['teacher']['accuracy']:.2%}, FP32 student {report['student']['accuracy']:.2%})")
    right = ("accuracy", "p50 ms", "p95 ms", "p99 ms", "p50 spread (CoV)", "mJ/inf", "acc/W", "peak MB")
    for column in ("artifact", "status", *right, "energy", "gate"):
        table.add_column(column, justify="right" if column in right else "left")
    for a in report["artifacts"]:
        lat, energy = a.get("latency_ms") or {}, a.get("energy") or {}
        gate = a.get("gate")
        word = verdict(gate)  # the same word report.html shows
        failed = ", ".join(c["budget"] for c in gate or [] if not c["passed"])
        gate_text = {"none": "-", "skipped": "[yellow]skipped[/]", "pass": "[green]pass[/]", "fail": f"[red]FAIL[/] {failed}"}[word]
        status = {"ok": "[green]ok[/]", "failed": "[red]failed[/]"}.get(a["status"], f"[yellow]{a['status']}[/]")
        num = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        unstable = " [red]unstable[/]" if lat.get("stable") is False else ""
        table.add_row(
            a["id"], status, num(a.get("accuracy"), ".2%"), num(lat.get("p50"), ".4f"), num(lat.get("p95"), ".4f"),
            num(lat.get("p99"), ".4f"), f'{num(lat.get("p50_spread"), ".3f")} ({num(lat.get("cov"), ".2f")})' + unstable, num(energy.get("mj_per_inference"), ".4f"),
            num(a.get("accuracy_per_watt"), ".3f"), num(a.get("peak_memory_mb"), ".0f"),
            energy.get("status") or "-", gate_text,
        )
    return table
