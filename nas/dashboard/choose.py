"""Helping a user choose a model: the front table, recipe families, the suggested pick and parameter importance.

Plain data only (no Dash, no plotly), so the dashboard and ``nas report`` show the same rows, the same pick
and the same importances. The choice stays with the user: the pick is a suggestion with its rule stated.
"""
from __future__ import annotations

import math
from typing import Any

from optuna.trial import FrozenTrial

from ..analysis import ensemble_members, param_importances
from ..card import recipe_text
from .source import Snapshot

# Recipe families, in legend order: the reason a model trades accuracy for robustness.
PLAIN, ADVERSARIAL, OUTLIERS, BOTH = ("plain", "adversarial training", "outlier exposure",
                                      "adversarial training + outlier exposure")
FAMILIES = (PLAIN, ADVERSARIAL, OUTLIERS, BOTH)
# Fewer completed trials than this give importances that are mostly noise: PED-ANOVA compares the top 10%
# of trials with all of them, and its authors ask for at least 5 trials in the top quantile.
MIN_IMPORTANCE_TRIALS = 8
PICK_RULE = ("Suggested pick: among the front models that meet every requirement, each objective is scaled to "
             "0 (worst on that front) .. 1 (best); the pick has the best worst-scaled objective (ties: best mean, "
             "then the lower trial number), a balanced model with no weak objective. It is only a suggestion.")


def recipe_family(view: dict[str, Any]) -> str:
    """``plain``, ``adversarial training``, ``outlier exposure`` or both, from a trial's recipe.

    ``view`` is the trial's merged record (``Snapshot.record``), as for the helpers below."""
    recipe = view.get("recipe") or {}
    adversarial = bool((recipe.get("adversarial") or {}).get("enabled"))
    outliers = bool((recipe.get("outlier_exposure") or {}).get("enabled"))
    return {(False, False): PLAIN, (True, False): ADVERSARIAL, (False, True): OUTLIERS, (True, True): BOTH}[
        (adversarial, outliers)]


def ensemble_size(view: dict[str, Any]) -> int:
    """Members of the trial's model (a heterogeneous ensemble from 'nas ensemble' lists them)."""
    spec = view.get("spec") or {}
    try:
        size = ensemble_members(spec) if isinstance(spec, dict) else 1
    except (TypeError, ValueError):
        return 1
    return size if size > 0 else 1


def recipe_words(view: dict[str, Any]) -> str:
    """The recipe in words (``nas.card.recipe_text``), ensemble size included."""
    recipe = view.get("recipe")
    if isinstance(recipe, dict):
        return recipe_text(recipe, ensemble_size(view))
    return str(view.get("recipe_summary") or "not recorded")  # a trial still training: its record comes later


def parameter_count(view: dict[str, Any]) -> float | None:
    """The model's parameter count when the study measured it (the ``params`` objective)."""
    value = (view.get("metrics") or {}).get("params")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def requirement_result(view: dict[str, Any]) -> str:
    """``PASS``, ``FAIL: accuracy, ood`` or ``none`` (no requirement) for the table's requirement column."""
    rows = view.get("requirements") or {}
    if not rows:
        return "none"
    failing = [metric for metric, row in rows.items() if row.get("pass") is False]
    if failing:
        return "FAIL: " + ", ".join(failing)
    return "PASS" if all(row.get("pass") for row in rows.values()) else "not evaluated"


def table_rows(snap: Snapshot) -> list[dict[str, Any]]:
    """One row per completed trial: objectives (numbers, so the table sorts and filters them), front membership,
    requirement result, recipe family and words, architecture, parameter count."""
    rows = []
    for trial in snap.completed:
        row: dict[str, Any] = {"id": trial.number, "trial": trial.number,
                               "front": "yes" if trial.number in snap.front else "no"}
        row.update({name: _rounded(value) for name, value in zip(snap.names, trial.values)})
        view = snap.record(trial)
        row["requirements"] = requirement_result(view)
        row["family"] = recipe_family(view)
        row["recipe"] = recipe_words(view)
        row["architecture"] = view.get("spec_summary", "")
        if "params" not in snap.names:
            row["params"] = parameter_count(view)
        rows.append(row)
    return rows


