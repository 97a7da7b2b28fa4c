"""The HTML report: rendered in headless Chromium and checked for what a reader sees.

The fixture ``tests/fixtures/report/report.json`` (regenerate with ``make_report.py`` beside it) is a
realistic MNIST report: 8 host-cpu artifacts profiled (energy estimated, except ONNX Runtime int8
which has a RAPL reading), LiteRT fp16 failing its p95 budget, 4 Core ML / TensorRT artifacts not
run here. Browser tests render the page once (``--dump-dom`` with a NetLog, and ``--screenshot``)
and skip only when no ``chromium``/``chromium-browser`` binary exists (Debian: ``apt-get install
chromium``). Expected values (Pareto sets, largest per-class drop) are recomputed here
independently of ``edgekd.report``.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from pydantic import ValidationError

from edgekd.report.html import largest_drop, render_html, write_html
from edgekd.report.plots import pareto_front
from edgekd.report.schema import Report

FIXTURE = Path(__file__).parent / "fixtures" / "report" / "report.json"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium or chromium-browser binary on PATH (Debian: apt-get install -y chromium); "
    "the rendered-page tests need a headless browser",
)


@pytest.fixture(scope="module")
def report() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def page(report) -> str:
    """The fixture rendered once (rendering takes a second or two)."""
    return render_html(report)


# --------------------------------------------------------------------------------------------- #
# independent reference computations
# --------------------------------------------------------------------------------------------- #


def brute_pareto(points: list[tuple[str, float, float]]) -> set[str]:
    """Keys not dominated by any other point (higher-or-equal accuracy and lower-or-equal cost, one strict)."""
    out = set()
    for k, a, c in points:
        if not any((a2 >= a and c2 <= c) and (a2 > a or c2 < c) for _, a2, c2 in points):
            out.add(k)
    return out


def expected_largest_drop(rep: dict) -> tuple[str, str]:
    teacher = rep["teacher"]["per_class_accuracy"]
    models = [("student (FP32)", rep["student"]["per_class_accuracy"])]
    models += [(a["id"], a["per_class_accuracy"]) for a in rep["artifacts"] if a.get("per_class_accuracy")]
    drops = [(teacher[c] - v[c], -c, name) for name, v in models for c in range(len(teacher))]
    best = max(drops, key=lambda t: (t[0], t[1]))
    return rep["class_names"][-best[1]], best[2]


# --------------------------------------------------------------------------------------------- #
# a small DOM tree from html.parser (no lxml needed)
# --------------------------------------------------------------------------------------------- #

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: list[tuple[str, str | None]], parent: Node | None):
        self.tag, self.attrs, self.parent = tag, {k: (v or "") for k, v in attrs}, parent
        self.children: list[Node | str] = []

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        attrs = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [n for n in self.iter() if (tag is None or n.tag == tag)
                and all(n.attrs.get(k) == v for k, v in attrs.items())]

    def by_id(self, ident: str) -> Node:
        found = self.find_all(id=ident)
        assert len(found) == 1, f"expected one element with id={ident!r}, found {len(found)}"
        return found[0]

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)


class _TreeBuilder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", [], None)
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, attrs, self.cur))

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def parse(html_text: str) -> Node:
    b = _TreeBuilder()
    b.feed(html_text)
    b.close()
    return b.root


def _number(text: str) -> float:
    m = re.search(r"-?\d+(?:\.\d+)?", text)
    assert m, f"no number in {text!r}"
    return float(m.group())


# --------------------------------------------------------------------------------------------- #
# headless Chromium
# --------------------------------------------------------------------------------------------- #


def _chromium(url: str, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    profile = workdir / f"profile-{len(list(workdir.glob('profile-*')))}"
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
        *args, url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(workdir)})
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {proc.stderr[-3000:]}"
    return proc


def page_requests(netlog: Path) -> list[str]:
    """URLs of network requests made on behalf of the loaded file:// page (not the browser's own)."""
    data = json.loads(netlog.read_text())
    start_job = data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for ev in data["events"]:
        p = ev.get("params") or {}
        if ev["type"] == start_job and "file://" in str(p.get("network_isolation_key", "")):
            if not str(p.get("url", "")).startswith("file:"):
                urls.append(p["url"])
    return urls


