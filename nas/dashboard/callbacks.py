"""Dash callbacks. Every value a request carries (study name, trial numbers, axis names) is only compared
against what the storage holds; nothing is written and no file path is taken from a request.
"""
from __future__ import annotations

import datetime
import re
from typing import Any

import dash
from dash import Input, Output, State, ctx, dcc, html, no_update
from optuna.trial import FrozenTrial, TrialState

from ..analysis import HEADLINE_METRICS, analyze
from ..early_stopping import PRUNED_REASON, rung_records
from ..errors import UsageError
from ..initial_design import ORIGIN_ATTR
from . import choose, figures
from .layout import architecture, card, table
from .source import (
    Snapshot, StudySource, format_value, load_details, metric_columns, metric_table, objective_table, requirement_table,
)

GRAPH_CONFIG = {"displaylogo": False}
ROBUSTNESS = ("ood", "adversarial", "explainability", "calibration")


def _graph(id_: str, figure: Any) -> dcc.Graph:
    return dcc.Graph(id=id_, figure=figure, config=GRAPH_CONFIG)


def trial_option(snap: Snapshot, trial: FrozenTrial) -> dict[str, Any]:
    tags = [trial.state.name.lower()]
    if trial.number in snap.front:
        tags.append("Pareto front")
    if trial.state == TrialState.COMPLETE and not snap.feasible(trial):
        tags.append("infeasible")
    return {"label": f"#{trial.number} · {' · '.join(tags)} · {trial.user_attrs.get('spec_summary', '')}",
            "value": trial.number}


def _badges(snap: Snapshot, trial: FrozenTrial) -> html.Div:
    state = trial.state.name
    badges = [html.Span(state.lower(), className="badge " + {"COMPLETE": "good", "FAIL": "bad"}.get(state, ""))]
    if trial.number in snap.front:
        badges.append(html.Span("on the Pareto front", className="badge good"))
    if state == "COMPLETE":
        feasible = snap.feasible(trial)
        badges.append(html.Span("meets every requirement" if feasible else "fails a requirement",
                                className="badge " + ("good" if feasible else "bad")))
    return html.Div(badges)


def trial_body(snap: Snapshot, trial: FrozenTrial) -> list[Any]:
    """Drill-down of one trial: spec, recipe, curves, objectives, robustness details, requirements."""
    attrs = snap.record(trial)
    spec = attrs.get("spec") or {}
    header: list[Any] = [_badges(snap, trial), html.P(attrs.get("spec_summary", ""), className="hint")]
    if trial.user_attrs.get(ORIGIN_ATTR):  # enqueued before sampling: study.enqueue, warm start or an anchor
        header.append(html.P(f"Run first, from {trial.user_attrs[ORIGIN_ATTR]}", className="hint"))
    if attrs.get("record_problem"):
        header.append(html.P(attrs["record_problem"], className="error"))
    if trial.state == TrialState.FAIL:
        header.append(html.P(f"Failed: {attrs.get('fail_reason', 'no reason recorded')}", className="error"))
    elif trial.state == TrialState.RUNNING:
        header.append(html.P("Still running: objectives appear when its evaluation finishes.", className="hint"))
    elif trial.state == TrialState.PRUNED:
        header.append(html.P(f"Stopped early: {pruned_reason(trial)}", className="hint"))
    body: list[Any] = [card(f"Trial {trial.number}", *header)]
    rungs = rung_table(snap, trial)
    if rungs:
        body.append(card("Early-stopping rungs", table(rungs), id="rungs",
                         hint="cheap screens of the objectives after these epochs, compared with the other trials "
                              "that reached the same epoch; the best 1/reduction_factor continue"))
    recipe = [{"setting": k, "value": v} for k, v in (attrs.get("recipe") or {}).items()]
    body.append(html.Div([
        card("Architecture", architecture(spec) if spec else html.P(
                 "stored when the trial ends" if attrs.get("spec_summary") else "not sampled yet", className="hint"),
             html.H2("Training recipe", style={"marginTop": "14px"}),
             html.P(f"{choose.recipe_family(attrs)}: {choose.recipe_words(attrs)}", className="hint"),
             html.Details([html.Summary("every recipe setting"), table(recipe)])),
        html.Div([
            card("Objectives", table(objective_table(attrs), ["objective", "value", "seconds"]),
                 html.Details([html.Summary("every measured metric (95% intervals in brackets)"),
                               table(metric_table(snap, [trial], list(attrs.get("metrics") or {})))]),
                 hint=f"trained in {format_value(attrs.get('train_seconds'))} s on {attrs.get('device', '?')}"),
            card("Requirements", table(requirement_table(attrs)), id="requirements"),
        ], className="side"),
    ], className="grid"))
    body.append(card("Learning curve", _graph("learning-graph", figures.learning_curve_figure(snap, [trial]))))
    details, problem = load_details(snap, trial)
    if problem:
        body.append(card("Robustness details", html.P(problem, className="error")))
    evaluated = attrs.get("objectives") or {}
    if "ood" in details:
        body.append(card("Out-of-distribution confidence", _graph("ood-graph", figures.ood_figure(details["ood"]))))
    if "adversarial" in details:
        num_classes = spec.get("num_classes") if isinstance(spec.get("num_classes"), int) else None
        body.append(card("Adversarial robustness",
                         _graph("eps-graph", figures.eps_figure([(f"trial {trial.number}", details["adversarial"])],
                                                                num_classes))))
    if "explainability" in details:
        body.append(card("Explanations",
                         _graph("attribution-graph", figures.attribution_figure(details["explainability"],
                                                                                figures.class_names(details))),
                         _graph("faithfulness-graph", figures.faithfulness_figure(details["explainability"]))))
    if "calibration" in details:
        body.append(card("Calibration",
                         _graph("reliability-graph", figures.reliability_figure(details["calibration"]))))
    skipped = [name for name, result in evaluated.items() if result.get("skipped")]
    missing = [name for name in ROBUSTNESS if name not in evaluated and name not in details]
    notes = []
    if skipped:
        notes.append(f"Skipped (a cheaper requirement had already failed): {', '.join(skipped)}.")
    if trial.state == TrialState.COMPLETE and missing:
        notes.append(f"Not measured in this study: {', '.join(missing)} "
                     "(add [objectives.<name>] or a requirement on it).")
    if notes:
        body.append(html.Div([html.P(n, className="hint") for n in notes], className="card"))
    return body