def _rounded(value: float) -> float:
    """Four significant digits: the table shows what the measurement supports (sorting is unaffected)."""
    return float(f"{value:.4g}") if math.isfinite(value) else value


def table_columns(snap: Snapshot) -> list[str]:
    columns = ["trial", "front", *snap.names, "requirements", "family", "recipe", "architecture"]
    if "params" not in snap.names:
        columns.append("params")
    return columns


# ------------------------------------------------------------------------------------- recommendation
def scaled(trials: list[FrozenTrial], snap: Snapshot) -> dict[int, list[float]]:
    """Each objective scaled over ``trials`` to 0 (worst among them) .. 1 (best); 1 when all are equal."""
    scores: dict[int, list[float]] = {t.number: [] for t in trials}
    for index, direction in enumerate(snap.directions):
        values = [t.values[index] for t in trials]
        low, high = min(values), max(values)
        for trial in trials:
            score = (trial.values[index] - low) / (high - low) if high > low else 1.0
            scores[trial.number].append(score if direction == "maximize" or high == low else 1.0 - score)
    return scores


def recommendation(snap: Snapshot) -> dict[str, Any]:
    """Feasible front models and the suggested pick (see :data:`PICK_RULE`).

    Returns ``{"feasible": [numbers], "pick": number | None, "worst": score, "rule": text, "why": text}``;
    ``pick`` is None when no completed trial meets every requirement.
    """
    front = [t for t in snap.completed if t.number in snap.front]
    feasible = sorted((t for t in front if snap.feasible(t)), key=lambda t: t.number)
    result: dict[str, Any] = {"feasible": [t.number for t in feasible], "pick": None, "worst": None,
                              "rule": PICK_RULE, "why": ""}
    if not feasible:
        result["why"] = ("No completed model meets every requirement yet, so there is nothing to suggest."
                         if snap.completed else "No completed trial yet.")
        return result
    scores = scaled(feasible, snap)
    best = max(feasible, key=lambda t: (min(scores[t.number]), sum(scores[t.number]), -t.number))
    weakest = min(range(len(snap.names)), key=lambda i: scores[best.number][i])
    result.update(pick=best.number, worst=min(scores[best.number]))
    result["why"] = (f"trial {best.number}: {best.user_attrs.get('spec_summary', '')}, "
                     f"{recipe_words(snap.record(best))}; "
                     f"its weakest objective is {snap.names[weakest]} "
                     f"({scores[best.number][weakest]:.2f} on the 0..1 scale of the front)")
    return result


# ----------------------------------------------------------------------------------------- importance
def importances(snap: Snapshot) -> tuple[dict[str, dict[str, float]], str | None]:
    """Per objective, the importance of each searched parameter (Optuna's PED-ANOVA), or a reason there is none.

    PED-ANOVA measures how differently a parameter is distributed among the top trials for one objective (the best
    10%, or the best 5 trials in a small study) than among all of them, so it works per objective, on conditional
    parameters and on categorical ones.
    """
    completed = snap.completed
    if len(completed) < MIN_IMPORTANCE_TRIALS:
        return {}, (f"Parameter importance needs at least {MIN_IMPORTANCE_TRIALS} completed trials "
                    f"(this study has {len(completed)}); run more trials to see which choices drive each objective.")
    searched = {name for t in completed for name in t.params}
    varied = {n for n in searched if len({repr(t.params.get(n)) for t in completed if n in t.params}) > 1}
    if not varied:
        return {}, "No searched parameter took more than one value, so none can explain a difference."
    found, notes = param_importances(snap.study, completed)
    result = {name: {param: value for param, value in found[name].items() if param in varied}
              for name in snap.names if name in found}
    if len(result) < len(snap.names):
        why = next((f"{name}: {notes[name]}" for name in snap.names if name not in found and name in notes), "")
        return {}, f"Parameter importance could not be computed ({why})."
    return result, None
