"""The strong attack judges what the PGD screen cannot: it is never weaker than the screen, it sees through a
saturating head (APGD-DLR) and a gradient-free input quantisation (Square), the gap to the screen is flagged,
and the screen itself says when it stopped before converging. Tiny digits CNNs, seeded, CPU, seconds."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import objectives
from nas import data
from objectives.adversarial import MASKING_FLAGS, pgd_attack
from objectives.strong_attack import strong_attack

from conftest import DIGITS, train_tiny

RECIPE = {"epochs": 8, "batch_size": 64, "lr": 5e-3, "optimizer": "adam", "weight_decay": 0.0, "label_smoothing": 0.0,
          "max_grad_norm": 0.0}
FGSM = {"enabled": True, "attack": "fgsm", "eps": 0.1, "steps": 3, "fraction": 0.5}
# small budgets keep the tests fast; they are still far stronger than 5 steps of PGD
FAST = {"strong_steps": 30, "square_queries": 50}


class ScaledLogits(nn.Module):
    """Logits times 1e4: the same decisions, but a saturated softmax whose cross-entropy gradient vanishes."""

    def __init__(self, model: nn.Module, scale: float) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.scale


class QuantisedInput(nn.Module):
    """Rounds the input to a few grey levels first: the gradient is zero almost everywhere (no attack by
    gradients can move), yet small perturbations that cross a rounding step still change the decision."""

    def __init__(self, model: nn.Module, levels: int) -> None:
        super().__init__()
        self.model, self.levels = model, levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * self.levels) / self.levels)


@pytest.fixture(scope="module")
def digits() -> data.Dataset:
    return data.load(DIGITS)


def _train(dataset: data.Dataset, **schemes) -> nn.Module:
    return train_tiny(dataset, {**RECIPE, **schemes})


@pytest.fixture(scope="module")
def plain(digits) -> nn.Module:
    return _train(digits)


@pytest.fixture(scope="module")
def fgsm_trained(digits) -> nn.Module:
    return _train(digits, adversarial=FGSM)


def evaluate(model: nn.Module, dataset: data.Dataset, **options) -> objectives.ObjectiveResult:
    context = objectives.EvaluationContext(x=dataset.val_x, y=dataset.val_y, num_classes=dataset.num_classes,
                                           seed=3, split="test")
    result = objectives.get("adversarial")(**options).evaluate(model, context)
    json.dumps(result.details), json.dumps(result.settings)  # plain JSON for the dashboard and the card
    return result


# ------------------------------------------------------------------------------------------ the attack itself
def test_strong_attack_is_at_most_the_screen_on_an_fgsm_trained_model(fgsm_trained, digits):
    x, y = digits.val_x[:120], digits.val_y[:120]
    torch.manual_seed(0)
    screened = pgd_attack(fgsm_trained, x, y, 0.1, 5, 0.05, (0.0, 1.0))
    with torch.no_grad():
        pgd = float((fgsm_trained(screened).argmax(dim=1) == y).float().mean())
    # no head start from the screen: the strong attack alone must still be at least as strong
    result = strong_attack(fgsm_trained, x, y, 0.1, (0.0, 1.0), 10, steps=30, queries=50, seed=1)
    assert result.accuracy <= pgd
    assert 0.2 < result.accuracy < float(result.clean.float().mean())  # it bites, and the model is not broken
    assert result.flipped["apgd-ce"] > 0 and set(result.seconds) == {"apgd-ce", "apgd-dlr", "square"}
    assert bool((result.robust <= result.clean).all())  # robust implies correct


def test_strong_attack_is_seeded_and_leaves_numpy_alone(plain, digits):
    x, y = digits.val_x[:60], digits.val_y[:60]
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    runs = [strong_attack(plain, x, y, 0.1, (0.0, 1.0), 10, steps=10, queries=20, seed=7).robust for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    assert np.array_equal(np.random.get_state()[1], before)  # the caller's numpy stream is untouched


def test_square_breaks_an_input_quantisation_that_gradients_cannot_see(plain, digits):
    quantised = QuantisedInput(plain, 8).eval()
    x, y = digits.val_x[:100], digits.val_y[:100]
    result = strong_attack(quantised, x, y, 0.1, (0.0, 1.0), 10, steps=20, queries=100, seed=0)
    assert result.flipped["apgd-ce"] == result.flipped["apgd-dlr"] == 0  # zero gradients: APGD cannot move
    assert result.flipped["square"] >= 5  # the gradient-free check still finds adversarial inputs


def test_attacks_that_do_not_fit_the_inputs_are_skipped_with_a_reason():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 2)).eval()  # two classes, flat inputs
    x = torch.rand(40, 6)
    y = model(x).argmax(dim=1)
    result = strong_attack(model, x, y, 0.05, (0.0, 1.0), 2, steps=10, queries=10)
    assert set(result.skipped) == {"apgd-dlr", "square"}
    assert "3 classes" in result.skipped["apgd-dlr"] and "image" in result.skipped["square"]
    assert "apgd-ce" in result.flipped
    with pytest.raises(ValueError, match=r"unknown attack\(s\) \['fab'\]; allowed"):
        strong_attack(model, x, y, 0.05, (0.0, 1.0), 2, attacks=("fab",))


# ------------------------------------------------------------------------------------------ in the objective
def test_strong_gap_flags_a_saturating_head_and_not_an_honest_model(plain, fgsm_trained, digits):
    masked = evaluate(ScaledLogits(plain, 1e4), digits, strong=True, samples=200, strong_samples=200, **FAST)
    honest = evaluate(fgsm_trained, digits, strong=True, samples=200, strong_samples=200, **FAST)
    m = masked.metrics
    assert m["pgd_accuracy"] > 0.8  # the screen is fooled by the saturated softmax ...
    assert m["strong_gap"] > 0.25 and m["strong_accuracy"] < m["pgd_accuracy"] - 0.25  # ... the judge is not
    assert m["strong_gap"] == pytest.approx(m["pgd_accuracy"] - m["strong_accuracy"])
    assert masked.details["strong"]["broken_by"]["apgd-dlr"] > 0  # the scale-free loss did it
    assert "strong_gap" in masked.details["masking_flags"]
    assert MASKING_FLAGS["strong_gap"] in masked.details["masking_reasons"]
    assert m["masking_flags"] == len(masked.details["masking_flags"])
    assert honest.metrics["strong_gap"] < 0.05 and "strong_gap" not in honest.details["masking_flags"]
    assert honest.metrics["strong_accuracy"] <= honest.metrics["pgd_accuracy"]


def test_strong_gap_tolerance_is_an_option(plain, digits):
    strict = evaluate(plain, digits, strong=True, samples=100, strong_samples=100, strong_tolerance=0.0, **FAST)
    assert strict.metrics["strong_gap"] > 0.0  # 5 PGD steps always miss a few samples on a plain model
    assert "strong_gap" in strict.details["masking_flags"]


def test_every_accuracy_has_its_interval_samples_and_settings(fgsm_trained, digits):
    result = evaluate(fgsm_trained, digits, strong=True, samples=100, strong_samples=150, **FAST)
    accuracies = ("clean_accuracy", "fgsm_accuracy", "pgd_accuracy", "noise_accuracy", "strong_accuracy")
    for metric in (*accuracies, "strong_gap", "median_min_eps"):
        low, high = result.intervals[metric]
        assert low <= result.metrics[metric] <= high, metric
        assert high - low > 0.01, metric  # a real interval, not the point repeated
    assert {metric: result.samples[metric] for metric in accuracies} == {
        "clean_accuracy": 100, "fgsm_accuracy": 100, "pgd_accuracy": 100, "noise_accuracy": 100,
        "strong_accuracy": 150}
    assert result.samples["strong_gap"] == 100  # compared on the samples both attacks saw
    settings = result.settings
    assert "upper bound" in settings["pgd"]["role"] and settings["pgd"]["steps"] == 5
    assert settings["strong"]["attacks"] == ["apgd-ce", "apgd-dlr", "square"]
    assert settings["strong"]["apgd_steps"] == 30 and settings["strong"]["samples"] == 150
    assert settings["eps"] == 0.1


def test_the_search_screen_stays_cheap_and_verify_turns_the_strong_attack_on(plain, digits):
    cls = objectives.get("adversarial")
    assert cls().options["strong"] is False and cls.verify_options["strong"] is True
    assert cls.verify_options["strong_samples"] == cls.verify_options["samples"] == 1000
    result = evaluate(plain, digits, samples=64)
    assert "strong_accuracy" not in result.metrics and "strong" not in result.settings
    assert "strong" not in result.details

    from nas.requirements import metric_direction, requirement_metrics
    from nas.verify import budget_options

    assert requirement_metrics(["adversarial"])["adversarial.strong_gap"] == ("adversarial", "strong_gap")
    assert metric_direction("adversarial", "strong_gap") == "minimize"
    assert metric_direction("adversarial", "strong_accuracy") == "maximize"
    assert {"samples", "strong_samples"} <= set(budget_options(cls))  # --attack-samples sets both


# ------------------------------------------------------------------------------------------ convergence
def test_convergence_flag_fires_on_too_few_steps_and_not_on_a_converged_attack(plain, digits):
    rushed = evaluate(plain, digits, samples=150, pgd_steps=2)
    converged = evaluate(plain, digits, samples=150, pgd_steps=20)
    assert rushed.details["convergence"]["last_step_share"] > 0.2
    assert "pgd_not_converged" in rushed.details["masking_flags"]
    assert converged.details["convergence"]["last_step_share"] < 0.05
    assert "pgd_not_converged" not in converged.details["masking_flags"]
    # the rushed screen over-states robustness: that is what the flag warns about
    assert rushed.metrics["pgd_accuracy"] > converged.metrics["pgd_accuracy"]


def test_convergence_is_not_judged_when_gradients_vanish(plain, digits):
    masked = evaluate(ScaledLogits(plain, 1e4), digits, samples=100, pgd_steps=2)
    assert masked.details["convergence"]["last_step_share"] is None  # the loss never rose: masking, not slowness
    assert "pgd_not_converged" not in masked.details["masking_flags"]
    assert "noise_as_strong_as_pgd" in masked.details["masking_flags"]


def test_margin_loss_and_restarts_strengthen_the_screen_on_a_saturating_head(plain, digits):
    masked = ScaledLogits(plain, 1e4)
    cross_entropy = evaluate(masked, digits, samples=100)
    margin = evaluate(masked, digits, samples=100, pgd_loss="margin", pgd_restarts=2)
    assert margin.metrics["pgd_accuracy"] < cross_entropy.metrics["pgd_accuracy"] - 0.25
    assert margin.settings["pgd"]["loss"] == "logit margin" and margin.settings["pgd"]["restarts"] == 2
