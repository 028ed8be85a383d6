"""The robustness card of an exported model: ``card.json`` for machines, ``card.md`` for people.

It gathers what a reviewer needs in one place, stating how every number was obtained: one row per requirement
(pass, fail or inconclusive, judged on the 95% interval) and one row per metric (value, interval, sample count),
the evaluation settings of each objective (eps, steps, attack, detector, OOD sets, bins), the training recipe
in words, the Pareto rank among all designs tried, the data, time and cost, and a short plain-language summary
for readers who are not ML specialists. The row logic (one row per metric, an objective's value shown once
under both names) is shared with ``nas verify``.
"""
from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import TrialState

import objectives

from ._version import __version__
from .optuna_compat import non_domination_rank
from .pareto import is_feasible, objective_names
from .records import trial_record
from .requirements import FAIL, INCONCLUSIVE, PASS, metric_direction, requirement_verdict

CARD_VERSION = 2


def pareto_rank(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """Optuna's constrained non-domination rank of ``trial`` among the COMPLETE trials (1 = on the front).

    Feasible trials are ranked first, infeasible ones after them by how far they miss the requirements.
    """
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    signs = np.array([-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0 for d in study.directions])
    losses = np.array([t.values for t in complete], dtype=float) * signs
    constrained = any(t.constraints for t in complete)
    penalty = None
    if constrained:
        penalty = np.array([sum(max(0.0, c) for c in t.constraints.values()) for t in complete])
    ranks = non_domination_rank(losses, penalty=penalty)
    index = next(i for i, t in enumerate(complete) if t.number == trial.number)
    return {
        "rank": int(ranks[index]) + 1,
        "front_size": int((ranks == 0).sum()),
        "n_complete": len(complete),
        "objectives": objective_names(study),
        "constrained": constrained,
    }


# ---------------------------------------------------------------------------------------------- metric rows
def flat_name(objective: str, metric: str) -> str:
    """The name requirements use: ``accuracy`` for an objective's own value, ``ood.min_auroc`` for its metrics."""
    return objective if metric == objective else f"{objective}.{metric}"


def _own_value(name: str, result: dict[str, Any]) -> Any:
    return (result.get("metrics") or {}).get(name, result.get("value"))


def _same_value(name: str, result: dict[str, Any]) -> list[str]:
    """The metrics of a result equal to the objective's own value (candidates for what the value repeats)."""
    value = _own_value(name, result)
    return [metric for metric, number in (result.get("metrics") or {}).items() if metric != name and number == value]


def value_alias(name: str, result: dict[str, Any], reference: dict[str, Any] | None = None) -> str | None:
    """The metric that an objective's value repeats (``ood`` is ``ood.min_auroc``), or None.

    Read from the recorded numbers: the one other metric equal to the value (on ``reference`` too, the other
    split's result of the same objective, when given). When several are equal (a broken model scoring 0
    everywhere), none is chosen rather than a wrong one, and the value keeps a row of its own. An objective that
    reports its value as a metric of its own, with an interval (``accuracy``), repeats nothing: other metrics
    that happen to be equal (a perfect ``worst_class``) are different measurements.
    """
    if _interval((result.get("intervals") or {}).get(name)):
        return None
    candidates = _same_value(name, result)
    if reference and not reference.get("skipped") and len(candidates) > 1:
        other, other_value = reference.get("metrics") or {}, _own_value(name, reference)
        candidates = [metric for metric in candidates if other.get(metric) == other_value]
    return candidates[0] if len(candidates) == 1 else None


def _interval(value: Any) -> list[float] | None:
    """A stored interval as ``[low, high]``; anything else (absent, malformed) as None."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(end, (int, float)) and not isinstance(end, bool) for end in value):
        return [float(value[0]), float(value[1])]
    return None


def estimates(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every metric of stored objective results (``ObjectiveResult.to_json``) by its requirement name:
    ``{"value", "interval", "samples"}``. An objective's own value takes the interval and samples of the metric it
    repeats; when that is ambiguous, the widest interval among the candidates (never none, which would read as
    an exact number)."""
    table: dict[str, dict[str, Any]] = {}
    for name, result in results.items():
        if result.get("skipped"):
            continue
        metrics = {name: result.get("value"), **(result.get("metrics") or {})}
        intervals = {metric: _interval(bounds) for metric, bounds in (result.get("intervals") or {}).items()}
        samples = {metric: n for metric, n in (result.get("samples") or {}).items() if isinstance(n, int)}
        for metric, value in metrics.items():
            sources = [metric] if metric != name or intervals.get(metric) else _same_value(name, result)
            known = [source for source in sources if intervals.get(source)]
            widest = max(known, key=lambda source: intervals[source][1] - intervals[source][0], default=metric)
            table[flat_name(name, metric)] = {
                "value": value if isinstance(value, (int, float)) and not isinstance(value, bool) else None,
                "interval": intervals.get(widest), "samples": samples.get(metric, samples.get(widest)),
            }
    return table


def metric_rows(results: dict[str, dict[str, Any]],
                reference: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per metric of stored objective results: ``metric`` (its requirement name), ``aliases`` (other names
    of the same number: an objective's value), ``objective``, ``direction``, ``value``, ``interval``, ``samples``.

    ``reference`` (the other split's results) only helps tell which metric an objective's value repeats.
    A skipped objective is one row without a value.
    """
    table = estimates(results)
    rows = []
    for name, result in results.items():
        if result.get("skipped"):
            rows.append({"metric": name, "aliases": [], "objective": name, "direction": metric_direction(name, name),
                         "value": None, "interval": None, "samples": None, "skipped": True})
            continue
        alias = value_alias(name, result, (reference or {}).get(name))
        for metric in dict.fromkeys([*(result.get("metrics") or {}), name]):
            if metric == name and alias:
                continue  # shown once, in its alias's row
            rows.append({"metric": flat_name(name, metric), "aliases": [name] if metric == alias else [],
                         "objective": name, "direction": metric_direction(name, metric),
                         **table[flat_name(name, metric)], "skipped": False})
    return rows


def row_names(row: dict[str, Any]) -> list[str]:
    return [row["metric"], *row["aliases"]]


def display_name(row: dict[str, Any]) -> str:
    """``adversarial.pgd_accuracy (= adversarial)``: the user sees every name the number goes by."""
    return row["metric"] + (f" (= {', '.join(row['aliases'])})" if row["aliases"] else "")


# ---------------------------------------------------------------------------------------------- requirements
def requirement_rows(requirements: dict[str, dict[str, Any]], table: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per requirement: its bound, the metric's value, interval and samples (from ``table``, see
    :func:`estimates`) and the verdict (pass / fail / inconclusive / not evaluated) on the interval."""
    rows = []
    for metric, bound in requirements.items():
        bounds = {side: bound[side] for side in ("min", "max") if bound.get(side) is not None}
        found = table.get(metric, {"value": None, "interval": None, "samples": None})
        rows.append({"metric": metric, **bounds, **found,
                     "verdict": requirement_verdict(found["value"], bounds, found["interval"])})
    return rows


def requirement_text(row: dict[str, Any]) -> str:
    return f"{row['metric']} {bound_text(row)}"


def standards_sentence(rows: list[dict[str, Any]]) -> str:
    """``meets 2 of 3 standards (accuracy >= 0.9, params <= 1e+06); inconclusive: ...``, naming every one."""
    groups: dict[str, list[str]] = {}
    for row in rows:
        groups.setdefault(row["verdict"], []).append(requirement_text(row))
    met = groups.pop(PASS, [])
    parts = [f"meets {len(met)} of {_count(len(rows), 'standard')}" + (f" ({', '.join(met)})" if met else "")]
    for verdict, names in groups.items():
        why = " (the 95% interval straddles the bound: more samples would decide)" if verdict == INCONCLUSIVE else ""
        parts.append(f"{'fails' if verdict == FAIL else verdict}: {', '.join(names)}{why}")
    return "; ".join(parts)


def bound_text(row: dict[str, Any]) -> str:
    """``{"min": 0.9}`` -> ``">= 0.9"``; both sides -> ``"in [a, b]"``."""
    low, high = row.get("min"), row.get("max")
    if low is not None and high is not None:
        return f"in [{low:g}, {high:g}]"
    return f">= {low:g}" if low is not None else f"<= {high:g}"


# ---------------------------------------------------------------------------------------------- numbers
def fmt(value: Any) -> str:
    """Numbers for tables: 4 significant digits, thousands separators for counts."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if float(value).is_integer() and abs(value) >= 1000:
            return f"{int(value):,}"
        return f"{value:.4g}"
    return str(value)


def _decimals(interval: list[float] | tuple[float, float] | None) -> int | None:
    """Decimals that an interval's width makes meaningful (two significant digits of the width)."""
    if interval is None or not all(isinstance(end, (int, float)) and math.isfinite(end) for end in interval):
        return None
    width = abs(interval[1] - interval[0])
    return None if width == 0 else min(6, max(0, 1 - math.floor(math.log10(width))))


def fmt_value(value: Any, interval: list[float] | tuple[float, float] | None = None) -> str:
    """A value rounded to the digits its interval supports (4 significant digits without one)."""
    decimals = _decimals(interval)
    if decimals is None or not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return fmt(value)
    return f"{value:.{decimals}f}"


def fmt_interval(interval: list[float] | tuple[float, float] | None) -> str:
    """``[0.893, 0.928]``; ``n/a`` when the objective reported none (an exact count, or not measured)."""
    if interval is None:
        return "n/a"
    return f"[{fmt_value(interval[0], interval)}, {fmt_value(interval[1], interval)}]"


def fmt_samples(samples: Any) -> str:
    return "n/a" if samples is None else f"{int(samples):,}"


def _number(value: float) -> str:
    """A float of a recipe or setting with its meaningful digits (0.09, 0.003, 1e-05), not 17."""
    return f"{value:.3g}"


def _render(value: Any) -> str:
    """A setting's value in words: floats with meaningful digits, lists joined, tables as ``key: value``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(_render(item) for item in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{_words(key)}: {_render(item)}" for key, item in value.items())
    return str(value)


def how_measured(settings: dict[str, Any], options: dict[str, Any]) -> str:
    """The objective's reported ``settings``; the options it ran with when it reports none."""
    if settings:
        return settings_text(settings)
    return f"options {settings_text(options)}" if options else "no options"


def _words(key: Any) -> str:
    return str(key).replace("_", " ")


def settings_text(settings: dict[str, Any]) -> str:
    """``eps 0.1, pgd steps 5, sets uniform, letters (fonts: a, b)``: how an objective obtained its numbers."""
    return ", ".join(f"{_words(key)} ({_render(value)})" if isinstance(value, dict)
                     else f"{_words(key)} {_render(value)}" for key, value in settings.items())


# ---------------------------------------------------------------------------------------------- recipe
OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}
RECIPE_KEYS_IN_WORDS = {"epochs", "batch_size", "lr", "optimizer", "weight_decay", "label_smoothing",
                        "max_grad_norm", "adversarial", "outlier_exposure", "outlier_families_seen"}


def _share(fraction: float) -> str:
    named = {1.0: "all", 0.5: "half", 0.25: "a quarter", 0.75: "three quarters"}
    return named.get(float(fraction), f"{float(fraction):.0%}")


def _family(name: str) -> str:
    return name.replace("_noise", " noise").replace("_", "-")


def recipe_text(recipe: dict[str, Any], ensemble: int = 1) -> str:
    """The training recipe in words, e.g. ``Adam, learning rate 0.003, 2 epochs of batches of 128; FGSM adversarial
    training, eps 0.09, on half of each batch; outlier exposure on mixup, patch-permuted, smoothed noise;
    ensemble of 2``. Entries it does not know are listed as ``key value``."""
    optimiser = []
    if "optimizer" in recipe:
        optimiser.append(OPTIMIZER_NAMES.get(str(recipe["optimizer"]), str(recipe["optimizer"])))
    if "lr" in recipe:
        optimiser.append(f"learning rate {_number(recipe['lr'])}")
    if "epochs" in recipe:
        batches = f" of batches of {recipe['batch_size']}" if "batch_size" in recipe else ""
        optimiser.append(_count(int(recipe["epochs"]), "epoch") + batches)
    parts = [", ".join(optimiser)] if optimiser else []
    for key, words in (("weight_decay", "weight decay"), ("label_smoothing", "label smoothing"),
                       ("max_grad_norm", "gradients clipped at norm")):
        if recipe.get(key):
            parts.append(f"{words} {_number(recipe[key])}")
    adversarial = recipe.get("adversarial") or {}
    if adversarial.get("enabled"):
        attack = adversarial.get("attack", "fgsm")
        name = "FGSM (random start)" if attack == "fgsm" else f"PGD-{adversarial.get('steps', '?')}"
        text = f"{name} adversarial training"
        if "eps" in adversarial:
            text += f", eps {_number(adversarial['eps'])}"
        if "fraction" in adversarial:
            text += f", on {_share(adversarial['fraction'])} of each batch"
        parts.append(text)
    outliers = recipe.get("outlier_exposure") or {}
    if outliers.get("enabled"):
        text = "outlier exposure on " + ", ".join(_family(name) for name in outliers.get("families", []))
        extras = [f"{key} {_number(outliers[key])}" for key in ("weight", "fraction") if key in outliers]
        parts.append(text + (f" ({', '.join(extras)})" if extras else ""))
    parts += [f"{_words(key)} {_render(value)}" for key, value in recipe.items() if key not in RECIPE_KEYS_IN_WORDS]
    if ensemble > 1:
        parts.append(f"ensemble of {ensemble}")
    return "; ".join(parts) or "default training"


# ---------------------------------------------------------------------------------------------- the card
def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "an unknown time"
    if seconds < 1:
        return f"{seconds:.2g} seconds"
    if seconds < 90:
        return f"{seconds:.1f} seconds"
    if seconds < 5400:
        return f"{seconds / 60:.1f} minutes"
    return f"{seconds / 3600:.1f} hours"


def objective_options(name: str, table: dict[str, Any] | None) -> dict[str, Any]:
    """The options an objective ran with: its declared defaults, overridden by the experiment's table."""
    try:
        params = objectives.get(name).params
    except KeyError:  # an objective this version no longer has
        params = {}
    return {**{key: spec.get("default") for key, spec in params.items()},
            **{key: value for key, value in (table or {}).items() if key not in ("direction", "class")}}


def _objective_rows(view: dict[str, Any], optimised: list[str], config: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, result in view.get("objectives", {}).items():
        try:
            cls = objectives.get(name)
            direction, description = cls.direction, cls.description
        except KeyError:  # an objective this version no longer has: report the numbers anyway
            direction, description = "", ""
        rows.append({
            "name": name, "direction": direction, "description": description, "optimised": name in optimised,
            "seconds": result.get("seconds"), "skipped": bool(result.get("skipped")),
            "value_metric": flat_name(name, value_alias(name, result) or name),
            "settings": result.get("settings") or {},
            "options": objective_options(name, config.get("objectives", {}).get(name)),
        })
    return rows


def plain_summary(card: dict[str, Any]) -> list[str]:
    """A few sentences on what the numbers mean, for readers who are not ML specialists."""
    data, metrics = card["data"], {name: row for row in card["metrics"] for name in row_names(row)}
    classes = data.get("class_names") or []
    kind = "images" if len(data.get("input_shape") or []) == 3 else "signals"
    what = f"This model sorts {kind} into {len(classes) or card['model']['num_classes']} categories"
    what += f" ({', '.join(classes[:6])}{', ...' if len(classes) > 6 else ''})." if classes else "."
    sentences = [what]
    accuracy = metrics.get("accuracy")
    if accuracy and accuracy["value"] is not None:
        wrong = round(100 * (1 - accuracy["value"]))
        seen = accuracy["samples"] or data.get("val_size")
        interval = accuracy["interval"]
        likely = f" (95% interval {interval[0]:.1%} to {interval[1]:.1%})" if interval else ""
        sentences.append(f"On{f' {seen:,}' if seen else ''} validation examples it was not trained on, it answered "
                         f"{accuracy['value']:.1%} correctly{likely}, about {wrong} in every 100 wrong.")
    table = card["requirements"]["table"]
    if not table:
        sentences.append("No minimum standards were set for this study, so this card reports measurements only.")
    else:
        sentences.append(f"Of the standards set for it in advance, it {card['requirements']['standards']}.")
    pareto = card["pareto"]
    if pareto["rank"] == 1:
        sentences.append(f"Among the {_count(pareto['n_complete'], 'design')} tried, it is on the Pareto front "
                         f"({_count(pareto['front_size'], 'best trade-off')}): no other design was better on all of "
                         f"{', '.join(pareto['objectives'])} at once.")
    else:
        why = ("it ranks behind the designs that meet every standard"
               if pareto["constrained"] and not card["requirements"]["feasible"]
               else "other designs were better on every goal at once")
        sentences.append(f"Among the {_count(pareto['n_complete'], 'design')} tried, {why} "
                         f"(it sits in trade-off layer {pareto['rank']}; layer 1 holds the best trade-offs).")
    for row in card["objectives"]:
        measured = metrics.get(row["value_metric"])
        if row["name"] in ("accuracy", "params") or row["skipped"] or not measured or measured["value"] is None:
            continue
        better = {"maximize": "higher is better", "minimize": "lower is better"}.get(row["direction"], "")
        about = "; ".join(part for part in (row["description"], better) if part)
        interval = f" (95% interval {fmt_interval(measured['interval'])})" if measured["interval"] else ""
        sentences.append(f"{row['name']} = {fmt_value(measured['value'], measured['interval'])}{interval}"
                         + (f": {about}." if about else "."))
    cost = card["cost"]
    sentences.append(f"It has {fmt(cost['params'])} adjustable numbers (parameters) and took "
                     f"{_duration(cost['train_seconds'])} to train on {cost['device'] or 'an unknown device'}; smaller "
                     "models are cheaper and faster to run.")
    sentences.append("These numbers come from validation data that was also used to choose this design among many, "
                     "so they can be a little optimistic. 'nas verify' re-measures them on a held-out test set the "
                     "search never saw, with larger samples and a stronger attack; rely on those numbers for "
                     "decisions.")
    return sentences


def build_card(
    study: optuna.Study,
    trial: optuna.trial.FrozenTrial,
    config: dict[str, Any],
    model: torch.nn.Module,
    data: dict[str, Any],
    view: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The card as a JSON-serialisable dict. ``data`` describes the dataset (name, sizes, class names);
    ``view`` is the trial's merged record (``nas.records.trial_record``; read here when not given)."""
    view = view if view is not None else trial_record(study, trial)
    spec = view["spec"]
    optimised = objective_names(study)
    results = view.get("objectives", {})
    evaluation_seconds = sum(row.get("seconds") or 0.0 for row in results.values())
    trial_seconds = ((trial.datetime_complete - trial.datetime_start).total_seconds()
                     if trial.datetime_complete and trial.datetime_start else None)
    requirements = requirement_rows(view.get("requirements", {}), estimates(results))
    recipe = view.get("recipe", {})
    card: dict[str, Any] = {
        "card_version": CARD_VERSION,
        "split": "validation",
        "model": {
            "study": study.study_name, "trial": trial.number, "space": spec["space"],
            "architecture": view.get("spec_summary", ""), "num_classes": spec["num_classes"],
            "input_shape": spec["input_shape"],
        },
        "requirements": {"feasible": is_feasible(trial), "table": requirements,
                         "met": [row["metric"] for row in requirements if row["verdict"] == PASS],
                         "standards": standards_sentence(requirements)},
        "metrics": metric_rows(results),
        "objectives": _objective_rows(view, optimised, config),
        "pareto": pareto_rank(study, trial),
        "data": data,
        "training": {"recipe": recipe, "recipe_text": recipe_text(recipe, int(spec.get("ensemble", 1))),
                     "seed": view.get("seed"), "history": view.get("history", [])},
        "cost": {
            "params": sum(p.numel() for p in model.parameters()),
            "train_seconds": view.get("train_seconds"),
            "evaluation_seconds": evaluation_seconds,
            "trial_seconds": trial_seconds,
            "device": view.get("device"),
        },
        "provenance": {
            "config_hash": view.get("config_hash"), "robust_nas_version": __version__,
            "torch_version": torch.__version__.split("+")[0], "optuna_version": optuna.__version__,
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    }
    card["summary"] = plain_summary(card)
    return card


VERDICT_TEXT = {PASS: "pass", FAIL: "**FAIL**", INCONCLUSIVE: "inconclusive", "not evaluated": "not evaluated"}


def render_markdown(card: dict[str, Any]) -> str:
    """``card.md``: the summary first, then the tables a reviewer checks, then how every number was obtained."""
    model, pareto, cost, data = card["model"], card["pareto"], card["cost"], card["data"]
    lines = [f"# Robustness card: {model['study']} trial {model['trial']}", "",
             f"Architecture: `{model['architecture']}`", ""]
    lines += ["## Summary", ""] + [f"- {sentence}" for sentence in card["summary"]] + [""]
    lines += ["## Requirements (validation split)", ""]
    if card["requirements"]["table"]:
        lines += ["| requirement | value | 95% interval | samples | result |", "|---|---|---|---|---|"]
        for row in card["requirements"]["table"]:
            lines.append(f"| {requirement_text(row)} | {fmt_value(row['value'], row['interval'])} | "
                         f"{fmt_interval(row['interval'])} | {fmt_samples(row['samples'])} | "
                         f"{VERDICT_TEXT[row['verdict']]} |")
        lines += ["", f"The model {card['requirements']['standards']}. A result is inconclusive when the 95% interval "
                  "straddles the bound. Feasible during the search (point values, as the optimiser saw them): "
                  f"{fmt(card['requirements']['feasible'])}."]
    else:
        lines.append("No requirements were set.")
    lines += ["", "## Metrics (validation split)", "",
              "| metric | goal | value | 95% interval | samples |", "|---|---|---|---|---|"]
    for row in card["metrics"]:
        goal = {"maximize": "higher", "minimize": "lower"}.get(row["direction"] or "", "-")
        value = ("skipped (a cheaper requirement already failed)" if row["skipped"]
                 else fmt_value(row["value"], row["interval"]))
        lines.append(f"| {display_name(row)} | {goal} | {value} | {fmt_interval(row['interval'])} | "
                     f"{fmt_samples(row['samples'])} |")
    lines += ["", "Intervals: Wilson for accuracies, seeded bootstrap for AUROC, FPR95, ECE and other estimates; "
              "n/a: none reported (exact counts such as parameters, or an objective that does not report one).", ""]
    lines += ["## How the numbers were obtained", ""]
    for row in card["objectives"]:
        goal = row["direction"] + ("" if row["optimised"] else ", checked only")
        about = f" {row['description'][0].upper()}{row['description'][1:]}." if row["description"] else ""
        lines.append(f"- **{row['name']}** ({goal}; {fmt(row['seconds'])} s): "
                     f"{how_measured(row['settings'], row['options'])}.{about}")
    lines += ["", "## Pareto rank", "",
              f"Rank {pareto['rank']} among {pareto['n_complete']} completed trials (1 = on the Pareto front, which "
              f"holds {pareto['front_size']} trials) over {', '.join(pareto['objectives'])}"
              + (", feasible trials ranked first." if pareto["constrained"] else "."), ""]
    lines += ["## Data", ""]
    for key in ("name", "train_size", "val_size", "test_size", "input_shape", "class_names", "normalize", "seed"):
        if data.get(key) is not None:
            lines.append(f"- {key}: {data[key]}")
    if data.get("note"):
        lines.append(f"- note: {data['note']}")
    lines += ["", "## Training, time and cost", ""]
    lines.append(f"- recipe: {card['training']['recipe_text']}; seed {card['training']['seed']}")
    lines.append(f"- parameters: {fmt(cost['params'])}")
    lines.append(f"- training: {_duration(cost['train_seconds'])}; "
                 f"evaluation: {_duration(cost['evaluation_seconds'])}; "
                 f"whole trial: {_duration(cost['trial_seconds'])}; device: {cost['device']}")
    provenance = card["provenance"]
    lines += ["", "## Provenance", "",
              f"config hash {provenance['config_hash']}, robust-nas {provenance['robust_nas_version']}, "
              f"torch {provenance['torch_version']}, optuna {provenance['optuna_version']}, "
              f"exported {provenance['exported_at']}. The exact recipe is in spec.json and card.json.",
              "", "Re-check on the held-out test split: `nas verify <this folder>`.", ""]
    return "\n".join(lines)


def write_card(card: dict[str, Any], folder: Path) -> None:
    (folder / "card.json").write_text(json.dumps(card, indent=2, default=float) + "\n", encoding="utf-8")
    (folder / "card.md").write_text(render_markdown(card), encoding="utf-8")
