"""Registry and shared checks for search spaces (``sample(trial) -> spec``, ``build(spec) -> nn.Module``)."""
from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, replace
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Callable

import optuna
from torch import nn

from ._modules import Ensemble


class SpecError(ValueError):
    """A spec this version cannot build; the message names the key and what is allowed."""


@dataclass(frozen=True)
class SearchSpace:
    """One family of architectures.

    ``params`` declares each searchable option as plain data in the format objectives use too
    (validated by ``nas.schema``): ``{"type": .., "default": .., "low": .., "high": .., "choices": ..,
    "help": .., "searchable": True}``. ``default`` is the range searched by default (scalar, list or
    ``{low, high}``), which a config may narrow, widen or fix; ``low``/``high`` or ``choices`` are the hard
    limits it may not exceed. ``check`` validates a spec and returns the keyword arguments of ``model``, a
    plain ``nn.Module`` class in a module that imports only torch (``*_model.py``): training builds it and
    ``nas export`` copies its source. ``anchors(ranges)``, when given, returns the trial parameters (partial) of the
    smallest and of the largest model of the searched ranges, which a study may try first (``nas.initial_design``).
    ``searchable = False`` marks a space whose specs are assembled from stored
    trials (``ensemble``), not sampled: a config cannot name it and :func:`available` does not list it.
    """

    name: str
    params: dict[str, dict[str, Any]]
    sample: Callable[[optuna.Trial, dict[str, Any]], dict[str, Any]]
    check: Callable[[dict[str, Any]], dict[str, Any]]
    model: type[nn.Module]
    summary: Callable[[dict[str, Any]], str]
    searchable: bool = True
    anchors: Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]] | None = None

    def build(self, spec: dict[str, Any]) -> nn.Module:
        """The model of ``spec`` with fresh weights: ``model(**check(spec))``, or an :class:`Ensemble` of them."""
        arguments = self.check(spec)
        members = spec.get("ensemble", 1)
        if members == 1:
            return self.model(**arguments)
        return Ensemble([self.model(**arguments) for _ in range(members)])


_SPACES: dict[str, SearchSpace] = {}
ENTRY_POINT_GROUP = "robust_nas.spaces"
REFERENCE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")  # "package.module:Name", as an entry point's value
EXPECTED = f'a built-in space, an entry point of group {ENTRY_POINT_GROUP} or "package.module:Name" of a SearchSpace'


def load_extension(group: str, name: str) -> Any:
    """The object ``name`` points at outside this package: a ``"package.module:Name"`` reference, else the entry
    point ``name`` of ``group``; None when it is neither. An import that fails is an ``ImportError`` of one line.

    (``objectives`` and ``nas`` hold the same few lines: the packages never import each other.)
    """
    if REFERENCE.fullmatch(name):
        if name.split(".")[0].split(":")[0] in sys.stdlib_module_names:  # never an extension; some act on import
            raise ImportError(f"{name!r} names a standard-library module, not an extension")
        target: EntryPoint | None = EntryPoint(name, name, group)
    else:
        target = next(iter(entry_points(group=group, name=name)), None)
    if target is None:
        return None
    try:
        return target.load()
    except Exception as error:  # whatever the user's module raises while it is imported
        raise ImportError(f"cannot import {target.value!r} ({type(error).__name__}: {error})".splitlines()[0]) from None


def default_ranges(params: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What ``sample`` searches when a config names no range: each option's declared ``default``."""
    return {key: option["default"] for key, option in params.items()}


def register(space: SearchSpace) -> SearchSpace:
    _SPACES[space.name] = space
    return space


def available() -> list[str]:
    """Built-in and installed (entry point) names a config may search; installed ones are not imported until used."""
    installed = {point.name for point in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted({name for name, space in _SPACES.items() if space.searchable and not REFERENCE.fullmatch(name)}
                  | installed)


def registered_as(space: SearchSpace, key: str) -> SearchSpace:
    """``space`` under the name ``key`` (an entry point name or a reference), its specs saying ``"space": key``,
    so export and verify find it again from the spec alone."""
    if space.name == key:
        return space

    def sample(trial: optuna.Trial, ranges: dict[str, Any] | None = None) -> dict[str, Any]:
        return {**space.sample(trial, ranges), "space": key}

    return replace(space, name=key, sample=sample)


def get(name: str) -> SearchSpace:
    """A built-in space, an installed one (entry point ``robust_nas.spaces``) or a ``"package.module:Name"``
    reference to a :class:`SearchSpace`; anything else is a :class:`SpecError` saying what is expected."""
    if isinstance(name, str) and name in _SPACES:
        return _SPACES[name]
    if not isinstance(name, str):
        raise SpecError(f"unknown search space {name!r}; allowed: {', '.join(available())}")
    try:
        found = load_extension(ENTRY_POINT_GROUP, name)
    except ImportError as error:
        raise SpecError(f"{name!r}: {error}; expected {EXPECTED}") from None
    if found is None:
        raise SpecError(f"unknown search space {name!r}; allowed: {', '.join(available())}, "
                        f'or "package.module:Name" of a SearchSpace')
    if not isinstance(found, SearchSpace):
        what = f"class {found.__name__}" if isinstance(found, type) else f"a {type(found).__name__}"
        raise SpecError(f"{name!r} is {what}, not a search_spaces.SearchSpace instance; "
                        f"expected {EXPECTED}")
    return register(registered_as(found, name))


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
        raise SpecError("spec.normalize must be {mean: [...], std: [...]} with one finite mean and one positive std "
                        f"per input channel, got {norm!r}")
    return shape, num_classes, ensemble
