"""A self-contained HTML page for a ``report.json``: one file, no scripts, no network.

The page holds inline CSS and inline SVG charts (matplotlib, see :mod:`edgekd.report.plots`), so it
opens offline in any browser and can be attached to a CI run as is. Content, top to bottom: the
header with the gate verdict; the artifact table (teacher and FP32 student as reference rows);
accuracy vs p50 latency and accuracy vs energy per inference, each with its Pareto front drawn and
listed; per-class accuracy; latency histograms; the artifacts that were not run here and why.

Estimated energy (a power model's guess) is never shown like a measurement: its number carries a
``≈``, its cell says ``estimated (model ...)`` and its chart point is hollow.

Stable hooks for scripts and tests: ``#summary``, ``#verdict``, ``table#artifacts`` with
``tr[data-artifact=ID]`` (and ``tr[data-reference=teacher|student]``), cells classed ``status``,
``size``, ``accuracy``, ``latency p50|p95|p99``, ``energy measured|estimated``, ``apw``, ``memory``,
``gate pass|fail|skipped|none``; figures ``#fig-accuracy-latency``, ``#fig-accuracy-energy``,
``#fig-per-class``, ``#fig-latency-histograms`` (one ``figure.hist[data-artifact]`` each); the
Pareto lists ``ol#pareto-latency`` and ``ol#pareto-energy``; ``#largest-drop``; ``section#not-run``.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..gate.check import verdict
from ..io import write_text
from ..ondevice.latency import PYTHON_CLOCK
from ..records import LatencyStats
from . import plots
from .schema import ArtifactReport, Report

__all__ = ["render_html", "write_html", "largest_drop"]


# --------------------------------------------------------------------------------------------- #
# formatting
# --------------------------------------------------------------------------------------------- #


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


_sig = plots.fmt_sig


def _message(text: str) -> str:
    """A gate message as HTML: escaped, with its `backticked` keys and values set as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.2f}%"


def _bytes(n: int | None) -> str:
    if n is None:
        return "—"
    if n < 1024:
        return f"{n} B"
    value, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"


def _count(n: int | None) -> str:
    if n is None:
        return "—"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return str(n)


# --------------------------------------------------------------------------------------------- #
# derived numbers
# --------------------------------------------------------------------------------------------- #


def largest_drop(rep: Report) -> tuple[int, str, float] | None:
    """The class whose accuracy fell most vs the teacher in any model (student or artifact).

    Returns ``(class index, model, drop)`` with drop = teacher - model accuracy (a fraction), or
    None when no model is below the teacher on any class. Ties go to the lower class index, then to
    the first model in report order (student first).
    """
    teacher = rep.teacher.per_class_accuracy
    best: tuple[int, str, float] | None = None
    for name, values in _per_class_rows(rep)[1:]:
        for c, (t, v) in enumerate(zip(teacher, values)):
            drop = t - v
            if drop > 0 and (best is None or drop > best[2] or (drop == best[2] and c < best[0])):
                best = (c, name, drop)
    return best


def _per_class_rows(rep: Report) -> list[tuple[str, list[float]]]:
    n = len(rep.class_names)
    rows = [("teacher", rep.teacher.per_class_accuracy), ("student (FP32)", rep.student.per_class_accuracy)]
    rows += [(a.id, a.per_class_accuracy) for a in rep.artifacts if a.per_class_accuracy]
    return [(name, list(values)) for name, values in rows if values and len(values) == n]


# --------------------------------------------------------------------------------------------- #
# page parts
# --------------------------------------------------------------------------------------------- #

