"""Robust training schemes: they make the scores move, configs that would hide OOD behaviour are
rejected, trials record what their training saw, and a search writes every robustness objective."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch

import objectives
import search_spaces
from nas.records import trial_record
from nas import config as config_module
from nas import data, training
from nas.errors import UsageError
from nas.recipe import sample_recipe
from nas.robust_training import make_batch_loss
from nas.storage import open_artifact_store
from nas.study import Experiment

from conftest import DIGITS, EXPERIMENTS, train_tiny

BASE = {"epochs": 20, "batch_size": 64, "lr": 5e-3, "optimizer": "adam", "weight_decay": 0.0, "label_smoothing": 0.0,
        "max_grad_norm": 0.0}
ADVERSARIAL = {"enabled": True, "attack": "pgd", "eps": 0.1, "steps": 3, "fraction": 0.5}
OUTLIERS = {"enabled": True, "families": ["mixup", "patch_permuted", "smoothed_noise"], "weight": 0.5, "fraction": 0.5}


@pytest.fixture(scope="module")
def digits() -> data.Dataset:
    return data.load(DIGITS)


def train(dataset: data.Dataset, **schemes) -> torch.nn.Module:
    """The same architecture and seed every time; only the training scheme differs."""
    return train_tiny(dataset, {**BASE, **schemes})


@pytest.fixture(scope="module")
def plain(digits):
    return train(digits)


def score(name: str, model: torch.nn.Module, dataset: data.Dataset, **options) -> objectives.ObjectiveResult:
    context = objectives.EvaluationContext(x=dataset.val_x, y=dataset.val_y, num_classes=dataset.num_classes)
    return objectives.get(name)(**options).evaluate(model, context)


def test_adversarial_training_raises_pgd_accuracy(digits, plain):
    robust = train(digits, adversarial=ADVERSARIAL)
    plain_score, robust_score = score("adversarial", plain, digits), score("adversarial", robust, digits)
    assert robust_score.value > plain_score.value + 0.15
    assert robust_score.metrics["clean_accuracy"] > 0.85  # clean batches are kept in the mix
    assert robust_score.details["masking_flags"] == []  # the gain is not a gradient-masking artefact


def test_outlier_exposure_on_training_families_raises_auroc_on_unseen_noise(digits, plain):
    exposed = train(digits, outlier_exposure=OUTLIERS)
    sets = ["uniform", "gaussian"]  # disjoint from the families trained on
    before, after = score("ood", plain, digits, sets=sets), score("ood", exposed, digits, sets=sets)
    for name in sets:
        assert after.metrics[f"auroc_{name}"] > before.metrics[f"auroc_{name}"] + 0.05
    assert after.metrics["max_ood_confidence"] < before.metrics["max_ood_confidence"] - 0.2


def test_robust_batch_loss_is_plain_cross_entropy_when_nothing_is_on(digits):
    assert make_batch_loss({**BASE, "adversarial": {"enabled": False}, "outlier_exposure": {"enabled": False}},
                           (0.0, 1.0)) is None
    model = search_spaces.build({"space": "mlp", "hidden": [16], "activation": "relu", "batch_norm": False,
                                 "input_shape": [1, 8, 8], "num_classes": 10, "ensemble": 2})
    loss = make_batch_loss({**BASE, "outlier_exposure": OUTLIERS}, (0.0, 1.0))
    x, y = digits.train_x[:32], digits.train_y[:32]
    with_outliers = loss(model, x, y, BASE, torch.Generator().manual_seed(0))
    assert torch.isfinite(with_outliers) and with_outliers > training.classification_loss(model, x, y)


# ------------------------------------------------------------------------------------------- config
def resolve(**training_tables):
    raw = {"data": {"name": "digits"}, "training": {"epochs": 1, **training_tables},
           "objectives": {"accuracy": {}, "ood": {"sets": ["uniform", "shuffled", "letters"]}}}
    return config_module.resolve(raw)


def test_sub_tables_get_defaults_and_are_validated():
    config = resolve(adversarial={"enabled": [True, False], "eps": {"low": 0.05, "high": 0.2}})
    assert (config["training"]["adversarial"]["attack"] == "fgsm"
            and config["training"]["adversarial"]["fraction"] == 0.5)
    assert config["training"]["outlier_exposure"]["enabled"] is False
    with pytest.raises(UsageError, match=r"unknown key training.adversarial.epsilon; "
                                         r"allowed: attack, enabled, eps, fraction, steps"):
        resolve(adversarial={"epsilon": 0.1})
    with pytest.raises(UsageError, match=r"training.adversarial.attack = 'cw' is not allowed; allowed: fgsm, pgd"):
        resolve(adversarial={"attack": "cw"})
    unknown_family = r"training.outlier_exposure.families\[0\] = 'noise' is not allowed; allowed: .*smoothed_noise"
    with pytest.raises(UsageError, match=unknown_family):
        resolve(outlier_exposure={"enabled": True, "families": ["noise"]})


def test_training_on_a_family_that_is_scored_is_rejected():
    with pytest.raises(UsageError, match=r"share \['shuffled', 'uniform'\].*"
                                         r"training-only families: mixup, patch_permuted, smoothed_noise"):
        resolve(outlier_exposure={"enabled": [True, False], "families": ["uniform", "shuffled", "mixup"]})
    # the same families are fine when outlier exposure is off, or when nothing scores OOD
    resolve(outlier_exposure={"enabled": False, "families": ["uniform"]})
    config_module.resolve({"training": {"outlier_exposure": {"enabled": True, "families": ["uniform"]}},
                           "objectives": {"accuracy": {}}})


def test_ood_required_but_not_optimised_counts_as_scored():
    raw = {"training": {"outlier_exposure": {"enabled": True, "families": ["gaussian"]}},
           "objectives": {"accuracy": {}}, "requirements": {"ood.min_auroc": {"min": 0.8}}}
    with pytest.raises(UsageError, match=r"share \['gaussian'\]"):
        config_module.resolve(raw)  # the default OOD sets include gaussian


def test_bad_objective_options_are_one_line_errors():
    with pytest.raises(UsageError, match=r"objectives.ood: sets: unknown OOD set\(s\) \['mnist'\]; allowed: "):
        config_module.resolve({"objectives": {"ood": {"sets": ["mnist"]}}})


def test_cli_rejects_the_overlap_with_exit_code_2(tmp_path, nas_cli):
    path = tmp_path / "leak.toml"
    path.write_text((EXPERIMENTS / "smoke-robust.toml").read_text().replace(
        'families = ["mixup", "patch_permuted", "smoothed_noise"]', 'families = ["mixup", "letters"]'))
    result = nas_cli("search", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "share ['letters']" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_recipe_records_the_families_its_training_saw():
    config = resolve(outlier_exposure={"enabled": [True, False]},
                     adversarial={"enabled": [True, False], "eps": {"low": 0.05, "high": 0.2}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {True: 0, False: 0}
    for _ in range(12):
        trial = study.ask()
        recipe = sample_recipe(trial, config["training"])
        exposure, adversarial = recipe["outlier_exposure"], recipe["adversarial"]
        seen[exposure["enabled"]] += 1
        assert recipe["outlier_families_seen"] == (["mixup", "patch_permuted", "smoothed_noise"]
                                                   if exposure["enabled"] else [])
        assert adversarial == {"enabled": False} or 0.05 <= adversarial["eps"] <= 0.2
        assert ("train.adversarial.eps" in trial.params) == adversarial["enabled"]
        json.dumps(recipe)
    assert seen[True] and seen[False]  # searched on and off


# ------------------------------------------------------------------------------------ staged scoring
def test_failing_accuracy_requirement_skips_the_expensive_objectives(digits):
    config = config_module.resolve({
        "data": {"name": "digits", "train_size": 600, "val_size": 200},
        "objectives": {"accuracy": {}, "ood": {}, "adversarial": {}, "explainability": {}, "calibration": {}},
        "requirements": {"accuracy": {"min": 0.99}},
    })
    experiment = Experiment.from_config(config)
    model = search_spaces.build({"space": "mlp", "hidden": [16], "activation": "relu", "batch_norm": False,
                                 **experiment.dataset.preprocessing()})  # untrained
    results = experiment.score(model, experiment.context(seed=0))
    assert not results["accuracy"].skipped and results["accuracy"].value < 0.99  # the cheap gate is measured and fails
    for name in ("ood", "adversarial", "explainability"):
        assert (results[name].skipped and results[name].value == objectives.get(name).worst_value
                and results[name].seconds == 0)


# ----------------------------------------------------------------------------------------- search
def test_search_writes_every_robustness_objective_on_each_trial(tmp_path, nas_cli):
    result = nas_cli("search", str(EXPERIMENTS / "smoke-robust.toml"), cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="smoke-robust", storage=f"sqlite:///{tmp_path}/runs/smoke-robust.db")
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 4
    names = {"accuracy", "ood", "adversarial", "explainability", "calibration", "params"}
    store = open_artifact_store(Path(study.user_attrs["artifacts"]) if Path(study.user_attrs["artifacts"]).is_absolute()
                                else tmp_path / study.user_attrs["artifacts"])
    for trial in trials:
        record = trial_record(study, trial, f"sqlite:///{tmp_path}/runs/smoke-robust.db")
        recorded = record["objectives"]
        assert set(recorded) == names
        for name in names:
            assert (isinstance(recorded[name]["value"], float) and recorded[name]["seconds"] >= 0
                    and not recorded[name]["skipped"])
        assert trial.values == [recorded[name]["value"] for name in study.user_attrs["objective_names"]]
        assert record["outlier_families_seen"] == record["recipe"]["outlier_families_seen"]
        with store.open_reader(trial.user_attrs["details_artifact"]) as handle:
            details = json.load(handle)
        assert set(details["ood"]["sets"]) == {"uniform", "inverted", "shuffled", "letters"}
        assert {"eps_curve", "masking_flags", "median_min_eps"} <= set(details["adversarial"])
        assert details["explainability"]["examples"] and "reliability" in details["calibration"]