def pruned_reason(trial: FrozenTrial) -> str:
    """Why a PRUNED trial stopped: early stopping's reason, or the study's trial count being reached."""
    if trial.user_attrs.get(PRUNED_REASON):
        return str(trial.user_attrs[PRUNED_REASON])
    if trial.user_attrs.get("surplus"):
        return "not trained: the study's n_trials COMPLETE trials were reached or under way in other workers"
    return "no reason recorded"


def rung_table(snap: Snapshot, trial: FrozenTrial) -> list[dict[str, Any]]:
    """One row per early-stopping rung the trial reached: its screened objectives, its standing, the decision."""
    rows = []
    for rung in rung_records(trial):
        row: dict[str, Any] = {"after epoch": rung["epoch"]}
        row.update({snap.label(i): value for i, value in zip(range(len(snap.names)), rung.get("values") or [])})
        row["standing"] = (f"{rung.get('position', 0) + 1} of {rung.get('competitors', '?')} "
                           f"(best {rung.get('keep', '?')} continue)")
        row["rank"] = rung.get("rank")
        row["decision"] = rung.get("decision", "?")
        row["reason"] = rung.get("reason", "")
        row["seconds"] = rung.get("seconds")
        rows.append(row)
    return rows


def compare_body(snap: Snapshot, trials: list[FrozenTrial]) -> list[Any]:
    """2-4 trials side by side: objective radar/bars, every metric, specs, curves."""
    if len(trials) < 2:
        return [card("Compare", html.P("Pick two to four completed trials above.", className="hint"))]
    headline, rest = metric_columns(snap, trials)
    rows = [{"metric": "spec", **{f"trial {t.number}": t.user_attrs.get("spec_summary", "") for t in trials}},
            {"metric": "recipe", **{f"trial {t.number}": choose.recipe_words(snap.record(t)) for t in trials}},
            {"metric": "feasible", **{f"trial {t.number}": snap.feasible(t) for t in trials}},
            *metric_table(snap, trials, headline)]
    specs = html.Div([html.Div([html.B(f"trial {t.number}"), architecture(snap.record(t).get("spec") or {})],
                               style={"marginBottom": "8px"})
                      for t in trials])
    curves = []
    for trial in trials:
        details, _ = load_details(snap, trial)
        curves.append((f"trial {trial.number}", details.get("adversarial") or {}))
    body = [
        card("Objectives", _graph("compare-graph", figures.compare_figure(snap, trials))),
        card("Metrics side by side", table(rows),
             html.Details([html.Summary("every other measured metric"), table(metric_table(snap, trials, rest))])),
        card("Architectures", specs),
        card("Learning curves", _graph("compare-learning-graph", figures.learning_curve_figure(snap, trials))),
    ]
    if any(adv.get("eps_curve") for _, adv in curves):
        body.append(card("Accuracy under attack", _graph("compare-eps-graph", figures.eps_figure(curves))))
    return body


