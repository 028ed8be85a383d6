"""Multi-objective early stopping: asynchronous successive halving (ASHA) over epochs, shared through the storage.

Optuna cannot prune multi-objective trials (``Trial.report`` raises for them), and every trial would otherwise
train to its full budget however hopeless it looks after one epoch. Here, after each *rung* epoch (e.g. 1 and 3)
a trial is scored on cheap screens of the study's objectives (the objectives themselves with small budgets: a
one-step attack and fewer samples; accuracy on the whole validation split; parameter counts are exact). The
screen is stored on the trial as the user attribute ``rung_<epoch>``, so every worker on the storage sees it, and
the trial is compared with every trial of the study that reached the same rung:

- fewer than ``min_trials`` reached the rung (itself included): it continues;
- otherwise it continues only when it is among the best ``max(1, n // reduction_factor)`` of the ``n`` trials
  there, ordered by non-domination rank (Optuna's), ties broken by hypervolume contribution within the rank
  (objectives normalised to the trials at the rung; a larger contribution is better), then by trial number;
- a requirement stops it when it is out of reach: a metric that training does not change (params, flops)
  already fails, or the rung value misses the bound by more than the largest improvement any COMPLETE trial
  made from this rung to its end (needs ``min_trials`` such trials) plus ``requirement_margin``.

A stopped trial is PRUNED with its rung scores kept and the reason in ``pruned_reason``; PRUNED trials do not
count toward ``n_trials`` (the study still ends with exactly N COMPLETE trials). Screens run under a forked RNG and
in eval mode, so a trial that continues trains exactly as it would without early stopping.

Why not OptunaHub's ``multi_metric_pruner``: it is fetched from GitHub at run time (``optunahub.load_module``;
we run offline), it compares against finished trials only (not the trials other workers are running), the
successive-halving pruner it wraps keeps its rung bookkeeping in system attributes of the synthetic trial it is
handed (lost), and requirements cannot act through it.

Example ``[study]`` table::

    early_stopping = { rungs = [1, 3], reduction_factor = 3, min_trials = 4 }
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import torch

import objectives

from .errors import UsageError
from .optuna_compat import hypervolume, non_domination_rank
from .requirements import requirement_metrics, requirement_violation
from .schema import Declaration

PRUNED_REASON = "pruned_reason"  # user attribute: why a trial was stopped early
RUNG_PREFIX = "rung_"  # user attribute rung_<epoch>: the screen at that epoch and the decision taken
# User attribute of a COMPLETE trial: its final value of each requirement metric (the full metrics are in its
# record artifact, see nas.records; these few numbers are what other workers compare against, read cheaply).
FINAL_METRICS_ATTR = "requirement_values"
# Objectives whose value does not depend on training: a failing requirement on them fails at the end too.
STATIC_OBJECTIVES = ("params", "flops")
# Cheaper settings of the built-in objectives at a rung (on top of ``screen_samples``).
SCREEN_OPTIONS: dict[str, dict[str, Any]] = {
    "adversarial": {"pgd_steps": 1, "curve_points": 1, "curve_max": 1.0},
    "explainability": {"steps": 4, "ig_steps": 4, "sensitivity": False},
}
SAMPLE_OPTIONS = ("samples", "sensitivity_samples")  # capped at screen_samples
FIT_OPTIONS = ("fit_samples",)  # capped at 4 x screen_samples (a detector fitted on too few samples is noise)

EARLY_STOPPING_FIELDS: dict[str, Declaration] = {
    "rungs": {"type": list, "default": [], "allow_empty": True,
              "help": "epochs after which trials are compared, increasing (e.g. [1, 3]); empty = off"},
    "reduction_factor": {"type": int, "default": 3, "low": 2, "high": 100,
                         "help": "the best 1/reduction_factor of the trials at a rung continue"},
    "min_trials": {"type": int, "default": 4, "low": 1, "high": 100000,
                   "help": "a trial continues while fewer trials than this reached its rung"},
    "screen_samples": {"type": int, "default": 100, "low": 20, "high": 100000,
                       "help": "validation samples of each costly screen at a rung (OOD sets, attacks, attributions)"},
    "requirement_margin": {"type": float, "default": 0.05, "low": 0.0, "high": 1e12,
                           "help": "how far beyond the largest improvement seen a requirement must be missed to stop"},
}


def _max_epochs(epochs: Any) -> int:
    """The largest epoch budget ``training.epochs`` allows (a value, a list of choices or a range)."""
    if isinstance(epochs, list):
        return int(max(epochs))
    if isinstance(epochs, dict):
        return int(epochs["high"])
    return int(epochs)


def check_early_stopping(config: dict[str, Any]) -> None:
    """``study.early_stopping.rungs``: whole numbers >= 1, increasing, each before the last epoch a trial may train."""
    rungs = config["study"]["early_stopping"]["rungs"]
    path = "config: study.early_stopping.rungs"
    if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in rungs):
        raise UsageError(f"{path} must be a list of whole numbers >= 1 (epochs), got {rungs!r}")
    if any(later <= earlier for earlier, later in zip(rungs, rungs[1:])):
        raise UsageError(f"{path} must be strictly increasing, got {rungs!r}")
    last = _max_epochs(config["training"]["epochs"])
    late = [r for r in rungs if r >= last]
    if late:
        raise UsageError(f"{path} = {rungs!r}: rung {late[0]} is not below training.epochs ({last}); a rung is an "
                         "epoch after which trials are compared, before the last one (which is scored in full anyway)")


def rung_key(epoch: int) -> str:
    return f"{RUNG_PREFIX}{epoch}"


# ---------------------------------------------------------------------------------------------- decisions
def _losses(values: Sequence[float], directions: Sequence[str]) -> np.ndarray:
    """Objective values as losses (all minimised); a value that is not finite is the worst possible."""
    signed = [(-v if d == "maximize" else v) if math.isfinite(v) else math.inf for v, d in zip(values, directions)]
    return np.asarray(signed, dtype=float)


def _normalised(losses: np.ndarray) -> np.ndarray:
    """Each objective scaled to [0, 1] over the rows (not finite -> 1, the worst)."""
    scaled = np.ones_like(losses)
    for column in range(losses.shape[1]):
        finite = np.isfinite(losses[:, column])
        if not finite.any():
            continue
        low, high = losses[finite, column].min(), losses[finite, column].max()
        span = high - low
        scaled[finite, column] = (losses[finite, column] - low) / span if span > 0 else 0.0
    return scaled


def hypervolume_contributions(losses: np.ndarray) -> np.ndarray:
    """Each row's exclusive share of the hypervolume of ``losses`` (normalised, reference point 1.1 per objective).

    Copies of a point share its contribution (each would otherwise hide the others' and count as 0).
    """
    points = _normalised(losses)
    reference = np.full(points.shape[1], 1.1)
    total = hypervolume(points, reference)
    return np.asarray([total - hypervolume(points[~np.all(points == point, axis=1)], reference)
                       for point in points])


@dataclass(frozen=True)
class Standing:
    """Where a trial stands among the ``competitors`` trials at a rung, and whether it continues."""

    position: int  # 0 = best
    competitors: int
    keep: int  # how many of them continue
    rank: int  # non-domination rank (0 = non-dominated at this rung)

    @property
    def promoted(self) -> bool:
        return self.position < self.keep


def standing(own: np.ndarray, others: Sequence[np.ndarray], numbers: Sequence[int], own_number: int,
             reduction_factor: int, min_trials: int) -> Standing:
    """The successive-halving rule on losses: top ``max(1, n // reduction_factor)`` by (non-domination rank,
    larger hypervolume contribution within the rank, lower trial number); everyone continues below ``min_trials``."""
    losses = np.vstack([own, *others]) if others else own[None, :]
    n = len(losses)
    ranks = non_domination_rank(np.where(np.isfinite(losses), losses, np.finfo(float).max))
    contribution = np.zeros(n)
    for rank in np.unique(ranks):
        members = np.flatnonzero(ranks == rank)
        if len(members) > 1:
            contribution[members] = hypervolume_contributions(losses[members])
    order = sorted(range(n), key=lambda i: (ranks[i], -contribution[i], ([own_number, *numbers])[i]))
    keep = n if n < min_trials else max(1, n // reduction_factor)
    return Standing(position=order.index(0), competitors=n, keep=keep, rank=int(ranks[0]))


def out_of_reach(metric: str, bound: dict[str, float], value: float | None, improvements: Sequence[float],
                 min_trials: int, margin: float) -> str | None:
    """Why requirement ``metric`` cannot be met any more (None while it can): see the module docstring."""
    missing = requirement_violation(value, bound)
    if missing <= 0:
        return None
    wanted = " and ".join(f"{'>=' if side == 'min' else '<='} {limit:g}" for side, limit in bound.items())
    shown = "not finite" if value is None or not math.isfinite(value) else f"{value:.4g}"
    if requirement_metrics()[metric][0] in STATIC_OBJECTIVES:
        return f"requirement {metric} {wanted} fails ({shown}; training does not change it)"
    if len(improvements) < min_trials:
        return None
    best = max(0.0, max(improvements))
    if missing > best + margin:
        return (f"requirement {metric} {wanted} out of reach ({shown} at this rung; the largest improvement from here "
                f"to the end among {len(improvements)} COMPLETE trials is {best:.4g}, margin {margin:g})")
    return None


# ---------------------------------------------------------------------------------------------- the stopper
@dataclass
class EarlyStopping:
    """ASHA over epochs for a multi-objective study, from ``[study] early_stopping`` (see the module docstring).

    Example::

        stopper = EarlyStopping.from_config(config)       # None when study.early_stopping.rungs is empty
        if stopper is not None and stopper.is_rung(epoch, epochs):
            results = stopper.screen(model, context, experiment.evaluated_objectives())
            stopper.decide(trial, epoch, results, flatten_metrics(results))   # raises optuna.TrialPruned

    Args:
        rungs: epochs after which trials are compared.
        reduction_factor: the best 1/reduction_factor at a rung continue.
        min_trials: below this many trials at a rung, every trial continues.
        screen_samples: samples of each costly screen.
        requirement_margin: see :func:`out_of_reach`.
        objective_names / directions: the study's optimised objectives, in order.
        requirements: the ``[requirements]`` table.
    """

    rungs: tuple[int, ...]
    reduction_factor: int = 3
    min_trials: int = 4
    screen_samples: int = 100
    requirement_margin: float = 0.05
    objective_names: list[str] = field(default_factory=list)
    directions: list[str] = field(default_factory=list)
    requirements: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EarlyStopping | None:
        options = config["study"].get("early_stopping") or {}
        if not options.get("rungs"):
            return None
        names = list(config["objectives"])
        return cls(rungs=tuple(int(r) for r in options["rungs"]), reduction_factor=int(options["reduction_factor"]),
                   min_trials=int(options["min_trials"]), screen_samples=int(options["screen_samples"]),
                   requirement_margin=float(options["requirement_margin"]), objective_names=names,
                   directions=[objectives.get(name).direction for name in names],
                   requirements=dict(config["requirements"]))

    def is_rung(self, epoch: int, epochs: int) -> bool:
        """Is ``epoch`` a rung for a trial training ``epochs`` epochs? (Its last epoch is scored in full instead.)"""
        return epoch in self.rungs and epoch < epochs

    def screen_objective(self, objective: objectives.Objective) -> objectives.Objective:
        """The same objective with a small budget: capped samples, and the cheaper settings of ``SCREEN_OPTIONS``."""
        options = dict(objective.options)
        for key in SAMPLE_OPTIONS:
            if key in options:
                options[key] = min(int(options[key]), self.screen_samples)
        for key in FIT_OPTIONS:
            if key in options:
                options[key] = min(int(options[key]), 4 * self.screen_samples)
        options.update({key: value for key, value in SCREEN_OPTIONS.get(objective.name, {}).items()
                        if key in options})
        return type(objective)(**options)

    def screen(self, model: torch.nn.Module, context: objectives.EvaluationContext,
               evaluated: Sequence[objectives.Objective]) -> dict[str, objectives.ObjectiveResult]:
        """Score ``model`` on cheap versions of ``evaluated`` without touching the training's random state."""
        devices = [context.device] if context.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            results = {objective.name: self.screen_objective(objective).evaluate(model, context)
                       for objective in evaluated}
        return results

    def decide(self, trial: optuna.Trial, epoch: int, results: dict[str, objectives.ObjectiveResult],
               metrics: dict[str, float]) -> None:
        """Store the rung's scores on ``trial``, compare, and raise ``optuna.TrialPruned`` (reason stored) to stop."""
        started = time.perf_counter()
        values = [float(results[name].value) for name in self.objective_names]
        key = rung_key(epoch)
        others, numbers, improvements = [], [], {metric: [] for metric in self.requirements}
        for other in trial.study.get_trials(deepcopy=False):
            record = other.user_attrs.get(key)
            if other.number == trial.number or not isinstance(record, dict) or \
                    len(record.get("values", ())) != len(values):
                continue
            others.append(_losses(record["values"], self.directions))
            numbers.append(other.number)
            final = _final_metrics(other)
            for metric, bound in self.requirements.items():
                if final and metric in final and metric in record.get("metrics", {}):
                    improvements[metric].append(requirement_violation(record["metrics"][metric], bound)
                                                - requirement_violation(final[metric], bound))
        place = standing(_losses(values, self.directions), others, numbers, trial.number, self.reduction_factor,
                         self.min_trials)
        reason = next((why for metric, bound in self.requirements.items()
                       if (why := out_of_reach(metric, bound, metrics.get(metric), improvements[metric],
                                               self.min_trials, self.requirement_margin))), None)
        if reason is None and not place.promoted:
            reason = (f"position {place.position + 1} of {place.competitors} trials at this rung (non-domination rank "
                      f"{place.rank}); only the best {place.keep} continue")
        record = {
            # only the required metrics: they are what later rungs compare with the final scores; the record stays
            # a small user attribute that a plain Optuna client (optuna-dashboard) can show
            "epoch": epoch, "values": values, "metrics": {m: metrics[m] for m in self.requirements if m in metrics},
            "seconds": round(sum(result.seconds for result in results.values()) + time.perf_counter() - started, 4),
            "position": place.position, "competitors": place.competitors, "keep": place.keep, "rank": place.rank,
            "compared_with": sorted(numbers),
            "decision": "stop" if reason else "continue", **({"reason": reason} if reason else {}),
        }
        trial.set_user_attr(key, record)
        if reason:
            reason = f"early stopping after epoch {epoch}: {reason}"
            trial.set_user_attr(PRUNED_REASON, reason)
            raise optuna.TrialPruned(reason)


def _final_metrics(trial: optuna.trial.FrozenTrial) -> dict[str, float] | None:
    """A COMPLETE trial's final requirement metrics (``metrics`` on trials of studies older than records)."""
    if trial.state != optuna.trial.TrialState.COMPLETE:
        return None
    final = trial.user_attrs.get(FINAL_METRICS_ATTR, trial.user_attrs.get("metrics"))
    return final if isinstance(final, dict) else None


def rung_records(trial: optuna.trial.FrozenTrial) -> list[dict[str, Any]]:
    """The trial's rung records, by epoch (what the dashboard and status can show)."""
    records = [value for key, value in trial.user_attrs.items()
               if key.startswith(RUNG_PREFIX) and isinstance(value, dict) and "epoch" in value]
    return sorted(records, key=lambda record: record["epoch"])
