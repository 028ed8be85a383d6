"""The robustness card of an exported model: ``card.json`` for machines, ``card.md`` for people.

It gathers what a reviewer needs in one place: every objective's validation value, the requirement
table with pass/fail, the Pareto rank among all designs tried, the data, time and cost, and a short
plain-language summary for readers who are not ML specialists.
"""
from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.study._multi_objective import _fast_non_domination_rank
from optuna.trial import TrialState

import objectives

from ._version import __version__
from .pareto import is_feasible, objective_names

CARD_VERSION = 1


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
    ranks = _fast_non_domination_rank(losses, penalty=penalty)
    index = next(i for i, t in enumerate(complete) if t.number == trial.number)
    return {
        "rank": int(ranks[index]) + 1,
        "front_size": int((ranks == 0).sum()),
        "n_complete": len(complete),
        "objectives": objective_names(study),
        "constrained": constrained,
    }


def _objective_rows(trial: optuna.trial.FrozenTrial, optimised: list[str]) -> list[dict[str, Any]]:
    rows = []
    for name, result in trial.user_attrs.get("objectives", {}).items():
        try:
            cls = objectives.get(name)
            direction, description = cls.direction, cls.description
        except KeyError:  # an objective this version no longer has: report the numbers anyway
            direction, description = "", ""
        rows.append({
            "name": name, "direction": direction, "description": description, "optimised": name in optimised,
            "value": result.get("value"), "metrics": result.get("metrics", {}),
            "seconds": result.get("seconds"), "skipped": bool(result.get("skipped")),
        })
    return rows


def _requirement_rows(trial: optuna.trial.FrozenTrial) -> list[dict[str, Any]]:
    return [{"metric": metric, "min": row.get("min"), "max": row.get("max"), "value": row.get("value"), "pass": row.get("pass")}
            for metric, row in trial.user_attrs.get("requirements", {}).items()]


def bound_text(row: dict[str, Any]) -> str:
    """``{"min": 0.9}`` -> ``">= 0.9"``; both sides -> ``"in [a, b]"``."""
    low, high = row.get("min"), row.get("max")
    if low is not None and high is not None:
        return f"in [{low:g}, {high:g}]"
    return f">= {low:g}" if low is not None else f"<= {high:g}"


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


def plain_summary(card: dict[str, Any]) -> list[str]:
    """A few sentences on what the numbers mean, for readers who are not ML specialists."""
    data, rows = card["data"], {row["name"]: row for row in card["objectives"]}
    classes = data.get("class_names") or []
    kind = "images" if len(data.get("input_shape") or []) == 3 else "signals"
    what = f"This model sorts {kind} into {len(classes) or card['model']['num_classes']} categories"
    what += f" ({', '.join(classes[:6])}{', ...' if len(classes) > 6 else ''})." if classes else "."
    sentences = [what]
    accuracy = rows.get("accuracy")
    if accuracy and not accuracy["skipped"] and accuracy["value"] is not None:
        wrong = round(100 * (1 - accuracy["value"]))
        seen = f" {data['val_size']:,}" if data.get("val_size") else ""
        sentences.append(f"On{seen} validation examples it was not trained on, it answered {accuracy['value']:.1%} correctly "
                         f"(about {wrong} in every 100 wrong).")
    table = card["requirements"]["table"]
    if not table:
        sentences.append("No minimum standards were set for this study, so this card reports measurements only.")
    else:
        failed = [row for row in table if row["pass"] is not True]
        if not failed:
            sentences.append(f"It meets {'the' if len(table) == 1 else 'all'} {_count(len(table), 'standard')} set for it in advance "
                             "(see the requirements table).")
        else:
            misses = "; ".join(f"{row['metric']} should be {bound_text(row)} but is {fmt(row['value'])}" for row in failed)
            sentences.append(f"It does NOT meet {len(failed)} of the {_count(len(table), 'standard')} set for it in advance: {misses}.")
    pareto = card["pareto"]
    if pareto["rank"] == 1:
        sentences.append(f"Among the {_count(pareto['n_complete'], 'design')} tried, it is on the Pareto front "
                         f"({_count(pareto['front_size'], 'best trade-off')}): no other design was better on all of "
                         f"{', '.join(pareto['objectives'])} at once.")
    else:
        why = ("it ranks behind the designs that meet every standard" if pareto["constrained"] and not card["requirements"]["feasible"]
               else "other designs were better on every goal at once")
        sentences.append(f"Among the {_count(pareto['n_complete'], 'design')} tried, {why} "
                         f"(it sits in trade-off layer {pareto['rank']}; layer 1 holds the best trade-offs).")
    others = [row for name, row in rows.items() if name not in ("accuracy", "params") and not row["skipped"] and row["value"] is not None]
    for row in others:
        better = {"maximize": "higher is better", "minimize": "lower is better"}.get(row["direction"], "")
        about = "; ".join(part for part in (row["description"], better) if part)
        sentences.append(f"{row['name']} = {fmt(row['value'])}" + (f": {about}." if about else "."))
    cost = card["cost"]
    sentences.append(f"It has {fmt(cost['params'])} adjustable numbers (parameters) and took {_duration(cost['train_seconds'])} "
                     f"to train on {cost['device'] or 'an unknown device'}; smaller models are cheaper and faster to run.")
    sentences.append("These numbers come from validation data that was also used to choose this design among many, so they can "
                     "be a little optimistic. 'nas verify' re-measures them on a held-out test set the search never saw; "
                     "rely on those numbers for decisions.")
    return sentences


