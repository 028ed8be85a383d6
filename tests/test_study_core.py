"""Samplers by name, requirements as constraints, staged evaluation, and the cost objectives."""
from __future__ import annotations

import optuna
import pytest
import torch
from torch import nn

import objectives
from nas import config as config_module
from nas.records import trial_record
from nas.study import Experiment, create_or_load, run_search

FAST = {
    "study": {"name": "fast", "n_trials": 3},
    "data": {"name": "synthetic"},
    "space": {"name": "cnn", "channels": [8, 16], "depth": {"low": 1, "high": 2}},
    "training": {"epochs": 1, "optimizer": ["adam", "sgd"], "lr": {"low": 1e-3, "high": 1e-2, "log": True}},
    "objectives": {"accuracy": {}, "flops": {}},
}


def _search(tmp_path, **changes):
    raw = {section: dict(table) for section, table in FAST.items()}
    for dotted, value in changes.items():
        section, key = dotted.split(".", 1)
        raw.setdefault(section, {})[key] = value
    raw["study"]["storage"] = f"sqlite:///{tmp_path}/s.db"
    config = config_module.resolve(raw)
    study = create_or_load(config, resume=False)
    experiment = Experiment.from_config(config)
    run_search(study, experiment, config["study"]["n_trials"])
    return study


@pytest.mark.parametrize("sampler", config_module.SAMPLERS)
def test_every_sampler_runs_a_constrained_study(tmp_path, sampler):
    study = _search(tmp_path, **{"study.sampler": sampler, "requirements.accuracy": {"min": 0.5}})
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 3
    assert all("accuracy" in t.constraints for t in complete)
    assert type(study.sampler).__name__.lower().startswith({"tpe": "tpe", "nsga2": "nsgaii", "nsga3": "nsgaiii",
                                                             "random": "random", "gp": "gp"}[sampler])


def test_requirements_become_constraints_and_staging_skips_expensive_objectives(tmp_path):
    # No model has at most 1 parameter: every trial is infeasible once `params` (the cheapest objective) is
    # measured, so the costlier ones after it are skipped and recorded as such, with their worst value.
    study = _search(tmp_path, **{"requirements.params": {"max": 1}, "study.n_trials": 2})
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        assert trial.constraints["params"] > 0
        record = trial_record(study, trial)
        assert trial.user_attrs["feasible"] is False
        assert record["requirements"]["params"]["pass"] is False
        for name in ("flops", "accuracy"):
            assert record["objectives"][name]["skipped"] is True
        assert trial.values == [objectives.get("accuracy").worst_value, objectives.get("flops").worst_value]
    assert study.best_trials == []


def test_feasible_trials_run_every_objective(tmp_path):
    study = _search(tmp_path, **{"requirements.params": {"max": 1e7}, "study.n_trials": 1})
    (trial,) = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert trial.user_attrs["feasible"] is True and trial.constraints["params"] <= 0
    record = trial_record(study, trial)
    assert not any(result["skipped"] for result in record["objectives"].values())
    # params evaluated for the requirement
    assert set(record["objectives"]) == {"accuracy", "flops", "params"}
    assert study.best_trials == [trial]


def test_cost_objectives_count_what_they_claim():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    context = objectives.EvaluationContext(x=torch.rand(10, 1, 4, 4), y=torch.zeros(10, dtype=torch.long),
                                           num_classes=3)
    assert objectives.get("params")().evaluate(model, context).value == 16 * 8 + 8 + 8 * 3 + 3
    assert objectives.get("flops")().evaluate(model, context).value == 2 * (16 * 8 + 8 * 3)
    accuracy = objectives.get("accuracy")().evaluate(model, context)
    assert 0.0 <= accuracy.value <= 1.0 and accuracy.metrics["error"] == pytest.approx(1 - accuracy.value)
    assert accuracy.seconds >= 0
