"""Registry and shared checks for search spaces (``sample(trial) -> spec``, ``build(spec) -> nn.Module``)."""
from __future__ import annotations

import math
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
    if not isinstance(name, str) or name not in _SPACES:
        raise SpecError(f"unknown search space {name!r}; allowed: {', '.join(available())}")
    return _SPACES[name]


def build(spec: dict[str, Any]) -> nn.Module:
    """Build the ``nn.Module`` described by ``spec`` (dispatches on ``spec['space']``)."""
    if not isinstance(spec, dict) or "space" not in spec:
        raise SpecError("spec must be a dict with a 'space' key; allowed spaces: " + ", ".join(available()))
    return get(spec["space"]).build(spec)


def summary(spec: dict[str, Any]) -> str:
    """One line describing the architecture (for tables and hover text)."""
    return get(spec["space"]).summary(spec)


COMMON_KEYS = ("space", "input_shape", "num_classes", "normalize", "ensemble")
MAX_INPUT_SIZE = 4096  # per dimension; a spec is data from storage, so its sizes are bounded before anything is built


def is_int(value: Any) -> bool:
    """A real integer (``True`` is not a width)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool, NaN or inf)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_keys(spec: dict[str, Any], allowed: tuple[str, ...], where: str = "spec") -> None:
    """Reject keys this version does not know: a typo must not build a model with a silent default."""
    unknown = sorted(str(key) for key in spec if key not in allowed)
    if unknown:
        raise SpecError(f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")


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
    """``spec[key]`` when it equals one of ``choices`` with the same type (``True`` is not the kernel size 1)."""
    value = spec.get(key)
    if not any(value == choice and type(value) is type(choice) for choice in choices):
        raise SpecError(f"{where}.{key} must be one of {choices}, got {value!r}")
    return value


def check_common(spec: dict[str, Any]) -> tuple[list[int], int, int]:
    """Validate the keys every spec carries; return ``(input_shape, num_classes, ensemble)``."""
    shape = require(spec, "input_shape", list)
    if not 2 <= len(shape) <= 3 or not all(is_int(d) and 0 < d <= MAX_INPUT_SIZE for d in shape):
        raise SpecError(f"spec.input_shape must be [channels, length] or [channels, height, width] with sizes in "
                        f"[1, {MAX_INPUT_SIZE}], got {shape!r}")
    num_classes = require(spec, "num_classes", int)
    if not 2 <= num_classes <= 100_000:
        raise SpecError(f"spec.num_classes must be in [2, 100000], got {num_classes}")
    ensemble = spec.get("ensemble", 1)
    if not is_int(ensemble) or not 1 <= ensemble <= 8:
        raise SpecError(f"spec.ensemble must be an int in [1, 8], got {ensemble!r}")
    norm = spec.get("normalize", {"mean": [0.0] * shape[0], "std": [1.0] * shape[0]})
    if not (
        isinstance(norm, dict) and set(norm) == {"mean", "std"}
        and all(isinstance(norm[k], list) and len(norm[k]) == shape[0] and all(map(is_number, norm[k])) for k in norm)
        and all(s > 0 for s in norm["std"])
    ):
        raise SpecError("spec.normalize must be {mean: [...], std: [...]} with one finite mean and one positive std per "
                        f"input channel, got {norm!r}")
    return shape, num_classes, ensemble