_CSS = """
:root { --fg:#1d2126; --muted:#5f6b76; --line:#d9dee3; --bg:#ffffff; --alt:#f6f8fa;
        --ok:#17803d; --bad:#c4231c; --est:#9a5b00; --ref:#eef3f8; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1400px; padding: 1.2rem 1.6rem 3rem; color: var(--fg); background: var(--bg);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", "Liberation Sans", Arial, sans-serif; }
h1 { font-size: 1.6rem; margin: 0 0 .4rem; } h2 { font-size: 1.25rem; margin: 2rem 0 .6rem;
     border-bottom: 1px solid var(--line); padding-bottom: .2rem; } h3 { font-size: 1rem; margin: .8rem 0 .3rem; }
code { font: 12.5px/1.3 "DejaVu Sans Mono", "Liberation Mono", monospace; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: .4rem 0 .8rem; }
dl.meta dt { color: var(--muted); } dl.meta dd { margin: 0; }
.verdict { display: inline-block; font-weight: 700; font-size: 1.1rem; padding: .35rem .8rem; border-radius: 6px; }
.verdict.pass { background: #e3f5e9; color: var(--ok); border: 1px solid var(--ok); }
.verdict.fail { background: #fde8e7; color: var(--bad); border: 1px solid var(--bad); }
.verdict.none { background: var(--alt); color: var(--muted); border: 1px solid var(--line); }
ul#failed-checks { margin: .4rem 0 0; }
nav { margin: 1rem 0; font-size: .92rem; } nav a { margin-right: 1rem; color: #0b5cad; }
.note { color: var(--muted); font-size: .9rem; margin: .2rem 0 .6rem; }
/* The table fits 1280 px windows whole: short headers that may wrap, long text wrapping inside its cell
   (ids after each "/", reasons and gate messages anywhere), secondary detail in small type or a tooltip.
   The scroller stays only for narrower windows. */
.table-wrap { overflow-x: auto; }
table#artifacts { border-collapse: collapse; width: 100%; font-size: 13px; }
#artifacts caption { text-align: left; color: var(--muted); padding-bottom: .3rem; }
#artifacts th, #artifacts td { border-bottom: 1px solid var(--line); padding: .35rem .4rem; vertical-align: top; text-align: left; }
#artifacts thead th { background: var(--alt); position: sticky; top: 0; vertical-align: bottom; line-height: 1.25; }
#artifacts th[title] { text-decoration: underline dotted var(--muted); text-underline-offset: 2px; cursor: help; }
#artifacts td.num, #artifacts th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
#artifacts tr.reference > * { background: var(--ref); }
#artifacts tbody.artifacts tr:nth-child(even) > * { background: #f9fafb; }
#artifacts tr[data-status="not run here"] td, #artifacts tr[data-status="failed"] td { color: var(--muted); }
.status .badge { display: inline-block; white-space: nowrap; padding: 0 .4rem; border-radius: 4px; font-size: 12px; font-weight: 600; }
.status.ok .badge { background: #e3f5e9; color: var(--ok); }
.status.failed .badge { background: #fde8e7; color: var(--bad); }
.status.not-run .badge { background: #eceff3; color: var(--muted); }
#artifacts th code { font-size: 12px; }
#artifacts td.status { min-width: 6.5rem; width: 9rem; }  /* a preferred width: long reasons wrap */
.reason { display: block; font-size: 11.5px; line-height: 1.3; color: var(--muted); white-space: normal; overflow-wrap: anywhere; }
.delta { display: block; font-size: 11px; color: var(--muted); }
.parity { display: block; font-size: 11px; color: var(--muted); }
td.apw .per-joule { display: block; font-size: 11px; color: var(--muted); }
.unstable { display: block; font-size: 11px; color: var(--est); }
.clock { display: block; font-size: 11px; color: var(--muted); }
td.energy .source { display: block; font-size: 11px; line-height: 1.3; white-space: normal; overflow-wrap: anywhere;
  min-width: 7rem; max-width: 9rem; margin-left: auto; }
td.energy.measured .source { color: var(--ok); }
td.energy.estimated .value, td.apw.estimated .value { font-style: italic; color: var(--est);
  text-decoration: underline dotted; }
td.energy.estimated .source { color: var(--est); font-style: italic; }
td.gate { font-weight: 700; }
td.gate.pass { color: var(--ok); } td.gate.fail { color: var(--bad); } td.gate.none { color: var(--muted); font-weight: 400; }
td.gate.skipped { color: var(--muted); }
td.gate { min-width: 8rem; width: 13rem; }
td.gate ul { margin: .2rem 0 0; padding-left: 1rem; font-weight: 400; font-size: 12px; line-height: 1.3; overflow-wrap: anywhere; }
td.gate .reason { font-weight: 400; } td.gate li code { font-size: 11px; }
td.gate .budget { font-weight: 600; }
figure { margin: 1.2rem 0; } figcaption { color: var(--muted); font-size: .9rem; margin-top: .3rem; max-width: 60rem; }
figure svg { max-width: 100%; height: auto; display: block; }
.hist-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: .8rem; }
figure.hist { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: .3rem; }
figure.hist figcaption { font-size: .8rem; }
ol.pareto li { margin: .1rem 0; }
.empty { color: var(--muted); font-style: italic; }
footer { margin-top: 3rem; color: var(--muted); font-size: .85rem; }
"""


