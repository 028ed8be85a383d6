"""The trials a new study runs first: ``study.enqueue`` (architectures and recipes the user already knows),
``study.warm_start`` (the Pareto front of another study, e.g. a cheap search with fewer epochs or samples) and a
design: with ``study.initial_design = "anchors"`` the anchors of the front (the smallest and the largest model of the
searched ranges with every searched robust-training scheme on, and the largest without them), with ``"robust"`` a
robust start-up (the first :data:`ROBUST_START` trials with every searched robust-training scheme on, all else
sampled as usual).

Why anchors: a robustness front's ends are a small model (parameters), a large model trained robustly (OOD and
adversarial objectives) and a large plain model (accuracy); random start-up trials find them by chance. Why a robust
start-up: when the objectives ask for robustness, the trials that move the front most are robustly trained ones
(experiments/bench_search.py); random start-up trials switch every scheme on only by chance (1 in 4 with two).
Each entry is a partial set of trial parameters (Optuna's ``enqueue_trial``): what it leaves out is sampled as usual.

Entries are checked against what the config searches before anything runs, by sampling the space and the recipe
with a stand-in trial that records every parameter asked for and its distribution.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

import search_spaces

from .errors import UsageError
from .recipe import SUBTABLES, sample_recipe
from .schema import Declaration

Entry = tuple[dict[str, Any], str]  # a trial's (partial) parameters and where they come from
DESIGNS = ("anchors", "robust", "none")
ROBUST_START = 4  # trials of the robust start-up (measured with sampler_options = { n_startup_trials = 4 })
ORIGIN_ATTR = "origin"  # on an enqueued trial: where its parameters come from
WARM_START_FIELDS: dict[str, Declaration] = {
    "storage": {"type": str, "default": "", "allow_empty": True,
                "help": "storage URL of the study to start from; empty = off"},
    "study": {"type": str, "default": "", "allow_empty": True,
              "help": "its name; empty = the only study in that storage"},
    "max_trials": {"type": int, "default": 8, "low": 1, "high": 10000,
                   "help": "at most this many of its Pareto-front trials are run first"},
}
# Searched training schemes that buy robustness (measured: experiments/paper_hyatt_lee), switched on in the anchors.
ROBUST_SWITCHES = tuple(f"train.{name}.enabled" for name in SUBTABLES)
SCHEME_NAMES = {f"train.{name}.enabled": name.replace("_", " ") + (" training" if name == "adversarial" else "")
                for name in SUBTABLES}


class _Probe:
    """Stands in for an ``optuna.Trial`` while a config is sampled: answers each suggestion from ``given``, else
    with the first (``end = 0``) or last (``end = -1``) value of its distribution, and records what was asked."""

    def __init__(self, given: Mapping[str, Any], end: int) -> None:
        self.given, self.end = given, end
        self.asked: dict[str, BaseDistribution] = {}

    def _answer(self, name: str, distribution: BaseDistribution, ends: tuple[Any, Any]) -> Any:
        self.asked[name] = distribution
        return self.given[name] if name in self.given else ends[self.end]

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        choices = tuple(choices)
        return self._answer(name, CategoricalDistribution(choices), (choices[0], choices[-1]))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        return self._answer(name, IntDistribution(low, high, log=log, step=step), (low, high))

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        return self._answer(name, FloatDistribution(low, high, log=log, step=step), (low, high))


def searched_parameters(config: dict[str, Any], given: Mapping[str, Any] | None = None) -> dict[str, BaseDistribution]:
    """Every trial parameter the config searches (with ``given`` values fixed), by name: the union over sampling
    with all-first and all-last values, so parameters that exist only for some values (deeper blocks, an enabled
    scheme's options) are included."""
    space = search_spaces.get(config["space"]["name"])
    ranges = {key: value for key, value in config["space"].items() if key != "name"}
    found: dict[str, BaseDistribution] = {}
    for end in (0, -1):
        probe = _Probe(given or {}, end)
        space.sample(probe, ranges)  # type: ignore[arg-type]
        sample_recipe(probe, config["training"])  # type: ignore[arg-type]
        found.update(probe.asked)
    return found


def flatten(entry: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"cnn": {"depth": 2}}`` (TOML's unquoted dotted keys) and ``{"cnn.depth": 2}`` alike: ``{"cnn.depth": 2}``."""
    flat: dict[str, Any] = {}
    for key, value in entry.items():
        name = f"{prefix}{key}"
        flat.update(flatten(value, f"{name}.") if isinstance(value, Mapping) else {name: value})
    return flat


def _contains(distribution: BaseDistribution, value: Any) -> bool:
    if isinstance(distribution, CategoricalDistribution):
        return any(type(value) is type(choice) and value == choice for choice in distribution.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(distribution, IntDistribution):
        return (isinstance(value, int) and distribution.low <= value <= distribution.high
                and (value - distribution.low) % distribution.step == 0)
    assert isinstance(distribution, FloatDistribution)
    return distribution.low <= value <= distribution.high


def _describe(distribution: BaseDistribution) -> str:
    if isinstance(distribution, CategoricalDistribution):
        return "one of " + ", ".join(repr(choice) for choice in distribution.choices)
    kind = "an integer" if isinstance(distribution, IntDistribution) else "a number"
    return f"{kind} in [{distribution.low}, {distribution.high}]"


def _searched_part(config: dict[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``params`` this config searches at that value (the rest is left to the sampler)."""
    kept = dict(params)
    while True:  # dropping a value (e.g. a depth out of range) may remove the parameters that depended on it
        searched = searched_parameters(config, kept)
        valid = {name: value for name, value in kept.items() if name in searched and _contains(searched[name], value)}
        if valid == kept:
            return kept
        kept = valid


def warm_start(config: dict[str, Any]) -> list[Entry]:
    """The parameters of the Pareto front of ``study.warm_start`` (feasible trials when it has requirements), in
    trial order, at most ``max_trials``, each cut to what this config searches, with where each came from;
    UsageError (one line) when that study cannot be read."""
    from .pareto import front_trials
    from .storage import load_study

    source = config["study"]["warm_start"]
    if not source["storage"]:
        return []
    try:
        study = load_study(source["storage"], source["study"] or None)
    except UsageError as error:
        raise UsageError(f"config: study.warm_start: {error}") from None
    trials, _ = front_trials(study)
    found: list[Entry] = []
    for trial in trials:
        try:
            params = _searched_part(config, trial.params)
        except Exception:  # values this space cannot even be sampled with (another space's): nothing to keep
            continue
        found.append((params, f"warm start: trial {trial.number} of study {study.study_name!r}"))
    return _new(found)[:source["max_trials"]]


def check_enqueue(config: dict[str, Any]) -> list[dict[str, Any]]:
    """``study.enqueue`` as flat parameter dicts; ``UsageError`` (one line naming the entry and the key) for a
    parameter the config does not search or a value outside its searched range."""
    entries = config["study"]["enqueue"]
    checked = []
    for index, entry in enumerate(entries):
        where = f"config: study.enqueue[{index}]"
        if not isinstance(entry, Mapping) or not entry:
            raise UsageError(f"{where} must be a non-empty table of trial parameters, e.g. "
                             '{ "cnn.depth" = 2, "train.lr" = 0.003 }, got ' + repr(entry)[:80])
        params = flatten(entry)
        try:
            searched = searched_parameters(config, params)
        except Exception as error:  # a value sample() cannot take (e.g. depth = "two"): name it below if we can
            try:
                searched = searched_parameters(config)
            except Exception:  # a space of your own whose sample() needs more than suggest_*
                searched = {}
            if not searched or all(name in searched and _contains(searched[name], value)
                                   for name, value in params.items()):
                raise UsageError(f"{where}: the space and recipe could not be sampled with these parameters "
                                 f"({type(error).__name__}: {error})".splitlines()[0]) from None
        for name, value in params.items():
            if name not in searched:
                raise UsageError(f"{where}: unknown parameter {name!r}; this config searches (with the entry's "
                                 f"values): {', '.join(searched) or 'nothing'}; fix the name or drop it")
            if not _contains(searched[name], value):
                raise UsageError(f"{where}: {name} = {value!r} is outside what the config searches "
                                 f"({_describe(searched[name])}); change the value or widen the range in the config")
        checked.append(params)
    return checked


def _robust_switches(config: dict[str, Any]) -> dict[str, bool]:
    """The robust-training switches the config searches with ``true`` among their choices, each set on."""
    design = config["study"]["initial_design"]
    try:
        searched = searched_parameters(config)
    except Exception as error:  # a space of your own whose sample() needs more than suggest_*
        raise UsageError(f"config: study.initial_design = {design!r}: space {config['space']['name']!r} could not be "
                         f"sampled by a stand-in trial ({type(error).__name__}: {error}); "
                         "use initial_design = 'none'".splitlines()[0]) from None
    return {name: True for name in ROBUST_SWITCHES
            if name in searched and True in getattr(searched[name], "choices", ())}


def robust_start(config: dict[str, Any]) -> list[Entry]:
    """The robust start-up of :data:`DESIGNS`: :data:`ROBUST_START` trials with every searched robust-training switch
    on; UsageError (one line) when the config searches none."""
    switches = _robust_switches(config)
    if not switches:
        raise UsageError("config: study.initial_design = 'robust' needs a searched robust-training switch, e.g. "
                         "[training.adversarial] enabled = [true, false]; "
                         "search one or use initial_design = 'none'")
    schemes = " and ".join(SCHEME_NAMES.get(name, name) for name in switches)
    return [(dict(switches), f"robust start-up {index + 1}/{ROBUST_START}: {schemes} on")
            for index in range(ROBUST_START)]


def anchors(config: dict[str, Any]) -> list[Entry]:
    """The anchor trials of :data:`DESIGNS` (partial parameters) and what each is, or none when the space
    declares no anchors."""
    space = search_spaces.get(config["space"]["name"])
    if space.anchors is None:
        return []
    ranges = {key: value for key, value in config["space"].items() if key != "name"}
    smallest, largest = space.anchors(ranges)
    switches = _robust_switches(config)
    robust = ", robust training on" if switches else ""
    design = [({**smallest, **switches}, f"anchor: the smallest model{robust}"),
              ({**largest, **switches}, f"anchor: the largest model{robust}")]
    if switches:
        design.append(({**largest, **{name: False for name in switches}}, "anchor: the largest model, plain training"))
    return _new(design)


def plan(config: dict[str, Any]) -> list[Entry]:
    """What a new study enqueues, with where each trial comes from: the user's entries, the warm start's front, then
    the anchors or the robust start-up, at most ``n_trials`` in all (read before the study is created: a source that
    cannot be read creates nothing)."""
    design = [(params, f"study.enqueue[{index}]") for index, params in enumerate(check_enqueue(config))]
    chosen = config["study"]["initial_design"]
    design += _new(warm_start(config) + (anchors(config) if chosen == "anchors" else []), design)
    if chosen == "robust":  # the same partial parameters each time: the rest of each trial is sampled
        design += robust_start(config)
    return design[:max(int(config["study"]["n_trials"]), 0)]


def _new(entries: Sequence[Entry], seen: Sequence[Entry] = ()) -> list[Entry]:
    """The entries whose parameters are neither empty nor already in ``seen`` or earlier in ``entries``."""
    kept: list[Entry] = []
    for params, origin in entries:
        if params and all(params != other for other, _ in [*seen, *kept]):
            kept.append((params, origin))
    return kept


def enqueue(study: optuna.Study, design: list[Entry]) -> None:
    """Enqueue the trials of :func:`plan` on a study just created, in order, each saying where it comes from
    (user attribute ``origin``, shown by the dashboard)."""
    for params, origin in design:
        study.enqueue_trial(params, user_attrs={ORIGIN_ATTR: origin})
