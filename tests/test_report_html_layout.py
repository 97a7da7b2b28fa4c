"""report.html at a laptop's width: the artifact table shows whole, skipped rows say so, histograms use a log axis.

Rendered in headless Chromium as tests/test_report_html.py does (skipped only when no ``chromium`` or
``chromium-browser`` binary exists; ``bash .ci/system-deps.sh`` installs it). The page holds no script,
so the measuring script goes into a copy of it; ``--dump-dom`` returns what it wrote.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest

from edgekd.report.html import render_html
from edgekd.report.plots import log_ticks, tick_labels

FIXTURE = Path(__file__).parent / "fixtures" / "report" / "report.json"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium or chromium-browser binary on PATH "
                                    "(bash .ci/system-deps.sh installs it)")
WIDTH = 1280
UNSTABLE = ("unstable: p50 spread across blocks 0.262 above stability threshold 0.05 (p95 0.0531 ms <= 0.065 ms); re-measure on a quieter machine "
            "or set `allow_unstable_latency: true`")

# Writes what the reader would have to scroll for into <body data-measure>: the table's scroll width
# against its box, the page's against the window, and the right edge of every header cell.
MEASURE = """<script>
const wrap = document.querySelector('.table-wrap'), table = document.querySelector('table#artifacts');
document.body.setAttribute('data-measure', JSON.stringify({
  window: innerWidth, wrapScroll: wrap.scrollWidth, wrapClient: wrap.clientWidth,
  pageScroll: document.documentElement.scrollWidth, pageClient: document.documentElement.clientWidth,
  heads: [...table.querySelectorAll('thead th')].map(th => [th.textContent, th.getBoundingClientRect().right]),
  gates: [...table.querySelectorAll('td.gate')].map(td => td.getBoundingClientRect().right)}));