def _header(rep: Report, title: str) -> str:
    out = [f'<header id="summary"><h1>{_e(title)}</h1><dl class="meta">']
    meta = [("Run", rep.run), ("edgekd", rep.edgekd_version), ("Created", rep.created),
            ("Report schema", rep.schema_version)]
    for spec in rep.inputs:
        shape = " x ".join(str(d) for d in spec.shape)
        meta.append(("Input", f"{spec.name} {spec.dtype} [{shape}]"))
    if rep.sequence_length:
        meta.append(("Timed at", f"batch 1, {rep.sequence_length} tokens (padding included)"))
    hosts = []
    for a in rep.artifacts:
        if a.host is not None:
            h = a.host
            bits = [h.runner] + [b for b in (h.cpu, f"{h.cores} cores" if h.cores else "", h.machine) if b]
            desc = ", ".join(bits)
            if desc not in hosts:
                hosts.append(desc)
    if hosts:
        meta.append(("Profiled on", "; ".join(hosts)))
    if rep.gate is not None:
        meta.append(("Budgets", rep.gate.budgets_file))
    out += [f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in meta]
    out.append("</dl>")
    gate = rep.gate
    if gate is None:
        out.append('<p id="verdict" class="verdict none">Gate: no budgets applied</p>')
    elif gate.passed:
        out.append(f'<p id="verdict" class="verdict pass">Gate: PASSED (all {gate.checks} checks)</p>')
    else:
        out.append(f'<p id="verdict" class="verdict fail">Gate: FAILED ({gate.failures} of {gate.checks} '
                   f'check{"s" if gate.checks != 1 else ""} failed)</p>')
        failed = [c for a in rep.artifacts for c in (a.gate or []) if not c.passed]
        if failed:
            out.append('<ul id="failed-checks">')
            out += [f"<li><code>{_e(c.artifact)}</code>: <strong>{_e(c.budget)}</strong>: {_message(c.message)}</li>"
                    for c in failed]
            out.append("</ul>")
    out.append("</header>")
    return "\n".join(out)


def _status_cell(a: ArtifactReport) -> str:
    cls = {"ok": "ok", "failed": "failed", "not run here": "not-run"}[a.status]
    reason = f'<div class="reason">{_e(a.reason)}</div>' if a.reason else ""
    return f'<td class="status {cls}"><span class="badge">{_e(a.status)}</span>{reason}</td>'


def _energy_cells(a: ArtifactReport) -> str:
    en = a.energy
    if en is None:
        energy = '<td class="num energy missing">—</td>'
    elif not en.has_figures:  # refused or unavailable: say why where the number would be
        energy = (f'<td class="num energy missing {_e(en.status)}" title="{_e(en.reason)}">'
                  f'<span class="value">—</span><span class="source">{_e(en.status)}: {_e(en.reason)}</span></td>')
    elif en.source == "estimated":
        energy = (f'<td class="num energy estimated" title="estimated from a power model, not measured">'
                  f'<span class="value">≈{_sig(en.mj_per_inference)}</span>'
                  f'<span class="source">estimated (model {_e(en.meter)})</span></td>')
    else:
        net = ""
        if en.net_mj_per_inference is not None:
            idle = f" over idle {_sig(en.idle_power_w)}\u00a0W" if en.idle_power_w is not None else " over idle"
            net = f'<span class="source">net {_sig(en.net_mj_per_inference)}{_e(idle)}</span>'
        energy = (f'<td class="num energy measured"><span class="value">{_sig(en.mj_per_inference)}</span>'
                  f'<span class="source">measured ({_e(en.meter)}, {_e(en.boundary)})</span>{net}</td>')
    # at full load every artifact's average power is about the same, so accuracy per joule goes beside it
    per_joule = ("" if a.accuracy_per_joule is None else
                 f'<span class="per-joule" title="accuracy x inferences per joule">{_sig(a.accuracy_per_joule)}/J</span>')
    if a.accuracy_per_watt is None:
        apw = '<td class="num apw missing">—</td>'
    elif en is not None and en.source == "estimated":
        apw = (f'<td class="num apw estimated" title="from estimated power, at full load">'
               f'<span class="value">≈{_sig(a.accuracy_per_watt)}</span>{per_joule}</td>')
    else:
        apw = f'<td class="num apw" title="at full load"><span class="value">{_sig(a.accuracy_per_watt)}</span>{per_joule}</td>'
    return energy + apw