def table_columns(snap: Snapshot) -> list[dict[str, Any]]:
    """DataTable columns: objectives and counts are numeric (they sort and filter as numbers)."""
    numeric = {"trial", "params", *snap.names}
    return [{"id": c, "name": snap.label(snap.names.index(c)) if c in snap.names else c,
             "type": "numeric" if c in numeric else "text"} for c in choose.table_columns(snap)]


def recommendation_view(snap: Snapshot) -> html.Div:
    """Which front models meet the requirements, and the suggested pick with its rule."""
    advice = choose.recommendation(snap)
    if advice["pick"] is None:
        return html.Div([html.P(advice["why"], className="hint")])
    feasible = ", ".join(f"#{n}" for n in advice["feasible"])
    meeting = sum(snap.feasible(t) for t in snap.completed)
    return html.Div([
        html.P([html.B(f"{meeting} of {len(snap.completed)} models meet every requirement; "
                       f"{len(advice['feasible'])} of them are on the Pareto front: "), feasible],
               id="feasible-front"),
        html.P([html.B("Suggested: "), advice["why"]], id="suggested-pick"),
        html.P(advice["rule"], className="hint"),
    ])


def _shortlist(snap: Snapshot, shown_rows: Any) -> list[int] | None:
    """Trial numbers the table shows after its filters, or None when it shows every completed trial."""
    if not isinstance(shown_rows, list):
        return None
    numbers = [row.get("trial") for row in shown_rows if isinstance(row, dict)]
    return numbers if len(numbers) < len(snap.completed) else None


def _ranges(value: Any) -> list[list[float]]:
    """A parcoords ``constraintrange`` from restyleData (a pair, a list of pairs, wrapped per trace) as pairs."""
    pairs: list[list[float]] = []

    def walk(item: Any) -> None:
        if (isinstance(item, list) and len(item) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in item)):
            pairs.append([float(min(item)), float(max(item))])
        elif isinstance(item, list):
            for inner in item:
                walk(inner)

    walk(value)
    return pairs


def _study_error(name: Any) -> str:
    return "pick a study in the header" if not name else f"study '{name}' is no longer in this storage"


