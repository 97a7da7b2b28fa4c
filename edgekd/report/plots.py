"""Charts for the HTML report, as inline SVG strings drawn with matplotlib (Agg canvas, no pyplot).

Every function builds its own :class:`matplotlib.figure.Figure` (never registered with pyplot, so
nothing accumulates in pyplot's figure list and the figure is freed once the SVG string exists) and
returns an ``<svg ...>`` element ready to paste into HTML: the XML prolog, DOCTYPE and RDF
metadata are stripped, text stays text (``svg.fonttype = none``: small, selectable), element ids are
salted per chart so several charts can share a page, and labels are never parsed as mathtext (an
artifact id with ``$`` in it is shown as written).
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import Sequence

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

_RC = {
    "svg.fonttype": "none",
    "text.parse_math": False,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
}

MEASURED_COLOR = "#1f77b4"
ESTIMATED_COLOR = "#ff7f0e"
PARETO_COLOR = "#d62728"


# --------------------------------------------------------------------------------------------- #
# Pareto front
# --------------------------------------------------------------------------------------------- #


def _finite(v: float | None) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def fmt_sig(v: float | None, digits: int = 3) -> str:
    """``digits`` significant figures, never in scientific notation (0.0241, 12.3, 1234); ``—`` for None."""
    if not _finite(v):
        return "—"
    if v == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    return f"{v:.{decimals}f}"


def pareto_front(points: Sequence[tuple[str, float | None, float | None]]) -> list[str]:
    """Keys of the points no other point beats on both axes: higher accuracy and lower cost.

    ``points`` are ``(key, accuracy, cost)``; cost is latency, energy, ... (lower is better).
    A point is dominated when another has accuracy >= and cost <= with at least one strict.
    Exact duplicates of a front point are on the front too. Points with a missing or non-finite
    value are ignored. Returns keys ordered by cost, ascending (accuracy then rises along the list).
    """
    pts = [(k, float(a), float(c)) for k, a, c in points if _finite(a) and _finite(c)]
    pts.sort(key=lambda p: (p[2], -p[1]))
    front: list[str] = []
    best_acc = -math.inf
    last: tuple[float, float] | None = None  # (accuracy, cost) of the last point put on the front
    for key, acc, cost in pts:
        if acc > best_acc:
            front.append(key)
            best_acc = acc
            last = (acc, cost)
        elif last is not None and (acc, cost) == last:
            front.append(key)
    return front


# --------------------------------------------------------------------------------------------- #
# SVG plumbing
# --------------------------------------------------------------------------------------------- #


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _svg(fig: Figure, salt: str) -> str:
    """The figure as an inline ``<svg>`` element; ``salt`` makes its internal ids unique on the page."""
    buf = io.StringIO()
    with matplotlib.rc_context({**_RC, "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    start = text.find("<svg")
    text = text[start:]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    return text.strip()


def short_labels(keys: Sequence[str]) -> tuple[list[str], str]:
    """Drop the leading ``target/`` when every key shares it; returns the labels and the prefix dropped."""
    heads = {k.split("/", 1)[0] for k in keys if "/" in k}
    if len(heads) == 1 and all("/" in k for k in keys):
        head = heads.pop()
        return [k.split("/", 1)[1] for k in keys], head
    return list(keys), ""


def _place_labels(fig: Figure, ax, xs, ys, labels) -> None:
    """Annotate each point with its label, trying offsets until the label overlaps nothing placed yet."""
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)  # settles the constrained layout and the autoscaled limits
    pts = ax.transData.transform(list(zip(xs, ys)))
    r = 5.0  # half-size of a marker's keep-out box, in pixels
    taken = [(x - r, y - r, x + r, y + r) for x, y in pts]
    axbox = ax.get_window_extent(renderer)
    candidates = [
        ((6, 3), "left", "bottom"), ((6, -3), "left", "top"), ((-6, 3), "right", "bottom"),
        ((-6, -3), "right", "top"), ((0, 7), "center", "bottom"), ((0, -7), "center", "top"),
        ((16, 12), "left", "bottom"), ((16, -12), "left", "top"), ((-16, 12), "right", "bottom"),
        ((-16, -12), "right", "top"), ((0, 20), "center", "bottom"), ((0, -20), "center", "top"),
        ((28, 22), "left", "bottom"), ((-28, -22), "right", "top"), ((28, -22), "left", "top"),
        ((-28, 22), "right", "bottom"),
    ]

    def overlaps(b, boxes) -> bool:
        return any(b[0] < o[2] and b[2] > o[0] and b[1] < o[3] and b[3] > o[1] for o in boxes)

    for x, y, label in zip(xs, ys, labels):
        chosen = None
        for (dx, dy), ha, va in candidates:
            far = abs(dx) > 10 or abs(dy) > 10
            ann = ax.annotate(
                label, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=7,
                arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6} if far else None,
            )
            bb = ann.get_window_extent(renderer)
            box = (bb.x0 - 1, bb.y0 - 1, bb.x1 + 1, bb.y1 + 1)
            inside = bb.x0 >= axbox.x0 and bb.x1 <= axbox.x1 and bb.y0 >= axbox.y0 and bb.y1 <= axbox.y1
            if inside and not overlaps(box, taken):
                chosen = ann
                taken.append(box)
                break
            ann.remove()
        if chosen is None:  # nothing fits: the first position, overlapping if it must
            ann = ax.annotate(label, (x, y), xytext=(6, 3), textcoords="offset points", fontsize=7)
            bb = ann.get_window_extent(renderer)
            taken.append((bb.x0, bb.y0, bb.x1, bb.y1))


# --------------------------------------------------------------------------------------------- #
# Charts
# --------------------------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Point:
    key: str  # the artifact id
    accuracy: float
    cost: float  # latency (ms) or energy (mJ)
    estimated: bool = False


def tradeoff_svg(
    points: Sequence[Point],
    *,
    xlabel: str,
    title: str,
    salt: str,
    references: Sequence[tuple[str, float]] = (),
    show_source: bool = False,
) -> str:
    """Accuracy (%) vs a cost, one labelled point per artifact, the Pareto front drawn through its points.

    ``references`` are horizontal accuracy lines (teacher, student). With ``show_source`` measured
    points are filled and estimated ones hollow, and the legend says which is which.
    """
    fig = _new_figure(9.5, 5.0)
    styles = ("--", ":", "-.")
    with matplotlib.rc_context(_RC):
        ax = fig.add_subplot()
        front = pareto_front([(p.key, p.accuracy, p.cost) for p in points])
        on_front = set(front)
        for p in points:
            color = ESTIMATED_COLOR if (show_source and p.estimated) else MEASURED_COLOR
            marker, size = ("D", 52) if p.key in on_front else ("o", 38)
            face = "none" if (show_source and p.estimated) else color
            edge = PARETO_COLOR if p.key in on_front else color
            ax.scatter([p.cost], [p.accuracy * 100], s=size, marker=marker, facecolors=face,
                       edgecolors=edge, linewidths=1.6, zorder=3, gid=f"{salt}-point-{p.key}")
        by_key = {p.key: p for p in points}
        if front:
            fx = [by_key[k].cost for k in front]
            fy = [by_key[k].accuracy * 100 for k in front]
            ax.plot(fx, fy, color=PARETO_COLOR, lw=1.2, ls="-", zorder=2, gid=f"{salt}-pareto")

        # The y range follows the points (accuracies of artifacts differ by tenths of a point; a
        # teacher line far above would squash them): a reference outside it is named, not drawn.
        ys = [p.accuracy * 100 for p in points]
        lo, hi = (min(ys), max(ys)) if ys else (0.0, 100.0)
        pad = max(0.3 * (hi - lo), 0.1)
        lo, hi = lo - pad, hi + pad
        ax.set_ylim(lo, hi)
        ax.margins(x=0.12)
        ref_handles = []
        for i, (name, acc) in enumerate(references):
            y = acc * 100
            if lo <= y <= hi:
                ax.axhline(y, color="0.45", lw=0.9, ls=styles[i % 3], zorder=1)
                ref_handles.append(Line2D([], [], color="0.45", lw=0.9, ls=styles[i % 3], label=f"{name} {y:.2f}%"))
            else:
                where = "above" if y > hi else "below"
                ref_handles.append(Line2D([], [], ls="", marker="^" if y > hi else "v", color="0.45",
                                          label=f"{name} {y:.2f}% ({where} the plot)"))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)

        handles = [
            Line2D([], [], color=PARETO_COLOR, marker="D", markerfacecolor="none" if show_source else MEASURED_COLOR,
                   markeredgecolor=PARETO_COLOR, lw=1.2, label="Pareto front"),
        ]
        if show_source:
            handles += [
                Line2D([], [], ls="", marker="o", color=MEASURED_COLOR, label="measured (filled)"),
                Line2D([], [], ls="", marker="o", markerfacecolor="none", markeredgecolor=ESTIMATED_COLOR,
                       markeredgewidth=1.6, label="estimated (hollow)"),
            ]
        else:
            handles.append(Line2D([], [], ls="", marker="o", color=MEASURED_COLOR, label="artifact"))
        handles += ref_handles
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)

        labels, _ = short_labels([p.key for p in points])
        if points:
            _place_labels(fig, ax, [p.cost for p in points], [p.accuracy * 100 for p in points], labels)
        return _svg(fig, salt)


def per_class_svg(
    class_names: Sequence[str],
    rows: Sequence[tuple[str, Sequence[float]]],
    *,
    highlight: int | None,
    salt: str,
) -> str:
    """A heatmap of per-class accuracy (%): one row per model (teacher, student, artifacts), one column per class.

    ``highlight`` (a column index) is outlined and its label drawn in red: the class with the largest
    drop vs the teacher.
    """
    n_rows, n_cols = len(rows), len(class_names)
    fig = _new_figure(max(5.5, 0.62 * n_cols + 3.4), 0.34 * n_rows + 1.5)
    with matplotlib.rc_context(_RC):
        ax = fig.add_subplot()
        values = [[v * 100 for v in r] for _, r in rows]
        flat = [v for r in values for v in r]
        vmin = min(flat) if flat else 0.0
        vmax = max(max(flat) if flat else 100.0, vmin + 1e-6)
        mesh = ax.pcolormesh(values, cmap="viridis", vmin=vmin, vmax=vmax, edgecolors="white", linewidth=0.5)
        cmap, norm = mesh.get_cmap(), mesh.norm
        for i, r in enumerate(values):
            for j, v in enumerate(r):
                red, green, blue, _ = cmap(norm(v))
                dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
                ax.text(j + 0.5, i + 0.5, f"{v:.1f}", ha="center", va="center", fontsize=6.5,
                        color="white" if dark else "black")
        ax.set_xticks([j + 0.5 for j in range(n_cols)], [str(c) for c in class_names])
        ax.set_yticks([i + 0.5 for i in range(n_rows)], [name for name, _ in rows])
        ax.set_xlim(0, n_cols)
        ax.set_ylim(n_rows, 0)  # first row (teacher) on top
        ax.tick_params(length=0)
        ax.set_xlabel("class")
        ax.set_title("Per-class accuracy (%)")
        if highlight is not None and 0 <= highlight < n_cols:
            ax.add_patch(Rectangle((highlight, 0), 1, n_rows, fill=False, edgecolor=PARETO_COLOR, lw=2.2,
                                   zorder=4, clip_on=False, gid=f"{salt}-largest-drop"))
            tick = ax.get_xticklabels()[highlight]
            tick.set_color(PARETO_COLOR)
            tick.set_fontweight("bold")
        fig.colorbar(mesh, ax=ax, label="accuracy (%)", shrink=0.9, pad=0.02)
        return _svg(fig, salt)


def log_ticks(lo: float, hi: float, most: int = 5) -> list[float]:
    """Round tick positions from ``lo`` to ``hi`` (both > 0) for a log axis, at least two where the range
    allows and at most ``most``, spread out: powers of ten when three of them fit, else 1-2-5 steps, else
    every digit, else two-digit steps (a narrow range such as 0.031 to 0.046 ms still gets labels)."""
    if not (_finite(lo) and _finite(hi)) or lo <= 0 or hi <= lo:
        return []
    decades = range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
    ticks: list[float] = []
    for mantissas in ((1,), (1, 2, 5), range(1, 10), [m / 10 for m in range(10, 100)]):
        ticks = sorted(_between(lo, hi, decades, mantissas))
        if len(ticks) >= 3 or (len(ticks) >= 2 and mantissas != (1,)):
            break
    if len(ticks) < 2:  # narrower than two-digit steps: the ends themselves
        return [lo, hi]
    if len(ticks) > most:
        step = (len(ticks) - 1) / (most - 1)
        ticks = [ticks[round(i * step)] for i in range(most)]
    return ticks


def _between(lo: float, hi: float, decades: range, mantissas) -> set[float]:
    return {v for v in (float(f"{m * 10.0 ** k:.6g}") for k in decades for m in mantissas) if lo <= v <= hi}


def tick_labels(ticks: Sequence[float]) -> list[str]:
    """Tick values without trailing zeros or scientific notation (0.04, 1, 200), with as many significant
    figures as it takes to tell neighbours apart."""
    for digits in (2, 3, 4, 6):
        labels = [fmt_sig(v, digits) for v in ticks]
        labels = [t.rstrip("0").rstrip(".") if "." in t else t for t in labels]
        if len(set(labels)) == len(labels):
            break
    return labels


def histogram_svg(
    edges_ms: Sequence[float],
    counts: Sequence[int],
    *,
    p50: float | None,
    p99: float | None,
    title: str,
    salt: str,
) -> str:
    """One latency histogram (a small multiple) with p50 and p99 marked, on a logarithmic latency axis.

    Latency has a long right tail (a preempted run takes 100x the median): on a linear axis a few slow
    runs stretch the axis and squash the rest into one bar. The axis is linear only when an edge is not
    positive (a log axis cannot show it).
    """
    fig = _new_figure(3.3, 2.3)
    log = is_log_axis(edges_ms)
    with matplotlib.rc_context(_RC):
        ax = fig.add_subplot()
        ax.stairs(list(counts), list(edges_ms), fill=True, color=MEASURED_COLOR, alpha=0.55)
        ax.stairs(list(counts), list(edges_ms), color=MEASURED_COLOR, lw=0.8)
        if _finite(p50):
            ax.axvline(p50, color="#2ca02c", lw=1.3, label=f"p50 {fmt_sig(p50)} ms")
        if _finite(p99):
            ax.axvline(p99, color=PARETO_COLOR, lw=1.3, ls="--", label=f"p99 {fmt_sig(p99)} ms")
        ax.set_title(title, fontsize=8)
        ax.set_ylabel("runs", fontsize=7.5)
        ax.tick_params(labelsize=6.5)
        if log:
            ax.set_xscale("log")
            ax.set_xlim(edges_ms[0], edges_ms[-1])
            ticks = log_ticks(edges_ms[0], edges_ms[-1])
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_major_formatter(FixedFormatter(tick_labels(ticks)))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xlabel("latency (ms, log scale)", fontsize=7.5)
        else:
            ax.xaxis.get_major_locator().set_params(nbins=5)
            ax.set_xlabel("latency (ms)", fontsize=7.5)
        if _finite(p50) or _finite(p99):
            ax.legend(fontsize=6.5, frameon=True, framealpha=0.85, edgecolor="none", loc="upper right")
        ax.grid(True, alpha=0.25)
        return _svg(fig, salt)


def is_log_axis(edges_ms: Sequence[float]) -> bool:
    """Whether :func:`histogram_svg` draws these bin edges on a log axis (every edge positive and finite)."""
    return bool(edges_ms) and all(_finite(e) and e > 0 for e in edges_ms)