def _gate_cell(a: ArtifactReport) -> str:
    word = verdict(None if a.gate is None else [c.model_dump() for c in a.gate])  # the terminal's word too
    if word == "none":
        why = "no budgets applied" if a.gate is None else "no budget applies to this artifact"
        return f'<td class="gate none" title="{why}">—</td>'
    if word == "skipped":
        # The reason from the checks, less the artifact's own reason, which the status cell already shows.
        reasons = []
        for c in a.gate:
            text = c.message.removeprefix("skipped: ")
            if a.reason:
                text = text.replace(f" ({a.reason})", "")
            if text not in reasons:
                reasons.append(text)
        full = "; ".join(c.message for c in a.gate)
        return (f'<td class="gate skipped" title="{_e(full)}">skipped'
                f'<span class="reason">{_e("; ".join(reasons))}</span></td>')
    if word == "pass":
        return f'<td class="gate pass" title="{len(a.gate)} checks passed">pass</td>'
    items = "".join(f'<li><span class="budget">{_e(c.budget)}</span>: {_message(c.message)}</li>'
                    for c in a.gate if not c.passed)
    return f'<td class="gate fail">fail<ul class="failed-budgets">{items}</ul></td>'


def _parity_line(a: ArtifactReport) -> str:
    """The outputs' SQNR against the reference the compile stage checked them on (tooltip: the whole check)."""
    if a.parity is None:
        return ""
    sqnr = a.parity.sqnr_text()
    return f'<span class="parity" title="{_e(a.parity.describe())}">{sqnr}</span>'


def _artifact_id(ident: str) -> str:
    """The id, breakable after each ``/`` so a long one wraps instead of widening the table."""
    return "/<wbr>".join(_e(part) for part in ident.split("/"))


def _clock_line(lat: LatencyStats) -> str:
    """What timed the runs, under the p50: the runtime's own clock, or the Python call with the harness's share."""
    if lat.clock and lat.clock != PYTHON_CLOCK:
        call = f"; around the Python call: {_sig(lat.python_call_p50)} ms" if lat.python_call_p50 else ""
        return f'<span class="clock" title="{_e(lat.clock + call)}">runtime clock</span>'
    if lat.harness_overhead_ms is not None:
        us = lat.harness_overhead_ms * 1000
        return (f'<span class="clock" title="each run timed around the Python call; of that, the timing loop itself '
                f'records {us:.2g} µs around a call that does nothing">harness {us:.2g} µs</span>')
    return ""


def _native_line(lat: LatencyStats) -> str:
    """The runtime's own tool beside edgekd's p50, with the ratio the fidelity goal (0.95-1.05) is judged on."""
    native = lat.native
    if native is None:
        return ""
    if native.status != "ok" or not native.p50_ratio:
        why = native.reason or ("it printed no median" if native.status == "ok" else native.status)
        word = "no median" if native.status == "ok" else native.status
        return f'<span class="clock" title="{_e(why)}">{_e(native.tool)}: {_e(word)}</span>'
    title = (f"this p50 over {native.tool}'s ({_sig(native.p50)} ms over {native.runs or '?'} runs, same artifact, "
             f"threads and cores): {native.command}")
    return f'<span class="clock native" title="{_e(title)}">{native.p50_ratio:.2f}× {_e(native.tool)}</span>'


