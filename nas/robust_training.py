"""Robust training schemes, searchable like any other part of the recipe.

``[training.adversarial]`` replaces a share of every batch with its adversarial version (FGSM with a
random start, or PGD; both from ``captum.robust``), so clean and adversarial inputs are mixed.
``[training.outlier_exposure]`` adds synthetic outliers to every batch and trains the softmax
towards uniform on them (Hendrycks et al. 2019). The outlier families come from
:mod:`objectives.ood_sets`; a family used here may not be one the OOD objective scores on, which
:func:`check_config` enforces, and each trial records the families its training saw.

Example ``[training]`` sub-tables::

    [training.adversarial]
    enabled = [true, false]          # searched
    attack = "fgsm"
    eps = { low = 0.03, high = 0.15 }

    [training.outlier_exposure]
    enabled = [true, false]
    families = ["mixup", "patch_permuted", "smoothed_noise"]
"""
from __future__ import annotations

from typing import Any

import optuna
import torch
import torch.nn.functional as F
from torch import nn

import objectives
from objectives import ood_sets
from objectives.adversarial import pgd_attack
from search_spaces import suggest

from .config import Field, _num, check_table, requirement_metrics
from .errors import UsageError
from .training import BatchLoss, classification_loss

TRAINING_ONLY_FAMILIES = ["mixup", "patch_permuted", "smoothed_noise"]

ADVERSARIAL_FIELDS: dict[str, Field] = {
    "enabled": Field((bool,), False, searchable=True, help="train on adversarial examples"),
    "attack": Field((str,), "fgsm", ("fgsm", "pgd"), searchable=True,
                    help="fgsm: one step of 1.25 eps from a random start (Wong et al. 2020); pgd: `steps` steps of 2.5 eps / steps"),
    "eps": _num(0.1, 1e-4, 1.0, searchable=True, help="L-inf radius as a fraction of the data range"),
    "steps": _num(3, 1, 50, searchable=True, integer=True, help="PGD steps (fgsm ignores it)"),
    "fraction": _num(0.5, 0.0, 1.0, searchable=True, help="share of each batch replaced by its adversarial version"),
}
OUTLIER_EXPOSURE_FIELDS: dict[str, Field] = {
    "enabled": Field((bool,), False, searchable=True, help="train the softmax towards uniform on synthetic outliers"),
    "families": Field((list,), list(TRAINING_ONLY_FAMILIES), help="outlier families (objectives.ood_sets) to train on"),
    "weight": _num(0.5, 0.0, 10.0, searchable=True, help="weight of the outlier loss"),
    "fraction": _num(0.5, 0.05, 4.0, searchable=True, help="outliers per batch, relative to the batch size"),
}
SUBTABLES: dict[str, dict[str, Field]] = {"adversarial": ADVERSARIAL_FIELDS, "outlier_exposure": OUTLIER_EXPOSURE_FIELDS}


# ---------------------------------------------------------------------------------------------- config
def _may_enable(table: dict[str, Any]) -> bool:
    enabled = table["enabled"]
    return True in enabled if isinstance(enabled, list) else bool(enabled)


def scored_ood_sets(config: dict[str, Any]) -> list[str]:
    """The OOD sets the study scores on (empty when the ood objective is neither optimised nor required)."""
    needed = set(config["objectives"]) | {requirement_metrics()[m][0] for m in config["requirements"]}
    if "ood" not in needed:
        return []
    options = config["objectives"].get("ood", {})
    return list(options.get("sets", objectives.get("ood").params["sets"]["default"]))


def check_config(config: dict[str, Any]) -> None:
    """Validate the robust-training sub-tables in place (defaults filled) and the honesty rule."""
    training = config["training"]
    for name, fields in SUBTABLES.items():
        training[name] = check_table(f"training.{name}", training.get(name) or {}, fields)
    families = training["outlier_exposure"]["families"]
    if not families or not all(isinstance(f, str) for f in families):
        raise UsageError(f"config: training.outlier_exposure.families must be a non-empty list of names; allowed: {', '.join(ood_sets.available())}")
    unknown = [f for f in families if f not in ood_sets.available()]
    if unknown:
        raise UsageError(f"config: training.outlier_exposure.families: unknown family {unknown}; allowed: {', '.join(ood_sets.available())}")
    if _may_enable(training["outlier_exposure"]):
        overlap = sorted(set(families) & set(scored_ood_sets(config)))
        if overlap:
            raise UsageError(
                f"config: training.outlier_exposure.families and objectives.ood.sets share {overlap}: a model must not be scored "
                f"on outliers it was trained on; drop them from one list (training-only families: {', '.join(TRAINING_ONLY_FAMILIES)})"
            )