def external_refs(dom: Node) -> list[str]:
    """Attributes or CSS in the DOM that would load something from the network."""
    bad = []
    for n in dom.iter():
        for k, v in n.attrs.items():
            if k in ("src", "href", "xlink:href", "srcset", "data", "poster", "action") and re.match(
                r"\s*(https?:)?//", v, re.I
            ):
                bad.append(f"<{n.tag} {k}={v!r}>")
        if n.tag in ("script", "iframe", "object", "embed", "link"):
            bad.append(f"<{n.tag}>")
        if n.tag == "style" and re.search(r"@import|url\(\s*['\"]?\s*(https?:)?//", n.text(), re.I):
            bad.append("<style> loading a URL")
    return bad


@dataclass
class Rendered:
    html: str
    dom: Node
    requests: list[str]
    screenshot: Path


@pytest.fixture(scope="module")
def rendered(page, tmp_path_factory) -> Rendered:
    if CHROMIUM is None:
        pytest.skip("no chromium binary")
    work = tmp_path_factory.mktemp("report-html")
    path = work / "report.html"
    path.write_text(page, encoding="utf-8")
    netlog = work / "netlog.json"
    dump = _chromium(path.as_uri(), work, f"--log-net-log={netlog}", "--dump-dom")
    shot = work / "report.png"
    _chromium(path.as_uri(), work, f"--screenshot={shot}", "--window-size=1400,3200")
    return Rendered(page, parse(dump.stdout), page_requests(netlog), shot)


# --------------------------------------------------------------------------------------------- #
# plain tests (no browser)
# --------------------------------------------------------------------------------------------- #


def test_fixture_is_a_valid_realistic_report(report):
    rep = Report.model_validate(report)
    assert len(rep.class_names) == 10 and 0.98 < rep.teacher.accuracy < 0.99 and 0.97 < rep.student.accuracy < 0.98
    statuses = [a.status for a in rep.artifacts]
    assert statuses.count("ok") == 8 and statuses.count("not run here") == 4
    sources = [a.energy.source for a in rep.artifacts if a.energy]
    assert sources.count("measured") == 1 and sources.count("estimated") == 7
    failing = [a.id for a in rep.artifacts if any(not c.passed for c in a.gate or [])]
    assert len(failing) == 1
    assert rep.gate is not None and not rep.gate.passed and rep.gate.failures == 1
    for a in rep.artifacts:  # overall accuracy = class-size-weighted per-class accuracy (MNIST test sizes)
        if a.per_class_accuracy:
            sizes = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
            weighted = sum(p * n for p, n in zip(a.per_class_accuracy, sizes)) / sum(sizes)
            assert weighted == pytest.approx(a.accuracy, abs=1e-4)


def test_largest_drop_matches_independent_computation(report):
    cls, model = expected_largest_drop(report)
    c, name, drop = largest_drop(Report.model_validate(report))
    assert (report["class_names"][c], name) == (cls, model)
    assert drop == pytest.approx(report["teacher"]["per_class_accuracy"][c]
                                 - dict([("student (FP32)", report["student"]["per_class_accuracy"])]
                                        + [(a["id"], a.get("per_class_accuracy")) for a in report["artifacts"]])[name][c])


def test_pareto_front_known_cases():
    pts = [("a", 0.90, 1.0), ("b", 0.95, 2.0), ("c", 0.85, 1.5), ("d", 0.95, 3.0), ("e", 0.97, 5.0)]
    assert pareto_front(pts) == ["a", "b", "e"]  # ordered by cost
    assert pareto_front([]) == []
    assert pareto_front([("x", 0.9, 1.0), ("y", 0.9, 1.0)]) == ["x", "y"]  # exact duplicates both on the front
    assert pareto_front([("p", 0.9, 1.0), ("q", 0.8, 1.0)]) == ["p"]  # same cost, less accurate
    assert pareto_front([("p", 0.9, 1.0), ("q", 0.9, 2.0)]) == ["p"]  # same accuracy, dearer
    assert pareto_front([("p", None, 1.0), ("q", 0.9, None), ("r", float("nan"), 1.0), ("s", 0.5, 9.0)]) == ["s"]


