"""search.html: every candidate of every trial per target, accuracy against p95 latency, the front joined,
the chosen candidate ringed; then the table of trials. Self-contained like report.html."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

from ..io import write_text
from ..report import plots
from ..report.html import _CSS, _e
from .compress import _ms, _pct

if TYPE_CHECKING:
    from .compress import SearchResult


def _scatter(result: "SearchResult", target: str) -> str:
    found = [c for c in result.candidates if c["target"] == target and c["accuracy"] is not None and c["p95_ms"]]
    if not found:
        return '<p class="empty">No candidate of this target has both an accuracy and a latency.</p>'
    fig = plots._new_figure(9.5, 5.0)
    with matplotlib.rc_context(plots._RC):
        ax = fig.add_subplot()
        for backend in sorted({c["backend"] for c in found}):
            mine = [c for c in found if c["backend"] == backend]
            ax.scatter([c["p95_ms"] for c in mine], [c["accuracy"] * 100 for c in mine], s=22, alpha=0.75,
                       label=backend, marker="o")
        failed = [c for c in found if not c["passed"]]
        ax.scatter([c["p95_ms"] for c in failed], [c["accuracy"] * 100 for c in failed], s=40, marker="x",
                   color="0.35", linewidths=0.8, label="fails a budget")
        front = result.fronts.get(target) or []
        if front:
            ax.plot([c["p95_ms"] for c in front], [c["accuracy"] * 100 for c in front], color=plots.PARETO_COLOR,
                    lw=1.2, marker="D", ms=5, label="Pareto front")
        chosen = result.chosen.get(target)
        if chosen and chosen["p95_ms"] and chosen["accuracy"] is not None:
            ax.scatter([chosen["p95_ms"]], [chosen["accuracy"] * 100], s=160, facecolors="none",
                       edgecolors="black", linewidths=1.6, label="chosen", zorder=4)
        ax.set_xlabel("p95 latency (ms), single stream, batch 1")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{target}: every artifact of every trial")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    return plots._svg(fig, f"search-{target}")


def _choice(c: dict | None) -> str:
    if not c:
        return "-"
    text = (f"trial {c['trial']}, {_e(c['backend'])} {_e(c['precision'])}: accuracy {_pct(c['accuracy'])}, "
            f"p95 {_ms(c['p95_ms'])}")
    if c["passed"]:
        return text + ", meets every budget"
    b = c.get("binding") or {}
    return text + f", <strong>fails</strong> {_e(b.get('budget'))}: {_e(b.get('message'))}"


def _trial_row(t: dict) -> str:
    state = t["state"].lower() + ("" if t["duplicate_of"] is None else f" (same as {t['duplicate_of']})")
    value = t["value"]
    value = "" if value is None else " / ".join(f"{v:.4f}" for v in (value if isinstance(value, list) else [value]))
    seconds = "" if t["seconds"] is None else f"{t['seconds']:.0f} s"
    return (f"<tr><td>{t['number']}</td><td><code>{_e(json.dumps(t['settings']))}</code></td><td>{_e(state)}</td>"
            f"<td>{value}</td><td>{seconds}</td><td>{_e(t['error'] or '')}</td></tr>")


def render(result: "SearchResult") -> str:
    verdict = ("Every target has a candidate that meets every budget." if result.passed
               else "<strong>Not every target has a candidate that meets the budgets.</strong>")
    complete = sum(t["state"] == "COMPLETE" for t in result.trials)
    body = [f"<h1>edgekd search: {_e(result.out)}</h1>",
            f"<p>{verdict} {complete} trials complete, {len(result.candidates)} candidates.</p>",
            "<ul>" + "".join(f"<li>{_e(line)}</li>" for line in result.verdict()) + "</ul>"]
    for target in result.chosen:
        body += [f'<section><h2>{_e(target)}</h2>', _scatter(result, target), "<h3>Best per runtime</h3><ul>"]
        body += [f"<li><code>{_e(key)}</code>: {_choice(c)}</li>" for key, c in result.runtimes.items()
                 if key.split("/", 1)[0] == target]
        body.append("</ul></section>")
    rows = "".join(_trial_row(t) for t in result.trials)
    body.append("<section><h2>Trials</h2><table><thead><tr><th>trial</th><th>choices</th><th>state</th>"
                f"<th>value</th><th>time</th><th>error</th></tr></thead><tbody>{rows}</tbody></table></section>")
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>edgekd search: {_e(result.out)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def write_search_html(result: "SearchResult", path: Path) -> None:
    write_text(path, render(result))
