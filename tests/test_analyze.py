"""`nas analyze`: PED-ANOVA finds the parameter that determines an objective, the equal-accuracy comparison finds a
planted robustness difference (interval excludes 1) and not an unplanted one (interval holds 1); bad input exits 2."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from conftest import PATIENCE
from nas.analysis import analyze
from nas.cli import main

STUDY = "planted"
N_TRIALS = 80


def planted_trial(rng: np.random.Generator) -> optuna.trial.FrozenTrial:
    """Validation accuracy is drawn first; PGD accuracy is twice as high for ensembles at the same accuracy;
    outlier exposure changes nothing; the objective 'cost' is fully determined by the parameter 'width'."""
    ensemble = int(rng.integers(1, 4))
    outliers = bool(rng.integers(0, 2))
    width = float(rng.uniform(0.0, 1.0))
    noise = float(rng.uniform(0.0, 1.0))
    accuracy = float(rng.uniform(0.80, 0.85))
    pgd = (0.2 if ensemble > 1 else 0.1) * float(rng.uniform(0.8, 1.2)) * accuracy
    auroc = float(rng.uniform(0.6, 0.9))
    spec = {"space": "mlp", "ensemble": ensemble, "input_shape": [1, 8, 8], "num_classes": 10}
    recipe = {"epochs": 1, "adversarial": {"enabled": False},
              "outlier_exposure": {"enabled": outliers}, "outlier_families_seen": []}
    return optuna.trial.create_trial(
        params={"mlp.ensemble": ensemble, "train.outlier_exposure.enabled": outliers, "mlp.width": width,
                "mlp.noise": noise},
        distributions={"mlp.ensemble": IntDistribution(1, 3),
                       "train.outlier_exposure.enabled": CategoricalDistribution([True, False]),
                       "mlp.width": FloatDistribution(0.0, 1.0), "mlp.noise": FloatDistribution(0.0, 1.0)},
        values=[accuracy, width * 1000.0],
        user_attrs={"spec": spec, "recipe": recipe,
                    "metrics": {"accuracy": accuracy, "adversarial.pgd_accuracy": pgd, "ood.min_auroc": auroc,
                                "cost.params": width * 1000.0, "params": width * 1000.0}},
    )


def build_study(storage: str, n: int = N_TRIALS) -> optuna.Study:
    study = optuna.create_study(study_name=STUDY, storage=storage, directions=["maximize", "minimize"])
    study.set_user_attr("objective_names", ["accuracy", "cost"])
    rng = np.random.default_rng(7)
    for _ in range(n):
        study.add_trial(planted_trial(rng))
    return study


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path_factory.mktemp('analyze') / 'nas.db'}"
    return url, build_study(url)


def row(analysis, comparison, metric):
    return next(r for r in analysis.comparisons if r.comparison == comparison and r.metric == metric)


def test_the_determining_parameter_is_most_important_for_its_objective(stored):
    _, study = stored
    found = analyze(study)
    cost = found.importance["cost"]
    assert max(cost, key=cost.get) == "mlp.width", cost
    assert cost["mlp.width"] > 2 * max(v for p, v in cost.items() if p != "mlp.width"), cost


def test_planted_difference_is_found_and_unplanted_one_is_not(stored):
    _, study = stored
    found = analyze(study, bin_width=1.0)
    ensembles = row(found, "ensembles", "adversarial.pgd_accuracy")
    assert ensembles.ratio_low is not None and ensembles.ratio_low > 1.0, ensembles
    assert 1.6 < ensembles.ratio < 2.4, ensembles
    assert ensembles.n_a > ensembles.n_b > 10 and ensembles.bins >= 4, ensembles
    assert ensembles.sentence.startswith("ensembles: ") and "x the adversarial.pgd_accuracy of single models" \
        in ensembles.sentence and f"n = {ensembles.n_a} vs {ensembles.n_b}" in ensembles.sentence
    unplanted = row(found, "outlier exposure", "adversarial.pgd_accuracy")
    assert unplanted.ratio_low is not None and unplanted.ratio_low < 1.0 < unplanted.ratio_high, unplanted
    auroc = row(found, "ensembles", "ood.min_auroc")
    assert auroc.ratio_low < 1.0 < auroc.ratio_high, auroc
    # which group the metric favours comes from its direction: higher PGD accuracy is better
    assert (ensembles.better, unplanted.better, auroc.better) == ("ensembles", "undecided", "undecided")
    assert "cost.params" not in {r.metric for r in found.comparisons}, "cost is not a robustness metric"
    # nothing varies adversarial training: said, not a number
    assert found.not_compared["adversarial training"] == "no trials with adversarial training"
    assert not any(r.comparison == "adversarial training" for r in found.comparisons)
    # the same seed gives the same interval
    again = row(analyze(study, bin_width=1.0), "ensembles", "adversarial.pgd_accuracy")
    assert (again.ratio_low, again.ratio_high) == (ensembles.ratio_low, ensembles.ratio_high)


def test_size_is_compared_apart_from_architecture(stored):
    """The planted PGD gain comes from ensembles, not from the parameter count (drawn independently): the size
    comparison, single models split at their median count, finds a ratio near 1 where ensembles give about 2."""
    _, study = stored
    found = analyze(study, bin_width=1.0)
    size = row(found, "size", "adversarial.pgd_accuracy")
    singles = [t for t in study.trials if t.user_attrs["spec"]["ensemble"] == 1]
    median = np.median([t.user_attrs["metrics"]["params"] for t in singles])
    assert size.group_a == f"single models of more than {median:.3g} parameters", size
    assert len(singles) * 0.6 <= size.n_a + size.n_b <= len(singles), size  # ensembles are left out
    ensembles = row(found, "ensembles", "adversarial.pgd_accuracy")
    assert ensembles.better == "ensembles" and ensembles.ratio_low > 1.5, ensembles
    assert 0.85 < size.ratio < 1.15 and size.ratio_high < ensembles.ratio_low, size


def test_too_few_trials_in_matched_bins_is_said(tmp_path):
    study = build_study(f"sqlite:///{tmp_path / 'few.db'}", n=6)
    found = analyze(study, bin_width=0.1, min_trials=3)
    ensembles = row(found, "ensembles", "adversarial.pgd_accuracy")
    assert ensembles.ratio is None and "too few trials in matched accuracy bins" in ensembles.note, ensembles
    assert "too few" in ensembles.sentence


def test_matching_on_accuracy_removes_a_difference_that_accuracy_alone_explains(tmp_path):
    """Ensembles are more often the accurate trials and PGD accuracy follows accuracy only: unmatched (one bin
    100 points wide) ensembles look more robust; matched on 1-point bins the interval holds 1."""
    study = optuna.create_study(study_name="confounded", storage=f"sqlite:///{tmp_path / 'c.db'}",
                                directions=["maximize"])
    rng = np.random.default_rng(11)
    for _ in range(120):
        accuracy = float(rng.uniform(0.80, 0.90))
        ensemble = 3 if rng.uniform() < (accuracy - 0.78) / 0.14 else 1
        pgd = (accuracy - 0.5) * float(rng.uniform(0.9, 1.1))
        study.add_trial(optuna.trial.create_trial(
            values=[accuracy], user_attrs={"spec": {"ensemble": ensemble}, "recipe": {},
                                           "metrics": {"accuracy": accuracy, "adversarial.pgd_accuracy": pgd}}))
    naive = row(analyze(study, bin_width=100.0), "ensembles", "adversarial.pgd_accuracy")
    assert naive.ratio_low > 1.0, naive
    matched = row(analyze(study, bin_width=1.0), "ensembles", "adversarial.pgd_accuracy")
    assert matched.ratio_low < 1.0 < matched.ratio_high, matched
    assert 8 <= matched.bins <= 10, matched


def test_bins_holding_one_trial_of_a_group_give_no_interval(tmp_path):
    """Single models one per bin: their spread is unknown, so the ratio comes without an interval, said so."""
    study = optuna.create_study(study_name="lone", storage=f"sqlite:///{tmp_path / 'lone.db'}",
                                directions=["maximize"])
    rng = np.random.default_rng(3)
    for accuracy in (0.805, 0.815, 0.825, 0.835):
        for ensemble in (3, 3, 3, 1):
            pgd = (0.2 if ensemble > 1 else 0.1) * float(rng.uniform(0.8, 1.2))
            study.add_trial(optuna.trial.create_trial(
                values=[accuracy], user_attrs={"spec": {"ensemble": ensemble}, "recipe": {},
                                               "metrics": {"accuracy": accuracy, "adversarial.pgd_accuracy": pgd}}))
    found = row(analyze(study), "ensembles", "adversarial.pgd_accuracy")
    assert (found.n_a, found.n_b, found.bins) == (12, 4, 4) and found.ratio > 1.4, found
    assert found.ratio_low is None and "every matched bin holds one trial of single models" in found.note, found
    assert "interval" not in found.sentence.split("(")[0], found.sentence


def test_cli_prints_tables_and_writes_csv_and_json(stored, tmp_path, capsys):
    url, _ = stored
    assert main(["analyze", "--storage", url, "--study-name", STUDY, "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "PED-ANOVA" in out and "Equal-accuracy comparisons" in out and "mlp.width" in out
    assert "adversarial training: not compared, no trials with adversarial training" in out
    data = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert data["study"] == STUDY and data["completed_trials"] == N_TRIALS and "Mantel-Haenszel" in data["pooling"]
    assert any(r["sentence"].startswith("ensembles: ") for r in data["comparisons"])
    csv_text = (tmp_path / "out" / "analysis.csv").read_text().splitlines()
    assert csv_text[0].startswith("kind,comparison,metric") and any(line.startswith("importance,") for line in csv_text)
    assert main(["analyze", "--storage", url, "--json"]) == 0  # the only study: --study-name may be left out
    assert json.loads(capsys.readouterr().out)["importance"]["cost"]


def test_the_command_module_loads_neither_torch_nor_optuna():
    """``nas --help`` stays fast: the analysis is imported only when the command runs."""
    script = ("import sys, nas.commands.analyze; "
              "assert not {'torch', 'optuna', 'nas.analysis'} & set(sys.modules), sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=PATIENCE)
    assert result.returncode == 0, result.stderr


def test_bad_input_is_one_line_and_exit_2(stored, tmp_path, capsys):
    url, _ = stored
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.create_study(study_name="empty", storage=empty, directions=["maximize"])
    cases = {
        "unknown study": (["--storage", url, "--study-name", "nope"], "no study named 'nope'"),
        "missing storage file": (["--storage", f"sqlite:///{tmp_path / 'absent.db'}"], "no such file"),
        "no completed trials": (["--storage", empty], "has no COMPLETE trial"),
        "bad bin width": (["--storage", url, "--bin-width", "0"], "--bin-width must be"),
    }
    for label, (argv, expected) in cases.items():
        assert main(["analyze", *argv]) == 2, label
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, (label, err)
    assert not (tmp_path / "absent.db").exists()


def test_the_drawing_shows_each_headline_ratio_with_its_interval_and_verdict(stored, tmp_path):
    from nas.analysis import HEADLINE_METRICS
    from nas.dashboard import figures

    _, study = stored
    drawn = analyze(study, metrics=HEADLINE_METRICS, importance=False)
    assert not drawn.importance and {r.metric for r in drawn.comparisons} <= set(HEADLINE_METRICS)
    # limiting the metrics does not move an interval: each comparison keeps its own bootstrap seed
    full = row(analyze(study), "ensembles", "adversarial.pgd_accuracy")
    ensembles = row(drawn, "ensembles", "adversarial.pgd_accuracy")
    assert (ensembles.ratio_low, ensembles.ratio_high) == (full.ratio_low, full.ratio_high)
    figure = figures.comparison_figure(drawn)
    points = {(t.xaxis, t.name): t for t in figure.data}
    assert [a.text for a in figure.layout.annotations][:2] == ["ensembles / single models",
                                                               "outlier exposure / no outlier exposure"]
    planted = points[("x", "adversarial.pgd_accuracy")]
    assert planted.x[0] == pytest.approx(ensembles.ratio)
    assert planted.x[0] + planted.error_x.array[0] == pytest.approx(ensembles.ratio_high)
    assert planted.x[0] - planted.error_x.arrayminus[0] == pytest.approx(ensembles.ratio_low)
    assert planted.marker.color == figures.BETTER_COLORS["a"]
    assert planted.hovertemplate.startswith(ensembles.sentence)
    unplanted = points[("x2", "adversarial.pgd_accuracy")]
    assert unplanted.marker.color == figures.BETTER_COLORS["undecided"]
    assert figure.layout.xaxis.type == "log"
    few = build_study(f"sqlite:///{tmp_path / 'few.db'}", n=4)
    message = figures.comparison_figure(analyze(few, metrics=HEADLINE_METRICS, importance=False))
    assert not message.data and "No equal-accuracy comparison has enough trials" in message.layout.annotations[0].text
