"""Bias and calibration: intervals that cover, worst-class and worst-group accuracy, temperature scaling.

The classifiers here are real modules whose outputs are known by construction (a table of logits looked up by
sample index), so the truth the metrics must recover is known: an accuracy, a class never predicted, a model
calibrated by construction and then made over-confident by scaling its logits up.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

import objectives
from nas.records import trial_record
from nas.cli import main
from nas.requirements import check_requirements_table
from nas.storage import load_study
from nas.study import check_requirements, flatten_metrics
from objectives.calibration import fit_temperature

NOT_ESTIMATES = {"temperature"}  # fitted, not a proportion or mean estimated from the split: no interval


class LogitTable(nn.Module):
    """A classifier whose logits for sample ``i`` (input ``[i]``) are row ``i`` of a fixed table."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("logits", logits.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x[:, 0].long()]


def indices(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float32)[:, None]


def one_hot_logits(prediction: torch.Tensor, num_classes: int, margin: float = 5.0) -> torch.Tensor:
    return torch.nn.functional.one_hot(prediction, num_classes).float() * margin


def context(y: torch.Tensor, num_classes: int, **extra) -> objectives.EvaluationContext:
    return objectives.EvaluationContext(x=indices(len(y)), y=y, num_classes=num_classes, seed=3, **extra)


def evaluate(name: str, model: nn.Module, ctx: objectives.EvaluationContext, **options) -> objectives.ObjectiveResult:
    return objectives.get(name)(**options).evaluate(model, ctx)


def classifier_with_accuracy(p: float, n: int, num_classes: int, rng: np.random.Generator):
    """Labels, and a model right on each sample with probability ``p`` (else a wrong class), independently."""
    y = torch.from_numpy(rng.integers(0, num_classes, size=n))
    right = torch.from_numpy(rng.random(n) < p)
    wrong = (y + torch.from_numpy(rng.integers(1, num_classes, size=n))) % num_classes
    return y, LogitTable(one_hot_logits(torch.where(right, y, wrong), num_classes))


def calibrated_logits(n: int, num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels drawn from their own softmax: calibrated by construction."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, num_classes, generator=generator) * 2.0
    labels = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=generator).squeeze(1)
    return logits, labels


# ------------------------------------------------------------------------------------------ intervals
def test_wilson_interval_covers_the_true_accuracy_in_about_95_of_100_repeats():
    p, n, covered, class_covered = 0.7, 120, 0, 0
    for repeat in range(100):
        y, model = classifier_with_accuracy(p, n, 2, np.random.default_rng(repeat))
        result = evaluate("accuracy", model, context(y, 2))
        low, high = result.intervals["accuracy"]
        covered += low <= p <= high
        class_covered += sum(row["interval"][0] <= p <= row["interval"][1] for row in result.details["per_class"])
    assert 90 <= covered <= 99, covered  # a 95% interval: neither too narrow nor uselessly wide
    assert 180 <= class_covered <= 199, class_covered  # per class too (each class is right with probability p)


def accuracy_of_a_fair_model(seed: int) -> objectives.ObjectiveResult:
    """Ten classes of equal accuracy in three groups: resampling alone makes a gap appear."""
    y, model = classifier_with_accuracy(0.8, 300, 10, np.random.default_rng(seed))
    return evaluate("accuracy", model, context(y, 10, groups=torch.arange(len(y)) % 3, group_names=list("abc")))


def calibration_of(seed: int, scale: float) -> objectives.ObjectiveResult:
    logits, labels = calibrated_logits(400, 5, seed)
    return evaluate("calibration", LogitTable(logits * scale), context(labels, 5))


RESULTS: dict[str, Callable[[], objectives.ObjectiveResult]] = {
    **{f"accuracy-fair-{seed}": lambda seed=seed: accuracy_of_a_fair_model(seed) for seed in range(8)},
    **{f"calibration-{seed}-x{scale:g}": lambda seed=seed, scale=scale: calibration_of(seed, scale)
       for seed, scale in ((0, 1.0), (1, 1.0), (2, 4.0))},
}


@pytest.mark.parametrize("case", RESULTS)
def test_every_estimate_has_an_interval_holding_its_value_and_a_sample_count(case):
    result = RESULTS[case]()
    estimates = set(result.metrics) - NOT_ESTIMATES - {"calibration"}  # that one repeats the value, ece
    assert estimates <= set(result.intervals), estimates - set(result.intervals)
    for metric, (low, high) in result.intervals.items():
        assert low <= result.metrics[metric] <= high, (metric, low, result.metrics[metric], high)
        assert result.samples[metric] > 0
    assert json.loads(json.dumps(result.to_json()))["settings"] == result.settings


