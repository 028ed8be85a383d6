"""Plotly figures drawn from a :class:`~nas.dashboard.source.Snapshot` and a trial's details.

The dashboard and ``nas report`` draw the same figures, so a shared report reads like the live view.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Iterable

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial
from plotly.subplots import make_subplots

from ..analysis import HEADLINE_METRICS, Analysis
from . import choose
from ..records import LAST_EPOCH_ATTR
from .source import Snapshot, format_value

TEMPLATE = "plotly_white"
PALETTE = ["#1f5fbf", "#e8710a", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]


def message_figure(text: str, height: int = 260) -> go.Figure:
    """An empty figure carrying a sentence (no data yet, or nothing of this kind was measured)."""
    figure = go.Figure(layout={"template": TEMPLATE, "height": height,
                               "xaxis": {"visible": False}, "yaxis": {"visible": False}})
    figure.add_annotation(text=text, showarrow=False, font={"size": 14, "color": "#555"},
                          x=0.5, y=0.5, xref="paper", yref="paper")
    return figure


# ---------------------------------------------------------------------------------- Pareto explorer
# Colour says how a model was trained (the usual reason it trades accuracy for robustness); the marker says
# where it stands (front, dominated, failing a requirement); the size says how many parameters it has.
FAMILY_COLORS = {choose.PLAIN: "#1f5fbf", choose.ADVERSARIAL: "#e8710a", choose.OUTLIERS: "#2ca02c",
                 choose.BOTH: "#9467bd"}
SYMBOLS = {"front": "circle", "front_infeasible": "diamond", "dominated": "circle-open", "infeasible": "x"}
SYMBOL_KEYS = {"front": "Pareto front (labelled #trial)", "front_infeasible": "best trade-off, fails a requirement",
               "dominated": "dominated", "infeasible": "fails a requirement"}
HIGHLIGHT = {"color": "#111", "symbol": "circle-open", "line": {"width": 2.5}}  # open symbols draw in marker.color


def category(snap: Snapshot, trial: FrozenTrial) -> str:
    feasible = snap.feasible(trial)
    if trial.number in snap.front:
        return "front" if feasible else "front_infeasible"
    return "dominated" if feasible else "infeasible"


def axis_options(snap: Snapshot) -> list[str]:
    """Objectives first, then every other numeric metric the completed trials report (e.g. ``ood.min_auroc``)."""
    extra: set[str] = set()
    for trial in snap.completed:
        metrics = snap.record(trial).get("metrics") or {}
        extra.update(k for k, v in metrics.items() if isinstance(v, (int, float)))
    return list(snap.names) + sorted(extra - set(snap.names))


def axis_label(snap: Snapshot, key: str) -> str:
    return snap.label(snap.names.index(key)) if key in snap.names else key


def axis_value(snap: Snapshot, trial: FrozenTrial, key: str) -> float | None:
    if key in snap.names and trial.values:
        return trial.values[snap.names.index(key)]
    value = (snap.record(trial).get("metrics") or {}).get(key)
    return float(value) if isinstance(value, (int, float)) else None


def _hover(snap: Snapshot, trial: FrozenTrial) -> str:
    """Hover text: the trial's standing, architecture, recipe in words and every objective."""
    view = snap.record(trial)
    lines = [f"<b>trial {trial.number}</b> · {choose.recipe_family(view)}",
             "architecture: " + view.get("spec_summary", ""),
             "recipe: " + _wrap(choose.recipe_words(view))]
    params = choose.parameter_count(view)
    if params is not None and "params" not in snap.names:
        lines.append(f"parameters: {format_value(params)}")
    results = view.get("objectives") or {}
    for name, value in zip(snap.names, trial.values or ()):
        skipped = " (skipped)" if results.get(name, {}).get("skipped") else ""
        lines.append(f"{name}: {format_value(value)}{skipped}")
    failing = [m for m, row in (view.get("requirements") or {}).items() if row.get("pass") is False]
    lines.append("fails " + ", ".join(failing) if failing
                 else ("meets every requirement" if snap.feasible(trial) else "infeasible"))
    return "<br>".join(lines)


def _wrap(text: str, width: int = 70) -> str:
    """Break a long recipe at its '; ' separators so the hover box stays narrow."""
    lines, line = [], ""
    for part in text.split("; "):
        if line and len(line) + len(part) > width:
            lines.append(line + ";")
            line = part
        else:
            line = f"{line}; {part}" if line else part
    return "<br>  ".join(lines + [line])


