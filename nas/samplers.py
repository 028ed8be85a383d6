"""The Optuna samplers a study can use, by name: built-in ones, installed ones (entry point group
``robust_nas.samplers``) and ``"package.module:Name"`` references to a sampler class or factory.

An extension is a ``BaseSampler`` subclass whose constructor takes ``seed=``, or a function ``make(seed) -> sampler``.
``study.sampler_options`` passes keyword arguments to any of them (``{ n_startup_trials = 5 }``): they override the
built-in defaults below, so e.g. ``sampler = "optuna.samplers:CmaEsSampler"`` or an OptunaHub sampler loaded by a
user's module can be tuned from the TOML.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

import optuna

from .extensions import installed, load_extension

ENTRY_POINT_GROUP = "robust_nas.samplers"
Factory = Callable[..., optuna.samplers.BaseSampler]  # make(seed, **options)


def _with_defaults(cls: type[optuna.samplers.BaseSampler], **defaults: Any) -> Factory:
    def make(seed: int, **options: Any) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():  # GP, NSGA-III and TPE's multivariate/group are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return cls(**{"seed": seed, **defaults, **options})
    return make


BUILT_IN: dict[str, Factory] = {
    # group=True: our space is conditional (per-block choices exist only at that depth); measured by
    # experiments/bench_search.py, it ends with a larger hypervolume than plain multivariate TPE at equal cost
    "tpe": _with_defaults(optuna.samplers.TPESampler, multivariate=True, group=True, n_startup_trials=8),
    "nsga2": _with_defaults(optuna.samplers.NSGAIISampler, population_size=10),
    "nsga3": _with_defaults(optuna.samplers.NSGAIIISampler, population_size=10),
    "random": _with_defaults(optuna.samplers.RandomSampler),
    "gp": _with_defaults(optuna.samplers.GPSampler, n_startup_trials=8),
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
        return lambda seed, **options: found(seed=seed, **options)
    if isinstance(found, type) or not callable(found):
        what = f"class {found.__name__}" if isinstance(found, type) else f"a {type(found).__name__}"
        raise LookupError(f"{name!r} is {what}, not a sampler class or factory; expected {EXPECTED}")
    return found


def create(name: str, seed: int, options: dict[str, Any] | None = None) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` seeded with ``seed`` and given ``options`` as keyword arguments; ``LookupError`` when
    it is unknown, rejects an option or makes no sampler."""
    make = factory(name)
    try:
        sampler = make(seed, **(options or {}))
    except TypeError as error:  # an option the constructor does not take
        if options:
            raise LookupError(f"{name!r} does not accept the options {sorted(options)} ({error}); "
                              "check study.sampler_options against the sampler's constructor".splitlines()[0]) from None
        raise LookupError(f"{name!r} could not make a sampler (TypeError: {error}); "
                          f"expected {EXPECTED}".splitlines()[0]) from None
    except Exception as error:  # a user's factory or constructor, e.g. one that takes no seed
        raise LookupError(f"{name!r} could not make a sampler ({type(error).__name__}: {error}); "
                          f"expected {EXPECTED}".splitlines()[0]) from None
    if not isinstance(sampler, optuna.samplers.BaseSampler):
        raise LookupError(f"{name!r} made a {type(sampler).__name__}, not an optuna sampler; expected {EXPECTED}")
    return sampler
