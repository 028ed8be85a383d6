"""Heterogeneous ensembles from stored trials (Neural Ensemble Search, Zaidi et al. NeurIPS 2021).

Greedy forward selection with replacement (Caruana et al. 2004) on the validation split: start empty; at each of
``size`` steps add the candidate trial (possibly one already in) whose addition gives the best averaged softmax on
the chosen objective. Each candidate's validation softmax is computed once, from its stored weights; a step scores
every candidate on those cached outputs, so selection costs ``size x candidates`` objective evaluations and one
forward pass per candidate, no retraining. The result is the spec of the ``ensemble`` space (its members' specs and
how often each was picked, as weights), scored with every objective of the study exactly as the search scores a
trial (``Experiment.score``), and recorded in the study as a new COMPLETE trial with its weights artifact, so the
front, dashboard, report and ``nas export`` show it like any other trial.

Selection objectives (scored from the cached validation softmax, with the study's options for them):
``accuracy`` (default), ``calibration``, or ``hypervolume``: the hypervolume of the study's trials plus the
ensemble, on the study's objectives among accuracy, calibration and params.

Example::

    study = nas.storage.load_study("sqlite:///runs/nas.db", "fm1")
    built = build_ensemble(study, "sqlite:///runs/nas.db", size=5)
    print(built.trial_number, built.values)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
import torch
from optuna.trial import TrialState
from torch import nn

import objectives
import search_spaces

from . import config as config_module
from .errors import UsageError
from .export import load_state, read_weights, state_dict_from_bytes
from .optuna_compat import hypervolume
from .early_stopping import FINAL_METRICS_ATTR
from .pareto import front_trials
from .records import Records
from .requirements import requirement_violation
from .storage import FAIL_REASON, worker_id
from .study import Experiment, check_requirements, flatten_metrics, stored_config

SELECTION_OBJECTIVES = ("accuracy", "calibration")  # computable from the members' cached validation softmax
HYPERVOLUME = "hypervolume"
HYPERVOLUME_DIMENSIONS = ("accuracy", "calibration", "params")
POOLS = ("all", "front")
MAX_CANDIDATES = 32
ALLOWED_TEXT = ("accuracy or calibration (scored on the members' cached validation softmax), or hypervolume "
                "(of the study's trials plus the ensemble, on its objectives among accuracy, calibration, params)")


def _trial_record(records: Records, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A stored trial's spec, metrics, recipe and training time: the one place this module reads a trial's record
    (through ``records``, the study's cached loader of ``nas.records``)."""
    view = records(trial)
    return {"spec": view.get("spec"), "metrics": view.get("metrics") or {}, "recipe": view.get("recipe") or {},
            "train_seconds": view.get("train_seconds"), "weights_artifact": view.get("weights_artifact")}


@dataclass
class Member:
    """A candidate: a stored trial with its weights loaded and its validation softmax computed once."""

    number: int
    spec: dict[str, Any]
    model: nn.Module
    proba: torch.Tensor
    params: int
    record: dict[str, Any]

    @property
    def summary(self) -> str:
        return search_spaces.summary(self.spec)


@dataclass
class Step:
    """One greedy step: the trial added, the selection score of the ensemble after adding it, and whether the step
    is part of the result (the best prefix of the steps is kept)."""

    trial: int
    score: float
    kept: bool = True


@dataclass
class BuiltEnsemble:
    """What ``nas ensemble`` did: the selection, the ensemble's scores and the trial that records it."""

    study: str
    objective: str
    pool: str
    candidates: list[int]
    steps: list[Step]
    members: list[int]  # distinct member trials, in the spec's order
    weights: list[int]  # how often each was picked
    spec: dict[str, Any]
    summary: str
    params: int
    trial_number: int
    values: dict[str, float]
    results: dict[str, dict[str, Any]]  # ObjectiveResult.to_json() by objective
    feasible: bool
    best_member: dict[str, Any]  # the best single candidate on the selection objective: trial, score, values
    directions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------- candidates
def _direction(name: str) -> str:
    return objectives.get(name).direction


def _objective(name: str, config: dict[str, Any]) -> objectives.Objective:
    """The objective with the options the study's config gives it (its defaults when the study does not optimise
    it)."""
    options = {key: value for key, value in (config["objectives"].get(name) or {}).items() if key != "direction"}
    return objectives.get(name)(**options)


