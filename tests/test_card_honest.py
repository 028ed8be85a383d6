"""Honest numbers in `nas verify` and the robustness card: intervals, tri-state requirements, no duplicate rows,
settings and the recipe in words, gap warnings only for degradations beyond noise, and tamper-evident exports.

The study uses ``HeldOutAccuracy``, an objective (named by reference, like a user's own) that reports what the
shared contract asks of every objective (a Wilson interval, its sample count, its settings and a verify budget),
so these tests check the consumers whatever the built-in objectives report today.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import objectives
import search_spaces
from nas import codegen
from nas import config as config_module
from nas.card import metric_rows, recipe_text, row_names
from nas.errors import UsageError
from nas.export import export_trial, fitted_temperature, load_model_source, manifest_checksum
from nas.requirements import FAIL, INCONCLUSIVE, PASS, requirement_verdict
from nas.storage import load_study
from nas.study import Experiment, create_or_load, run_search
from nas.verify import budget_options, degradation, verification_options, verify_export
from objectives import EvaluationContext, Objective, ObjectiveResult, predict_proba
from objectives.stats import proportion_interval
from test_export import assert_usage_error, cli

SEARCH_SAMPLES, VERIFY_SAMPLES = 30, 24
EPS = 0.0912345678  # a float as the sampler stores it: the card must not print all of its digits
REQUIRED = {"held_out.accuracy": {"min": 0.2}, "params": {"max": 1e6}}


class HeldOutAccuracy(Objective):
    """Accuracy on a seeded subset of the split, with its Wilson interval, sample count and settings."""

    name = "held_out"
    direction = "maximize"
    cost_rank = 5
    metrics = ("accuracy", "error")
    description = "accuracy on a seeded subset"
    params = {"samples": {"type": int, "default": SEARCH_SAMPLES, "low": 2, "high": 100000, "help": "samples scored"}}
    verify_options = {"samples": VERIFY_SAMPLES}

    def _evaluate(self, model: nn.Module, context: EvaluationContext) -> ObjectiveResult:
        x, y = context.subset(int(self.options["samples"]))
        correct = (predict_proba(model, x, context.device).argmax(dim=1) == y).numpy()
        accuracy = float(correct.mean())
        low, high = proportion_interval(correct)
        return ObjectiveResult(
            value=accuracy, metrics={"accuracy": accuracy, "error": 1.0 - accuracy},
            intervals={"accuracy": (low, high), "error": (1.0 - high, 1.0 - low)},
            samples={"accuracy": len(y), "error": len(y)},
            settings={"samples": len(y), "split": context.split, "subset_seed": "study and split"},
        )


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("honest")
    storage = f"sqlite:///{root}/nas.db"
    torch.set_num_threads(1)
    config = config_module.resolve({
        "study": {"name": "honest", "storage": storage, "n_trials": 1, "sampler": "random", "device": "cpu"},
        "data": {"name": "synthetic", "synthetic_size": 240},
        "space": {"name": "mlp", "depth": 1, "width": [16], "ensemble": 2},
        "training": {"epochs": 2, "batch_size": 32, "adversarial": {"enabled": True, "eps": EPS},
                     "outlier_exposure": {"enabled": True}},
        "objectives": {"held_out": {"class": "test_card_honest:HeldOutAccuracy"}, "params": {}},
        "requirements": REQUIRED,
    })
    run_search(create_or_load(config, resume=False), Experiment.from_config(config), 1)
    return export_trial(load_study(storage, "honest"), 0, root / "export", storage_url=storage)


def _copy(exported: Path, folder: Path) -> Path:
    return Path(shutil.copytree(exported, folder / "export"))


def _rewrite_manifest(folder: Path, change) -> None:
    """Edit spec.json and seal it again as export would (what a careless tool, not damage, does)."""
    manifest = json.loads((folder / "spec.json").read_text())
    change(manifest)
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    (folder / "spec.json").write_text(json.dumps(manifest))


def _requirements(folder: Path, table: dict) -> str:
    lines = ["[requirements]"] + [f'"{metric}" = {{ {", ".join(f"{k} = {v!r}" for k, v in bound.items())} }}'
                                  for metric, bound in table.items()]
    path = folder / "requirements.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# ------------------------------------------------------------------------------------------ verdicts
def test_requirement_verdict_agrees_with_every_point_of_the_interval():
    """pass: every value the interval allows meets the bound; fail: none does; inconclusive: some do."""
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(400):
        low, high = sorted(rng.uniform(0, 1, 2))
        value = rng.uniform(low, high)
        sides = rng.choice(["min", "max"], rng.integers(1, 3), replace=False)
        bound = {side: float(rng.uniform(0, 1)) for side in sides}
        if bound.get("min", -1) > bound.get("max", 2):
            bound["min"], bound["max"] = bound["max"], bound["min"]
        points = np.linspace(low, high, 201)
        meets = (points >= bound.get("min", -math.inf)) & (points <= bound.get("max", math.inf))
        expected = PASS if meets.all() else FAIL if not meets.any() else INCONCLUSIVE
        verdict = requirement_verdict(value, bound, (low, high))
        seen.add(verdict)
        assert verdict == expected, (value, (low, high), bound)
        # without an interval the metric is exact: its value decides
        exact = PASS if bound.get("min", -1) <= value <= bound.get("max", 2) else FAIL
        assert requirement_verdict(value, bound) == exact
    assert seen == {PASS, FAIL, INCONCLUSIVE}
    assert requirement_verdict(None, {"min": 0.5}) == "not evaluated"
    assert requirement_verdict(0.7, {"min": 0.5}, (math.nan, math.nan)) == INCONCLUSIVE


def test_inconclusive_requirement_exits_1_unless_allowed(exported, capsys, tmp_path):
    report = verify_export(exported)
    row = next(row for row in report["metrics"] if "held_out.accuracy" in row_names(row))
    value, (low, high) = row["test"], row["test_interval"]
    assert low < value <= high and value > 0, "the bound below must fall inside the interval"
    bounds = {PASS: {"min": low - 0.01}, INCONCLUSIVE: {"min": value}, FAIL: {"min": high + 0.01}}
    for expected, bound in bounds.items():
        requirements = _requirements(tmp_path, {"held_out.accuracy": bound, "params": {"max": 1e6}})
        code, out, err = cli(capsys, "verify", str(exported), "--requirements", requirements)
        allowed, _, _ = cli(capsys, "verify", str(exported), "--requirements", requirements, "--allow-inconclusive")
        assert (code, allowed) == {PASS: (0, 0), INCONCLUSIVE: (1, 0), FAIL: (1, 1)}[expected], out + err
        checked = verify_export(exported, requirements)
        assert [r["verdict"] for r in checked["requirements"]] == [expected, PASS]
        assert checked["inconclusive"] == (["held_out.accuracy"] if expected == INCONCLUSIVE else [])
        assert checked["failed"] == (["held_out.accuracy"] if expected == FAIL else [])
        if expected == INCONCLUSIVE:
            assert "INCONCLUSIVE" in out and "held_out.accuracy" in " ".join(out.split()).split("INCONCLUSIVE")[-1]


# ------------------------------------------------------------------------------------------ rows and budgets
def test_one_row_per_metric_with_interval_samples_and_both_names(exported, capsys):
    report = verify_export(exported)
    names = [name for row in report["metrics"] for name in row_names(row)]
    manifest = json.loads((exported / "spec.json").read_text())
    every = {name if metric == name else f"{name}.{metric}"
             for name, result in manifest["validation_objectives"].items() for metric in [name, *result["metrics"]]}
    assert sorted(names) == sorted(every), "every metric once, no duplicates"
    row = next(row for row in report["metrics"] if row["metric"] == "held_out.accuracy")
    assert row["aliases"] == ["held_out"], "the objective's value is its accuracy metric: one row, both names"
    assert row["test_samples"] == VERIFY_SAMPLES and row["validation_samples"] == SEARCH_SAMPLES
    assert row["test_interval"][0] <= row["test"] <= row["test_interval"][1] and row["validation_interval"]
    assert report["options"]["held_out"]["samples"] == VERIFY_SAMPLES, "verify_options replace the search budget"
    assert report["settings"]["held_out"]["split"] == "test" and report["samples"]["held_out"] == [VERIFY_SAMPLES]
    code, out, _ = cli(capsys, "verify", str(exported))
    text = " ".join(out.split())
    assert code == 0 and "held_out.accuracy (= held_out)" in text and f"held_out {VERIFY_SAMPLES}" in text
    assert "params not reported" in text, "an objective that reports no samples is not given any"


def test_budget_flags_set_only_the_sample_budgets_that_exist():
    """Verify runs each objective with the experiment's options, then its verify_options, then the budget flags,
    which reach every sample budget of their objective (adversarial, ood) and nothing else."""
    config = {"objectives": {"adversarial": {"direction": "maximize", "eps": 0.05}, "accuracy": {}},
              "requirements": {"ood.min_auroc": {"min": 0.5}}}
    budgets = {"attack_samples": 321, "ood_samples": 123}
    tables = verification_options(config, budgets)
    assert set(tables) == {"adversarial", "accuracy", "ood"}, "objectives only required are measured too"
    flagged = {"adversarial": "attack_samples", "ood": "ood_samples"}
    for name, table in tables.items():
        cls = objectives.get(name)
        overrides = {key: budgets[flagged[name]] for key in budget_options(cls)} if name in flagged else {}
        assert table == {**config["objectives"].get(name, {}), **cls.verify_options, **overrides}
        assert name not in flagged or overrides, f"{name} has a sample budget"
    assert "fit_samples" not in budget_options(objectives.get("ood")), "detector fitting data is not a test budget"
    with pytest.raises(UsageError, match="--attack-samples 2 is out of range for adversarial.samples"):
        verification_options(config, {"attack_samples": 2})


# ------------------------------------------------------------------------------------------ gaps
def test_gap_flags_only_degradations_beyond_the_intervals():
    rng = np.random.default_rng(1)
    for _ in range(300):
        direction = str(rng.choice(["maximize", "minimize"]))
        validation, test = rng.uniform(0, 1, 2)
        halves = rng.uniform(0, 0.2, 2)
        intervals = [[v - h, v + h] for v, h in zip((validation, test), halves)]
        interval, degraded = degradation(direction, validation, intervals[0], test, intervals[1])
        worse = test < validation if direction == "maximize" else test > validation
        beyond = abs(test - validation) > math.hypot(*halves)
        assert degraded is (worse and beyond), (direction, validation, test, halves)
        assert interval[0] <= test - validation <= interval[1]
    # better on test is never flagged, however tight the intervals
    assert degradation("maximize", 0.11, [0.1, 0.12], 0.25, [0.24, 0.26])[1] is False
    assert degradation("minimize", 0.3, [0.29, 0.31], 0.1, [0.09, 0.11])[1] is False
    # a significant but negligible degradation is ignored with a tolerance
    assert degradation("maximize", 0.9, [0.899, 0.901], 0.89, [0.889, 0.891], tolerance=0.05)[1] is False
    # without intervals or a direction there is nothing to test
    assert degradation("maximize", 0.9, None, 0.5, [0.49, 0.51]) == (None, None)
    assert degradation(None, 0.9, [0.89, 0.91], 0.5, [0.49, 0.51])[1] is None


@pytest.mark.parametrize("validation_shift, flagged", [(-0.5, False), (0.0, False), (+0.5, True)])
def test_gap_warning_in_verify_only_when_test_is_worse(exported, capsys, tmp_path, validation_shift, flagged):
    """The validation value moved away from the test value, with a tight interval: only a validation value well
    above the test accuracy (test worse) is a gap; a better test value is not, and neither is the same value."""
    test = next(row for row in verify_export(exported)["metrics"] if row["metric"] == "held_out.accuracy")
    folder = _copy(exported, tmp_path)

    def move(manifest: dict) -> None:
        result = manifest["validation_objectives"]["held_out"]
        value = test["test"] + validation_shift
        result["value"] = result["metrics"]["accuracy"] = value
        result["intervals"]["accuracy"] = [value - 0.001, value + 0.001]
    _rewrite_manifest(folder, move)
    report = verify_export(folder)
    assert report["gaps"] == (["held_out.accuracy"] if flagged else [])
    code, out, _ = cli(capsys, "verify", str(folder), "--fail-on-gap")
    assert code == (1 if flagged else 0) and ("worse than sampling noise" in " ".join(out.split())) is flagged


# ------------------------------------------------------------------------------------------ the card
def test_card_states_intervals_settings_and_the_recipe_in_words(exported):
    card = json.loads((exported / "card.json").read_text())
    markdown = (exported / "card.md").read_text()
    names = [name for row in card["metrics"] for name in row_names(row)]
    assert len(names) == len(set(names)) and "held_out.accuracy (= held_out)" in markdown
    row = next(row for row in card["metrics"] if row["metric"] == "held_out.accuracy")
    assert row["samples"] == SEARCH_SAMPLES and row["interval"][0] <= row["value"] <= row["interval"][1]
    assert [r["metric"] for r in card["requirements"]["table"]] == list(REQUIRED)
    for requirement in card["requirements"]["table"]:
        assert requirement["verdict"] in (PASS, FAIL, INCONCLUSIVE)
        assert requirement_verdict(requirement["value"], REQUIRED[requirement["metric"]],
                                   requirement["interval"]) == requirement["verdict"]
    met = [f"{row['metric']} {'>=' if 'min' in row else '<='}" for row in card["requirements"]["table"]
           if row["verdict"] == PASS]
    assert f"meets {len(met)} of 2 standards" in card["requirements"]["standards"]
    assert all(name in card["requirements"]["standards"] for name in met)
    held_out = next(row for row in card["objectives"] if row["name"] == "held_out")
    assert held_out["settings"]["split"] == "val" and f"samples {SEARCH_SAMPLES}, split val" in markdown
    recipe = card["training"]["recipe_text"]
    assert "FGSM (random start) adversarial training, eps 0.0912, on half of each batch" in recipe
    assert "outlier exposure on mixup, patch-permuted, smoothed noise" in recipe and "ensemble of 2" in recipe
    assert recipe in markdown and str(EPS) not in markdown and "{" not in markdown.split("## Training")[1]


def test_recipe_in_words_covers_every_entry():
    """Entries it knows are phrased; any other entry is still listed, so nothing of the recipe goes unsaid."""
    recipe = {"epochs": 3, "batch_size": 64, "lr": 0.00123456789, "optimizer": "sgd", "weight_decay": 5e-4,
              "label_smoothing": 0.1, "max_grad_norm": 0.0, "mixup_alpha": 0.2000000001,
              "adversarial": {"enabled": True, "attack": "pgd", "eps": 0.03, "steps": 7, "fraction": 0.3},
              "outlier_exposure": {"enabled": False}, "outlier_families_seen": []}
    text = recipe_text(recipe)
    assert text.startswith("SGD, learning rate 0.00123, 3 epochs of batches of 64; weight decay 0.0005; "
                           "label smoothing 0.1; PGD-7 adversarial training, eps 0.03, on 30% of each batch")
    assert "mixup alpha 0.2" in text and "outlier" not in text and "clipped" not in text and "ensemble" not in text


def test_metric_rows_keep_ambiguous_values_apart():
    """When several metrics equal the objective's value, no alias is guessed: the value keeps its own row."""
    tied = {"adversarial": {"value": 0.0, "metrics": {"clean_accuracy": 0.0, "pgd_accuracy": 0.0}}}
    assert [row["metric"] for row in metric_rows(tied)] == ["adversarial.clean_accuracy", "adversarial.pgd_accuracy",
                                                            "adversarial"]
    reference = {"adversarial": {"value": 0.3, "metrics": {"clean_accuracy": 0.8, "pgd_accuracy": 0.3}}}
    rows = metric_rows(tied, reference)
    assert [row_names(row) for row in rows] == [["adversarial.clean_accuracy"],
                                                ["adversarial.pgd_accuracy", "adversarial"]]


