"""Registry and shared checks for search spaces (``sample(trial) -> spec``, ``build(spec) -> nn.Module``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import optuna
from torch import nn


class SpecError(ValueError):
    """A spec this version cannot build; the message names the key and what is allowed."""


@dataclass(frozen=True)
class SearchSpace:
    """One family of architectures.

    ``params`` declares each searchable option with its default range (scalar, list or
    ``{low, high}``); a config may narrow or fix any of them. ``limits`` are the hard bounds a config
    may not exceed, which keep every sampled model trainable on a laptop CPU.
    """

    name: str
    params: dict[str, Any]
    limits: dict[str, tuple[Any, Any] | list[Any]]
    sample: Callable[[optuna.Trial, dict[str, Any]], dict[str, Any]]
    build: Callable[[dict[str, Any]], nn.Module]
    summary: Callable[[dict[str, Any]], str]


_SPACES: dict[str, SearchSpace] = {}


def register(space: SearchSpace) -> SearchSpace:
    _SPACES[space.name] = space
    return space


def available() -> list[str]:
    return sorted(_SPACES)


def get(name: str) -> SearchSpace:
    try:
        return _SPACES[name]
    except KeyError:
        raise SpecError(f"unknown search space '{name}'; allowed: {', '.join(available())}") from None


def build(spec: dict[str, Any]) -> nn.Module:
    """Build the ``nn.Module`` described by ``spec`` (dispatches on ``spec['space']``)."""
    if not isinstance(spec, dict) or "space" not in spec:
        raise SpecError("spec must be a dict with a 'space' key; allowed spaces: " + ", ".join(available()))
    return get(spec["space"]).build(spec)


def summary(spec: dict[str, Any]) -> str:
    """One line describing the architecture (for tables and hover text)."""
    return get(spec["space"]).summary(spec)


def require(spec: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "spec") -> Any:
    """Fetch ``spec[key]`` and check its type, raising :class:`SpecError` naming the key."""
    if key not in spec:
        raise SpecError(f"{where} is missing '{key}'")
    value = spec[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind in (int, float, (int, float)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise SpecError(f"{where}.{key} must be {names}, got {value!r}")
    return value


def require_choice(spec: dict[str, Any], key: str, choices: list[Any], where: str = "spec") -> Any:
    value = spec.get(key)
    if value not in choices:
        raise SpecError(f"{where}.{key} must be one of {choices}, got {value!r}")
    return value


def check_common(spec: dict[str, Any]) -> tuple[list[int], int, int]:
    """Validate the keys every spec carries; return ``(input_shape, num_classes, ensemble)``."""
    shape = require(spec, "input_shape", list)
    if not 2 <= len(shape) <= 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise SpecError(f"spec.input_shape must be [channels, length] or [channels, height, width], got {shape!r}")
    num_classes = require(spec, "num_classes", int)
    if num_classes < 2:
        raise SpecError(f"spec.num_classes must be >= 2, got {num_classes}")
    ensemble = spec.get("ensemble", 1)
    if not isinstance(ensemble, int) or not 1 <= ensemble <= 8:
        raise SpecError(f"spec.ensemble must be an int in [1, 8], got {ensemble!r}")
    norm = spec.get("normalize", {"mean": [0.0] * shape[0], "std": [1.0] * shape[0]})
    if (
        not isinstance(norm, dict)
        or len(norm.get("mean", [])) != shape[0]
        or len(norm.get("std", [])) != shape[0]
        or any(s <= 0 for s in norm["std"])
    ):
        raise SpecError("spec.normalize must be {mean: [...], std: [...]} with one positive std per input channel")
    return shape, num_classes, ensemble
