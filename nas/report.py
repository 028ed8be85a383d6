"""``nas report``: one self-contained HTML file for people who will not run the tool.

It holds the study summary, a sortable table of every completed trial (recipe in words, requirement result,
links to the front trials' sections) with the suggested pick and its rule, every pair of objectives, the
parameter importance per objective, parallel coordinates, and for each front trial its architecture, recipe,
metrics, learning curves, OOD histograms, eps curve, attribution maps and reliability diagram, drawn with the
dashboard's own figure functions. plotly.js is embedded, so the file opens offline.

Example::

    study = load_study("sqlite:///runs/nas.db", "fm1")
    write_report(Snapshot.take(study, "sqlite:///runs/nas.db"), Path("report.html"))
"""
from __future__ import annotations

import datetime
import html
import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .analysis import EQUAL_ACCURACY_HINT, HEADLINE_METRICS, analyze
from .dashboard.source import (
    Snapshot, architecture_layers, format_value, load_details, metric_columns, metric_table, requirement_table,
)
from .errors import UsageError
from .files import prepare_folder
from .storage import mask_url

if TYPE_CHECKING:
    import plotly.graph_objects as go

MAX_FRONT_TRIALS = 12
# Click a header to sort the table by that column (numbers as numbers), click again to reverse.
SORT_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach((th, column) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0];
  const up = th.dataset.order !== 'up';
  th.closest('tr').querySelectorAll('th').forEach(other => delete other.dataset.order);
  th.dataset.order = up ? 'up' : 'down';
  const key = row => { const text = row.cells[column].dataset.value ?? row.cells[column].innerText;
                       const number = parseFloat(text); return isNaN(number) ? text : number; };
  [...body.rows].sort((a, b) => { const x = key(a), y = key(b);
      const order = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
      return up ? order : -order; }).forEach(row => body.appendChild(row));
}));
"""


REPORT_STYLE = """
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[data-order=up]::after { content: " ▲"; } table.sortable th[data-order=down]::after { content: " ▼"; }
td.FAIL { color: #c62828; font-weight: 600; }
"""


class _Page:
    """Collects HTML parts; figures get stable ids so the same study gives the same file."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.figures = 0

    def add(self, text: str) -> None:
        self.parts.append(text)

    def figure(self, figure: go.Figure) -> None:
        self.figures += 1
        height = figure.layout.height or 450
        self.parts.append(figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{self.figures}",
                                         default_height=f"{height}px", config={"displaylogo": False}))


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return '<p class="hint">none</p>'
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            text = format_value(row.get(column))
            css = f' class="{text}"' if text in ("PASS", "FAIL") else ""
            cells.append(f"<td{css}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _architecture(spec: dict[str, Any]) -> str:
    boxes = [f'<div class="layer"><b>{html.escape(name)}</b>{html.escape(detail)}</div>'
             for name, detail in architecture_layers(spec)]
    return '<div class="arch">' + '<span class="arrow">→</span>'.join(boxes) + "</div>"


def _summary(snap: Snapshot) -> list[dict[str, Any]]:
    config = snap.study.user_attrs.get("config") or {}
    data, space, study = config.get("data", {}), config.get("space", {}), config.get("study", {})
    requirements = config.get("requirements", {})
    bounds = {m: " and ".join(("≥ " if k == "min" else "≤ ") + format_value(v) for k, v in b.items())
              for m, b in requirements.items()}
    rows = [
        ("study", snap.study_name), ("storage", mask_url(snap.storage_url)), ("trials", snap.counts_text()),
        ("objectives", ", ".join(snap.label(i) for i in range(len(snap.names)))),
        ("requirements", ", ".join(f"{m} {bound}" for m, bound in bounds.items()) or "none"),
        ("data", f"{data.get('name', '?')} (train {data.get('train_size') or 'all'}, "
                 f"validation {data.get('val_size') or 'all'})" if data else "?"),
        ("search space", space.get("name", "?")), ("sampler", study.get("sampler", "?")),
        ("report written", datetime.datetime.now().strftime("%Y-%m-%d %H:%M")),
    ]
    return [{"": key, "value": value} for key, value in rows]


def _choose_table(snap: Snapshot, linked: set[int]) -> str:
    """Every completed trial, one row, sortable by clicking a header; front trials link to their section."""
    from .dashboard import choose

    columns = choose.table_columns(snap)
    labels = {c: snap.label(snap.names.index(c)) if c in snap.names else c for c in columns}
    head = "".join(f'<th title="click to sort">{html.escape(labels[c])}</th>' for c in columns)
    body = []
    for row in choose.table_rows(snap):
        cells = []
        for column in columns:
            value = row.get(column)
            text = html.escape(format_value(value))
            sort = f' data-value="{value}"' if isinstance(value, (int, float)) else ""
            css = (' class="PASS"' if value == "PASS" else ' class="FAIL"' if str(value).startswith("FAIL") else "")
            if column == "trial" and value in linked:
                text = f'<a href="#trial-{value}">#{text}</a>'
            cells.append(f"<td{sort}{css}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="data sortable" id="front-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _recommendation(snap: Snapshot) -> str:
    from .dashboard import choose

    advice = choose.recommendation(snap)
    if advice["pick"] is None:
        return f'<p class="hint">{html.escape(advice["why"])}</p>'
    meeting = sum(snap.feasible(t) for t in snap.completed)
    feasible = ", ".join(f'<a href="#trial-{n}">#{n}</a>' for n in advice["feasible"])
    return (f"<p><b>{meeting} of {len(snap.completed)} models meet every requirement; "
            f"{len(advice['feasible'])} of them are on the Pareto front:</b> {feasible}</p>"
            f'<p id="suggested-pick"><b>Suggested:</b> {html.escape(advice["why"])}</p>'
            f'<p class="hint">{html.escape(advice["rule"])}</p>')


def _front_section(page: _Page, snap: Snapshot, trials: list[Any]) -> None:
    from .dashboard import choose, figures
    for trial in trials:
        attrs = snap.record(trial)
        feasible = snap.feasible(trial)
        verdict = ('<span class="badge good">meets every requirement</span>' if feasible
                   else '<span class="badge bad">fails a requirement</span>')
        page.add(f'<div class="card" id="trial-{trial.number}">'
                 f'<h2>Trial {trial.number}: {html.escape(attrs.get("spec_summary", ""))}</h2>{verdict}'
                 f'<span class="badge">{html.escape(choose.recipe_family(attrs))}</span>')
        page.add(_architecture(attrs.get("spec") or {}))
        page.add(f'<p><b>Training recipe:</b> {html.escape(choose.recipe_words(attrs))}</p>')
        headline, rest = metric_columns(snap, [trial])
        column = f"trial {trial.number}"
        if attrs.get("record_problem"):
            page.add(f'<p class="error">{html.escape(attrs["record_problem"])}</p>')
        page.add('<div class="grid"><div><h3>Measured on the validation split</h3>'
                 + _table(metric_table(snap, [trial], headline), ["metric", column])
                 + "<details><summary>every other metric</summary>"
                 + _table(metric_table(snap, [trial], rest), ["metric", column]) + "</details></div>"
                 "<div><h3>Requirements</h3>" + _table(requirement_table(attrs)) + "</div></div>")
        if attrs.get("history"):
            page.figure(figures.learning_curve_figure(snap, [trial]))
        details, problem = load_details(snap, trial)
        if problem:
            page.add(f'<p class="error">{html.escape(problem)}</p>')
        if "ood" in details:
            page.figure(figures.ood_figure(details["ood"]))
        if "adversarial" in details:
            num_classes = (attrs.get("spec") or {}).get("num_classes")
            page.figure(figures.eps_figure([(f"trial {trial.number}", details["adversarial"])],
                                           num_classes if isinstance(num_classes, int) else None))
        if "explainability" in details:
            page.figure(figures.attribution_figure(details["explainability"], figures.class_names(details)))
        if "calibration" in details:
            page.figure(figures.reliability_figure(details["calibration"]))
        page.add('<p class="hint"><a href="#choose">back to the table</a></p></div>')


def build_report(snap: Snapshot) -> str:
    """The whole report as one HTML string (plotly.js inlined)."""
    from plotly.offline import get_plotlyjs  # plotting libraries load only when a report is written

    from .dashboard import choose, figures
    from .dashboard.layout import STYLE
    page = _Page()
    page.add(f'<div class="header"><h1>Robust NAS report: study {html.escape(snap.study_name)}</h1></div>'
             '<div class="page">')
    page.add('<div class="card"><h2>Study</h2>' + _table(_summary(snap)) + "</div>")
    front = sorted((t for t in snap.completed if t.number in snap.front), key=lambda t: t.number)
    shown = front[:MAX_FRONT_TRIALS]
    note = ("" if snap.front_feasible
            else " No trial meets every requirement, so the front holds the best trade-offs among infeasible trials.")
    page.add('<div class="card" id="choose"><h2>Choose a model</h2>' + _recommendation(snap)
             + f'<p class="hint">Every completed trial ({len(snap.completed)}), {len(front)} of them on the Pareto '
               f"front (front: yes).{note} Click a header to sort; a trial number links to its section below.</p>"
             + (_choose_table(snap, {t.number for t in shown}) if snap.completed else "")
             + "</div>")
    page.add('<div class="card"><h2>Pareto explorer</h2><p class="hint">Each point is a trained model; colour: its '
             "training recipe; filled circles (labelled #trial) are the Pareto front, open circles are dominated, "
             "crosses fail a requirement; size: parameter count. Hover a point for its architecture and recipe.</p>")
    pairs = list(itertools.combinations(snap.names, 2))
    pick = choose.recommendation(snap)["pick"]
    if not snap.completed or not pairs:
        why = (f"no completed trial yet ({snap.counts_text()})" if not snap.completed
               else "one objective only: there is no trade-off to plot")
        page.add(f'<p class="hint">{html.escape(why)}</p>')
    else:
        page.add('<div class="grid">')
        for x, y in pairs:  # every pair: a front that looks flat in one view is a frontier in another
            page.figure(figures.pareto_figure(snap, x, y, pick=pick).update_layout(
                height=440, title_text=f"{figures.axis_label(snap, y)} against {figures.axis_label(snap, x)}",
                legend={"orientation": "h", "x": 0, "y": -0.2}, margin={"b": 120}))
        page.add("</div>")
        if len(snap.names) == 3:
            page.figure(figures.pareto_figure(snap, *snap.names).update_layout(title_text="All three objectives"))
    page.add("</div>")
    if snap.completed:
        page.add('<div class="card"><h2>Why: which choices drive each objective</h2>')
        page.figure(figures.importance_figure(*choose.importances(snap)))
        page.add("</div>")
        page.add('<div class="card"><h2>Robustness at equal accuracy</h2><p class="hint">'
                 + html.escape(EQUAL_ACCURACY_HINT) + "</p>")
        page.figure(figures.comparison_figure(analyze(snap.study, metrics=HEADLINE_METRICS, importance=False)))
        page.add("</div>")
    page.add('<div class="card"><h2>Objectives and searched parameters</h2>')
    page.figure(figures.parallel_figure(snap))
    hypervolume, reference = figures.hypervolume_figure(snap)
    page.figure(hypervolume)
    page.add(f'<p class="hint">{html.escape(reference)}</p></div>')

    if len(front) > MAX_FRONT_TRIALS:
        page.add(f'<p class="hint">Robustness summaries of the first {MAX_FRONT_TRIALS} front trials follow; '
                 'open the dashboard for the rest.</p>')
    _front_section(page, snap, shown)
    page.add("</div>")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>Robust NAS report: {html.escape(snap.study_name)}</title>"
            f"<style>{STYLE}{REPORT_STYLE}</style><script>{get_plotlyjs()}</script></head><body>{''.join(page.parts)}"
            f"<script>{SORT_SCRIPT}</script></body></html>\n")


def write_report(snap: Snapshot, out: Path) -> Path:
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; pass a file name such as {out / 'report.html'}")
    prepare_folder(out.parent, f"--out {out}")
    out.write_text(build_report(snap), encoding="utf-8")
    return out