# ------------------------------------------------------------------------------------------ worst class
def test_a_class_never_predicted_has_worst_class_accuracy_0_and_fails_a_requirement_on_it():
    y = torch.arange(90) % 3
    prediction = torch.where(y == 2, torch.zeros_like(y), y)  # perfect on classes 0 and 1, never says 2
    ctx = context(y, 3, class_names=["cat", "dog", "fox"])
    result = evaluate("accuracy", LogitTable(one_hot_logits(prediction, 3)), ctx)
    assert result.metrics["accuracy"] == pytest.approx(2 / 3)
    assert result.metrics["worst_class"] == 0.0 and result.details["worst_class"] == "fox"
    assert result.metrics["class_gap"] == 1.0
    assert result.samples["worst_class"] == 30 and result.intervals["worst_class"][1] < 0.15  # n = 30 of class fox
    assert [row["name"] for row in result.details["per_class"]] == ["cat", "dog", "fox"]

    requirements = check_requirements_table({"accuracy.worst_class": {"min": 0.7}, "accuracy": {"min": 0.6}})
    table = check_requirements(flatten_metrics({"accuracy": result}), requirements)
    assert table["accuracy"]["pass"] is True and table["accuracy.worst_class"]["pass"] is False

    worst = evaluate("accuracy", LogitTable(one_hot_logits(prediction, 3)), context(y, 3), aggregate="worst_class")
    assert worst.value == 0.0 and worst.metrics["accuracy"] == pytest.approx(2 / 3)


def test_worst_group_aggregate_needs_group_labels():
    y, model = classifier_with_accuracy(0.9, 40, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="data.groups"):
        evaluate("accuracy", model, context(y, 2), aggregate="worst_group")


# ------------------------------------------------------------------------------------------ calibration
def test_temperature_scaling_lowers_the_ece_of_an_over_confident_model():
    logits, labels = calibrated_logits(1500, 5, seed=0)
    honest = evaluate("calibration", LogitTable(logits), context(labels, 5))
    over = evaluate("calibration", LogitTable(logits * 4.0), context(labels, 5))
    assert over.metrics["ece"] > honest.metrics["ece"] + 0.1
    assert over.metrics["ece_scaled"] < over.metrics["ece"] / 3  # cross-fitted on halves of the split
    assert over.intervals["ece_scaled"][1] < over.intervals["ece"][0]
    assert over.metrics["temperature"] == pytest.approx(4.0, rel=0.15)
    assert honest.metrics["temperature"] == pytest.approx(1.0, rel=0.15)
    assert over.metrics["nll"] > honest.metrics["nll"] and over.metrics["brier"] > honest.metrics["brier"]


def test_on_test_the_temperature_is_fitted_on_the_validation_split():
    val_logits, val_labels = calibrated_logits(800, 5, seed=1)
    test_logits, test_labels = calibrated_logits(800, 5, seed=2)
    everything = LogitTable(torch.cat([test_logits, val_logits]) * 4.0)  # inputs 0-799 test, 800-1599 validation
    ctx = context(test_labels, 5, split="test", fit_x=indices(1600)[800:], fit_y=val_labels)
    result = evaluate("calibration", everything, ctx)
    assert result.metrics["temperature"] == pytest.approx(fit_temperature(val_logits * 4.0, val_labels), rel=1e-6)
    assert result.metrics["temperature"] != pytest.approx(fit_temperature(test_logits * 4.0, test_labels), rel=1e-3)
    assert result.metrics["ece_scaled"] < result.metrics["ece"] / 3
    assert result.samples["temperature"] == 800 and "validation" in result.settings["temperature"]


def test_ensemble_log_probabilities_with_underflow_keep_finite_nll_and_temperature():
    logits, labels = calibrated_logits(200, 4, seed=3)
    log_probabilities = torch.log_softmax(logits * 60.0, dim=1)  # like an ensemble's log of averaged softmax
    log_probabilities[log_probabilities < -80] = -torch.inf  # float32 softmax underflowed to 0
    result = evaluate("calibration", LogitTable(log_probabilities), context(labels, 4))
    assert np.isfinite(result.metrics["nll"]) and np.isfinite(result.metrics["temperature"])
    assert result.metrics["ece_scaled"] < result.metrics["ece"]


# ------------------------------------------------------------------------------------------ groups (image-folder)
GROUP_ROW = {"dark": 0, "light": 255}  # each image's top row tells its group, so the labels can be checked


