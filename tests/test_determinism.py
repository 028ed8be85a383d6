"""Same seed + same config on CPU: identical specs and validation metrics."""
from __future__ import annotations

import optuna

from nas import config as config_module
from nas.study import Experiment, create_or_load, run_search
from conftest import EXPERIMENTS


def _run(tmp_path, name):
    config = config_module.load(EXPERIMENTS / "smoke.toml")
    config = config_module.apply_overrides(config, {"study.storage": f"sqlite:///{tmp_path}/{name}.db",
                                                    "study.n_trials": 2})
    config["study"]["artifacts"] = str(tmp_path / f"{name}-artifacts")
    study = create_or_load(config, resume=False)
    run_search(study, Experiment.from_config(config), 2)
    return study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))


def test_same_seed_same_specs_and_metrics(tmp_path):
    first, second = _run(tmp_path, "a"), _run(tmp_path, "b")
    assert [t.user_attrs["spec"] for t in first] == [t.user_attrs["spec"] for t in second]
    assert [t.user_attrs["recipe"] for t in first] == [t.user_attrs["recipe"] for t in second]
    assert [t.values for t in first] == [t.values for t in second]
    assert [[h["val_loss"] for h in t.user_attrs["history"]] for t in first] == [
        [h["val_loss"] for h in t.user_attrs["history"]] for t in second
    ]