def register_callbacks(app: dash.Dash, source: StudySource, export: Any = None) -> None:
    """Wire the page to ``source``; ``export(snapshot, trial) -> (filename, bytes)`` backs the export button."""

    @app.callback(Output("signature", "data"), Output("status", "children"), Output("study", "options"),
                  Input("tick", "n_intervals"), Input("study", "value"), State("signature", "data"))
    def poll(_tick: Any, study_name: Any, previous: Any):
        names = source.names()
        snap = source.snapshot(study_name)
        now = datetime.datetime.now().strftime("%H:%M:%S")
        if snap is None:
            return None, f"{_study_error(study_name)} · checked {now}", names
        signature = snap.signature()
        status = f"{snap.counts_text()} · live, checked {now}"
        return (no_update if signature == previous else signature), status, names

    @app.callback(Output("study-table", "children"), Input("signature", "data"), Input("tick", "n_intervals"))
    def studies(_signature: Any, tick: Any):
        if ctx.triggered_id == "tick" and tick and tick % 6:
            return no_update  # the overview reloads every study: every sixth tick is plenty
        return table(source.study_rows(), ["study", "trials", "objectives", "front",
                                             "best of each objective", "started"])

    @app.callback(Output("x-axis", "options"), Output("x-axis", "value"),
                  Output("y-axis", "options"), Output("y-axis", "value"),
                  Output("z-axis", "options"), Output("z-axis", "value"),
                  Input("signature", "data"), State("study", "value"),
                  State("x-axis", "value"), State("y-axis", "value"), State("z-axis", "value"))
    def axes(_signature: Any, study_name: Any, x: Any, y: Any, z: Any):
        snap = source.snapshot(study_name)
        if snap is None:
            return [], None, [], None, [], None
        keys = figures.axis_options(snap)
        options = [{"label": figures.axis_label(snap, k), "value": k} for k in keys]
        x = x if x in keys else keys[0]
        y = y if y in keys else keys[min(1, len(keys) - 1)]
        z = z if z in keys else None
        return options, x, options, y, options, z

    @app.callback(Output("front-table", "data"), Output("front-table", "columns"),
                  Output("recommendation", "children"),
                  Output("family-filter", "options"), Output("family-filter", "value"),
                  Input("signature", "data"), Input("family-filter", "value"), Input("brushes", "data"),
                  State("study", "value"), State("family-filter", "options"))
    def front_table(_signature: Any, families: Any, brushes: Any, study_name: Any, known: Any):
        snap = source.snapshot(study_name)
        if snap is None:
            return [], [], html.P(_study_error(study_name), className="hint"), [], []
        rows = choose.table_rows(snap)
        present = [f for f in choose.FAMILIES if any(row["family"] == f for row in rows)]
        seen = {o.get("value") for o in known or [] if isinstance(o, dict)}
        families = ([f for f in families or [] if f in present]  # a family that appears later starts ticked
                    + [f for f in present if f not in seen])
        inside = figures.brushed(snap, brushes if isinstance(brushes, dict) else {})
        rows = [row for row in rows if row["family"] in families and row["trial"] in inside]
        options = [{"label": f" {family} ", "value": family} for family in present]
        return rows, table_columns(snap), recommendation_view(snap), options, families

    @app.callback(Output("brushes", "data"), Input("parallel-graph", "restyleData"),
                  State("brushes", "data"), State("study", "value"), prevent_initial_call=True)
    def brush(restyle: Any, brushes: Any, study_name: Any):
        snap = source.snapshot(study_name)
        if snap is None or not isinstance(restyle, list) or not restyle or not isinstance(restyle[0], dict):
            return no_update
        keys = [key for key, _ in figures.parallel_dimensions(snap)]
        brushes = dict(brushes) if isinstance(brushes, dict) else {}
        changed = False
        for prop, value in restyle[0].items():
            match = re.fullmatch(r"dimensions\[(\d+)\]\.constraintrange", str(prop))
            if not match or int(match.group(1)) >= len(keys):
                continue
            key, ranges = keys[int(match.group(1))], _ranges(value)
            if ranges:
                brushes[key] = ranges
            else:
                brushes.pop(key, None)
            changed = True
        return brushes if changed else no_update

    @app.callback(Output("pareto-graph", "figure"), Output("parallel-graph", "figure"),
                  Output("hv-graph", "figure"), Output("hv-text", "children"),
                  Input("signature", "data"), Input("x-axis", "value"), Input("y-axis", "value"),
                  Input("z-axis", "value"), Input("show", "value"), Input("front-table", "derived_virtual_data"),
                  State("study", "value"), State("brushes", "data"))
    def explorer(_signature: Any, x: Any, y: Any, z: Any, show: Any, shown_rows: Any, study_name: Any,
                 brushes: Any):
        snap = source.snapshot(study_name)
        if snap is None:
            blank = figures.message_figure(_study_error(study_name))
            return blank, blank, blank, ""
        keys = figures.axis_options(snap)
        x = x if x in keys else (keys[0] if keys else None)
        y = y if y in keys else (keys[min(1, len(keys) - 1)] if keys else None)
        z = z if z in keys else None
        highlight = _shortlist(snap, shown_rows)
        pick = choose.recommendation(snap)["pick"]
        show = [s for s in (show or []) if s in ("dominated", "infeasible")]
        scatter = (figures.pareto_figure(snap, x, y, z, show=show, highlight=highlight, pick=pick)
                   if x else figures.message_figure("no objective values yet", height=460))
        scatter.update_layout(uirevision=f"{snap.study_name}|{x}|{y}|{z}")  # keep the user's zoom across live refreshes
        parallel = figures.parallel_figure(snap, highlight, brushes if isinstance(brushes, dict) else None)
        parallel.update_layout(uirevision=snap.study_name)
        hv_figure, hv_text = figures.hypervolume_figure(snap)
        return scatter, parallel, hv_figure, hv_text

    @app.callback(Output("importance-graph", "figure"), Input("signature", "data"), State("study", "value"))
    def importance(_signature: Any, study_name: Any):
        snap = source.snapshot(study_name)
        if snap is None:
            return figures.message_figure(_study_error(study_name))
        return figures.importance_figure(*choose.importances(snap))

    @app.callback(Output("analysis-graph", "figure"), Input("signature", "data"), State("study", "value"))
    def equal_accuracy(_signature: Any, study_name: Any):
        snap = source.snapshot(study_name)
        if snap is None:
            return figures.message_figure(_study_error(study_name))
        if not snap.completed:
            return figures.message_figure(f"no completed trial yet ({snap.counts_text()})")
        try:
            found = analyze(snap.study, metrics=HEADLINE_METRICS, importance=False)
        except UsageError as error:
            return figures.message_figure(str(error))
        return figures.comparison_figure(found)

    @app.callback(Output("trial", "options"), Output("trial", "value"),
                  Output("compare-trials", "options"), Output("compare-trials", "value"),
                  Output("tabs", "value"),
                  Input("signature", "data"), Input("pareto-graph", "clickData"),
                  Input("front-table", "selected_row_ids"),
                  State("study", "value"), State("trial", "value"), State("compare-trials", "value"))
    def pick(_signature: Any, click: Any, selected: Any, study_name: Any, current: Any, compared: Any):
        snap = source.snapshot(study_name)
        if snap is None:
            return [], None, [], [], no_update
        options = [trial_option(snap, t) for t in snap.trials]
        numbers = {t.number for t in snap.trials}
        front = sorted(snap.front)
        if ctx.triggered_id == "pareto-graph" and click:
            points = click.get("points") or [{}]
            clicked = points[0].get("customdata")
            if isinstance(clicked, list):
                clicked = clicked[0] if clicked else None
            if clicked in numbers:
                return options, clicked, no_update, no_update, "trial"
        value = (current if current in numbers
                 else front[0] if front else (snap.trials[-1].number if snap.trials else None))
        complete = [o for o in options if snap.trial(o["value"]).state == TrialState.COMPLETE]
        if ctx.triggered_id == "front-table" and selected:  # ticked rows go to the Compare tab
            compared = list(selected)
        kept = [n for n in (compared or []) if n in {o["value"] for o in complete}][:4]
        if not kept:  # start with the two first front trials (topped up with other completed ones)
            kept = (front + [o["value"] for o in complete if o["value"] not in front])[:2]
        return options, value, complete, kept, no_update

    @app.callback(Output("trial-body", "children"),
                  Input("trial", "value"), Input("signature", "data"), State("study", "value"))
    def drill_down(number: Any, _signature: Any, study_name: Any):
        snap = source.snapshot(study_name)
        if snap is None:
            return [card("Trial", html.P(_study_error(study_name), className="hint"))]
        trial = snap.trial(number)
        if trial is None:
            return [card("Trial", html.P("No trial picked: choose one above or click a point in the Pareto explorer.",
                                         className="hint"))]
        return trial_body(snap, trial)

    @app.callback(Output("compare-body", "children"),
                  Input("compare-trials", "value"), Input("signature", "data"), State("study", "value"))
    def compare(numbers: Any, _signature: Any, study_name: Any):
        snap = source.snapshot(study_name)
        if snap is None:
            return [card("Compare", html.P(_study_error(study_name), className="hint"))]
        picked = [snap.trial(n) for n in (numbers or [])[:4]]
        return compare_body(snap, [t for t in picked if t is not None and t.state == TrialState.COMPLETE])

    @app.callback(Output("export-download", "data"), Output("export-status", "children"),
                  Input("export-button", "n_clicks"), State("trial", "value"), State("study", "value"),
                  prevent_initial_call=True)
    def export_trial(_clicks: Any, number: Any, study_name: Any):
        snap = source.snapshot(study_name)
        trial = snap.trial(number) if snap else None
        if trial is None or trial.state != TrialState.COMPLETE:
            return no_update, "Pick a completed trial to export."
        if export is None:
            return no_update, "Export is not available in this installation (nas.export is missing)."
        try:
            filename, payload = export(snap, trial)
        except Exception as error:  # shown in the page; the dashboard keeps serving
            return no_update, f"Export failed: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
        return dcc.send_bytes(payload, filename), f"Exported trial {trial.number} as {filename}."