def _wide_range(values: Iterable[float | None]) -> bool:
    """Log-scale an axis whose positive values span more than two decades (parameter counts, FLOPs)."""
    values = [v for v in values if v is not None]
    return bool(values) and min(values) > 0 and max(values) / min(values) > 100


def _padded_range(values: list[float | None], log: bool) -> list[float] | None:
    """An explicit axis range around the values: plotly's own range for one point runs far past it."""
    values = [v for v in values if v is not None and math.isfinite(v) and (v > 0 or not log)]
    if not values:
        return None
    if log:
        values = [math.log10(v) for v in values]
    low, high = min(values), max(values)
    pad = 0.08 * (high - low) or 0.05 * abs(high) or 0.05
    return [low - pad, high + pad]


def _sizes(snap: Snapshot, trials: list[FrozenTrial], base: float) -> list[float]:
    """Marker size grows with the square root of the parameter count (area ~ parameters), within 0.7..1.6 × base."""
    counts = [choose.parameter_count(snap.record(t)) for t in trials]
    known = [c for c in counts if c]
    if not known or min(known) == max(known):
        return [base] * len(trials)
    low, high = math.sqrt(min(known)), math.sqrt(max(known))
    return [base if not c else base * (0.7 + 0.9 * (math.sqrt(c) - low) / (high - low)) for c in counts]


def pareto_figure(snap: Snapshot, x: str, y: str, z: str | None = None,
                  show: Iterable[str] = ("dominated", "infeasible"), highlight: Iterable[int] | None = None,
                  pick: int | None = None) -> go.Figure:
    """Scatter of completed trials over two (or three) objectives or metrics; points carry the trial number.

    ``highlight``: trial numbers ringed in black (the rows left by the table's filters); ``pick``: the suggested
    trial, marked with an arrow.
    """
    trials = snap.completed
    if not trials:
        return message_figure(f"study '{snap.study_name}' has no completed trial yet ({snap.counts_text()}); "
                              "this page refreshes as trials finish", height=460)
    show = set(show) | {"front", "front_infeasible"}
    shown = [t for t in trials if category(snap, t) in show]
    keys = [(axis, k) for axis, k in (("x", x), ("y", y), ("z", z)) if k]
    figure = go.Figure()
    trace = go.Scatter3d if z else go.Scatter
    for family, color in FAMILY_COLORS.items():
        members = [t for t in shown if choose.recipe_family(snap.record(t)) == family]
        if not members:
            continue
        coords = {axis: [axis_value(snap, t, k) for t in members] for axis, k in keys}
        kinds = [category(snap, t) for t in members]
        symbols = [SYMBOLS[kind] for kind in kinds]
        if z:  # WebGL: an open square stands in for the cross, which 3-D scenes draw as a font glyph
            symbols = ["square-open" if s == "x" else s for s in symbols]
        marker: dict[str, Any] = {"color": color, "symbol": symbols, "size": _sizes(snap, members, 8 if z else 14),
                                  "line": {"width": 1, "color": "white" if not z else color}}
        if not z:
            marker["opacity"] = [1.0 if kind.startswith("front") else 0.55 for kind in kinds]
        labels = [f"#{t.number}" if t.number in snap.front else "" for t in members]
        figure.add_trace(trace(**coords, name=f"{family} ({len(members)})", mode="markers+text", text=labels,
                               textposition="top center", textfont={"size": 11, "color": "#333"},
                               marker=marker, customdata=[t.number for t in members], legendgroup="recipe",
                               legendgrouptitle={"text": "training recipe (colour)"},
                               hovertext=[_hover(snap, t) for t in members],
                               hovertemplate="%{hovertext}<extra></extra>"))
    for kind in dict.fromkeys(category(snap, t) for t in shown):  # the marker key: legend entries without points
        symbol = "square-open" if z and SYMBOLS[kind] == "x" else SYMBOLS[kind]
        empty = {axis: [None] for axis, _ in keys}
        figure.add_trace(trace(**empty, mode="markers", name=SYMBOL_KEYS[kind], customdata=[], hoverinfo="skip",
                               marker={"color": "#555", "symbol": symbol, "size": 8 if z else 11},
                               legendgroup="marker", legendgrouptitle={"text": "standing (marker)"}))
    ringed = [t for t in shown if highlight is not None and t.number in set(highlight)]
    if highlight is not None:
        coords = {axis: [axis_value(snap, t, k) for t in ringed] for axis, k in keys}
        figure.add_trace(trace(**coords, mode="markers", name=f"shortlisted in the table ({len(ringed)})",
                               customdata=[t.number for t in ringed], hoverinfo="skip",
                               marker={**HIGHLIGHT, "size": 12 if z else 24}, legendgroup="shortlist"))
    values = {k: [axis_value(snap, t, k) for t in trials] for _, k in keys}
    axes: dict[str, Any] = {}
    for axis, k in keys:
        log = _wide_range(values[k])
        axes[f"{axis}axis"] = {"title": {"text": axis_label(snap, k)}, "type": "log" if log else "linear",
                               "range": _padded_range(values[k], log)}
    layout: dict[str, Any] = {"template": TEMPLATE, "height": 720 if z else 560, "showlegend": True,
                              "legend": {"orientation": "v", "x": 1.02, "y": 1, "groupclick": "toggleitem"},
                              "margin": {"l": 70, "r": 20, "t": 50, "b": 50}, "clickmode": "event",
                              "title": {"text": "Pareto explorer: click a point to open its trial"}}
    if z:
        layout["scene"] = {**axes, "aspectmode": "cube"}
        layout["margin"] = {"l": 0, "r": 0, "t": 50, "b": 0}
    else:
        layout.update(axes)
    pick_trial = snap.trial(pick) if pick is not None else None
    if pick_trial is not None and pick_trial in shown and not z:
        px, py = axis_value(snap, pick_trial, x), axis_value(snap, pick_trial, y)
        if px is not None and py is not None:
            log_x, log_y = (axes[a]["type"] == "log" for a in ("xaxis", "yaxis"))
            figure.add_annotation(x=math.log10(px) if log_x else px, y=math.log10(py) if log_y else py,
                                  text=f"suggested: #{pick}", showarrow=True, arrowhead=2, ax=40, ay=-40,
                                  font={"color": "#111", "size": 12}, bgcolor="rgba(255,255,255,0.85)")
    figure.update_layout(**layout)
    return figure


