"""The training recipe: the ``[training]`` schema, one trial's sampling of it, and the checks across sections.

The recipe (epochs, lr, optimiser, weight decay, label smoothing, ...) is a JSON dict sampled from the
``[training]`` table, so training schemes are searched alongside the architecture. Robust training schemes
are sub-tables searched like any other entry; their losses live in :mod:`nas.robust_training`.

``[training.adversarial]`` replaces a share of every batch with its adversarial version (FGSM with a
random start, or PGD), so clean and adversarial inputs are mixed. ``[training.outlier_exposure]`` adds
synthetic outliers to every batch and trains the softmax towards uniform on them (Hendrycks et al. 2019).
The outlier families come from :mod:`objectives.ood_sets`; a family used here may not be one the OOD
objective scores on, which :func:`check_recipe` enforces, and each trial records the families its
training saw. Example::

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

import objectives
from objectives import ood_sets
from search_spaces import suggest

from . import data as data_module
from .errors import UsageError
from .requirements import requirement_metrics
from .schema import Declaration

TRAINING_ONLY_FAMILIES = ["mixup", "patch_permuted", "smoothed_noise"]

TRAINING_FIELDS: dict[str, Declaration] = {
    "epochs": {"type": int, "default": 2, "low": 1, "high": 1000, "searchable": True},
    "batch_size": {"type": int, "default": 128, "low": 1, "high": 65536, "searchable": True},
    "lr": {"type": float, "default": 3e-3, "low": 1e-6, "high": 10.0, "searchable": True},
    "optimizer": {"type": str, "default": "adam", "choices": ("adam", "adamw", "sgd"), "searchable": True},
    "weight_decay": {"type": float, "default": 0.0, "low": 0.0, "high": 1.0, "searchable": True},
    "label_smoothing": {"type": float, "default": 0.0, "low": 0.0, "high": 0.5, "searchable": True},
    "max_grad_norm": {"type": float, "default": 0.0, "low": 0.0, "high": 1e6, "help": "0 = no clipping"},
}
ADVERSARIAL_FIELDS: dict[str, Declaration] = {
    "enabled": {"type": bool, "default": False, "searchable": True, "help": "train on adversarial examples"},
    "attack": {"type": str, "default": "fgsm", "choices": ("fgsm", "pgd"), "searchable": True,
               "help": "fgsm: one step of 1.25 eps from a random start (Wong et al. 2020); "
                       "pgd: `steps` steps of 2.5 eps / steps"},
    "eps": {"type": float, "default": 0.1, "low": 1e-4, "high": 1.0, "searchable": True,
            "help": "L-inf radius as a fraction of the data range"},
    "steps": {"type": int, "default": 3, "low": 1, "high": 50, "searchable": True,
              "help": "PGD steps (fgsm ignores it)"},
    "fraction": {"type": float, "default": 0.5, "low": 0.0, "high": 1.0, "searchable": True,
                 "help": "share of each batch replaced by its adversarial version"},
}
OUTLIER_EXPOSURE_FIELDS: dict[str, Declaration] = {
    "enabled": {"type": bool, "default": False, "searchable": True,
                "help": "train the softmax towards uniform on synthetic outliers"},
    "families": {"type": list, "default": list(TRAINING_ONLY_FAMILIES), "choices": tuple(ood_sets.available()),
                 "help": "outlier families (objectives.ood_sets) to train on"},
    "weight": {"type": float, "default": 0.5, "low": 0.0, "high": 10.0, "searchable": True,
               "help": "weight of the outlier loss"},
    "fraction": {"type": float, "default": 0.5, "low": 0.05, "high": 4.0, "searchable": True,
                 "help": "outliers per batch, relative to the batch size"},
}
SUBTABLES: dict[str, dict[str, Declaration]] = {
    "adversarial": ADVERSARIAL_FIELDS, "outlier_exposure": OUTLIER_EXPOSURE_FIELDS}
# The whole [training] table: the plain entries plus each robust-training scheme as a sub-table.
RECIPE_FIELDS: dict[str, Declaration] = {
    **TRAINING_FIELDS,
    **{name: {"type": dict, "default": {}, "table": table, "help": f"[training.{name}] sub-table"}
       for name, table in SUBTABLES.items()},
}


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


def check_recipe(config: dict[str, Any]) -> None:
    """Cross-section checks on a resolved config: the honesty rule, then each objective's own option checks."""
    check_in_distribution_families(config)
    check_outlier_families(config)
    check_objective_options(config)


def _shorten(names: list[str], most: int = 12) -> str:
    return ", ".join(names[:most]) + (f", ... ({len(names)} classes)" if len(names) > most else "")