</script>"""


@pytest.fixture(scope="module")
def report() -> dict:
    """The fixture as a real run writes it: artifacts not run here carry one skipped check, and one
    artifact fails on the longest message the gate writes (unstable latency)."""
    rep = json.loads(FIXTURE.read_text())
    for a in rep["artifacts"]:
        if a["status"] == "not run here":
            a["gate"] = [{"target": a["target"], "artifact": a["id"], "budget": "status", "limit": "ok",
                          "measured": a["status"], "passed": True, "skipped": True,
                          "message": f"skipped: not run here ({a['reason']})"}]
    failing = rep["artifacts"][2]
    failing["gate"][1].update(passed=False, message=UNSTABLE)
    rep["gate"]["failures"] += 1
    return rep


def chromium(url: str, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    profile = workdir / f"profile-{len(list(workdir.glob('profile-*')))}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
           *args, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(workdir)})
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {proc.stderr[-3000:]}"
    return proc


@needs_chromium
def test_the_whole_table_shows_at_1280_px_without_scrolling(report, tmp_path):
    page = render_html(report)
    assert "<script" not in page
    (tmp_path / "report.html").write_text(page, encoding="utf-8")
    measured = tmp_path / "measured.html"
    measured.write_text(page.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dump = chromium(measured.as_uri(), tmp_path, f"--window-size={WIDTH},2000", "--dump-dom").stdout
    found = re.search(r'data-measure="([^"]*)"', dump)
    assert found, "the measuring script did not run"
    m = json.loads(unescape(found.group(1)))
    assert m["window"] == WIDTH
    assert m["wrapScroll"] <= m["wrapClient"], f"the table scrolls sideways: {m}"
    assert m["pageScroll"] <= m["pageClient"], f"the page scrolls sideways: {m}"
    assert [h for h, _ in m["heads"]][-1] == "Gate"
    assert all(right <= WIDTH for _, right in m["heads"]), m["heads"]
    assert len(m["gates"]) == len(report["artifacts"]) and max(m["gates"]) <= WIDTH

    # The screenshot a reader sees (kept beside the page for a look): the gate column's red "fail" is in it.
    shot = tmp_path / "report-1280.png"
    chromium((tmp_path / "report.html").as_uri(), tmp_path, f"--screenshot={shot}", f"--window-size={WIDTH},1400")
    from PIL import Image

    with Image.open(shot) as im:
        im = im.convert("RGB")
        assert im.size == (WIDTH, 1400)
        right = im.crop((int(WIDTH * 0.8), 0, WIDTH, 1400))
        colours = {c for _, c in right.getcolors(maxcolors=1 << 20)}
    bad = (0xC4, 0x23, 0x1C)  # td.gate.fail
    assert any(all(abs(c - b) < 16 for c, b in zip(rgb, bad)) for rgb in colours), \
        "no red gate verdict in the right fifth of a 1280 px screenshot"


def _gate_cell(page: str, artifact: str) -> str:
    row = re.search(rf'<tr data-artifact="{re.escape(artifact)}"[^>]*>(.*?)</tr>', page, re.S)
    assert row, artifact
    cell = re.search(r'<td class="gate ([a-z]+)"[^>]*>(.*?)</td>', row.group(1), re.S)
    assert cell, row.group(1)
    return cell.group(1), re.sub(r"<[^>]+>", " ", cell.group(2))


def test_a_row_whose_checks_were_all_skipped_says_skipped_with_the_reason(report):
    page = render_html(report)
    for a in report["artifacts"]:
        cls, text = _gate_cell(page, a["id"])
        if a["status"] == "not run here":
            assert cls == "skipped" and text.split()[:4] == ["skipped", "not", "run", "here"], (a["id"], text)
            assert "pass" not in text
            # the full message, with the artifact's own reason, is the cell's tooltip
            assert f'title="skipped: not run here ({a["reason"]})"' in page
        elif any(not c["passed"] for c in a["gate"]):
            assert cls == "fail"
        else:
            assert cls == "pass" and text.strip() == "pass"


def test_a_row_with_no_applicable_budget_shows_a_dash_not_pass(report):
    rep = copy.deepcopy(report)
    rep["artifacts"][0]["gate"] = []
    cls, text = _gate_cell(render_html(rep), rep["artifacts"][0]["id"])
    assert cls == "none" and text.strip() == "—"


def test_gate_messages_set_backticked_keys_as_code_and_stay_escaped(report):
    rep = copy.deepcopy(report)
    rep["artifacts"][2]["gate"][1]["message"] = UNSTABLE + " <b>x</b>"
    page = render_html(rep)
    assert "<code>allow_unstable_latency: true</code>" in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


def test_histograms_use_a_log_axis_and_the_caption_says_so(report):
    rep = copy.deepcopy(report)
    lat = rep["artifacts"][0]["latency_ms"]
    lat["max"] = lat["histogram"]["edges_ms"][-1] * 40  # a slow run beyond the binned range
    page = render_html(rep)
    figure = page[page.index('<figure id="fig-latency-histograms"'):page.index('<section id="not-run"')]
    n = len(re.findall(r'<figure class="hist"', figure))
    assert n == 8 and figure.count("latency (ms, log scale)") == n
    caption = figure[figure.rindex("<figcaption>"):]
    assert "logarithmic" in caption and "99.9th percentile" in caption
    assert re.search(r"slowest [\d.]+ ms, beyond the axis", figure)
    assert figure.count("beyond the axis</figcaption>") == 1  # only where the slowest run lies beyond


def test_histogram_with_an_edge_at_zero_is_drawn_linear_and_named():
    rep = json.loads(FIXTURE.read_text())
    hist = rep["artifacts"][0]["latency_ms"]["histogram"]
    hist["edges_ms"][0] = 0.0
    page = render_html(rep)
    assert page.count("latency (ms, log scale)") == 7 and "Linear for <code>host-cpu/onnxruntime/fp32</code>" in page


@pytest.mark.parametrize("lo, hi, expected", [
    (0.0076, 4.1, ["0.01", "0.1", "1"]),                          # three decades: powers of ten
    (0.002, 0.05, ["0.002", "0.005", "0.01", "0.02", "0.05"]),    # 1-2-5 steps
    (0.031, 0.046, ["0.031", "0.035", "0.039", "0.042", "0.046"]),  # a narrow range still gets labels
    (0.0311, 0.0313, ["0.0311", "0.0313"]),                       # narrower still: its two ends
])
def test_log_ticks_are_round_and_inside_the_range(lo, hi, expected):
    ticks = log_ticks(lo, hi)
    assert tick_labels(ticks) == expected
    assert all(lo <= t <= hi for t in ticks) and ticks == sorted(ticks)
    assert log_ticks(0.0, 1.0) == [] and log_ticks(2.0, 1.0) == []