def _param_dimension(label: str, values: list[Any]) -> dict[str, Any]:
    """A parallel-coordinates axis for one searched parameter; categories and "not used here" get tick labels."""
    present = [v for v in values if v is not None]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    if not numeric:
        categories = sorted({repr(v) for v in present}) + (["not used"] if len(present) < len(values) else [])
        codes = [categories.index("not used" if v is None else repr(v)) for v in values]
        text = [c.strip("'") for c in categories]
        return {"label": label, "values": codes, "tickvals": list(range(len(categories))), "ticktext": text}
    low, high = min(present), max(present)
    if len(present) == len(values):
        return {"label": label, "values": values}
    filler = low - (0.15 * (high - low) or 0.15 * abs(low) or 1.0)  # a conditional parameter absent in a trial
    ticks = [low + (high - low) * k / 3 for k in range(4)] if high > low else [low]
    return {"label": label, "values": [filler if v is None else v for v in values],
            "tickvals": [filler, *ticks], "ticktext": ["not used", *(format_value(t) for t in ticks)]}


def parallel_dimensions(snap: Snapshot) -> list[tuple[str, dict[str, Any]]]:
    """``(key, dimension)`` per axis over ``snap.completed``: the trial number, each objective (oriented so up is
    better) and each searched parameter. Keys name the axis in brushes (``trial``, ``objective:NAME``,
    ``param:NAME``); values line up with ``snap.completed``."""
    trials = snap.completed
    numbers = [t.number for t in trials]
    dimensions = [("trial", {"label": "trial", "values": numbers,
                             "tickvals": numbers if len(numbers) <= 20 else None})]
    for index, name in enumerate(snap.names):
        values = [t.values[index] for t in trials]
        low, high = min(values), max(values)
        span = [low, high] if snap.directions[index] == "maximize" else [high, low]
        dimensions.append((f"objective:{name}", {"label": snap.label(index), "values": values,
                                                  "range": span if low != high else None}))
    for name in sorted({name for t in trials for name in t.params}):
        label = name.split(".", 1)[-1] if name.count(".") > 1 else name
        dimensions.append((f"param:{name}", _param_dimension(label, [t.params.get(name) for t in trials])))
    return dimensions


def brushed(snap: Snapshot, brushes: dict[str, list[list[float]]] | None) -> set[int]:
    """Trial numbers inside every brushed range of the parallel coordinates (all completed trials when none)."""
    keep = {t.number for t in snap.completed}
    for key, dimension in parallel_dimensions(snap):
        ranges = (brushes or {}).get(key)
        if not ranges:
            continue
        keep &= {t.number for t, v in zip(snap.completed, dimension["values"])
                 if any(low <= v <= high for low, high in ranges)}
    return keep


