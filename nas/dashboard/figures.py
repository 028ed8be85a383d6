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

from .source import Snapshot, format_value

TEMPLATE = "plotly_white"
PALETTE = ["#1f5fbf", "#e8710a", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
# Point categories of the Pareto explorer: legend name, marker.
CATEGORIES: dict[str, tuple[str, dict[str, Any]]] = {
    "front": ("Pareto front",
              {"color": "#1f5fbf", "symbol": "circle", "size": 13, "line": {"width": 1, "color": "white"}}),
    "front_infeasible": ("best trade-offs, but failing a requirement (no trial meets them all)",
                         {"color": "#e8710a", "symbol": "diamond", "size": 13}),
    "dominated": ("dominated", {"color": "#a9bcd8", "symbol": "circle", "size": 9}),
    "infeasible": ("infeasible: fails a requirement", {"color": "#d62728", "symbol": "x", "size": 10}),
}


def message_figure(text: str, height: int = 260) -> go.Figure:
    """An empty figure carrying a sentence (no data yet, or nothing of this kind was measured)."""
    figure = go.Figure(layout={"template": TEMPLATE, "height": height,
                               "xaxis": {"visible": False}, "yaxis": {"visible": False}})
    figure.add_annotation(text=text, showarrow=False, font={"size": 14, "color": "#555"},
                          x=0.5, y=0.5, xref="paper", yref="paper")
    return figure


# ---------------------------------------------------------------------------------- Pareto explorer
def category(snap: Snapshot, trial: FrozenTrial) -> str:
    feasible = snap.feasible(trial)
    if trial.number in snap.front:
        return "front" if feasible else "front_infeasible"
    return "dominated" if feasible else "infeasible"


def axis_options(snap: Snapshot) -> list[str]:
    """Objectives first, then every other numeric metric the completed trials report (e.g. ``ood.min_auroc``)."""
    extra: set[str] = set()
    for trial in snap.completed:
        extra.update(k for k, v in (trial.user_attrs.get("metrics") or {}).items() if isinstance(v, (int, float)))
    return list(snap.names) + sorted(extra - set(snap.names))


def axis_label(snap: Snapshot, key: str) -> str:
    return snap.label(snap.names.index(key)) if key in snap.names else key


def axis_value(snap: Snapshot, trial: FrozenTrial, key: str) -> float | None:
    if key in snap.names and trial.values:
        return trial.values[snap.names.index(key)]
    value = (trial.user_attrs.get("metrics") or {}).get(key)
    return float(value) if isinstance(value, (int, float)) else None


def _hover(snap: Snapshot, trial: FrozenTrial) -> str:
    lines = [f"<b>trial {trial.number}</b>", trial.user_attrs.get("spec_summary", "")]
    results = trial.user_attrs.get("objectives") or {}
    for name, value in zip(snap.names, trial.values or ()):
        skipped = " (skipped)" if results.get(name, {}).get("skipped") else ""
        lines.append(f"{name}: {format_value(value)}{skipped}")
    failing = [m for m, row in (trial.user_attrs.get("requirements") or {}).items() if row.get("pass") is False]
    lines.append("fails " + ", ".join(failing) if failing
                 else ("meets every requirement" if snap.feasible(trial) else "infeasible"))
    return "<br>".join(lines)


def _wide_range(values: Iterable[float | None]) -> bool:
    """Log-scale an axis whose positive values span more than two decades (parameter counts, FLOPs)."""
    values = [v for v in values if v is not None]
    return bool(values) and min(values) > 0 and max(values) / min(values) > 100


def pareto_figure(snap: Snapshot, x: str, y: str, z: str | None = None,
                  show: Iterable[str] = ("dominated", "infeasible")) -> go.Figure:
    """Scatter of completed trials over two (or three) objectives or metrics; points carry the trial number."""
    trials = snap.completed
    if not trials:
        return message_figure(f"study '{snap.study_name}' has no completed trial yet ({snap.counts_text()}); "
                              "this page refreshes as trials finish", height=460)
    show = set(show) | {"front", "front_infeasible"}
    figure = go.Figure()
    for key, (name, marker) in CATEGORIES.items():
        members = [t for t in trials if category(snap, t) == key]
        if key not in show or not members:
            continue
        coords = {axis: [axis_value(snap, t, k) for t in members] for axis, k in (("x", x), ("y", y), ("z", z)) if k}
        common = dict(name=f"{name} ({len(members)})", mode="markers", customdata=[t.number for t in members],
                      hovertext=[_hover(snap, t) for t in members], hovertemplate="%{hovertext}<extra></extra>")
        if z:  # WebGL markers: an open square stands in for the cross, which 3-D scenes draw as a font glyph
            symbol = "square-open" if marker["symbol"] == "x" else marker["symbol"]
            figure.add_trace(go.Scatter3d(**coords, marker={**marker, "symbol": symbol, "size": marker["size"] * 0.6},
                                          **common))
        else:
            figure.add_trace(go.Scatter(**coords, marker=marker, **common))
    all_values = {k: [axis_value(snap, t, k) for t in trials] for k in (x, y, z) if k}
    axes = {axis: {"title": {"text": axis_label(snap, k)}, "type": "log" if _wide_range(all_values[k]) else "linear"}
            for axis, k in (("xaxis", x), ("yaxis", y), ("zaxis", z)) if k}
    layout: dict[str, Any] = {"template": TEMPLATE, "height": 520, "legend": {"orientation": "h", "y": -0.18},
                              "margin": {"l": 60, "r": 20, "t": 50, "b": 40}, "clickmode": "event",
                              "title": {"text": "Pareto explorer: click a point to open its trial"}}
    if z:
        layout["scene"] = axes
    else:
        layout.update(axes)
    figure.update_layout(**layout)
    return figure


def parallel_figure(snap: Snapshot) -> go.Figure:
    """Parallel coordinates over all objectives, each axis oriented so that up is better."""
    trials = snap.completed
    if not trials:
        return message_figure("no completed trial yet")
    codes = {"infeasible": 0, "front_infeasible": 1, "dominated": 2, "front": 3}
    colorscale = [[0.0, CATEGORIES["infeasible"][1]["color"]], [0.33, CATEGORIES["front_infeasible"][1]["color"]],
                  [0.67, CATEGORIES["dominated"][1]["color"]], [1.0, CATEGORIES["front"][1]["color"]]]
    numbers = [t.number for t in trials]
    dimensions = [{"label": "trial", "values": numbers, "tickvals": numbers if len(numbers) <= 20 else None}]
    for index, name in enumerate(snap.names):
        values = [t.values[index] for t in trials]
        low, high = min(values), max(values)
        span = [low, high] if snap.directions[index] == "maximize" else [high, low]
        dimensions.append({"label": snap.label(index), "values": values, "range": span if low != high else None})
    line = {"color": [codes[category(snap, t)] for t in trials], "colorscale": colorscale, "cmin": 0, "cmax": 3}
    figure = go.Figure(go.Parcoords(dimensions=[{k: v for k, v in d.items() if v is not None} for d in dimensions],
                                    line=line))
    figure.update_layout(template=TEMPLATE, height=380, margin={"l": 60, "r": 60, "t": 80, "b": 30},
                         title={"text": "All objectives (up is better on every axis) · blue: Pareto front, "
                                        "light: dominated, red: fails a requirement"})
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
def learning_curve_figure(trials: list[FrozenTrial]) -> go.Figure:
    """Training and validation loss (left) and validation accuracy (right) per epoch, one colour per trial."""
    if not any(t.user_attrs.get("history") for t in trials):
        return message_figure("no epoch finished yet")
    figure = make_subplots(rows=1, cols=2,
                           subplot_titles=("loss (dashed: training, solid: validation)", "validation accuracy"))
    for index, trial in enumerate(trials):
        history = trial.user_attrs.get("history") or []
        color = PALETTE[index % len(PALETTE)]
        epochs = [row["epoch"] for row in history]
        label = f"trial {trial.number}"
        figure.add_trace(go.Scatter(x=epochs, y=[r.get("train_loss") for r in history], name=f"{label} train loss",
                                    line={"color": color, "dash": "dash"}, legendgroup=label), row=1, col=1)
        figure.add_trace(go.Scatter(x=epochs, y=[r.get("val_loss") for r in history], name=f"{label} val loss",
                                    line={"color": color}, legendgroup=label), row=1, col=1)
        figure.add_trace(go.Scatter(x=epochs, y=[r.get("val_accuracy") for r in history], name=f"{label} val accuracy",
                                    line={"color": color}, mode="lines+markers", legendgroup=label), row=1, col=2)
    figure.update_xaxes(title_text="epoch", dtick=1)
    figure.update_layout(template=TEMPLATE, height=320, margin={"l": 50, "r": 20, "t": 40, "b": 40},
                         showlegend=len(trials) > 1)
    return figure


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
        figure.add_trace(go.Scatter(x=[p["eps"] for p in points], y=[p["accuracy"] for p in points],
                                    mode="lines+markers", name=label + (" ⚠ masking?" if flags else ""),
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
    if warnings_text:
        figure.add_annotation(text="⚠ possible gradient masking: " + " | ".join(warnings_text), showarrow=False,
                              xref="paper", yref="paper", x=0, y=1.12, xanchor="left",
                              font={"color": "#d62728", "size": 13})
    figure.update_layout(template=TEMPLATE, height=340, margin={"l": 50, "r": 20, "t": 70, "b": 40},
                         title={"text": "Accuracy under attack as eps grows "
                                        "(markers: FGSM, PGD, noise at the scored eps)", "font": {"size": 14}},
                         xaxis={"title": {"text": "eps (L∞, fraction of the input range)"}},
                         yaxis={"title": {"text": "accuracy"}, "range": [0, 1.02]})
    return figure


def attribution_figure(explainability: dict[str, Any]) -> go.Figure:
    """Example inputs (top) and their attribution maps drawn over them (bottom)."""
    examples = [e for e in (explainability.get("examples") or [])[:4] if e.get("image") and e.get("attribution")]
    if not examples:
        return message_figure("no attribution examples in this trial's details")
    titles = [f"label {e.get('label')} → predicted {e.get('prediction')}"
              + (" ✓" if e.get("label") == e.get("prediction") else " ✗") for e in examples]
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
        scores.append(score if direction == "maximize" else 1.0 - score)
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