def test_pareto_front_matches_brute_force_on_random_points():
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(1, 12)
        # coarse values so ties on either axis are common
        pts = [(f"k{i}", rng.randint(90, 99) / 100, rng.randint(1, 8) / 4) for i in range(n)]
        front = pareto_front(pts)
        assert set(front) == brute_pareto(pts), pts
        costs = [dict((k, c) for k, _, c in pts)[k] for k in front]
        assert costs == sorted(costs)


def test_page_is_self_contained_and_small(report, page):
    import matplotlib.pyplot as plt

    figs_before = plt.get_fignums()
    render_html(report)
    assert plt.get_fignums() == figs_before, "rendering left matplotlib figures open"
    dom = parse(page)
    assert external_refs(dom) == []
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", page, re.I)
    assert len(page.encode()) < 2_000_000
    assert page.count("<svg") == 3 + 8  # two trade-off charts, per-class, one histogram per profiled artifact


def test_twelve_profiled_artifacts_stay_under_two_megabytes(report):
    big = copy.deepcopy(report)
    extra = []
    for a in big["artifacts"][:4]:
        b = copy.deepcopy(a)
        b["id"] = b["id"].replace("host-cpu", "host-cpu-2")
        b["target"] = "host-cpu-2"
        extra.append(b)
    big["artifacts"] = [a for a in big["artifacts"] if a["status"] == "ok"] + extra
    page = render_html(big)
    assert page.count('<figure class="hist"') == 12
    assert len(page.encode()) < 2_000_000


def test_text_is_escaped_and_missing_values_render(report):
    rep = copy.deepcopy(report)
    rep["run"] = "<script>alert('run')</script>"
    rep["class_names"][3] = "<three & co>"
    rep["gate"] = None
    for a in rep["artifacts"]:
        a["gate"] = None
    ok = rep["artifacts"][0]
    ok["id"] = "host-cpu/onnxruntime/fp32$x^2$"  # no mathtext: shown as written
    ok["latency_ms"]["histogram"] = None
    rep["artifacts"][1]["energy"] = None
    rep["artifacts"][1]["accuracy_per_watt"] = None
    rep["artifacts"].append({
        "id": "host-cpu/openvino/int4", "target": "host-cpu", "backend": "openvino", "precision": "int4",
        "path": None, "status": "failed", "reason": "<b>compile</b> failed & stopped",
    })
    page = render_html(rep, title="T <i>x</i>")
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;run&#x27;)&lt;/script&gt;" in page
    assert "<b>compile</b>" not in page and "&lt;b&gt;compile&lt;/b&gt; failed &amp; stopped" in page
    assert "<title>T &lt;i&gt;x&lt;/i&gt;</title>" in page
    assert "<three & co>" not in page
    dom = parse(page)
    assert "no budgets applied" in dom.by_id("verdict").text()
    row = dom.find_all("tr", data_artifact="host-cpu/openvino/int4")[0]
    assert _cell(row, "status").text() == "failed<b>compile</b> failed & stopped"  # shown as text, not markup
    for cls in ("accuracy", "p50", "p95", "p99", "energy", "apw", "memory", "size", "gate"):
        assert _cell(row, cls).text().strip() == "—", cls
    assert _cell(rep_row := dom.find_all("tr", data_artifact=rep["artifacts"][1]["id"])[0], "energy").text() == "—"
    assert _cell(rep_row, "apw").text() == "—"
    assert "failed" in dom.by_id("failed-artifacts").text()
    svg_text = " ".join(n.text() for n in dom.by_id("fig-accuracy-latency").iter() if n.tag == "text")
    assert "onnxruntime/fp32$x^2$" in svg_text
    assert "<three & co>" in " ".join(n.text() for n in dom.by_id("fig-per-class").iter() if n.tag == "text")
    # no histogram for the first artifact, one for each of the other 7 profiled ones
    assert len(dom.find_all("figure", **{"class": "hist"})) == 7