def parallel_figure(snap: Snapshot, highlight: Iterable[int] | None = None,
                    brushes: dict[str, list[list[float]]] | None = None) -> go.Figure:
    """Parallel coordinates over the objectives (up is better on each) and the searched parameters.

    Drag along an axis to brush: the dashboard keeps only the trials inside every brushed range in its table;
    ``brushes`` (``{key: [[low, high], ...]}``) redraws them.
    """
    trials = snap.completed
    if not trials:
        return message_figure("no completed trial yet")
    dimensions = []
    for key, dimension in parallel_dimensions(snap):
        if (brushes or {}).get(key):
            dimension = {**dimension, "constraintrange": brushes[key] if len(brushes[key]) > 1 else brushes[key][0]}
        dimensions.append({k: v for k, v in dimension.items() if v is not None})
    if highlight is not None:
        chosen = set(highlight)
        line = {"color": [1 if t.number in chosen else 0 for t in trials],
                "colorscale": [[0, "#d5dde6"], [1, "#111"]], "cmin": 0, "cmax": 1}
        legend = "black: shortlisted in the table, grey: filtered out"
    else:
        families = list(FAMILY_COLORS)
        line = {"color": [families.index(choose.recipe_family(snap.record(t))) for t in trials], "cmin": 0, "cmax": 3,
                "colorscale": [[i / 3, FAMILY_COLORS[f]] for i, f in enumerate(families)]}
        legend = "colour: training recipe as in the explorer"
    figure = go.Figure(go.Parcoords(dimensions=dimensions, line=line, labelangle=-20, labelside="top"))
    figure.update_layout(template=TEMPLATE, height=440, margin={"l": 60, "r": 60, "t": 110, "b": 30},
                         title={"text": f"Objectives (up is better) and searched parameters · {legend}",
                                "font": {"size": 14}})
    return figure


