"""Synthetic studies for the choosing views: trials with the attributes ``nas search`` records, no training.

Accuracy rises with width and falls a little with adversarial training; OOD AUROC rises with outlier exposure;
PGD accuracy rises with adversarial training; params grow with width. So the front mixes every recipe family and
PED-ANOVA has something true to find. ``accuracy >= 0.75`` is the requirement; a few trials fail it.
"""
from __future__ import annotations

import random
from pathlib import Path

import optuna

NAMES = ["accuracy", "ood", "adversarial", "params"]
DIRECTIONS = ["maximize", "maximize", "maximize", "minimize"]


def _objective(trial: optuna.Trial) -> tuple[float, float, float, float]:
    noise = random.Random(trial.number)
    depth = trial.suggest_int("space.depth", 1, 2)
    channels = trial.suggest_categorical("space.channels", [8, 16, 32])
    adversarial = trial.suggest_categorical("train.adversarial.enabled", [True, False])
    eps = trial.suggest_float("train.adversarial.eps", 0.05, 0.15) if adversarial else None
    outliers = trial.suggest_categorical("train.outlier_exposure.enabled", [True, False])
    accuracy = 0.62 + 0.04 * depth + channels / 200 - (0.04 if adversarial else 0) + noise.uniform(0, 0.04)
    ood = 0.5 + (0.35 if outliers else 0.0) + noise.uniform(0, 0.08)
    pgd = 0.08 + (2.5 * eps if eps else 0.0) + noise.uniform(0, 0.05)
    params = float(channels * channels * 9 * depth + channels * 10)
    recipe = {"epochs": 3, "batch_size": 128, "lr": 0.003, "optimizer": "adam",
              "adversarial": {"enabled": adversarial, "attack": "fgsm", "eps": eps or 0.1, "fraction": 0.5},
              "outlier_exposure": {"enabled": outliers, "families": ["mixup", "smoothed_noise"]}}
    spec = {"space": "cnn", "blocks": [{"channels": channels, "kernel": 3, "pool": "max"}] * depth, "ensemble": 1,
            "input_shape": [1, 8, 8], "num_classes": 10}
    passed = accuracy >= 0.75
    trial.set_user_attr("spec", spec)
    trial.set_user_attr("spec_summary", f"cnn {'-'.join([str(channels)] * depth)}")
    trial.set_user_attr("recipe", recipe)
    trial.set_user_attr("metrics", {"accuracy": accuracy, "ood": ood, "ood.min_auroc": ood, "adversarial": pgd,
                                    "adversarial.pgd_accuracy": pgd, "params": params})
    trial.set_user_attr("requirements", {"accuracy": {"min": 0.75, "value": accuracy, "pass": passed}})
    trial.set_user_attr("feasible", passed)
    trial.set_user_attr("history", [{"epoch": e, "train_loss": 4.0 / e, "val_loss": 0.9 / e,
                                     "val_accuracy": 0.5 + e / 10} for e in (1, 2, 3)])
    trial.set_constraint("accuracy", 0.75 - accuracy)
    return accuracy, ood, pgd, params


def make_study(folder: Path, name: str, trials: int) -> str:
    """A study of ``trials`` completed synthetic trials in ``folder/choose.db``; returns the storage URL."""
    storage = f"sqlite:///{folder}/choose.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.NSGAIISampler(seed=0)
    study = optuna.create_study(study_name=name, storage=storage, directions=DIRECTIONS, sampler=sampler)
    study.set_user_attr("objective_names", NAMES)
    study.optimize(_objective, n_trials=trials)
    return storage