def _table(rep: Report) -> str:
    # (header, class, tooltip): short headers keep the numeric columns narrow; the tooltip spells them out.
    heads = [("Artifact", "", ""), ("Status", "", ""), ("Size", "num", ""), ("Accuracy", "num", ""),
             ("p50 ms", "num", "latency, 50th percentile (ms)"), ("p95 ms", "num", "latency, 95th percentile (ms)"),
             ("p99 ms", "num", "latency, 99th percentile (ms)"), ("Energy mJ/inf.", "num", "energy per inference (mJ)"),
             ("Acc. / W", "num", "accuracy per watt of average power at full load (the benchmark loop back to back; "
                                 "a target's or budget's rate_hz judges it at the application's rate); below: accuracy x inferences "
                                 "per joule"),
             ("Peak mem.", "num", "peak resident memory of the process that ran the artifact"), ("Gate", "", "")]
    out = ['<div class="table-wrap"><table id="artifacts">',
           "<caption>Latency: single stream, batch 1, steady state. Accuracy on the held-out test set; "
           "the small line under it is the change vs the FP32 student. "
           "<em>≈ italic</em> numbers are estimates from a power model, not meter readings.</caption>",
           "<thead><tr>" + "".join(f'<th class="{c}"' + (f' title="{_e(t)}"' if t else "") + f">{_e(h)}</th>"
                                   for h, c, t in heads) + "</tr></thead>",
           '<tbody class="reference">']
    for key, label, m in (("teacher", "Teacher", rep.teacher), ("student", "Student (FP32, pruned)", rep.student)):
        out.append(
            f'<tr class="reference" data-reference="{key}"><th scope="row">{_e(label)}</th>'
            f'<td class="status reference">reference (FP32)</td><td class="num size">{_bytes(m.size_bytes)}</td>'
            f'<td class="num accuracy"><span class="value">{_pct(m.accuracy)}</span></td>'
            f'<td class="params-macs" colspan="{len(heads) - 4}">params {_count(m.params)} · '
            f'MACs {_count(m.macs)}</td></tr>')
    out.append('</tbody><tbody class="artifacts">')
    for a in rep.artifacts:
        lat = a.latency_ms
        if a.accuracy is not None:
            delta = (a.accuracy - rep.student.accuracy) * 100
            acc = (f'<span class="value">{_pct(a.accuracy)}</span>'
                   f'<span class="delta">{"+" if delta >= 0 else "−"}{abs(delta):.2f} pp</span>{_parity_line(a)}')
        else:
            acc = "—"
        cells = [f'<th scope="row"><code>{_artifact_id(a.id)}</code></th>', _status_cell(a),
                 f'<td class="num size">{_bytes(a.size_bytes)}</td>', f'<td class="num accuracy">{acc}</td>']
        for q in ("p50", "p95", "p99"):
            v = getattr(lat, q) if lat is not None else None
            flag = '<span class="unstable" title="the spread of the median across blocks of the timed runs stayed above profile.stability_threshold">unstable</span>' \
                if (lat is not None and lat.stable is False and q == "p99") else ""
            if lat is not None and q == "p50":
                flag = _clock_line(lat) + _native_line(lat)
            elif lat is not None and (lat.tail_spread or {}).get(q) is not None:
                flag = (f'<span class="clock" title="how far the {q} of 5 consecutive blocks of the timed runs moved, over '
                        f'the {q}: context (stability is judged on the median)">moved {lat.tail_spread[q]:.0%}</span>' + flag)
            cells.append(f'<td class="num latency {q}"><span class="value">{_sig(v)}</span>{flag}</td>')
        cells.append(_energy_cells(a))
        mem = "—" if a.peak_memory_mb is None else f"{a.peak_memory_mb:.1f} MB"
        cells.append(f'<td class="num memory">{mem}</td>')
        cells.append(_gate_cell(a))
        out.append(f'<tr data-artifact="{_e(a.id)}" data-status="{_e(a.status)}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _tradeoff_figure(rep: Report, kind: str) -> str:
    references = [("teacher", rep.teacher.accuracy), ("student (FP32)", rep.student.accuracy)]
    points: list[plots.Point] = []
    for a in rep.artifacts:
        if a.accuracy is None:
            continue
        if kind == "latency" and a.latency_ms is not None and a.latency_ms.p50 is not None:
            points.append(plots.Point(a.id, a.accuracy, a.latency_ms.p50))
        elif kind == "energy" and a.energy is not None and a.energy.has_figures:
            points.append(plots.Point(a.id, a.accuracy, a.energy.mj_per_inference, a.energy.source == "estimated"))
    if kind == "latency":
        fig_id, list_id, heading = "fig-accuracy-latency", "pareto-latency", "Accuracy vs latency (p50)"
        xlabel, unit = "p50 latency (ms), single stream, batch 1", "ms p50"
    else:
        fig_id, list_id, heading = "fig-accuracy-energy", "pareto-energy", "Accuracy vs energy per inference"
        xlabel, unit = "energy per inference (mJ)", "mJ"
    out = [f'<figure id="{fig_id}">']
    if not points:
        out.append(f'<p class="empty">No artifact has both an accuracy and {"a latency" if kind == "latency" else "an energy"} '
                   "figure: nothing to plot.</p>")
        out.append(f"<figcaption>{_e(heading)}</figcaption></figure>")
        return "\n".join(out)
    _, prefix = plots.short_labels([p.key for p in points])
    out.append(plots.tradeoff_svg(points, xlabel=xlabel, title=heading, salt=fig_id, references=references,
                                  show_source=(kind == "energy")))
    caption = [f"<strong>{_e(heading)}.</strong> One point per profiled artifact; the Pareto front "
               "(no other artifact is both more accurate and cheaper) is joined by the red line, its points are diamonds. "
               "Grey lines: teacher and FP32 student accuracy (named in the legend when outside the plotted range)."]
    if prefix:
        caption.append(f" Labels omit the target <code>{_e(prefix)}/</code>.")
    if kind == "energy":
        n_est = sum(p.estimated for p in points)
        caption.append(f" Filled points are measured by a meter; hollow points ({n_est} of {len(points)}) are "
                       "<em>estimated</em> from the target's power model and are not comparable with measured ones.")
    out.append(f"<figcaption>{''.join(caption)}</figcaption></figure>")
    by_key = {p.key: p for p in points}
    front = plots.pareto_front([(p.key, p.accuracy, p.cost) for p in points])
    out.append(f'<div class="pareto-list"><h3>Pareto front: {_e(heading.lower())}</h3><ol id="{list_id}" class="pareto">')
    for k in front:
        p = by_key[k]
        est = " (estimated)" if p.estimated else ""
        out.append(f'<li data-artifact="{_e(k)}"><code>{_e(k)}</code>: {_pct(p.accuracy)}, '
                   f"{_sig(p.cost)} {unit}{est}</li>")
    out.append("</ol></div>")
    return "\n".join(out)


def _per_class_figure(rep: Report) -> str:
    rows = _per_class_rows(rep)
    out = ['<figure id="fig-per-class">']
    if len(rows) < 2:
        out.append('<p class="empty">No per-class accuracies to compare.</p>'
                   "<figcaption>Per-class accuracy</figcaption></figure>")
        return "\n".join(out)
    drop = largest_drop(rep)
    out.append(plots.per_class_svg(rep.class_names, rows, highlight=drop[0] if drop else None, salt="fig-per-class"))
    out.append("<figcaption><strong>Per-class accuracy (%).</strong> Rows: teacher, FP32 student and each artifact; "
               "columns: classes. The outlined column is the class with the largest drop vs the teacher in any "
               "model.</figcaption></figure>")
    if drop:
        c, model, d = drop
        out.append(f'<p id="largest-drop" data-class="{_e(rep.class_names[c])}" data-model="{_e(model)}">'
                   f"Largest drop vs the teacher: class <strong>{_e(rep.class_names[c])}</strong>, "
                   f"{_pct(rep.teacher.per_class_accuracy[c])} (teacher) → "
                   f"{_pct(rep.teacher.per_class_accuracy[c] - d)} in <code>{_e(model)}</code> "
                   f"(−{d * 100:.2f} pp).</p>")
    else:
        out.append('<p id="largest-drop">No class is less accurate than in the teacher.</p>')
    return "\n".join(out)


def _histograms_figure(rep: Report) -> str:
    out = ['<figure id="fig-latency-histograms"><div class="hist-grid">']
    missing, linear = [], []
    n = 0
    for i, a in enumerate(rep.artifacts):
        lat = a.latency_ms
        if lat is None:
            continue
        h = lat.histogram
        if h is None or not h.counts or len(h.edges_ms) != len(h.counts) + 1:
            missing.append(a.id)
            continue
        n += 1
        if not plots.is_log_axis(h.edges_ms):
            linear.append(a.id)
        svg = plots.histogram_svg(h.edges_ms, h.counts, p50=lat.p50, p99=lat.p99, title=a.id, salt=f"hist-{i}")
        beyond = ""
        if lat.max is not None and lat.max > h.edges_ms[-1] * (1 + 1e-9):
            beyond = f"; slowest {_sig(lat.max)} ms, beyond the axis"
        out.append(f'<figure class="hist" data-artifact="{_e(a.id)}">{svg}<figcaption><code>{_e(a.id)}</code>: '
                   f"p50 {_sig(lat.p50)} ms, p99 {_sig(lat.p99)} ms, {lat.runs} runs{beyond}</figcaption></figure>")
    out.append("</div>")
    if n == 0:
        out.append('<p class="empty">No latency histograms were recorded.</p>')
    if missing:
        out.append(f'<p class="note">No histogram recorded for: {", ".join(f"<code>{_e(m)}</code>" for m in missing)}.</p>')
    axis = ("<strong>The latency axis is logarithmic</strong>: latency has a long tail, and on a linear axis a few slow "
            "runs (a preempted process, a page fault) stretch it until the rest is one bar.")
    if linear:
        axis += f" Linear for {', '.join(f'<code>{_e(m)}</code>' for m in linear)}: a bin edge at or below 0 ms."
    out.append("<figcaption><strong>Latency histograms</strong>, one per profiled artifact (steady state, batch 1); "
               "solid green line: p50, dashed red line: p99. Each has its own x axis. "
               f"{axis} edgekd's benchmark bins the runs from the fastest to the 99.9th percentile and counts the "
               "slowest 0.1% in the last bin; the slowest run is named under a histogram when it lies beyond "
               "the axis.</figcaption></figure>")
    return "\n".join(out)


def _float_layers_section(rep: Report) -> str:
    """INT8 artifacts whose accuracy was repaired by returning layers to float: which, why and at what cost."""
    rows = [a for a in rep.artifacts if a.float_layers is not None]
    out = ['<section id="float-layers"><h2>INT8 layers back in float</h2>',
           f'<p>compile.int8_max_accuracy_drop {_pct(rows[0].float_layers.max_accuracy_drop)} on the validation '
           "split, against the FP32 student; sensitivity: SQNR of the logits with that layer alone INT8 "
           "(lowest first).</p>"]
    for a in rows:
        fl, cost = a.float_layers, a.float_layers_cost
        out.append(f'<h3 data-artifact="{_e(a.id)}"><code>{_e(a.id)}</code>: {_e(fl.status)}</h3>')
        if fl.status in ("not supported", "failed"):
            out.append(f"<p>{_e(fl.reason)}</p>")
            continue
        summary = (f"validation: FP32 {_pct(fl.reference_accuracy)}, all-INT8 {_pct(fl.int8_accuracy)}, "
                   f"chosen {_pct(fl.accuracy)} with {len(fl.layers)} of {fl.quantized_layers} layers in float")
        if cost is not None and cost.p95_added_ms is not None:
            summary += (f"; test accuracy all-INT8 {_pct(cost.all_int8_accuracy)}, chosen {_pct(a.accuracy)}; "
                        f"p95 {cost.p95_added_ms:+.4f} ms against the all-INT8 artifact profiled beside it")
        out.append(f"<p>{_e(summary)}{(' ' + _e(fl.reason)) if fl.reason else ''}</p>")
        if fl.sensitivity:
            chosen = set(fl.layers)
            out.append("<table><thead><tr><th>layer</th><th>ONNX node</th><th>SQNR alone INT8 (dB)</th>"
                       "<th>accuracy alone INT8</th><th>in float</th><th>runs (this artifact)</th>"
                       "<th>runs (all-INT8)</th></tr></thead><tbody>")
            for s_ in fl.ranked():
                sqnr = "identical" if s_.sqnr_db is None else f"{s_.sqnr_db:.1f}"
                where = fl.weights.get(s_.layer, "yes") if s_.layer in chosen else ""
                runs, before = fl.runtime.get(s_.layer, "?"), fl.all_int8_runtime.get(s_.layer, "?")
                out.append(f"<tr><td>{_e(s_.module or '-')}</td><td><code>{_e(s_.layer)}</code></td><td>{sqnr}</td>"
                           f"<td>{_pct(s_.accuracy)}</td><td>{_e(where)}</td><td>{_e(runs)}</td><td>{_e(before)}</td></tr>")
            out.append("</tbody></table>")
    out.append("</section>")
    return "\n".join(out)


def _not_run_section(rep: Report) -> str:
    out = ['<section id="not-run"><h2>Not run here</h2>']
    not_run = [a for a in rep.artifacts if a.status == "not run here"]
    if not_run:
        out.append("<ul>")
        out += [f'<li data-artifact="{_e(a.id)}"><code>{_e(a.id)}</code>: {_e(a.reason or "no reason given")}</li>'
                for a in not_run]
        out.append("</ul>")
    else:
        out.append('<p class="empty">Every artifact was run on this host.</p>')
    failed = [a for a in rep.artifacts if a.status == "failed"]
    if failed:
        out.append('<h3>Failed</h3><ul id="failed-artifacts">')
        out += [f'<li data-artifact="{_e(a.id)}"><code>{_e(a.id)}</code>: {_e(a.reason or "no reason given")}</li>'
                for a in failed]
        out.append("</ul>")
    out.append("</section>")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------- #
# public API
# --------------------------------------------------------------------------------------------- #


def render_html(report: Mapping[str, Any] | Report, *, title: str | None = None) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no scripts, no external resources).

    ``report`` is a ``report.json`` dict (validated with :class:`Report`; a ``pydantic.ValidationError``
    says what is wrong) or a ``Report``. ``title`` defaults to ``edgekd report: <run>``.
    """
    rep = report if isinstance(report, Report) else Report.model_validate(report)
    title = title if title is not None else f"edgekd report: {rep.run}"
    body = [
        _header(rep, title),
        '<nav><a href="#artifacts-section">Artifacts</a><a href="#accuracy-latency">Accuracy vs latency</a>'
        '<a href="#accuracy-energy">Accuracy vs energy</a><a href="#per-class">Per-class accuracy</a>'
        '<a href="#latency-histograms">Latency histograms</a>'
        + ('<a href="#float-layers">Layers in float</a>' if any(a.float_layers is not None for a in rep.artifacts) else "")
        + '<a href="#not-run">Not run here</a></nav>',
        '<section id="artifacts-section"><h2>Artifacts</h2>', _table(rep), "</section>",
        '<section id="accuracy-latency"><h2>Accuracy vs latency (p50)</h2>', _tradeoff_figure(rep, "latency"),
        "</section>",
        '<section id="accuracy-energy"><h2>Accuracy vs energy per inference</h2>', _tradeoff_figure(rep, "energy"),
        "</section>",
        '<section id="per-class"><h2>Per-class accuracy</h2>', _per_class_figure(rep), "</section>",
        '<section id="latency-histograms"><h2>Latency histograms</h2>', _histograms_figure(rep), "</section>",
        *([_float_layers_section(rep)] if any(a.float_layers is not None for a in rep.artifacts) else []),
        _not_run_section(rep),
        f"<footer>Generated by edgekd {_e(rep.edgekd_version)} from report.json (schema "
        f"{_e(rep.schema_version)}).</footer>",
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write_html(report: Mapping[str, Any] | Report, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Render ``report`` and write it to ``path`` atomically (a temporary file beside it, then ``os.replace``).

    Readers see the old page or the new one, never half of one; nothing is written when rendering fails.
    """
    path = Path(path)
    text = render_html(report, title=title)
    write_text(path, text)
    return path
