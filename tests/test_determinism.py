"""Same seed + same config on CPU: identical specs and validation metrics."""
from __future__ import annotations

import optuna

from nas import config as config_module
from nas.records import trial_record
from nas.study import Experiment, create_or_load, run_search
from conftest import EXPERIMENTS


def _run(tmp_path, name):
    config = config_module.load(EXPERIMENTS / "smoke.toml")
    config = config_module.apply_overrides(config, {"study.storage": f"sqlite:///{tmp_path}/{name}.db",
                                                    "study.n_trials": 2})
    config["study"]["artifacts"] = str(tmp_path / f"{name}-artifacts")
    study = create_or_load(config, resume=False)
    run_search(study, Experiment.from_config(config), 2)
    return study, study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))


def test_same_seed_same_specs_and_metrics(tmp_path):
    (study_a, first), (study_b, second) = _run(tmp_path, "a"), _run(tmp_path, "b")
    first_records = [trial_record(study_a, t) for t in first]
    second_records = [trial_record(study_b, t) for t in second]
    assert [r["spec"] for r in first_records] == [r["spec"] for r in second_records]
    assert [r["recipe"] for r in first_records] == [r["recipe"] for r in second_records]
    assert [t.values for t in first] == [t.values for t in second]
    assert [[h["val_loss"] for h in r["history"]] for r in first_records] == [
        [h["val_loss"] for h in r["history"]] for r in second_records
    ]