def check_objective_options(config: dict[str, Any]) -> None:
    """Let each objective check its own option values (e.g. OOD set names); errors become one line."""
    for name, table in config["objectives"].items():
        try:
            objectives.get(name)(**{k: v for k, v in table.items() if k != "direction"})
        except ValueError as error:
            raise UsageError(f"config: objectives.{name}: {error}") from None


def sample_tables(trial: optuna.Trial, training: dict[str, Any]) -> dict[str, Any]:
    """Concrete sub-tables for one trial; a disabled scheme records only ``enabled = false``."""
    recipe: dict[str, Any] = {}
    for name, fields in SUBTABLES.items():
        table = training.get(name) or {key: field.default for key, field in fields.items()}
        enabled = bool(suggest(trial, f"train.{name}.enabled", table["enabled"]))
        sampled: dict[str, Any] = {"enabled": enabled}
        if enabled:
            for key, value in table.items():
                if key != "enabled":
                    sampled[key] = list(value) if key == "families" else suggest(trial, f"train.{name}.{key}", value)
        recipe[name] = sampled
    outliers = recipe["outlier_exposure"]
    recipe["outlier_families_seen"] = sorted(outliers["families"]) if outliers["enabled"] else []
    return recipe


# ------------------------------------------------------------------------------------------- training
def _member_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(members, batch, classes)``: ensemble members are trained on their own logits."""
    return model.member_logits(x) if hasattr(model, "member_logits") else model(x)[None]


def outlier_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy from the softmax to the uniform distribution, averaged over samples."""
    return -(logits.float().log_softmax(dim=-1).mean(dim=-1)).mean()


def make_outliers(families: list[str], x: torch.Tensor, y: torch.Tensor, n: int, generator: torch.Generator,
                  data_range: tuple[float, float]) -> torch.Tensor:
    """``n`` outliers split evenly over ``families``, derived from (or shaped like) the batch ``x``."""
    reference = x.detach().cpu()
    parts = []
    for index, family in enumerate(families):
        count = n // len(families) + (1 if index < n % len(families) else 0)
        if count:
            parts.append(ood_sets.generate(family, reference, count, generator, y.cpu(), data_range))
    return torch.cat(parts).to(x.device)


def make_batch_loss(recipe: dict[str, Any], data_range: tuple[float, float]) -> BatchLoss | None:
    """The per-batch loss for ``recipe``; ``None`` (plain cross-entropy) when no robust scheme is on."""
    adversarial = recipe.get("adversarial") or {"enabled": False}
    outliers = recipe.get("outlier_exposure") or {"enabled": False}
    if not adversarial["enabled"] and not outliers["enabled"]:
        return None
    low, high = data_range

    def batch_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        smoothing = float(recipe.get("label_smoothing", 0.0))
        if adversarial["enabled"]:
            count = round(float(adversarial["fraction"]) * len(x))
            if count:
                eps = float(adversarial["eps"]) * (high - low)
                steps, step = (1, 1.25 * eps) if adversarial["attack"] == "fgsm" else (int(adversarial["steps"]), 2.5 * eps / int(adversarial["steps"]))
                x_adv = pgd_attack(model, x[:count], y[:count], eps, steps, step, data_range, random_start=True)
                x = torch.cat([x_adv, x[count:]])
        if not outliers["enabled"]:
            return classification_loss(model, x, y, smoothing)
        n_out = max(1, round(float(outliers["fraction"]) * len(x)))
        x_out = make_outliers(list(outliers["families"]), x, y, n_out, generator, data_range)
        logits = _member_logits(model, torch.cat([x, x_out]))  # one pass: batch norm sees both
        inside, outside = logits[:, : len(x)], logits[:, len(x) :]
        loss = sum(F.cross_entropy(member.float(), y, label_smoothing=smoothing) for member in inside)
        return loss + float(outliers["weight"]) * sum(outlier_loss(member) for member in outside)

    return batch_loss