def _candidate_trials(study: optuna.Study, records: Records, pool: str, objective: str,
                      max_candidates: int) -> list[optuna.trial.FrozenTrial]:
    """COMPLETE single-architecture trials with stored weights (the Pareto front with ``pool="front"``), the best
    ``max_candidates`` by their stored value of the selection objective (accuracy for hypervolume)."""
    trials = front_trials(study)[0] if pool == "front" else study.get_trials(deepcopy=False,
                                                                             states=(TrialState.COMPLETE,))
    usable = []
    for trial in trials:
        record = _trial_record(records, trial)
        spec = record["spec"]
        if isinstance(spec, dict) and spec.get("space") != "ensemble" and record["weights_artifact"]:
            usable.append(trial)
    if not usable:
        raise UsageError(f"study '{study.study_name}' has no COMPLETE trial with stored weights"
                         f"{' on its Pareto front' if pool == 'front' else ''} to build an ensemble from; "
                         "run 'nas search' first")
    metric = "accuracy" if objective == HYPERVOLUME else objective
    sign = 1.0 if _direction(metric) == "maximize" else -1.0

    def rank(trial: optuna.trial.FrozenTrial) -> tuple[float, int]:
        value = _trial_record(records, trial)["metrics"].get(metric)
        return (-sign * value if isinstance(value, (int, float)) else math.inf, trial.number)

    return sorted(usable, key=rank)[:max_candidates]


def _load_member(study: optuna.Study, trial: optuna.trial.FrozenTrial, experiment: Experiment,
                 context: objectives.EvaluationContext, storage_url: str, artifacts: str | Path | None) -> Member:
    record = _trial_record(Records(study, storage_url, artifacts), trial)
    try:
        model = search_spaces.build(record["spec"])
    except search_spaces.SpecError as error:
        raise UsageError(f"trial {trial.number}: this version cannot build its spec ({error})") from None
    where = f"weights of trial {trial.number}"
    load_state(model, state_dict_from_bytes(read_weights(study, trial, storage_url, artifacts), where), where)
    model = model.to(experiment.device).eval()
    proba = objectives.predict_proba(model, context.x, context.device, context.batch_size)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Member(trial.number, record["spec"], model, proba, params, record)


