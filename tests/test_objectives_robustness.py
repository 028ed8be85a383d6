"""The robustness objectives discriminate: each score separates a model built to be good at it from
one built to be bad at it (tiny digits CNNs, seeded, CPU, seconds)."""
from __future__ import annotations

import copy
import json
import socket

import numpy as np
import pytest
import torch
from torch import nn

import objectives
import search_spaces
from nas import data, training
from objectives import ood_sets
from objectives.ood import OOD

RECIPE = {"epochs": 8, "batch_size": 64, "lr": 5e-3, "optimizer": "adam", "weight_decay": 0.0, "label_smoothing": 0.0,
          "max_grad_norm": 0.0}


class ScaledLogits(nn.Module):
    """Multiplies a model's logits: k > 1 makes it over-confident; a huge k saturates the softmax so
    gradients vanish for confident inputs (a gradient-masking head)."""

    def __init__(self, model: nn.Module, scale: float) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.scale


@pytest.fixture(scope="module")
def digits() -> data.Dataset:
    return data.load({"name": "digits", "seed": 0, "train_size": 600, "val_size": 200, "val_fraction": 0.15,
                      "test_fraction": 0.15})


@pytest.fixture(scope="module")
def trained(digits: data.Dataset) -> nn.Module:
    spec = {"space": "cnn", "blocks": [{"channels": 16, "kernel": 3, "pool": "max"}], "cardinality": 1,
            "batch_norm": True,
            "activation": "relu", "dropout": 0.0, "hidden": 32, "ensemble": 1, **digits.preprocessing()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run outside conftest's one-thread fixture
    try:
        torch.manual_seed(0)
        model = search_spaces.build(spec)
        training.train(model, RECIPE, digits, torch.device("cpu"), seed=0)
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def context(dataset: data.Dataset, **extra) -> objectives.EvaluationContext:
    return objectives.EvaluationContext(x=dataset.val_x, y=dataset.val_y, num_classes=dataset.num_classes,
                                        train_x=dataset.train_x, train_y=dataset.train_y, **extra)


def evaluate(name: str, model: nn.Module, dataset: data.Dataset, **options) -> objectives.ObjectiveResult:
    result = objectives.get(name)(**options).evaluate(model, context(dataset))
    json.dumps(result.details)  # details must be plain JSON for the dashboard
    return result


# ------------------------------------------------------------------------------------------ adversarial
def test_pgd_is_at_most_fgsm_is_at_most_clean_on_a_plain_model(trained, digits):
    result = evaluate("adversarial", trained, digits)
    m = result.metrics
    assert m["pgd_accuracy"] <= m["fgsm_accuracy"] <= m["clean_accuracy"]
    assert m["clean_accuracy"] - m["pgd_accuracy"] > 0.2  # the attack really bites a plain model
    assert m["noise_accuracy"] > m["pgd_accuracy"] + 0.2  # and far more than random noise of the same size
    curve = [point["accuracy"] for point in result.details["eps_curve"]]
    eps = result.details["eps"]
    # five points by default, the clean one first, all on the same samples (so the curve starts at clean accuracy)
    assert [point["eps"] for point in result.details["eps_curve"]] == pytest.approx([0, eps / 2, eps, 1.5 * eps,
                                                                                     2 * eps])
    assert curve[0] == m["clean_accuracy"] and curve[2] == m["pgd_accuracy"]
    assert curve == sorted(curve, reverse=True) and curve[-1] < 0.2
    assert 0.0 < result.details["median_min_eps"] < 2 * result.details["eps"]
    assert result.details["masking_flags"] == [] and m["masking_flags"] == 0
    assert result.value == m["pgd_accuracy"]


def test_masking_flag_fires_on_a_saturating_head(trained, digits):
    masked = ScaledLogits(trained, 1000.0)  # same decisions, vanishing gradients
    result = evaluate("adversarial", masked, digits)
    assert result.metrics["pgd_accuracy"] > 0.8  # PGD "fails" ...
    assert "noise_as_strong_as_pgd" in result.details["masking_flags"]  # ... and the check says why not to trust it
    assert result.metrics["masking_flags"] == len(result.details["masking_flags"]) >= 1
    assert result.details["median_min_eps"] is None  # more than half survive the largest eps tried


def test_adversarial_attacks_stay_in_the_data_range_and_eps_ball(trained, digits):
    from objectives.adversarial import fgsm_attack, pgd_attack

    x, y = digits.val_x[:32], digits.val_y[:32]
    for perturbed in (pgd_attack(trained, x, y, 0.1, 5, 0.05, (0.0, 1.0)), fgsm_attack(trained, x, y, 0.1, (0.0, 1.0))):
        assert perturbed.min() >= 0.0 and perturbed.max() <= 1.0
        assert (perturbed - x).abs().max() <= 0.1 + 1e-6
        assert (perturbed != x).any()


# ---------------------------------------------------------------------------------------------- ood
def test_in_distribution_against_held_out_in_distribution_scores_about_one_half(trained, digits, monkeypatch):
    held_out = digits.test_x

    def same_distribution(reference, labels, n, generator):
        return held_out[torch.randint(len(held_out), (n,), generator=generator)]

    family = ood_sets.OutlierFamily("held_out", "test split", same_distribution)
    monkeypatch.setitem(ood_sets._FAMILIES, "held_out", family)
    result = evaluate("ood", trained, digits, sets=["held_out", "uniform"], samples=200)
    assert abs(result.metrics["auroc_held_out"] - 0.5) < 0.1
    assert result.metrics["auroc_uniform"] > 0.7  # the same scorer does see real outliers
    assert result.value == result.metrics["min_auroc"] == result.metrics["auroc_held_out"]


def test_ood_details_follow_the_dashboard_schema(trained, digits):
    result = evaluate("ood", trained, digits, sets=["uniform", "letters"], samples=64, aggregate="mean")
    details = result.details
    assert details["detector"] == "msp"
    for row in [details["in_distribution"], *details["sets"].values()]:
        assert len(row["histogram"]["edges"]) == 21 and sum(row["histogram"]["counts"]) == 64
    assert set(details["sets"]) == {"uniform", "letters"}
    assert result.value == pytest.approx(result.metrics["mean_auroc"])
    assert result.metrics["max_ood_confidence"] == max(row["mean_confidence"] for row in details["sets"].values())


@pytest.mark.parametrize("detector", ["energy", "mahalanobis"])
def test_other_detectors_separate_noise(trained, digits, detector):
    assert evaluate("ood", trained, digits, sets=["uniform"], samples=100, detector=detector).value > 0.7


def test_ensembles_are_scored_on_their_averaged_softmax(digits):
    spec = {"space": "cnn", "blocks": [{"channels": 8, "kernel": 3, "pool": "max"}], "cardinality": 1,
            "batch_norm": False,
            "activation": "relu", "dropout": 0.0, "hidden": 0, "ensemble": 2, **digits.preprocessing()}
    torch.manual_seed(0)
    ensemble = search_spaces.build(spec).eval()
    subset, _ = context(digits).subset(50)
    with torch.no_grad():
        averaged = torch.stack([member(subset).softmax(1) for member in ensemble.members]).mean(0).max(1).values.mean()
    result = objectives.get("ood")(sets=["uniform"], samples=50).evaluate(ensemble, context(digits))
    assert result.details["in_distribution"]["mean_confidence"] == pytest.approx(float(averaged), abs=1e-5)
    energy = objectives.get("ood")(sets=["uniform"], samples=50, detector="energy").evaluate(ensemble, context(digits))
    assert energy.value != 0.5  # members' energies, not the (constant) energy of log-probabilities


def test_ood_refuses_sets_the_model_was_trained_on(trained, digits):
    ctx = context(digits, trained_outlier_families=("uniform",))
    with pytest.raises(ValueError, match="outlier-exposure training"):
        objectives.get("ood")(sets=["uniform"]).evaluate(trained, ctx)


def test_ood_options_are_checked():
    with pytest.raises(ValueError, match="allowed: "):
        OOD(sets=["uniform", "no-such-set"])
    with pytest.raises(ValueError, match="once"):
        OOD(sets=["uniform", "uniform"])


# ----------------------------------------------------------------------------------------- ood sets
def test_letters_render_deterministically_from_installed_fonts_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the letters set tried to open a network connection")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    ood_sets.render_letters.cache_clear()
    first = ood_sets.render_letters(40, 28, 28, 3)
    ood_sets.render_letters.cache_clear()
    again = ood_sets.render_letters(40, 28, 28, 3)
    other = ood_sets.render_letters(40, 28, 28, 4)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.shape == (40, 28, 28) and 0.0 <= first.min() and first.max() <= 1.0
    ink = first.reshape(40, -1).mean(axis=1)
    assert (ink > 0.02).all() and (ink < 0.6).all()  # every image holds a glyph on a dark background
    assert len({round(float(v), 4) for v in ink}) > 20  # varied letters, fonts, sizes and positions
    assert all(path.is_file() and path.suffix == ".ttf" for path in ood_sets.letter_fonts())


@pytest.mark.parametrize("name", ood_sets.available())
def test_every_family_is_seeded_shaped_and_in_range(name):
    reference = torch.rand(30, 1, 12, 12) * 0.5
    labels = torch.arange(30) % 3

    def make(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return ood_sets.generate(name, reference, 17, generator, labels, data_range=(0.0, 2.0))

    out = make(0)
    assert out.shape == (17, 1, 12, 12)
    assert out.min() >= 0.0 and out.max() <= 2.0
    assert torch.equal(out, make(0)) and not torch.equal(out, make(1))


def test_patch_permutation_keeps_pixels_and_moves_patches():
    reference = torch.arange(64.0).view(1, 1, 8, 8) / 64
    out = ood_sets.generate("patch_permuted", reference, 4, torch.Generator().manual_seed(0))
    for image in out:
        assert torch.equal(image.flatten().sort().values, reference.flatten().sort().values)
        corners = [(r, c) for r in range(0, 8, 2) for c in range(0, 8, 2)]
        patches = {tuple(image[0, r : r + 2, c : c + 2].flatten().tolist()) for r, c in corners}
        originals = {tuple(reference[0, 0, r : r + 2, c : c + 2].flatten().tolist()) for r, c in corners}
        assert patches == originals  # whole 2x2 patches move
    assert not torch.equal(out[0], reference[0])


def test_image_only_sets_are_skipped_on_signals():
    signal = torch.rand(10, 1, 40)
    assert not ood_sets.applicable("letters", signal) and ood_sets.applicable("shuffled", signal)
    with pytest.raises(ValueError, match="image inputs"):
        ood_sets.generate("digits", signal, 3, torch.Generator())


# ---------------------------------------------------------------------------------- explainability
def randomised(model: nn.Module) -> nn.Module:
    """The same architecture with fresh random weights (Adebayo et al. 2018 sanity check)."""
    clone = copy.deepcopy(model)
    torch.manual_seed(1)
    for module in clone.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        if hasattr(module, "reset_running_stats"):
            module.reset_running_stats()
    return clone.eval()


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients"])
def test_trained_attributions_beat_randomised_weights(trained, digits, method):
    good = evaluate("explainability", trained, digits, method=method, samples=48)
    bad = evaluate("explainability", randomised(trained), digits, method=method, samples=48)
    assert good.metrics["deletion"] > bad.metrics["deletion"] + 0.2
    assert good.metrics["deletion"] > 0.2 and abs(bad.metrics["deletion"]) < 0.15  # random weights: about chance
    assert good.metrics["deletion_auc"] < good.metrics["random_deletion_auc"]
    assert good.metrics["insertion_auc"] > good.metrics["random_insertion_auc"]
    # paired bootstrap intervals: around the value, and the two models' intervals do not overlap
    for result in (good, bad):
        low, high = result.intervals["deletion"]
        assert low <= result.metrics["deletion"] <= high and high - low > 0.01
    assert bad.intervals["deletion"][1] < good.intervals["deletion"][0]
    assert good.samples["deletion"] == 48


def test_explainability_details_and_sensitivity(trained, digits):
    result = evaluate("explainability", trained, digits, samples=16, steps=5, sensitivity=True, sensitivity_samples=4,
                      score="mean")
    details = result.details
    assert len(details["deletion_curve"]) == len(details["insertion_curve"]) == 6
    assert details["deletion_curve"][0] == details["insertion_curve"][-1]  # nothing removed == everything inserted
    assert len(details["examples"]) == 4
    example = details["examples"][0]
    assert np.array(example["image"]).shape == np.array(example["attribution"]).shape == (8, 8)
    assert np.abs(np.array(example["attribution"])).max() <= 1.0
    assert result.metrics["sensitivity"] > 0
    assert result.value == pytest.approx((result.metrics["deletion"] + result.metrics["insertion"]) / 2)
    low, high = result.intervals["explainability"]  # the mean score's own interval, resampled jointly
    assert low <= result.value <= high
    assert result.settings["score"] == "mean" and result.samples["sensitivity"] == 4


# ------------------------------------------------------------------------------------- calibration
def test_over_confident_model_has_higher_ece(trained, digits):
    original = evaluate("calibration", trained, digits)
    over = evaluate("calibration", ScaledLogits(trained, 10.0), digits)
    assert over.value > original.value + 0.02
    assert over.metrics["nll"] > 2 * original.metrics["nll"]
    bins = over.details["reliability"]
    assert len(bins["bin_count"]) == 15 and sum(bins["bin_count"]) == len(digits.val_x)
    assert bins["bin_count"][-1] > 0.9 * len(digits.val_x)  # nearly everything lands in the top bin


def test_ece_of_a_perfectly_calibrated_toy_is_zero_and_of_a_liar_is_large():
    from objectives.calibration import expected_calibration_error

    confidence = torch.full((100,), 0.7)
    honest = torch.arange(100) < 70
    assert expected_calibration_error(confidence, honest) == pytest.approx(0.0, abs=1e-6)
    assert expected_calibration_error(torch.full((100,), 0.99), honest) == pytest.approx(0.29, abs=1e-6)
