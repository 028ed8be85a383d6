"""The ``[requirements]`` table: minimum/maximum bounds on any metric an objective reports.

Kept apart from the config module because the training recipe's checks also need to know which
objective a required metric belongs to (e.g. a required OOD metric means OOD sets are scored).
"""
from __future__ import annotations

import math
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
