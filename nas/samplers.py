"""The Optuna samplers a study can use, by name: built-in ones, installed ones (entry point group
``robust_nas.samplers``) and ``"package.module:Name"`` references to a sampler class or factory.

An extension is a ``BaseSampler`` subclass whose constructor takes ``seed=``, or a function ``make(seed) -> sampler``.
"""
from __future__ import annotations

import warnings
from typing import Callable

import optuna

from .extensions import installed, load_extension

ENTRY_POINT_GROUP = "robust_nas.samplers"
Factory = Callable[[int], optuna.samplers.BaseSampler]


def _nsga3(seed: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.NSGAIIISampler(seed=seed, population_size=10)


BUILT_IN: dict[str, Factory] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=8),
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=10),
    "nsga3": _nsga3,
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed, n_startup_trials=8),
}
EXPECTED = (f'a built-in sampler, an entry point of group {ENTRY_POINT_GROUP} or "package.module:Name" of an '
            "optuna BaseSampler subclass or of a function make(seed) -> sampler")


def available() -> list[str]:
    """Built-in names first (in their order), then installed ones."""
    return list(BUILT_IN) + [name for name in installed(ENTRY_POINT_GROUP) if name not in BUILT_IN]


def factory(name: str) -> Factory:
    """What makes the sampler ``name``; ``LookupError`` (one line, saying what is allowed) when nothing does."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    try:
        found = load_extension(ENTRY_POINT_GROUP, name)
    except ImportError as error:
        raise LookupError(f"{name!r}: {error}; expected {EXPECTED}") from None
    if found is None:
        raise LookupError(f"{name!r} is not allowed; allowed: {', '.join(available())}, "
                          'or "package.module:Name" of a sampler class or factory')
    if isinstance(found, type) and issubclass(found, optuna.samplers.BaseSampler):
        return lambda seed: found(seed=seed)
    if isinstance(found, type) or not callable(found):
        what = f"class {found.__name__}" if isinstance(found, type) else f"a {type(found).__name__}"
        raise LookupError(f"{name!r} is {what}, not a sampler class or factory; expected {EXPECTED}")
    return found


def create(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` seeded with ``seed``; ``LookupError`` when it is unknown or makes no sampler."""
    make = factory(name)
    try:
        sampler = make(seed)
    except Exception as error:  # a user's factory or constructor, e.g. one that takes no seed
        raise LookupError(f"{name!r} could not make a sampler ({type(error).__name__}: {error}); "
                          f"expected {EXPECTED}".splitlines()[0]) from None
    if not isinstance(sampler, optuna.samplers.BaseSampler):
        raise LookupError(f"{name!r} made a {type(sampler).__name__}, not an optuna sampler; expected {EXPECTED}")
    return sampler