# ------------------------------------------------------------------------------------------ integrity
def _flip_last_byte(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0x01
    path.write_bytes(bytes(blob))


def test_every_tampered_file_is_one_line_and_exit_2(exported, capsys, tmp_path):
    """Generated from the files spec.json records: each one changed by a byte, and spec.json itself edited."""
    manifest = json.loads((exported / "spec.json").read_text())
    files = sorted(manifest["sha256"])
    assert {"model.py", "weights.safetensors", "card.json", "card.md"} <= set(files)
    for name in files:
        folder = _copy(exported, tmp_path / name)
        _flip_last_byte(folder / name)
        assert_usage_error(capsys, ["verify", str(folder)], str(folder / name), "does not match the checksum")
    folder = _copy(exported, tmp_path / "spec")
    edited = {**manifest, "experiment": {**manifest["experiment"], "requirements": {"params": {"max": 1e9}}}}
    (folder / "spec.json").write_text(json.dumps(edited))
    assert_usage_error(capsys, ["verify", str(folder)], str(folder / "spec.json"), "its own checksum")
    (folder / "spec.json").write_text(json.dumps({key: value for key, value in manifest.items() if key != "sha256"}))
    assert_usage_error(capsys, ["verify", str(folder)], "no 'sha256' entry")


def test_older_exports_are_read_with_a_note(exported, capsys, tmp_path):
    """A format 1 export (weights checksum only, no intervals) is still verified, and says what is not checked."""
    folder = _copy(exported, tmp_path)
    manifest = json.loads((folder / "spec.json").read_text())
    for key in ("sha256", "manifest_sha256", "validation_objectives", "calibration"):
        manifest.pop(key)
    (folder / "spec.json").write_text(json.dumps({**manifest, "format_version": 1}))
    report = verify_export(folder)
    assert report["format_version"] == 1 and "only the weights are checksummed" in report["integrity"]
    row = next(row for row in report["metrics"] if row["metric"] == "held_out.accuracy")
    assert row["validation"] == manifest["validation_metrics"]["held_out.accuracy"] and row["degraded"] is None
    code, out, _ = cli(capsys, "verify", str(folder))
    assert code == 0 and "re-export it" in " ".join(out.split())


EXITS_WHEN_SCORED = """

_build = build


def build(calibrated=False):
    model = _build(calibrated)
    model.register_forward_pre_hook(lambda module, inputs: __import__("sys").exit(0))
    return model
"""
RESEALED_MODEL_CODE = {  # model.py replaced and its checksum updated: the guards behind the checksum
    "exits-0-at-import": (lambda source, spec: "import sys\nsys.exit(0)\n", "cannot be loaded (SystemExit"),
    "raises-at-import": (lambda source, spec: "raise RuntimeError('boom')\n", "cannot be loaded (RuntimeError: boom"),
    "no-build": (lambda source, spec: "import torch\n", "defines no build() function"),
    "build-exits": (lambda source, spec: "def build(calibrated=False):\n    raise SystemExit(0)\n",
                    "build() failed (SystemExit"),
    "other-architecture": (lambda source, spec: codegen.generate({**spec, "hidden": [w * 2 for w in spec["hidden"]]}),
                           "do not match the architecture"),
    "exits-when-scored": (lambda source, spec: source + EXITS_WHEN_SCORED, "called exit(0) while it was scored"),
}


@pytest.mark.parametrize("case", RESEALED_MODEL_CODE)
def test_model_py_that_misbehaves_behind_a_valid_checksum(exported, capsys, tmp_path, case):
    rewrite, fragment = RESEALED_MODEL_CODE[case]
    folder = _copy(exported, tmp_path)
    spec = json.loads((folder / "spec.json").read_text())["spec"]
    (folder / "model.py").write_text(rewrite((folder / "model.py").read_text(), spec))
    checksum = hashlib.sha256((folder / "model.py").read_bytes()).hexdigest()
    _rewrite_manifest(folder, lambda manifest: manifest["sha256"].update({"model.py": checksum}))
    assert_usage_error(capsys, ["verify", str(folder)], str(folder / "model.py"), fragment)


def test_temperature_is_applied_only_when_asked(tmp_path):
    spec = {"space": "mlp", "hidden": [6], "activation": "relu", "dropout": 0.0, "batch_norm": False, "ensemble": 2,
            "input_shape": [1, 4, 4], "num_classes": 3}
    assert fitted_temperature({"calibration.temperature": 1.7}) == 1.7
    assert fitted_temperature({"calibration.ece": 0.1}) is None
    assert fitted_temperature({"calibration.temperature": 0}) is None
    reference = search_spaces.build(spec)
    x = torch.rand(5, 1, 4, 4)
    for temperature in (None, 2.5):
        path = tmp_path / f"model_{temperature}.py"
        path.write_text(codegen.generate(spec, temperature=temperature))
        module = load_model_source(path)
        assert module.TEMPERATURE == temperature
        plain = module.build()
        plain.load_state_dict(reference.state_dict())
        with torch.no_grad():
            expected = reference.eval()(x)
            torch.testing.assert_close(plain.eval()(x), expected, atol=1e-6, rtol=0)
            if temperature is None:
                with pytest.raises(ValueError, match="no temperature was fitted"):
                    module.build(calibrated=True)
                continue
            calibrated = module.build(calibrated=True)
            calibrated.load_state_dict(reference.state_dict())  # the same keys: the weights load unchanged
            torch.testing.assert_close(calibrated.eval()(x), expected / temperature, atol=1e-6, rtol=0)


def test_verify_table_folds_per_set_rows_unless_they_matter():
    """One row per OOD set and statistic would bury the headline; a required or degraded one stays in view."""
    from nas.verify import _is_detail

    def row(metric: str, **extra):
        return {"metric": metric, "objective": metric.split(".")[0], "requirements": [], "degraded": None, **extra}

    rows = [row("ood.auroc_uniform"), row("ood.min_auroc"), row("ood.near_min_auroc"),
            row("ood.fpr95_letters", requirements=[{"metric": "ood.fpr95_letters", "max": 0.5}]),
            row("ood.confidence_glyphs", degraded=True), row("accuracy.worst_class")]
    assert [_is_detail(r) for r in rows] == [True, False, False, False, False, False]