def image_folder(root: Path) -> Path:
    """Two classes of 8x8 images; the CSV gives each its group (also drawn into its top row)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = ["file,group"]
    for label, value in (("cats", 60), ("dogs", 190)):
        (root / "images" / label).mkdir(parents=True)
        for i in range(12):
            group = "light" if i % 3 else "dark"
            pixels = np.clip(rng.normal(value, 15, size=(8, 8, 3)), 0, 255)
            pixels[0] = GROUP_ROW[group]
            Image.fromarray(pixels.astype(np.uint8)).save(root / "images" / label / f"{i}.png")
            rows.append(f"{label}/{i}.png,{group}")
    (root / "groups.csv").write_text("\n".join(rows) + "\n")
    return root


def experiment(root: Path, data: dict, requirements: str = "") -> list[str]:
    lines = [f'[study]\nname = "groups"\nstorage = "sqlite:///{root / "nas.db"}"\nn_trials = 1\nsampler = "random"\n'
             'device = "cpu"\n[data]', *(f"{key} = {json.dumps(value)}" for key, value in data.items()),
             '[space]\nname = "mlp"\ndepth = 1\nwidth = [8]\nensemble = 1\n[training]\nepochs = 1\nbatch_size = 8\n'
             '[objectives.accuracy]\naggregate = "worst_group"\n[requirements]\n' + requirements]
    (root / "experiment.toml").write_text("\n".join(lines))
    return ["search", str(root / "experiment.toml"), "--out", str(root / "out")]


def folder_data(root: Path) -> dict:
    return {"name": "image-folder", "path": str(root / "images"), "groups": str(root / "groups.csv"),
            "image_size": 8, "val_fraction": 0.3, "test_fraction": 0.3}


def run_cli(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def test_group_labels_follow_their_images_into_every_split(tmp_path):
    from nas import data

    dataset = data.load({**folder_data(image_folder(tmp_path)), "seed": 0})
    assert dataset.group_names == ["dark", "light"]
    for x, groups in ((dataset.val_x, dataset.val_groups), (dataset.test_x, dataset.test_groups)):
        drawn = (x[:, :, 0, :].mean(dim=(1, 2)) > 0.5).long()  # the top row: 0 dark, 1 light
        assert len(groups) == len(x) and torch.equal(groups, drawn)


def test_search_on_an_image_folder_with_groups_reports_worst_group(tmp_path, capsys):
    root = image_folder(tmp_path)
    code, err = run_cli(capsys, experiment(root, folder_data(root), '"accuracy.worst_group" = { min = 0.0 }\n'))
    assert code == 0, err
    study = load_study(f"sqlite:///{root / 'nas.db'}", "groups")
    record = trial_record(study, study.trials[0])
    accuracy = record["objectives"]["accuracy"]
    assert {"worst_group", "group_gap", "worst_class", "class_gap"} <= set(accuracy["metrics"])
    assert accuracy["value"] == accuracy["metrics"]["worst_group"]  # aggregate = "worst_group"
    for metric in ("worst_group", "group_gap"):
        low, high = accuracy["intervals"][metric]
        assert low <= accuracy["metrics"][metric] <= high and accuracy["samples"][metric] > 0
    assert record["requirements"]["accuracy.worst_group"]["pass"] is True


def _without_column(text: str) -> str:
    return "\n".join(line.split(",")[0] for line in text.splitlines())


BAD_CSV: dict[str, Callable[[str], str]] = {  # an intact CSV -> a broken one
    "missing group column": _without_column,
    "renamed column": lambda text: text.replace("file,group", "path,group", 1),
    "unknown file": lambda text: text + "cats/99.png,dark\n",
    "empty group": lambda text: text.replace(",light", ",", 1),
    "listed twice": lambda text: text + text.splitlines()[1] + "\n",
    "image without a row": lambda text: "\n".join(text.splitlines()[:-1]) + "\n",
    "emptied": lambda text: "",
    "truncated": lambda text: text[: len(text) // 2],
    "not UTF-8": lambda text: text[: len(text) // 2] + "\udce9" + text[len(text) // 2:],
    "random bytes": lambda text: "\x00\x9f\udcff" * 40,
}


@pytest.mark.parametrize("damage", BAD_CSV)
def test_a_bad_group_csv_is_one_line_and_exit_2(damage, tmp_path, capsys):
    root = image_folder(tmp_path)
    csv = root / "groups.csv"
    csv.write_bytes(BAD_CSV[damage](csv.read_text()).encode("utf-8", "surrogateescape"))
    code, err = run_cli(capsys, experiment(root, folder_data(root)))
    assert code == 2 and err.startswith("nas: error: data.groups") and err.count("\n") == 1, err
    assert str(csv) in err and "Traceback" not in err


@pytest.mark.parametrize("change", ["missing file", "not an image folder"])
def test_data_groups_that_cannot_apply_is_one_line_and_exit_2(change, tmp_path, capsys):
    root = image_folder(tmp_path)
    data = folder_data(root)
    if change == "missing file":
        data["groups"] = str(root / "no-such.csv")
    else:
        data = {"name": "synthetic", "synthetic_size": 60, "groups": data["groups"]}
    code, err = run_cli(capsys, experiment(root, data))
    assert code == 2 and err.startswith("nas: error: data.groups") and err.count("\n") == 1, err


@pytest.mark.parametrize("requirements",
                         ["", '"accuracy.worst_group" = {min = 0.5}', '"accuracy.group_gap" = {max = 0.2}'])
def test_worst_group_without_group_labels_is_one_line_and_exit_2_before_any_trial(requirements, tmp_path, capsys):
    data = {k: v for k, v in folder_data(image_folder(tmp_path)).items() if k != "groups"}
    code, err = run_cli(capsys, experiment(tmp_path, data, requirements))
    assert code == 2 and "needs group labels per sample; set data.groups" in err and err.count("\n") == 1, err
    assert not (tmp_path / "nas.db").exists()