def test_a_runtime_clock_is_marked_where_the_figure_is(report):
    """OpenVINO's figures are its own C++ clock, the others' are taken around the Python call: the p50 cell says so
    and gives the Python-call median beside it; the rest carry no mark."""
    from edgekd.report.manifest import _clock_note

    rep = copy.deepcopy(report)
    ov = next(a for a in rep["artifacts"] if a["backend"] == "openvino" and a["status"] == "ok")
    ov["latency_ms"].update(clock="InferRequest.latency (OpenVINO's C++ clock around infer)", python_call_p50=0.0824)
    dom = parse(render_html(rep))
    marks = {a["id"]: _cell(dom.find_all("tr", data_artifact=a["id"])[0], "p50").find_all("span", **{"class": "clock"})
             for a in rep["artifacts"] if a["status"] == "ok"}
    assert [k for k, found in marks.items() if found] == [ov["id"]]
    assert "around the Python call: 0.0824 ms" in marks[ov["id"]][0].attrs["title"]
    assert _clock_note(ov["latency_ms"]) == ("; timed by InferRequest.latency (OpenVINO's C++ clock around infer), "
                                             "p50 0.0824 ms around the Python call")
    assert _clock_note({"clock": "perf_counter around the Python call", "python_call_p50": 1.0}) == ""


def test_the_native_tool_the_harness_and_the_tail_spread_are_shown_where_their_figures_are(report):
    """Under the p50: the runtime's own tool's ratio (the fidelity goal) or why it did not run, and, for figures
    timed around the Python call, what an empty call costs; under the p95: how far it moved across blocks."""
    rep = copy.deepcopy(report)
    ok = [a for a in rep["artifacts"] if a["status"] == "ok"]
    timed, missing = ok[0], ok[1]
    timed["latency_ms"].update(harness_overhead_ms=0.00014, tail_spread={"p90": 0.1, "p95": 0.31, "p99": None},
                               native={"tool": "litert-benchmark", "status": "ok", "p50": 0.0402, "runs": 30000,
                                       "p50_ratio": 1.0325, "command": "litert-benchmark --model m.tflite"})
    missing["latency_ms"]["native"] = {"tool": "benchmark_model", "status": "not run here",
                                       "reason": "benchmark_model or litert-benchmark: not on PATH on this machine"}
    dom = parse(render_html(rep))
    marks = lambda a, q: [n for n in _cell(dom.find_all("tr", data_artifact=a["id"])[0], q).find_all("span")  # noqa: E731
                          if "clock" in n.classes]
    assert [n.text() for n in marks(timed, "p50")] == ["harness 0.14 µs", "1.03× litert-benchmark"]
    title = marks(timed, "p50")[1].attrs["title"]
    assert "0.0402 ms over 30000 runs" in title and "litert-benchmark --model m.tflite" in title
    (why,) = [n for n in marks(missing, "p50") if "benchmark_model" in n.text()]
    assert why.text() == "benchmark_model: not run here" and "not on PATH" in why.attrs["title"]
    assert [n.text() for n in marks(timed, "p95")] == ["moved 31%"]
    assert marks(timed, "p99") == []  # too few runs for its spread: nothing shown


def test_invalid_report_is_refused(report):
    bad = copy.deepcopy(report)
    del bad["teacher"]
    with pytest.raises(ValidationError):
        render_html(bad)
    bad = copy.deepcopy(report)
    bad["artifacts"][0]["status"] = "maybe"
    with pytest.raises(ValidationError):
        render_html(bad)