def build_card(
    study: optuna.Study,
    trial: optuna.trial.FrozenTrial,
    config: dict[str, Any],
    model: torch.nn.Module,
    data: dict[str, Any],
) -> dict[str, Any]:
    """The card as a JSON-serialisable dict. ``data`` describes the dataset (name, sizes, class names)."""
    spec = trial.user_attrs["spec"]
    optimised = objective_names(study)
    evaluation_seconds = sum(row.get("seconds") or 0.0 for row in trial.user_attrs.get("objectives", {}).values())
    trial_seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete and trial.datetime_start else None
    card: dict[str, Any] = {
        "card_version": CARD_VERSION,
        "model": {
            "study": study.study_name, "trial": trial.number, "space": spec["space"],
            "architecture": trial.user_attrs.get("spec_summary", ""), "num_classes": spec["num_classes"],
            "input_shape": spec["input_shape"],
        },
        "objectives": _objective_rows(trial, optimised),
        "requirements": {"feasible": is_feasible(trial), "table": _requirement_rows(trial)},
        "pareto": pareto_rank(study, trial),
        "data": data,
        "training": {"recipe": trial.user_attrs.get("recipe", {}), "seed": trial.user_attrs.get("seed"),
                     "history": trial.user_attrs.get("history", [])},
        "cost": {
            "params": sum(p.numel() for p in model.parameters()),
            "train_seconds": trial.user_attrs.get("train_seconds"),
            "evaluation_seconds": evaluation_seconds,
            "trial_seconds": trial_seconds,
            "device": trial.user_attrs.get("device"),
        },
        "provenance": {
            "config_hash": trial.user_attrs.get("config_hash"), "robust_nas_version": __version__,
            "torch_version": torch.__version__.split("+")[0], "optuna_version": optuna.__version__,
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    }
    card["summary"] = plain_summary(card)
    return card


def render_markdown(card: dict[str, Any]) -> str:
    """``card.md``: the summary first, then the tables a reviewer checks."""
    model, pareto, cost, data = card["model"], card["pareto"], card["cost"], card["data"]
    lines = [f"# Robustness card: {model['study']} trial {model['trial']}", "", f"Architecture: `{model['architecture']}`", ""]
    lines += ["## Summary", ""] + [f"- {sentence}" for sentence in card["summary"]] + [""]
    lines += ["## Requirements (validation split)", ""]
    if card["requirements"]["table"]:
        lines += ["| metric | required | value | result |", "|---|---|---|---|"]
        for row in card["requirements"]["table"]:
            result = {True: "pass", False: "**FAIL**", None: "not evaluated"}[row["pass"]]
            lines.append(f"| {row['metric']} | {bound_text(row)} | {fmt(row['value'])} | {result} |")
        lines.append("")
        lines.append(f"Feasible (meets every requirement): {fmt(card['requirements']['feasible'])}.")
    else:
        lines.append("No requirements were set.")
    lines += ["", "## Objectives (validation split)", "", "| objective | goal | value | other metrics | seconds |", "|---|---|---|---|---|"]
    for row in card["objectives"]:
        goal = row["direction"] + ("" if row["optimised"] else " (checked only)")
        extra = ", ".join(f"{k} {fmt(v)}" for k, v in row["metrics"].items() if k != row["name"])
        value = "skipped (a cheaper requirement already failed)" if row["skipped"] else fmt(row["value"])
        lines.append(f"| {row['name']} | {goal} | {value} | {extra or '-'} | {fmt(row['seconds'])} |")
    lines += ["", "## Pareto rank", "",
              f"Rank {pareto['rank']} among {pareto['n_complete']} completed trials (1 = on the Pareto front, which holds "
              f"{pareto['front_size']} trials) over {', '.join(pareto['objectives'])}"
              + (", feasible trials ranked first." if pareto["constrained"] else "."), ""]
    lines += ["## Data", ""]
    for key in ("name", "train_size", "val_size", "test_size", "input_shape", "class_names", "normalize", "seed"):
        if data.get(key) is not None:
            lines.append(f"- {key}: {data[key]}")
    if data.get("note"):
        lines.append(f"- note: {data['note']}")
    lines += ["", "## Training, time and cost", ""]
    lines.append(f"- recipe: `{json.dumps(card['training']['recipe'], sort_keys=True)}`, seed {card['training']['seed']}")
    lines.append(f"- parameters: {fmt(cost['params'])}")
    lines.append(f"- training: {_duration(cost['train_seconds'])}; evaluation: {_duration(cost['evaluation_seconds'])}; "
                 f"whole trial: {_duration(cost['trial_seconds'])}; device: {cost['device']}")
    provenance = card["provenance"]
    lines += ["", "## Provenance", "",
              f"config hash {provenance['config_hash']}, robust-nas {provenance['robust_nas_version']}, torch {provenance['torch_version']}, "
              f"optuna {provenance['optuna_version']}, exported {provenance['exported_at']}.",
              "", "Re-check on the held-out test split: `nas verify <this folder>`.", ""]
    return "\n".join(lines)


def write_card(card: dict[str, Any], folder: Path) -> None:
    (folder / "card.json").write_text(json.dumps(card, indent=2, default=float) + "\n", encoding="utf-8")
    (folder / "card.md").write_text(render_markdown(card), encoding="utf-8")