def check_in_distribution_families(config: dict[str, Any]) -> None:
    """No family that depicts the data's own classes (``letters`` for the letters data set A-J) may be scored as
    OOD or trained towards uniform: a correct, confident answer would count against the model."""
    classes = data_module.known_class_names(config["data"])
    if not classes:
        return
    scored = scored_ood_sets(config)
    clashing = [name for name in scored if name in ood_sets.available() and ood_sets.in_distribution(name, classes)]
    if clashing:
        kept = [name for name in scored if name not in clashing]
        if "letters" in clashing and "letters_kt" not in kept:
            kept.append("letters_kt")
        shown = ", ".join(f'"{name}"' for name in kept)
        raise UsageError(
            f"config: objectives.ood.sets has {clashing}, which depict classes of data.name = "
            f"{config['data']['name']!r} ({_shorten(classes)}): they are in-distribution, not OOD; "
            f"drop them, e.g. sets = [{shown}]")
    outliers = config["training"]["outlier_exposure"]
    trained = [name for name in outliers["families"] if name in ood_sets.available()
               and ood_sets.in_distribution(name, classes)]
    if _may_enable(outliers) and trained:
        raise UsageError(
            f"config: training.outlier_exposure.families has {trained}, which depict classes of data.name = "
            f"{config['data']['name']!r}: training them towards uniform would unlearn the task; drop them "
            f"(training-only families: {', '.join(TRAINING_ONLY_FAMILIES)})")


def check_outlier_families(config: dict[str, Any]) -> None:
    """A model must not be scored on the outlier families it was trained on."""
    outliers = config["training"]["outlier_exposure"]
    if _may_enable(outliers):
        scored = set(scored_ood_sets(config))
        overlap = sorted(set(outliers["families"]) & scored)
        if overlap:
            raise UsageError(
                f"config: training.outlier_exposure.families and objectives.ood.sets share {overlap}: a model must not "
                f"be scored on outliers it was trained on; drop them from one list (training-only families: "
                f"{', '.join(TRAINING_ONLY_FAMILIES)})"
            )
        kin = sorted({(trained, other) for trained in outliers["families"] if trained in ood_sets.available()
                      for other in ood_sets.related(trained) & scored})
        if kin:
            trained, other = kin[0]
            raise UsageError(
                f"config: training.outlier_exposure.families has {trained!r} and objectives.ood.sets has {other!r}, "
                f"drawn from the same material (fonts or images): a model must not be scored on outliers like those "
                f"it was trained on; drop one of them (training-only families: {', '.join(TRAINING_ONLY_FAMILIES)})"
            )


def check_objective_options(config: dict[str, Any]) -> None:
    """Let each objective check its own option values (e.g. OOD set names); errors become one line."""
    for name, table in config["objectives"].items():
        try:
            objectives.get(name)(**{k: v for k, v in table.items() if k != "direction"})
        except ValueError as error:
            raise UsageError(f"config: objectives.{name}: {error}") from None


def sample_recipe(trial: optuna.Trial, table: dict[str, Any]) -> dict[str, Any]:
    """Turn the ``[training]`` table into a concrete recipe; searched entries become trial params.

    The recipe also records ``outlier_families_seen`` (empty unless outlier exposure is on).
    """
    recipe = {key: suggest(trial, f"train.{key}", value) for key, value in table.items() if key not in SUBTABLES}
    recipe.update(sample_tables(trial, table))
    return recipe


def sample_tables(trial: optuna.Trial, training: dict[str, Any]) -> dict[str, Any]:
    """Concrete sub-tables for one trial; a disabled scheme records only ``enabled = false``."""
    recipe: dict[str, Any] = {}
    for name, fields in SUBTABLES.items():
        table = training.get(name) or {key: declaration["default"] for key, declaration in fields.items()}
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


def recipe_summary(recipe: dict[str, Any]) -> str:
    """A recipe in a few words for a user attribute, e.g. ``lr 0.005, 3 epochs, FGSM eps 0.14, outlier exposure``:
    short because Optuna clients show it on one line (``nas.card.recipe_text`` is the full sentence)."""
    parts = []
    if isinstance(recipe.get("lr"), (int, float)):
        parts.append(f"lr {recipe['lr']:.2g}")
    if "epochs" in recipe:
        parts.append(f"{recipe['epochs']} epochs")
    adversarial = recipe.get("adversarial") or {}
    if adversarial.get("enabled"):
        attack = "FGSM" if adversarial.get("attack", "fgsm") == "fgsm" else f"PGD-{adversarial.get('steps', '?')}"
        eps = adversarial.get("eps")
        parts.append(f"{attack} eps {eps:.2f}" if isinstance(eps, (int, float)) else attack)
    if (recipe.get("outlier_exposure") or {}).get("enabled"):
        parts.append("outlier exposure")
    return ", ".join(parts) or "default"