def test_write_html_is_atomic(report, page, tmp_path):
    target = tmp_path / "out" / "report.html"
    assert write_html(report, target) == target
    assert target.read_text(encoding="utf-8") == page  # and rendering is deterministic
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]
    before = target.read_text(encoding="utf-8")
    bad = copy.deepcopy(report)
    del bad["student"]
    with pytest.raises(ValidationError):
        write_html(bad, target)
    assert target.read_text(encoding="utf-8") == before  # a failed render leaves the old page alone...
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]  # ...and no temp file


# --------------------------------------------------------------------------------------------- #
# rendered in Chromium
# --------------------------------------------------------------------------------------------- #


def _cell(row: Node, cls: str) -> Node:
    found = [c for c in row.find_all("td") if cls in c.classes]
    assert len(found) == 1, f"{row.attrs}: expected one td.{cls}, found {len(found)}"
    return found[0]


@needs_chromium
def test_header_shows_run_and_failed_verdict(rendered, report):
    summary = rendered.dom.by_id("summary").text()
    for s in (report["run"], report["edgekd_version"], report["created"]):
        assert s in summary
    verdict = rendered.dom.by_id("verdict")
    assert "fail" in verdict.classes
    assert "FAILED" in verdict.text() and f"1 of {report['gate']['checks']}" in verdict.text()


@needs_chromium
def test_table_has_one_row_per_artifact_with_accuracy_and_p95(rendered, report):
    table = rendered.dom.by_id("artifacts")
    assert table.tag == "table"
    rows = [r for r in table.find_all("tr") if "data-artifact" in r.attrs]
    assert [r.attrs["data-artifact"] for r in rows] == [a["id"] for a in report["artifacts"]]
    for row, a in zip(rows, report["artifacts"]):
        acc, p95 = _cell(row, "accuracy").text(), _cell(row, "p95").text()
        if a.get("accuracy") is None:
            assert acc.strip() == "—"
        else:
            assert _number(acc) == pytest.approx(a["accuracy"] * 100, abs=0.006), a["id"]
            assert "%" in acc
        if a.get("latency_ms") is None:
            assert p95.strip() == "—"
        else:
            assert _number(p95) == pytest.approx(a["latency_ms"]["p95"], rel=0.005), a["id"]
        assert a["status"] in _cell(row, "status").text()
        if a["status"] != "ok":
            assert a["reason"] in _cell(row, "status").text()
    refs = {r.attrs["data-reference"]: r for r in table.find_all("tr") if "data-reference" in r.attrs}
    assert set(refs) == {"teacher", "student"}
    for key in refs:
        assert _number(_cell(refs[key], "accuracy").text()) == pytest.approx(report[key]["accuracy"] * 100, abs=0.006)
        assert "params" in refs[key].text() and "MACs" in refs[key].text()


@needs_chromium
def test_energy_cells_say_estimated_or_measured(rendered, report):
    kinds = set()
    for a in report["artifacts"]:
        row = rendered.dom.find_all("tr", data_artifact=a["id"])[0]
        cell = _cell(row, "energy")
        text = cell.text()
        en = a.get("energy")
        if en is None:
            assert text.strip() == "—"
            continue
        kinds.add(en["source"])
        assert _number(text.replace("≈", "")) == pytest.approx(en["mj_per_inference"], rel=0.005)
        if en["source"] == "estimated":
            assert "estimated" in cell.classes and "estimated" in text and "measured" not in text
            assert en["meter"] in text and text.strip().startswith("≈")
        else:
            assert "measured" in cell.classes and "measured" in text and "estimated" not in text
            assert en["meter"] in text and en["boundary"] in text and "≈" not in text
    assert kinds == {"estimated", "measured"}


@needs_chromium
def test_failing_gate_cell_names_the_budget(rendered, report):
    n_fail = 0
    for a in report["artifacts"]:
        cell = _cell(rendered.dom.find_all("tr", data_artifact=a["id"])[0], "gate")
        if a.get("gate") is None:
            assert "none" in cell.classes
            continue
        failed = [c["budget"] for c in a["gate"] if not c["passed"]]
        if failed:
            n_fail += 1
            assert "fail" in cell.classes and "fail" in cell.text()
            for budget in failed:
                assert budget in cell.text()
        else:
            assert "pass" in cell.classes and cell.text().strip() == "pass"
    assert n_fail == 1


