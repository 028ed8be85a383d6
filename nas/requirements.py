"""The ``[requirements]`` table: minimum/maximum bounds on any metric an objective reports, and how a
measured metric is judged against one.

Kept apart from the config module because the training recipe's checks also need to know which
objective a required metric belongs to (e.g. a required OOD metric means OOD sets are scored).
During search a requirement acts on the point value (an Optuna constraint); ``nas verify`` and the
card judge it on the metric's 95% interval: pass, fail, or inconclusive when the interval straddles
the bound (:func:`requirement_verdict`).
"""
from __future__ import annotations

import math
import re
from typing import Any

import objectives

from .errors import UsageError
from .schema import Declaration, check_value

# One side of a ``[requirements]`` entry: ``accuracy = { min = 0.9 }``.
REQUIREMENT_FIELDS: dict[str, Declaration] = {
    "min": {"type": float, "help": "the metric must be at least this"},
    "max": {"type": float, "help": "the metric must be at most this"},
}


def requirement_metrics(objective_names: list[str] | None = None) -> dict[str, tuple[str, str]]:
    """Map every metric usable in ``[requirements]`` to ``(objective, metric)``."""
    names = objective_names or objectives.available()
    table: dict[str, tuple[str, str]] = {}
    for name in names:
        cls = objectives.get(name)
        table[name] = (name, name)
        for metric in cls.metrics:
            table[metric if metric == name else f"{name}.{metric}"] = (name, metric)
    return table


def requirement_violation(value: float | None, bound: dict[str, float]) -> float:
    """Optuna constraint value: <= 0 when ``value`` satisfies ``{min, max}``; 1.0 when not evaluated."""
    if value is None or not math.isfinite(value):
        return 1.0
    violation = -math.inf
    if "min" in bound:
        violation = max(violation, bound["min"] - value)
    if "max" in bound:
        violation = max(violation, value - bound["max"])
    return float(violation)


def check_requirements_table(table: Any) -> dict[str, dict[str, float]]:
    """Validate ``[requirements]``: known metric names, each with ``min``, ``max`` or both (min <= max)."""
    if not isinstance(table, dict):
        raise UsageError(f"config: [requirements] must be a table, got {table!r}")
    known = requirement_metrics()
    checked: dict[str, dict[str, float]] = {}
    for metric, bound in table.items():
        if metric not in known:
            raise UsageError(f"config: unknown requirement metric '{metric}'; allowed: {', '.join(sorted(known))}")
        if not isinstance(bound, dict) or not bound:
            raise UsageError(f"config: requirements.{metric} must be {{min = ..}}, {{max = ..}} or both, got {bound!r}")
        unknown = sorted(set(bound) - set(REQUIREMENT_FIELDS))
        if unknown:
            raise UsageError(
                f"config: unknown key requirements.{metric}.{unknown[0]}; allowed: {', '.join(REQUIREMENT_FIELDS)}")
        checked[metric] = {side: check_value(f"requirements.{metric}.{side}", value, REQUIREMENT_FIELDS[side])
                           for side, value in bound.items()}
        if checked[metric].get("min", -math.inf) > checked[metric].get("max", math.inf):
            raise UsageError(
                f"config: requirements.{metric}: min ({bound['min']}) must not exceed max ({bound['max']})")
    return checked


# ---------------------------------------------------------------------------------------------- verdicts
PASS, FAIL, INCONCLUSIVE, NOT_EVALUATED = "pass", "fail", "inconclusive", "not evaluated"


def requirement_verdict(value: float | None, bound: dict[str, float],
                        interval: tuple[float, float] | list[float] | None = None) -> str:
    """Whether a measured metric meets ``{min, max}``, given its 95% interval.

    ``pass`` when the whole interval meets the bound, ``fail`` when none of it does, ``inconclusive`` when it
    straddles the bound (the samples cannot tell), ``not evaluated`` without a value. A metric without an interval
    is exact (a parameter count): its value decides. Search acts on the value alone (Optuna constraints need a
    number); ``nas verify`` and the card use this.
    """
    if value is None or not math.isfinite(value):
        return NOT_EVALUATED
    low = high = value
    if interval is not None:
        if not all(isinstance(end, (int, float)) and math.isfinite(end) for end in interval):
            return INCONCLUSIVE  # an estimate whose uncertainty is unknown (e.g. no samples)
        low, high = min(interval[0], value), max(interval[1], value)
    sides = []
    if "min" in bound:
        sides.append(PASS if low >= bound["min"] else FAIL if high < bound["min"] else INCONCLUSIVE)
    if "max" in bound:
        sides.append(PASS if high <= bound["max"] else FAIL if low > bound["max"] else INCONCLUSIVE)
    return FAIL if FAIL in sides else INCONCLUSIVE if INCONCLUSIVE in sides else PASS


# Metric names whose direction their words give away (``error``, ``ece``, ``fpr95``: lower is better).
_LOWER_IS_BETTER = re.compile(r"(^|_)(error|fpr\d*|ece|nll|brier|gap|flags|loss|ood_confidence)(_|$)|^confidence_")
_HIGHER_IS_BETTER = re.compile(r"(^|_)(accuracy|auroc|auc|aupr|eps|worst_class|worst_group)(_|$)")


def metric_direction(objective: str, metric: str) -> str | None:
    """``"maximize"``, ``"minimize"`` or None (unknown) for one metric of an objective.

    An objective may declare ``metric_directions = {"max_fpr95": "minimize"}``; otherwise the objective's own
    value follows its ``direction`` and other metrics are read from their names (``*_accuracy``, ``*_auroc``:
    higher is better; ``error``, ``ece``, ``nll``, ``fpr95``, ``*_gap``, ``*_flags``: lower is better).
    """
    try:
        cls = objectives.get(objective)
    except KeyError:  # an objective this version no longer has
        cls = None
    declared = getattr(cls, "metric_directions", None) or {}
    if metric in declared:
        return declared[metric]
    if metric == objective:
        return cls.direction if cls is not None else None
    if _LOWER_IS_BETTER.search(metric):
        return "minimize"
    if _HIGHER_IS_BETTER.search(metric):
        return "maximize"
    return None