def importance_figure(importances: dict[str, dict[str, float]], message: str | None = None) -> go.Figure:
    """One bar chart per objective: how much each searched parameter decides reaching its top trials."""
    if not importances:
        return message_figure(message or "no parameter importance")
    names = list(importances)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    figure = make_subplots(rows=rows, cols=cols, subplot_titles=names, horizontal_spacing=0.22,
                           vertical_spacing=0.5 / rows)
    for index, name in enumerate(names):
        ranked = sorted(importances[name].items(), key=lambda item: item[1])
        figure.add_trace(go.Bar(x=[v for _, v in ranked], y=[p for p, _ in ranked], orientation="h", name=name,
                                marker_color=PALETTE[index % len(PALETTE)], showlegend=False,
                                hovertemplate="%{y}: %{x:.2f}<extra>" + name + "</extra>"),
                         row=index // cols + 1, col=index % cols + 1)
    figure.update_xaxes(range=[0, 1], title_text="importance (sums to 1)")
    figure.update_layout(template=TEMPLATE, height=60 + 280 * rows, margin={"l": 130, "r": 20, "t": 70, "b": 40},
                         title={"text": "Which searched choices drive each objective (PED-ANOVA: top trials "
                                        "against all)", "font": {"size": 14}})
    return figure


def hypervolume_figure(snap: Snapshot) -> tuple[go.Figure, str]:
    """Optuna's hypervolume history, scaled to the fraction of the box between the ideal and reference points."""
    reference, ideal = snap.reference_point(), snap.ideal_point()
    if reference is None or ideal is None:
        why = "needs at least two objectives" if len(snap.names) < 2 else "needs a completed trial"
        return message_figure(f"hypervolume history {why}"), ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        figure = optuna.visualization.plot_hypervolume_history(snap.study, reference)
    box = math.prod(abs(r - i) for r, i in zip(reference, ideal))
    if box > 0:
        for trace in figure.data:
            trace.y = [value / box for value in trace.y]
    figure.update_layout(template=TEMPLATE, height=340, margin={"l": 60, "r": 20, "t": 50, "b": 40},
                         title={"text": "Hypervolume of the feasible front after each trial"},
                         yaxis={"title": {"text": "dominated fraction of the box" if box > 0 else "hypervolume"}},
                         xaxis={"title": {"text": "trial"}, "tick0": 0, "dtick": max(1, len(snap.trials) // 10)})
    point = ", ".join(f"{name} {format_value(value)}" for name, value in zip(snap.names, reference))
    best = ", ".join(f"{name} {format_value(value)}" for name, value in zip(snap.names, ideal))
    text = (f"Reference point: {point} (the worst feasible value of each objective, moved 10% of its range further). "
            f"Box: from there to the best values seen ({best}); 1.0 would mean one trial is best at everything.")
    return figure, text


# ------------------------------------------------------------------------------------ trial details
def learning_curve_figure(snap: Snapshot, trials: list[FrozenTrial]) -> go.Figure:
    """Per epoch: the training loss as optimised, the validation cross-entropy and the validation accuracy,
    each on its own axis. The training loss sums the ensemble members' losses and adds the adversarial and
    outlier-exposure terms, so on a shared axis with validation cross-entropy a robust model would look under-fit."""
    views = [snap.record(t) for t in trials]
    if not any(view.get("history") for view in views):
        return message_figure("no epoch finished yet" if not any(v.get(LAST_EPOCH_ATTR) for v in views) else
                              "the learning curve is stored when the trial ends (latest epoch: "
                              + ", ".join(_latest(v) for v in views if v.get(LAST_EPOCH_ATTR)) + ")")
    figure = make_subplots(rows=1, cols=3, horizontal_spacing=0.08,
                           subplot_titles=("training loss as optimised*", "validation cross-entropy",
                                           "validation accuracy"))
    for index, (trial, view) in enumerate(zip(trials, views)):
        history = view.get("history") or []
        color = PALETTE[index % len(PALETTE)]
        epochs = [row["epoch"] for row in history]
        label = f"trial {trial.number}"
        for col, key, name in ((1, "train_loss", "training loss"), (2, "val_loss", "validation cross-entropy"),
                               (3, "val_accuracy", "validation accuracy")):
            figure.add_trace(go.Scatter(x=epochs, y=[r.get(key) for r in history], name=f"{label} {name}",
                                        line={"color": color}, mode="lines+markers", legendgroup=label,
                                        showlegend=col == 1), row=1, col=col)
    members = sorted({choose.ensemble_size(view) for view in views})
    robust = sorted({choose.recipe_family(view) for view in views} - {choose.PLAIN})
    parts = (["summed over " + "/".join(map(str, members)) + " ensemble members"] if members != [1] else []) + (
        ["includes the " + " and ".join(robust) + " loss terms"] if robust else [])
    note = ("* " + "; ".join(parts) + ": not on the validation scale" if parts
            else "* the training cross-entropy, averaged over each epoch with dropout on")
    figure.add_annotation(text=note, showarrow=False, xref="paper", yref="paper",
                          x=0, y=-0.28, xanchor="left", font={"size": 11, "color": "#5b6b7c"})
    figure.update_xaxes(title_text="epoch", dtick=1)
    figure.update_layout(template=TEMPLATE, height=340, margin={"l": 50, "r": 20, "t": 40, "b": 80},
                         showlegend=len(trials) > 1)
    return figure


def _latest(view: dict[str, Any]) -> str:
    last = view[LAST_EPOCH_ATTR]
    return (f"epoch {last.get('epoch')} of {last.get('epochs', '?')}, "
            f"validation accuracy {format_value(last.get('val_accuracy'))}")


def _centers(edges: list[float]) -> list[float]:
    return [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]


def _fractions(counts: list[float]) -> list[float]:
    total = sum(counts) or 1
    return [c / total for c in counts]


def ood_figure(ood: dict[str, Any]) -> go.Figure:
    """Max-softmax confidence histograms: in-distribution validation data against each OOD set."""
    sets = ood.get("sets") or {}
    inside = (ood.get("in_distribution") or {}).get("histogram")
    if not sets or not inside:
        return message_figure("no OOD histograms in this trial's details")
    names = list(sets)
    titles = [f"{name}: AUROC {format_value(sets[name].get('auroc'))}, FPR95 {format_value(sets[name].get('fpr95'))}"
              for name in names]
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    figure = make_subplots(rows=rows, cols=cols, subplot_titles=titles, shared_yaxes=True, vertical_spacing=0.5 / rows)
    for index, name in enumerate(names):
        row, col = index // cols + 1, index % cols + 1
        pair = (("in-distribution (validation)", inside, "#7f7f7f"),
                (f"OOD: {name}", sets[name].get("histogram") or {}, PALETTE[(index + 1) % len(PALETTE)]))
        for label, hist, color in pair:
            edges, counts = hist.get("edges") or [], hist.get("counts") or []
            if len(edges) != len(counts) + 1:
                continue
            bar = go.Bar(x=_centers(edges), y=_fractions(counts), name=label, marker_color=color, opacity=0.6,
                         width=(edges[1] - edges[0]) if len(edges) > 1 else None,
                         showlegend=index == 0 or label != pair[0][0],
                         hovertemplate="confidence %{x:.2f}: %{y:.1%} of samples<extra>" + label + "</extra>")
            figure.add_trace(bar, row=row, col=col)
    figure.update_xaxes(title_text="max softmax confidence", range=[0, 1])
    figure.update_yaxes(title_text="fraction of samples", col=1)
    detector = ood.get("detector", "msp")
    figure.update_layout(template=TEMPLATE, barmode="overlay", height=120 + 260 * rows,
                         margin={"l": 50, "r": 20, "t": 70, "b": 40},
                         title={"text": f"OOD overconfidence ({detector}): confidence should stay low on OOD data",
                                "font": {"size": 14}},
                         legend={"orientation": "h", "y": -0.25 / rows})
    return figure


def eps_figure(curves: list[tuple[str, dict[str, Any]]], num_classes: int | None = None) -> go.Figure:
    """Accuracy as the attack budget eps grows, one line per (label, adversarial details); masking flags shown."""
    curves = [(label, adv) for label, adv in curves if adv and adv.get("eps_curve")]
    if not curves:
        return message_figure("no accuracy-vs-eps curve in this trial's details")
    figure = go.Figure()
    warnings_text = []
    for index, (label, adv) in enumerate(curves):
        points = adv["eps_curve"]
        flags = adv.get("masking_reasons") or adv.get("masking_flags") or []
        color = PALETTE[index % len(PALETTE)]
        samples = f", {adv['samples']} samples" if adv.get("samples") else ""
        figure.add_trace(go.Scatter(x=[p["eps"] for p in points], y=[p["accuracy"] for p in points],
                                    mode="lines+markers", name=label + samples + (" ⚠ masking?" if flags else ""),
                                    line={"color": color}))
        if adv.get("eps") is not None:
            for attack, symbol in (("FGSM", "triangle-up"), ("PGD", "square"), ("noise", "circle-open")):
                value = adv.get(f"{attack.lower()}_accuracy")
                if value is not None:
                    figure.add_trace(go.Scatter(x=[adv["eps"]], y=[value], mode="markers",
                                                name=f"{label} {attack} at eps",
                                                marker={"symbol": symbol, "size": 11, "color": color},
                                                showlegend=len(curves) == 1 or index == 0))
        if flags:
            warnings_text.append(f"{label}: " + "; ".join(flags))
    if num_classes:
        figure.add_hline(y=1 / num_classes, line={"dash": "dot", "color": "#999"}, annotation_text="chance")
    figure.add_annotation(text="eps 0 is the clean accuracy on the attack's own samples (every point of a line "
                               "uses the same ones), so it can differ from the accuracy on the whole validation split",
                          showarrow=False, xref="paper", yref="paper", x=0, y=-0.3, xanchor="left",
                          font={"size": 11, "color": "#5b6b7c"})
    if warnings_text:
        figure.add_annotation(text="⚠ possible gradient masking: " + " | ".join(warnings_text), showarrow=False,
                              xref="paper", yref="paper", x=0, y=1.12, xanchor="left",
                              font={"color": "#d62728", "size": 13})
    figure.update_layout(template=TEMPLATE, height=380, margin={"l": 50, "r": 20, "t": 70, "b": 90},
                         title={"text": "Accuracy under attack as eps grows "
                                        "(markers: FGSM, PGD, noise at the scored eps)", "font": {"size": 14}},
                         xaxis={"title": {"text": "eps (L∞, fraction of the input range)"}},
                         yaxis={"title": {"text": "accuracy"}, "range": [0, 1.02]})
    return figure


def class_names(details: dict[str, Any]) -> list[str] | None:
    """The class names the accuracy objective recorded (its per-class rows are in class order), if any."""
    rows = (details.get("accuracy") or {}).get("per_class") or []
    names = [row.get("name") for row in rows if isinstance(row, dict)]
    return [str(n) for n in names] if names and all(n is not None for n in names) else None


def _class(index: Any, names: list[str] | None) -> str:
    return names[index] if names and isinstance(index, int) and 0 <= index < len(names) else f"class {index}"


def attribution_figure(explainability: dict[str, Any], names: list[str] | None = None) -> go.Figure:
    """Example inputs (top) and their attribution maps drawn over them (bottom), titled with class names."""
    examples = [e for e in (explainability.get("examples") or [])[:4] if e.get("image") and e.get("attribution")]
    if not examples:
        return message_figure("no attribution examples in this trial's details")
    titles = [(f"{_class(e.get('label'), names)} ✓" if e.get("label") == e.get("prediction")
               else f"{_class(e.get('label'), names)}, predicted {_class(e.get('prediction'), names)} ✗")
              for e in examples]
    figure = make_subplots(rows=2, cols=len(examples), subplot_titles=titles + [""] * len(examples),
                           horizontal_spacing=0.03, vertical_spacing=0.06)
    for col, example in enumerate(examples, start=1):
        gray = go.Heatmap(z=example["image"], colorscale="Greys", reversescale=True, showscale=False, hoverinfo="skip")
        figure.add_trace(gray, row=1, col=col)
        figure.add_trace(gray, row=2, col=col)
        limit = max((abs(v) for row in example["attribution"] for v in row), default=1.0) or 1.0
        figure.add_trace(go.Heatmap(z=example["attribution"], colorscale="RdBu_r", zmin=-limit, zmax=limit,
                                    opacity=0.65, showscale=col == len(examples),
                                    colorbar={"title": {"text": "attribution"}, "len": 0.45, "y": 0.22},
                                    hovertemplate="attribution %{z:.3g}<extra></extra>"), row=2, col=col)
    figure.update_xaxes(visible=False, constrain="domain")
    for row in (1, 2):
        for col in range(1, len(examples) + 1):  # square pixels: each y axis scales with its own x axis
            anchor = figure.get_subplot(row, col).xaxis.plotly_name.replace("axis", "")
            figure.update_yaxes(visible=False, autorange="reversed", scaleanchor=anchor, constrain="domain",
                                row=row, col=col)
    method = explainability.get("method", "attribution")
    figure.update_layout(template=TEMPLATE, height=420, margin={"l": 10, "r": 10, "t": 70, "b": 10},
                         title={"text": f"Where the model looks ({method}; red pushes towards the prediction)",
                                "font": {"size": 14}})
    return figure


def faithfulness_figure(explainability: dict[str, Any]) -> go.Figure:
    """Deletion and insertion curves: accuracy as the most-attributed pixels are removed / revealed."""
    deletion, insertion = explainability.get("deletion_curve") or [], explainability.get("insertion_curve") or []
    if not deletion and not insertion:
        return message_figure("no deletion/insertion curves in this trial's details")
    figure = go.Figure()
    lines = (("deletion (lower is better)", deletion, PALETTE[1], "solid"),
             ("insertion (higher is better)", insertion, PALETTE[0], "solid"),
             ("deletion, random order", explainability.get("random_deletion_curve"), PALETTE[1], "dot"),
             ("insertion, random order", explainability.get("random_insertion_curve"), PALETTE[0], "dot"))
    for name, curve, color, dash in lines:
        if curve:
            steps = [i / max(len(curve) - 1, 1) for i in range(len(curve))]
            figure.add_trace(go.Scatter(x=steps, y=curve, name=name, mode="lines", line={"color": color, "dash": dash}))
    figure.update_layout(template=TEMPLATE, height=300, margin={"l": 50, "r": 20, "t": 50, "b": 40},
                         title={"text": "Are the attributions faithful?", "font": {"size": 14}},
                         xaxis={"title": {"text": "fraction of pixels removed / inserted (most attributed first)"}},
                         yaxis={"title": {"text": "model score"}})
    return figure


def reliability_figure(calibration: dict[str, Any]) -> go.Figure:
    """Reliability diagram: accuracy against confidence per bin; the diagonal is perfect calibration."""
    bins = calibration.get("reliability") or {}
    confidence, accuracy = bins.get("bin_confidence") or [], bins.get("bin_accuracy") or []
    if not confidence:
        return message_figure("no reliability diagram in this trial's details")
    figure = go.Figure([
        go.Bar(x=confidence, y=accuracy, name="accuracy per confidence bin", marker_color=PALETTE[0], width=0.04,
               customdata=bins.get("bin_count"),
               hovertemplate="confidence %{x:.2f}: accuracy %{y:.2f} (%{customdata} samples)<extra></extra>"),
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line={"dash": "dot", "color": "#999"}),
    ])
    figure.update_layout(template=TEMPLATE, height=300, margin={"l": 50, "r": 20, "t": 50, "b": 40},
                         title={"text": "Calibration: bars below the diagonal mean overconfidence",
                                "font": {"size": 14}},
                         xaxis={"title": {"text": "confidence"}, "range": [0, 1]},
                         yaxis={"title": {"text": "accuracy"}, "range": [0, 1]})
    return figure


# ------------------------------------------------------------------------------------------ compare
def normalised_scores(snap: Snapshot, trial: FrozenTrial) -> list[float]:
    """Each objective mapped to [0, 1] over the completed trials, 1 being the best value seen."""
    scores = []
    for index, direction in enumerate(snap.directions):
        values = [t.values[index] for t in snap.completed]
        low, high = min(values), max(values)
        value = trial.values[index]
        score = 1.0 if high == low else (value - low) / (high - low)
        scores.append(score if direction == "maximize" or high == low else 1.0 - score)
    return scores


def compare_figure(snap: Snapshot, trials: list[FrozenTrial]) -> go.Figure:
    """Objectives of 2-4 trials side by side (radar from three objectives on, bars below), 1 = best seen."""
    trials = [t for t in trials if t.values]
    if not trials:
        return message_figure("pick two to four completed trials to compare")
    figure = go.Figure()
    for index, trial in enumerate(trials):
        scores = normalised_scores(snap, trial)
        hover = [f"{name}: {format_value(v)}" for name, v in zip(snap.names, trial.values)]
        common = dict(name=f"trial {trial.number}", hovertext=hover,
                      hovertemplate="%{hovertext}<extra>" + f"trial {trial.number}</extra>",
                      marker={"color": PALETTE[index % len(PALETTE)]})
        if len(snap.names) >= 3:
            labels = [snap.label(i) for i in range(len(snap.names))]
            figure.add_trace(go.Scatterpolar(r=scores + scores[:1], theta=labels + labels[:1], fill="toself",
                                             opacity=0.55, **{**common, "hovertext": hover + hover[:1]}))
        else:
            figure.add_trace(go.Bar(x=[snap.label(i) for i in range(len(snap.names))], y=scores, **common))
    figure.update_layout(template=TEMPLATE, height=480, margin={"l": 80, "r": 80, "t": 60, "b": 40},
                         title={"text": "Objectives scaled over all completed trials: 1 = best seen, 0 = worst",
                                "font": {"size": 14}},
                         polar={"radialaxis": {"range": [0, 1]}}, yaxis={"range": [0, 1.05]})
    return figure


# ---------------------------------------------------------------------------------- equal-accuracy analysis
BETTER_COLORS = {"a": "#2ca02c", "b": "#d62728", "undecided": "#777"}


def comparison_figure(analysis: Analysis) -> go.Figure:
    """The seed paper's question drawn: for each comparison (ensembles vs single models, ...), the ratio of each
    headline robustness metric between the two groups at equal validation accuracy, with its 95% interval, on a
    log axis around 1. Green: the metric favours the first group; red: the second; grey: the interval holds 1."""
    rows = [r for r in analysis.comparisons if r.ratio is not None and r.metric in HEADLINE_METRICS]
    if not rows:
        why = "; ".join(f"{name}: {note}" for name, note in analysis.not_compared.items())
        return message_figure("No equal-accuracy comparison has enough trials in matched accuracy bins"
                              + (f" ({why})" if why else "") + ".")
    names = list(dict.fromkeys(r.comparison for r in rows))
    titles = []
    for name in names:
        first = next(r for r in rows if r.comparison == name)
        titles.append(f"{first.group_a} / {first.group_b}")
    figure = make_subplots(rows=len(names), cols=1, shared_xaxes=True, subplot_titles=titles,
                           vertical_spacing=0.3 / len(names))
    for index, name in enumerate(names, start=1):
        for row in (r for r in rows if r.comparison == name):
            better = ("a" if row.better == row.group_a else "b" if row.better == row.group_b else "undecided")
            has_interval = row.ratio_low is not None and row.ratio_high is not None
            figure.add_trace(go.Scatter(
                x=[row.ratio], y=[row.metric], mode="markers", showlegend=False,
                marker={"size": 10, "color": BETTER_COLORS[better]},
                error_x={"type": "data", "symmetric": False, "visible": has_interval,
                         "array": [row.ratio_high - row.ratio] if has_interval else [0],
                         "arrayminus": [row.ratio - row.ratio_low] if has_interval else [0]},
                hovertemplate=row.sentence + "<extra></extra>", name=row.metric),
                row=index, col=1)
    figure.add_vline(x=1.0, line_dash="dash", line_color="#999")
    figure.update_xaxes(type="log")
    figure.update_xaxes(title_text="ratio of group means at equal accuracy (95% interval; 1 = no difference)",
                        row=len(names), col=1)
    figure.update_layout(template=TEMPLATE, height=120 + 160 * len(names),
                         margin={"l": 190, "r": 20, "t": 70, "b": 60},
                         title={"text": f"Robustness at equal validation accuracy (bins {analysis.bin_width:g} points "
                                        f"wide, {analysis.trials} completed trials)", "font": {"size": 14}})
    return figure