@needs_chromium
def test_figures_exist_with_marks(rendered, report):
    for fig_id in ("fig-accuracy-latency", "fig-accuracy-energy", "fig-per-class", "fig-latency-histograms"):
        fig = rendered.dom.by_id(fig_id)
        assert fig.tag == "figure" and fig.find_all("figcaption"), fig_id
        svgs = fig.find_all("svg")
        assert svgs, fig_id
        marks = [n for s in svgs for n in s.iter() if n.tag in ("path", "use")]
        assert len(marks) > 10, fig_id
    # every artifact with an accuracy and a latency / energy is a labelled point
    for fig_id, key in (("fig-accuracy-latency", "latency_ms"), ("fig-accuracy-energy", "energy")):
        fig = rendered.dom.by_id(fig_id)
        labels = " ".join(n.text() for n in fig.iter() if n.tag == "text")
        plotted = [a for a in report["artifacts"] if a.get("accuracy") is not None and a.get(key)]
        assert plotted
        for a in plotted:
            assert a["id"].split("/", 1)[1] in labels, (fig_id, a["id"])
            assert fig.find_all(id=f"{fig_id}-point-{a['id']}"), (fig_id, a["id"])
        assert "estimated" in labels if key == "energy" else True  # the legend says so
    # per-class heatmap: at least one cell per (model, class)
    n_models = 2 + sum(bool(a.get("per_class_accuracy")) for a in report["artifacts"])
    per_class = rendered.dom.by_id("fig-per-class")
    assert len([n for n in per_class.iter() if n.tag == "path"]) >= n_models * len(report["class_names"])
    cls, model = expected_largest_drop(report)
    drop = rendered.dom.by_id("largest-drop")
    assert drop.attrs["data-class"] == cls and drop.attrs["data-model"] == model
    assert per_class.find_all(id="fig-per-class-largest-drop")
    # one histogram small multiple per artifact that recorded one
    hists = [f for f in rendered.dom.by_id("fig-latency-histograms").find_all("figure") if "hist" in f.classes]
    expected = [a["id"] for a in report["artifacts"] if (a.get("latency_ms") or {}).get("histogram")]
    assert [h.attrs.get("data-artifact") for h in hists] == expected
    for h in hists:
        assert [n for n in h.iter() if n.tag == "path"] and "p50" in h.text() and "p99" in h.text()


@needs_chromium
def test_pareto_lists_name_the_expected_artifacts(rendered, report):
    for list_id, cost in (("pareto-latency", lambda a: (a.get("latency_ms") or {}).get("p50")),
                          ("pareto-energy", lambda a: (a.get("energy") or {}).get("mj_per_inference"))):
        pts = [(a["id"], a["accuracy"], cost(a)) for a in report["artifacts"]
               if a.get("accuracy") is not None and cost(a) is not None]
        expected = brute_pareto(pts)
        assert 2 <= len(expected) < len(pts)  # the fixture makes the front non-trivial
        items = rendered.dom.by_id(list_id).find_all("li")
        assert {li.attrs["data-artifact"] for li in items} == expected
        assert len(items) == len(expected)
        by_id = {k: c for k, _, c in pts}
        for li in items:  # "<id>: <accuracy>%, <cost> <unit>"
            assert li.attrs["data-artifact"] in li.text()
            m = re.search(r"%,\s*(\d+(?:\.\d+)?)", li.text())
            assert m and float(m.group(1)) == pytest.approx(by_id[li.attrs["data-artifact"]], rel=0.005), li.text()
        listed = [by_id[li.attrs["data-artifact"]] for li in items]
        assert listed == sorted(listed)
        # the Pareto line is drawn
        fig_id = "fig-accuracy-latency" if list_id == "pareto-latency" else "fig-accuracy-energy"
        assert rendered.dom.by_id(fig_id).find_all(id=f"{fig_id}-pareto")


