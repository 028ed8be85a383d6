"""Turn a declared search range into an Optuna suggestion.

A range value is one of: a scalar (fixed, nothing sampled), a list (categorical choice), or a table
``{low, high[, log][, step]}`` (integer when both bounds are ints, float otherwise).
"""
from __future__ import annotations

from typing import Any, Callable

import optuna


def is_range(value: Any) -> bool:
    return isinstance(value, dict) and "low" in value and "high" in value


def suggest(trial: optuna.Trial, name: str, value: Any) -> Any:
    """Sample ``value`` under the parameter name ``name``; scalars are returned unchanged."""
    if isinstance(value, list):
        if len(value) == 1:
            return value[0]
        return trial.suggest_categorical(name, value)
    if is_range(value):
        low, high = value["low"], value["high"]
        if low == high:
            return low
        log = bool(value.get("log", False))
        if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool):
            return trial.suggest_int(name, low, high, step=int(value.get("step", 1)), log=log)
        step = value.get("step")
        return trial.suggest_float(name, float(low), float(high), log=log, step=None if log else step)
    return value


def range_bounds(value: Any) -> list[Any]:
    """Every extreme a range can produce (used to check bounds up front)."""
    if isinstance(value, list):
        return list(value)
    if is_range(value):
        return [value["low"], value["high"]]
    return [value]


def is_searched(value: Any) -> bool:
    """Does this range sample a parameter (a list of several choices, or a range whose bounds differ)?"""
    return (isinstance(value, list) and len(value) > 1) or (is_range(value) and value["low"] != value["high"])


def ends(value: Any) -> tuple[Any, Any]:
    """The smallest and the largest value a numeric range can take (a fixed value is both)."""
    bounds = range_bounds(value)
    return min(bounds), max(bounds)


Pick = Callable[[str, str], Any]  # pick(parameter name, option) -> the option's value at this end of its range


def extremes(ranges: dict[str, Any], layout: Callable[[Pick], None]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parameters of the smallest and of the largest model: ``layout(pick)`` calls ``pick`` for each capacity
    parameter as ``sample`` would name it; searched ones are set to the low (high) end of their option's range."""
    found = []
    for end in (0, 1):
        params: dict[str, Any] = {}

        def pick(name: str, option: str) -> Any:
            value = ends(ranges[option])[end]
            if is_searched(ranges[option]):
                params[name] = value
            return value

        layout(pick)
        found.append(params)
    return found[0], found[1]
