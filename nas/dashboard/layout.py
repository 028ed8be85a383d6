"""The dashboard page: a header with the study picker and live status, and four tabs
(studies, Pareto explorer, trial drill-down, compare). Small HTML builders for tables and the drawn architecture.
"""
from __future__ import annotations

from typing import Any

from dash import dash_table, dcc, html

from ..analysis import EQUAL_ACCURACY_HINT
from .source import architecture_layers, format_value

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d2733; background: #f4f6f9; }
.header { display: flex; align-items: center; gap: 18px; padding: 12px 24px; background: #17324f; color: white; }
.header h1 { font-size: 20px; margin: 0; font-weight: 600; }
.header .picker { width: 260px; color: #1d2733; }
.status { font-size: 13px; opacity: 0.9; }
.page { padding: 12px 24px 40px; }
.card { background: white; border-radius: 8px; padding: 14px 18px; margin: 12px 0;
        box-shadow: 0 1px 3px rgba(0,0,0,0.08); }
.card h2 { font-size: 16px; margin: 0 0 8px; }
.card h3 { font-size: 14px; margin: 12px 0 6px; }
details summary { cursor: pointer; color: #3b4b5c; font-size: 13px; margin: 6px 0; }
.hint { color: #5b6b7c; font-size: 13px; margin: 4px 0 8px; }
.controls { display: flex; gap: 16px; align-items: flex-end; flex-wrap: wrap; }
.controls label { font-size: 12px; color: #5b6b7c; display: block; margin-bottom: 2px; }
.controls .control { min-width: 200px; }
.controls .control.wide { min-width: 480px; }
button { background: #17324f; color: white; border: 0; border-radius: 6px; padding: 8px 14px; font-size: 13px;
         cursor: pointer; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
table.data { border-collapse: collapse; font-size: 13px; width: 100%; }
table.data th { text-align: left; border-bottom: 2px solid #d5dde6; padding: 4px 8px; color: #3b4b5c; }
table.data td { border-bottom: 1px solid #eef1f5; padding: 4px 8px; }
td.PASS, span.PASS { color: #177a2e; font-weight: 600; }
td.FAIL, span.FAIL { color: #c62828; font-weight: 600; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 10px; font-size: 12px; margin-right: 6px;
         background: #e6ecf3; }
.badge.good { background: #dcf2e2; color: #177a2e; } .badge.bad { background: #fbe0e0; color: #c62828; }
.arch { display: flex; flex-wrap: wrap; align-items: center; gap: 4px; }
.arch .layer { border: 1px solid #9fb3c8; border-radius: 6px; padding: 4px 8px; background: #f7fafc; font-size: 12px;
               max-width: 220px; }
.arch .layer b { display: block; font-size: 11px; color: #17324f; text-transform: uppercase; }
.arch .arrow { color: #9fb3c8; }
.error { color: #c62828; }
.side { display: grid; gap: 12px; }
#front-table td, #front-table th { font-family: system-ui, -apple-system, "Segoe UI", sans-serif !important; }
"""

INDEX = """<!DOCTYPE html>
<html><head>{%metas%}<title>{%title%}</title>{%favicon%}{%css%}<style>""" + STYLE + """</style></head>
<body>{%app_entry%}<footer>{%config%}{%scripts%}{%renderer%}</footer></body></html>"""


def table(rows: list[dict[str, Any]], columns: list[str] | None = None,
          classes: dict[str, str] | None = None) -> html.Table:
    """A plain table; a cell whose text is PASS/FAIL gets that CSS class (green/red)."""
    if not rows:
        return html.P("none", className="hint")
    columns = columns or list(rows[0])
    body = []
    for row in rows:
        cells = []
        for column in columns:
            text = format_value(row.get(column))
            cells.append(html.Td(text, className=text if text in ("PASS", "FAIL") else (classes or {}).get(column)))
        body.append(html.Tr(cells))
    return html.Table([html.Thead(html.Tr([html.Th(c) for c in columns])), html.Tbody(body)], className="data")


def architecture(spec: dict[str, Any]) -> html.Div:
    """The spec drawn as boxes joined by arrows, input to output."""
    items: list[Any] = []
    for index, (name, detail) in enumerate(architecture_layers(spec)):
        if index:
            items.append(html.Span("→", className="arrow"))
        items.append(html.Div([html.B(name), detail], className="layer"))
    return html.Div(items, className="arch")


def card(title: str, *children: Any, hint: str | None = None, **kwargs: Any) -> html.Div:
    parts: list[Any] = [html.H2(title)]
    if hint:
        parts.append(html.P(hint, className="hint"))
    return html.Div(parts + list(children), className="card", **kwargs)


def _dropdown(id_: str, label: str, wide: bool = False, **kwargs: Any) -> html.Div:
    return html.Div([html.Label(label, htmlFor=id_), dcc.Dropdown(id=id_, **kwargs)],
                    className="control wide" if wide else "control")


def build_layout(studies: list[str], study_name: str | None, refresh_ms: int) -> html.Div:
    studies_tab = dcc.Tab(label="Studies", value="studies", children=[
        card("Studies in this storage", html.Div(id="study-table"),
             hint="Pick a study in the header to explore it; the page refreshes while a search runs."),
    ])
    pareto_tab = dcc.Tab(label="Pareto explorer", value="pareto", children=[
        card("Choose a model", html.Div(id="recommendation"),
             html.Div([html.Div([html.Label("training recipes shown"), dcc.Checklist(id="family-filter", inline=True,
                                                                                      value=[], options=[])],
                                className="control wide")], className="controls"),
             dash_table.DataTable(
                 id="front-table", sort_action="native", sort_mode="multi", filter_action="native",
                 row_selectable="multi", selected_row_ids=[], page_action="none", export_format="csv",
                 export_headers="display", style_table={"overflowX": "auto", "maxHeight": "460px", "overflowY": "auto"},
                 style_cell={"fontFamily": "inherit", "fontSize": "13px", "textAlign": "left", "padding": "4px 8px",
                             "whiteSpace": "normal", "height": "auto", "minWidth": "70px", "maxWidth": "420px"},
                 style_header={"fontWeight": "600", "backgroundColor": "#eef1f5"},
                 style_cell_conditional=[{"if": {"column_id": "recipe"}, "minWidth": "360px"}],
                 style_data_conditional=[
                     {"if": {"filter_query": '{front} = "yes"'}, "backgroundColor": "#f2f7ff"},
                     {"if": {"filter_query": '{requirements} contains "FAIL"', "column_id": "requirements"},
                      "color": "#c62828", "fontWeight": "600"},
                     {"if": {"filter_query": '{requirements} = "PASS"', "column_id": "requirements"},
                      "color": "#177a2e", "fontWeight": "600"}]),
             hint="Every completed model, one row. Click a header to sort; type a threshold under a header to filter "
                  "(e.g. >= 0.8 under accuracy, adversarial under family); the rows left are ringed in the plots "
                  "below. Tick rows to compare them (Compare tab); Export saves the rows shown as CSV."),
        card("Trade-offs", html.Div([
            _dropdown("x-axis", "x axis", clearable=False),
            _dropdown("y-axis", "y axis", clearable=False),
            _dropdown("z-axis", "z axis (optional: 3-D)", clearable=True, placeholder="none (2-D)"),
            html.Div([html.Label("show"), dcc.Checklist(
                id="show", value=["dominated", "infeasible"], inline=True,
                options=[{"label": " dominated trials ", "value": "dominated"},
                         {"label": " infeasible trials", "value": "infeasible"}],
            )], className="control"),
        ], className="controls"), dcc.Graph(id="pareto-graph", config={"displaylogo": False}),
            hint="Each point is a trained model; colour: its training recipe, marker: filled circles (labelled with "
                 "the trial number) are the Pareto front (no other feasible model is at least as good on every "
                 "objective), open circles are dominated, crosses fail a requirement; size: parameter count. "
                 "Axes can also show any measured metric."),
        card("Why: which choices drive each objective", dcc.Graph(id="importance-graph",
                                                                   config={"displaylogo": False}),
             hint="Per objective, how strongly each searched parameter separates the best models (top 10%, at least 5) "
                  "from all (Optuna's PED-ANOVA). A long bar: that choice decides the objective."),
        card("Robustness at equal accuracy", dcc.Graph(id="analysis-graph", config={"displaylogo": False}),
             hint=EQUAL_ACCURACY_HINT),
        card("Objectives and searched parameters", dcc.Graph(id="parallel-graph", config={"displaylogo": False}),
             hint="One line per model. Drag along any axis to brush a range: the table and the plots keep only "
                  "the models inside every brushed range. Click a brush to remove it."),
        card("Search progress", dcc.Graph(id="hv-graph", config={"displaylogo": False}),
             html.P(id="hv-text", className="hint")),
    ])
    trial_tab = dcc.Tab(label="Trial", value="trial", children=[
        html.Div([
            _dropdown("trial", "trial", wide=True, clearable=False,
                      placeholder="pick a trial (or click a point in the explorer)"),
            html.Div([html.Button("Export this trial (zip)", id="export-button", n_clicks=0),
                      dcc.Download(id="export-download")],
                     className="control"),
            html.Div(id="export-status", className="hint"),
        ], className="controls card"),
        html.Div(id="trial-body"),
    ])
    compare_tab = dcc.Tab(label="Compare", value="compare", children=[
        html.Div([_dropdown("compare-trials", "trials to compare (2 to 4)", wide=True, multi=True)],
                 className="controls card"),
        html.Div(id="compare-body"),
    ])
    default = study_name or (studies[0] if len(studies) == 1 else None)
    return html.Div([
        html.Div([
            html.H1("Robust NAS dashboard"),
            html.Div(dcc.Dropdown(id="study", options=studies, value=default, clearable=False,
                                  placeholder="pick a study"),
                     className="picker"),
            html.Div(id="status", className="status"),
        ], className="header"),
        html.Div([dcc.Tabs(id="tabs", value="pareto" if default else "studies",
                           children=[studies_tab, pareto_tab, trial_tab, compare_tab])], className="page"),
        dcc.Store(id="signature"),
        dcc.Store(id="brushes", data={}),
        dcc.Interval(id="tick", interval=refresh_ms),
    ])