@needs_chromium
def test_not_run_section_lists_artifacts_and_reasons(rendered, report):
    section = rendered.dom.by_id("not-run")
    items = {li.attrs["data-artifact"]: li.text() for li in section.find_all("li")}
    expected = {a["id"]: a["reason"] for a in report["artifacts"] if a["status"] == "not run here"}
    assert set(items) == set(expected)
    for k, reason in expected.items():
        assert reason in items[k]


@needs_chromium
def test_page_makes_no_network_requests(rendered, tmp_path):
    assert external_refs(rendered.dom) == []
    assert rendered.requests == []
    # The checks can fail: a page that loads an image and a stylesheet over HTTP is caught by both.
    # (127.0.0.1:9 refuses at once; nothing leaves the machine.)
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><link rel="stylesheet" href="http://127.0.0.1:9/a.css"></head>'
                   '<body><img src="http://127.0.0.1:9/x.png"></body></html>')
    netlog = tmp_path / "netlog.json"
    dump = _chromium(bad.as_uri(), tmp_path, f"--log-net-log={netlog}", "--dump-dom")
    assert len(external_refs(parse(dump.stdout))) >= 2
    assert {"http://127.0.0.1:9/x.png", "http://127.0.0.1:9/a.css"} <= set(page_requests(netlog))


@needs_chromium
def test_screenshot_is_not_blank(rendered):
    from PIL import Image

    with Image.open(rendered.screenshot) as im:
        im = im.convert("RGB")
        assert im.size == (1400, 3200)
        colors = im.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 100, "the screenshot has almost no colours"
    most = max(n for n, _ in colors)
    assert most / (1400 * 3200) < 0.95, "the screenshot is (nearly) a single colour"
    # the charts drew something in their own colours (matplotlib's C0 blue, the Pareto red, viridis)
    rgb = {c for _, c in colors}
    assert any(abs(r - 0x1F) < 12 and abs(g - 0x77) < 12 and abs(b - 0xB4) < 12 for r, g, b in rgb)
    assert any(abs(r - 0xD6) < 12 and abs(g - 0x27) < 12 and abs(b - 0x28) < 12 for r, g, b in rgb)


def test_each_artifact_shows_its_sqnr_and_accuracy_per_joule(report):
    """Under the accuracy: the SQNR of the artifact's outputs against its reference (the whole parity check in the
    tooltip); under accuracy per watt (at full load): accuracy per joule, which tells the artifacts apart."""
    rep = copy.deepcopy(report)
    ok = [a for a in rep["artifacts"] if a["status"] == "ok" and a["accuracy_per_watt"] is not None]
    ok[0]["parity"].update(sqnr_db=31.26)
    ok[1]["parity"].update(sqnr_db=None, max_abs_diff=0.0)
    ok[2]["parity"].update(sqnr_db=None, max_abs_diff=0.041)  # a report from before SQNR was kept: unknown, not identical
    ok[0]["accuracy_per_joule"], ok[1]["accuracy_per_joule"] = 1234.5, None
    dom = parse(render_html(rep))
    row = {a["id"]: dom.find_all("tr", data_artifact=a["id"])[0] for a in ok[:2]}
    first = _cell(row[ok[0]["id"]], "accuracy").find_all("span", **{"class": "parity"})[0]
    assert first.text() == "SQNR 31.3 dB" and "top-1 agreement" in first.attrs["title"]
    row[ok[2]["id"]] = dom.find_all("tr", data_artifact=ok[2]["id"])[0]
    assert _cell(row[ok[1]["id"]], "accuracy").find_all("span", **{"class": "parity"})[0].text() == "identical outputs"
    assert _cell(row[ok[2]["id"]], "accuracy").find_all("span", **{"class": "parity"})[0].text() == "SQNR —"
    joules = [_cell(row[a["id"]], "apw").find_all("span", **{"class": "per-joule"}) for a in ok[:2]]
    assert joules[0][0].text() == "1234/J" and joules[1] == []