# ---------------------------------------------------------------------------------------------- selection
def _mixture(members: list[Member], counts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The ensemble's cached outputs for pick ``counts``: log of the weighted mean softmax, and that mean."""
    chosen = np.flatnonzero(counts)
    weights = torch.tensor(counts[chosen], dtype=torch.float32)
    proba = torch.einsum("m,mnc->nc", weights / weights.sum(), torch.stack([members[i].proba for i in chosen]))
    return torch.log(proba), proba


def _ensemble_model(members: list[Member], counts: np.ndarray) -> nn.Module:
    chosen = np.flatnonzero(counts)
    return search_spaces.Ensemble([members[i].model for i in chosen], [int(counts[i]) for i in chosen])


def _prediction_score(objective: objectives.Objective, members: list[Member],
                      context: objectives.EvaluationContext) -> Callable[[np.ndarray], float]:
    """The objective's value for pick counts, from the cached softmax (the objective reads ``context.cache``)."""
    def score(counts: np.ndarray) -> float:
        logits, proba = _mixture(members, counts)
        cached = dataclasses.replace(context, cache={"logits": logits, "proba": proba})
        return objective.evaluate(_ensemble_model(members, counts), cached).value

    return score


Key = Callable[[np.ndarray], tuple[float, ...]]


def _scorer(objective: str, study: optuna.Study, config: dict[str, Any], members: list[Member],
            context: objectives.EvaluationContext, size: int) -> tuple[Key, float]:
    """Counts -> a key to maximise, and the sign that turns ``key[0]`` back into the score: the selection objective
    signed by its direction, then minus the validation NLL (a smooth proper score: accuracy moves in steps, and
    without it a tie would re-pick the first member forever); for hypervolume ``(hypervolume, accuracy, -NLL)``
    (accuracy breaks ties while the ensemble adds no hypervolume yet)."""
    def log_likelihood(counts: np.ndarray) -> float:
        _, proba = _mixture(members, counts)
        return float(torch.log(proba.gather(1, context.y.view(-1, 1)).clamp_min(1e-12)).mean())

    if objective != HYPERVOLUME:
        score = _prediction_score(_objective(objective, config), members, context)
        sign = 1.0 if _direction(objective) == "maximize" else -1.0
        return (lambda counts: (sign * score(counts), log_likelihood(counts))), sign

    names = list(config["objectives"])
    dims = [name for name in names if name in HYPERVOLUME_DIMENSIONS]
    if not dims:
        raise UsageError(f"--objective hypervolume needs one of {', '.join(HYPERVOLUME_DIMENSIONS)} among the "
                         f"objectives of study '{study.study_name}' ({', '.join(names)}); choose --objective "
                         "accuracy or calibration")
    signs = np.array([-1.0 if _direction(name) == "maximize" else 1.0 for name in dims])
    largest = sorted((member.params for member in members), reverse=True)
    reference = np.array([1.1 * sum(largest[:size]) + 1.0 if name == "params"
                          else signs[i] * objectives.get(name).worst_value for i, name in enumerate(dims)])
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    points = np.array([[t.values[names.index(name)] for name in dims] for t in complete]) * signs
    prediction = {name: _prediction_score(_objective(name, config), members, context)
                  for name in dims if name != "params"}
    accuracy = prediction.get("accuracy") or _prediction_score(_objective("accuracy", config), members, context)

    def key(counts: np.ndarray) -> tuple[float, ...]:
        values = [sum(members[i].params for i in np.flatnonzero(counts)) if name == "params"
                  else prediction[name](counts) for name in dims]
        point = np.array(values, dtype=float) * signs
        return hypervolume(np.vstack([points, point]), reference), accuracy(counts), log_likelihood(counts)

    return key, 1.0


def select(members: list[Member], size: int, key: Key, sign: float = 1.0) -> list[Step]:
    """Greedy forward selection with replacement (Caruana et al. 2004): ``size`` steps, each adding the member whose
    addition maximises ``key`` (ties: the earlier candidate, i.e. the better single model); a step's score is
    ``sign * key[0]``. As in Caruana's method, the best prefix is the result (the shortest of equal ones): the
    steps after it are marked ``kept = False``, so the ensemble never scores below its best single member."""
    counts = np.zeros(len(members), dtype=np.int64)
    steps, keys = [], []
    for _ in range(size):
        best, best_key = 0, None
        for index in range(len(members)):
            counts[index] += 1
            found = key(counts)
            counts[index] -= 1
            if best_key is None or found > best_key:
                best, best_key = index, found
        counts[best] += 1
        steps.append(Step(members[best].number, sign * float(best_key[0])))
        keys.append(best_key)
    best_prefix = max(range(len(keys)), key=lambda i: (keys[i], -i))
    for step in steps[best_prefix + 1:]:
        step.kept = False
    return steps


# ---------------------------------------------------------------------------------------------- the ensemble
def _check(size: int, objective: str, pool: str, max_candidates: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise UsageError(f"--size must be an integer >= 1, got {size!r}")
    if objective not in (*SELECTION_OBJECTIVES, HYPERVOLUME):
        raise UsageError(f"--objective {objective!r} is not allowed; allowed: {ALLOWED_TEXT}")
    if pool not in POOLS:
        raise UsageError(f"--pool {pool!r} is not allowed; allowed: {', '.join(POOLS)}")
    if not isinstance(max_candidates, int) or max_candidates < 1:
        raise UsageError(f"--max-candidates must be an integer >= 1, got {max_candidates!r}")


def build_ensemble(
    study: optuna.Study,
    storage_url: str,
    size: int,
    objective: str = "accuracy",
    *,
    pool: str = "all",
    max_candidates: int = MAX_CANDIDATES,
    artifacts: str | Path | None = None,
    seed: int | None = None,
    on_step: Callable[[Step, Member], None] | None = None,
) -> BuiltEnsemble:
    """Select, build, score and record a heterogeneous ensemble of ``study``'s trials; return what was done.

    Args:
        study: a study run by ``nas search`` (its config is stored on it).
        storage_url: the study's storage (the config is stored without credentials).
        size: greedy steps, i.e. picks (with replacement); the best prefix of them is kept (see :func:`select`).
        objective: the selection objective: ``accuracy``, ``calibration`` or ``hypervolume``.
        pool: ``all`` COMPLETE trials with weights, or the study's Pareto ``front``.
        max_candidates: keep the best this many candidates by their stored value of the objective (each costs one
            load and one validation forward pass; each step scores every candidate).
        artifacts: the artifact folder (default: the study's); the ensemble's weights are stored there too.
        seed: seeds torch while the objectives score the ensemble (default: the study's seed).
        on_step: called after each greedy step with the step and the member it added.
    """
    _check(size, objective, pool, max_candidates)
    config = stored_config(study, storage_url)
    trials = _candidate_trials(study, Records(study, storage_url, artifacts), pool, objective, max_candidates)
    experiment = Experiment.from_config(config)
    if artifacts:
        experiment.artifact_dir = Path(artifacts)
    study_seed = int(config["study"]["seed"])
    context = experiment.context(study_seed)
    members = [_load_member(study, trial, experiment, context, storage_url, artifacts) for trial in trials]
    by_number = {member.number: member for member in members}

    key, sign = _scorer(objective, study, config, members, context, size)
    singles = [key(np.eye(len(members), dtype=np.int64)[i]) for i in range(len(members))]
    best_index = max(range(len(members)), key=lambda i: (singles[i], -i))
    best_single = members[best_index]
    steps = select(members, size, key, sign)
    if on_step is not None:
        for step in steps:
            on_step(step, by_number[step.trial])

    kept = [step.trial for step in steps if step.kept]
    picks = {number: kept.count(number) for number in dict.fromkeys(kept)}
    chosen = [by_number[number] for number in picks]
    spec = {"space": "ensemble", "members": [member.spec for member in chosen], "weights": list(picks.values()),
            **experiment.dataset.preprocessing()}
    model = search_spaces.build(spec)
    state = {f"members.{i}.{name}": tensor for i, member in enumerate(chosen)
             for name, tensor in member.model.state_dict().items()}
    load_state(model, state, "the members' weights")
    model = model.to(experiment.device).eval()
    families = sorted({family for member in chosen for family in member.record["recipe"].get("outlier_families_seen",
                                                                                           [])})
    recipe = {"ensemble_of_trials": list(picks), "outlier_families_seen": families}

    run_seed = study_seed if seed is None else int(seed)
    torch.manual_seed(run_seed)
    results = experiment.score(model, experiment.context(study_seed, recipe))
    trial_number, feasible = _record(study, experiment, model, spec, recipe, results, chosen, list(picks.values()),
                                     steps, objective, run_seed)
    names = experiment.objective_names
    best_values = dict(zip(names, study.get_trials(deepcopy=False)[best_single.number].values))
    return BuiltEnsemble(
        study=study.study_name, objective=objective, pool=pool, candidates=[m.number for m in members], steps=steps,
        members=list(picks), weights=list(picks.values()), spec=spec,
        summary=search_spaces.summary(spec), params=sum(m.params for m in chosen),
        trial_number=trial_number, values={name: results[name].value for name in names},
        results={name: result.to_json() for name, result in results.items()}, feasible=feasible,
        best_member={"trial": best_single.number, "score": sign * float(singles[best_index][0]), "values": best_values},
        directions={name: _direction(name) for name in names},
    )


def _record(study: optuna.Study, experiment: Experiment, model: nn.Module, spec: dict[str, Any],
            recipe: dict[str, Any], results: dict[str, objectives.ObjectiveResult], chosen: list[Member],
            weights: list[int], steps: list[Step], objective: str, seed: int) -> tuple[int, bool]:
    """Add the ensemble to the study as a COMPLETE trial stored like a searched one (spec, metrics, requirements as
    Optuna constraints, weights artifact) plus ``ensemble_members``; return its number and feasibility."""
    config = experiment.config
    metrics = flatten_metrics(results)
    values = [results[name].value for name in experiment.objective_names]
    for name, value in zip(experiment.objective_names, values):
        if not math.isfinite(value):
            raise UsageError(f"the ensemble's objective '{name}' is {value}; it was not recorded")
    requirement_table = check_requirements(metrics, config["requirements"])
    feasible = all(row["pass"] for row in requirement_table.values())
    study.sampler = optuna.samplers.RandomSampler(seed)  # asks nothing: no parameter is sampled
    trial = study.ask()
    try:
        seconds = [member.record["train_seconds"] for member in chosen]
        # small user attributes, as a searched trial's; the rest goes into its record artifact (nas.records)
        attributes = {
            "worker": worker_id(), "spec_summary": search_spaces.summary(spec), "recipe_summary": "ensemble",
            "seed": seed, "config_hash": config_module.fingerprint(config), "device": str(experiment.device),
            "ensemble_members": [member.number for member in chosen], "ensemble_weights": weights,
            "train_seconds": sum(seconds) if all(isinstance(s, (int, float)) for s in seconds) else None,
            "feasible": feasible,
            FINAL_METRICS_ATTR: {m: metrics[m] for m in config["requirements"] if m in metrics},
        }
        record = {
            "spec": spec, "recipe": recipe, "history": [], "outlier_families_seen": recipe["outlier_families_seen"],
            "ensemble_selection": {"objective": objective, "steps": [dataclasses.asdict(step) for step in steps]},
            "objectives": {name: result.to_json() for name, result in results.items()}, "metrics": metrics,
            "requirements": requirement_table,
        }
        for name, value in attributes.items():
            trial.set_user_attr(name, value)
        for metric, bound in config["requirements"].items():
            trial.set_constraint(metric, requirement_violation(metrics.get(metric), bound))
        experiment._store_artifacts(trial, model, results, record)
    except BaseException as error:
        trial.set_user_attr(FAIL_REASON, f"{type(error).__name__}: {error}".splitlines()[0][:500])
        study.tell(trial, state=TrialState.FAIL)
        raise
    study.tell(trial, values)
    return trial.number, feasible
