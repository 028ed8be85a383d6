"""Held-out OOD: verify (test split) scores on other inputs than the search (validation split) -- other seeds, other
fonts, other digit images -- every model of a study on the same ones; near/far groups, extra detectors and
bootstrap intervals (issue 9, item 1)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import objectives
import search_spaces
from nas import data
from nas.verify import budget_options
from objectives import ood_sets
from conftest import DIGITS, train_tiny
from objectives.ood import DEFAULT_SETS, OOD, _JointBootstrap, auroc_along, fpr95_along, separation

RECIPE = {"epochs": 12, "batch_size": 64, "lr": 5e-3, "optimizer": "adam", "weight_decay": 0.0,
          "label_smoothing": 0.0, "max_grad_norm": 0.0}
OUTLIERS = {"enabled": True, "families": ["mixup", "patch_permuted", "smoothed_noise"], "weight": 0.5, "fraction": 0.5}
SPEC = {"space": "cnn", "blocks": [{"channels": 8, "kernel": 3, "pool": "max"}], "cardinality": 1, "batch_norm": True,
        "activation": "relu", "dropout": 0.0, "hidden": 16, "ensemble": 1}


@pytest.fixture(scope="module")
def digits() -> data.Dataset:
    return data.load(DIGITS)


def train(dataset: data.Dataset, **schemes) -> nn.Module:
    return train_tiny(dataset, {**RECIPE, **schemes}, SPEC)


@pytest.fixture(scope="module")
def plain(digits: data.Dataset) -> nn.Module:
    return train(digits)


def context(dataset: data.Dataset, split: str = "val", seed: int = 0) -> objectives.EvaluationContext:
    x, y = (dataset.val_x, dataset.val_y) if split == "val" else (dataset.test_x, dataset.test_y)
    return objectives.EvaluationContext(x=x, y=y, num_classes=dataset.num_classes, seed=seed, split=split,
                                        train_x=dataset.train_x, train_y=dataset.train_y)


class Recorder(nn.Module):
    """Passes inputs through to ``model`` and keeps every batch it was shown."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.model(x)


def shown(model: nn.Module, ctx: objectives.EvaluationContext, **options) -> tuple[torch.Tensor, OOD]:
    recorder = Recorder(model)
    result = OOD(**options).evaluate(recorder, ctx)
    return torch.cat(recorder.seen), result


def ood_inputs(name: str, ctx: objectives.EvaluationContext, n: int = 60) -> torch.Tensor:
    """The inputs of OOD set ``name`` that the objective shows a model (after the ``n`` in-distribution ones)."""
    seen, _ = shown(nn.Flatten(), ctx, sets=[name], samples=n)  # any model: the objective generates the inputs
    assert len(seen) == 2 * n
    return seen[n:]


# ------------------------------------------------------------------------------------------ held out
@pytest.mark.parametrize("name", ood_sets.available())
def test_verify_scores_every_set_on_other_inputs_than_the_search(digits, name):
    search, verify = ood_inputs(name, context(digits, "val")), ood_inputs(name, context(digits, "test"))
    assert search.shape == verify.shape
    # no image of the test split's set is one of the validation split's (pairwise, not only as a whole tensor)
    distances = torch.cdist(search.flatten(1).double(), verify.flatten(1).double())
    assert float(distances.min()) > 0, f"{name}: verify repeats an input of the search"
    again = ood_inputs(name, context(digits, "val"))
    assert torch.equal(search, again), f"{name}: the same study and split must give the same inputs"


def test_the_study_seed_changes_the_sets_and_the_trial_does_not(digits, plain):
    """Every model of a study is scored on the same inputs, whatever the global RNG; another study on others."""
    torch.manual_seed(1)
    first, _ = shown(plain, context(digits, seed=3), sets=["uniform", "letters", "scribbles"], samples=40)
    other_model = search_spaces.build({**SPEC, **digits.preprocessing()}).eval()  # another trial's architecture
    torch.manual_seed(2)
    second, _ = shown(other_model, context(digits, seed=3), sets=["uniform", "letters", "scribbles"], samples=40)
    assert torch.equal(first, second)
    third, _ = shown(plain, context(digits, seed=4), sets=["uniform", "letters", "scribbles"], samples=40)
    assert first.shape == third.shape and not torch.equal(first[40:], third[40:])  # the OOD part (after ID)
    test, _ = shown(plain, context(digits, "test", seed=3), sets=["uniform", "letters", "scribbles"], samples=40)
    assert not torch.equal(first[40:], test[40:])


def test_letter_font_pools_are_disjoint_installed_typefaces(monkeypatch):
    val, test = set(ood_sets.FONT_POOLS["val"]), set(ood_sets.FONT_POOLS["test"])
    assert val and test and not val & test
    family = {name.split("-")[0].removesuffix(".ttf") for name in val}
    assert not family & {name.split("-")[0].removesuffix(".ttf") for name in test}  # typefaces, not only files
    assert set(ood_sets.font_names("val")).isdisjoint(ood_sets.font_names("test"))
    assert len(ood_sets.font_names("val")) == len(val) and len(ood_sets.font_names("test")) == len(test)

    used: dict[str, set[str]] = {"val": set(), "test": set()}
    draw = ood_sets._draw_glyphs

    def recording(characters, font_files, n, height, width, seed):
        used[current].update(font_files)
        return draw(characters, font_files, n, height, width, seed)

    monkeypatch.setattr(ood_sets, "_draw_glyphs", recording)
    reference = torch.rand(5, 1, 16, 16)
    for current in ("val", "test"):
        ood_sets.render_letters.cache_clear()
        ood_sets.render_glyphs.cache_clear()
        for name in ("letters", "glyphs", "typed_digits"):
            ood_sets.generate(name, reference, 8, torch.Generator().manual_seed(0), split=current)
    ood_sets.render_letters.cache_clear()
    ood_sets.render_glyphs.cache_clear()
    names = {split: {font.rsplit("/", 1)[-1] for font in fonts} for split, fonts in used.items()}
    assert names["val"] == val and names["test"] == test


def test_glyphs_of_every_font_have_ink():
    for split in ood_sets.SPLITS:
        for font in ood_sets.fonts(split):
            images = ood_sets._draw_glyphs(ood_sets.LETTERS + ood_sets.LOWERCASE + ood_sets.DIGITS, (str(font),),
                                           12, 16, 16, 0)
            ink = images.reshape(12, -1).mean(axis=1)
            assert (ink > 0.005).all() and (ink < 0.7).all(), font.name  # a glyph on black, even a thin 'l'


def test_digit_pools_are_disjoint_halves_and_each_split_draws_from_its_own():
    val, test = ood_sets.digit_pool("val"), ood_sets.digit_pool("test")
    every = ood_sets._digit_images().flatten(1)
    assert not set(val) & set(test) and len(val) + len(test) == len(every) and abs(len(val) - len(test)) <= 1
    reference = torch.rand(4, 1, 8, 8)  # the digits' own size: resizing is the identity
    for split, own, other in (("val", val, test), ("test", test, val)):
        drawn = ood_sets.generate("digits", reference, 50, torch.Generator().manual_seed(0), split=split).flatten(1)
        assert (torch.cdist(drawn, every[own]).min(dim=1).values < 1e-6).all()
        assert (torch.cdist(drawn, every[other]).min(dim=1).values > 1e-3).all()


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="split must be one of val, test"):
        ood_sets.generate("letters", torch.rand(3, 1, 8, 8), 2, torch.Generator(), split="train")


# ------------------------------------------------------------------------------------- groups, detectors
def test_every_family_has_a_group_and_the_defaults_hold_both():
    assert {ood_sets.group(name) for name in ood_sets.available()} == {"near", "far"}
    assert {ood_sets.group(name) for name in DEFAULT_SETS} == {"near", "far"}
    hard = {"binary_noise", "constant", "glyphs", "scribbles"}
    assert hard <= set(DEFAULT_SETS)
    assert not {"digits", "typed_digits"} & set(DEFAULT_SETS)  # in-distribution in meaning for digit data


def test_near_and_far_worst_cases_beside_the_overall_worst(digits, plain):
    result = OOD(samples=100).evaluate(plain, context(digits))
    metrics = result.metrics
    near = [name for name in DEFAULT_SETS if ood_sets.group(name) == "near"]
    far = [name for name in DEFAULT_SETS if ood_sets.group(name) == "far"]
    assert metrics["near_min_auroc"] == min(metrics[f"auroc_{name}"] for name in near)
    assert metrics["far_min_auroc"] == min(metrics[f"auroc_{name}"] for name in far)
    assert metrics["min_auroc"] <= metrics["near_min_auroc"] and metrics["min_auroc"] <= metrics["far_min_auroc"]
    assert metrics["min_auroc"] == min(metrics["near_min_auroc"], metrics["far_min_auroc"]) == result.value
    assert metrics["max_fpr95"] == max(metrics[f"fpr95_{name}"] for name in DEFAULT_SETS)
    assert result.settings["sets"] == {"near": near, "far": far}
    assert result.settings["val_fonts"] == ood_sets.font_names("val")
    assert {name: row["group"] for name, row in result.details["sets"].items()} == \
        {name: ood_sets.group(name) for name in DEFAULT_SETS}
    for metric in ("near_min_auroc", "far_min_auroc", "energy_min_auroc", "maxlogit_max_fpr95"):
        assert metric in OOD.metrics  # usable as requirements (ood.near_min_auroc ...)


def test_intervals_hold_every_value_and_samples_are_reported(digits, plain):
    result = OOD(samples=100, sets=["uniform", "binary_noise", "inverted", "letters"]).evaluate(plain, context(digits))
    assert set(result.intervals) == set(result.metrics) - {"ood"} and set(result.samples) >= set(result.intervals)
    for metric, (low, high) in result.intervals.items():
        value = result.metrics[metric]
        assert math.isfinite(low) and math.isfinite(high) and low <= value <= high, metric
        assert result.samples[metric] == 100
    low, high = result.intervals["auroc_letters"]
    assert 0.0 < high - low < 0.4  # a real interval, not a point
    again = OOD(samples=100, sets=["uniform", "binary_noise", "inverted", "letters"]).evaluate(plain, context(digits))
    assert again.intervals == result.intervals  # seeded


def test_verify_reports_energy_and_max_logit_beside_msp_and_keeps_its_value(digits, plain):
    options = {**OOD.verify_options, "samples": 100, "sets": ["uniform", "gaussian", "letters", "scribbles"]}
    assert {"energy", "maxlogit"} <= set(OOD.verify_options["extra_detectors"])
    result = OOD(**options).evaluate(plain, context(digits, "test"))
    for detector in ("energy", "maxlogit"):
        for metric in ("min_auroc", "near_min_auroc", "far_min_auroc", "max_fpr95"):
            name = f"{detector}_{metric}"
            low, high = result.intervals[name]
            assert low <= result.metrics[name] <= high
        per_set = result.details["detectors"][detector]
        assert result.metrics[f"{detector}_min_auroc"] == min(row["auroc"] for row in per_set.values())
    assert "msp_min_auroc" not in result.metrics  # the configured detector's are the plain names
    assert result.value == result.metrics["min_auroc"] == min(result.metrics[f"auroc_{s}"] for s in options["sets"])
    assert result.settings["extra_detectors"] == ["energy", "maxlogit"] and "test_fonts" in result.settings
    energy = OOD(**{**options, "detector": "energy"}).evaluate(plain, context(digits, "test"))
    assert energy.value == pytest.approx(result.metrics["energy_min_auroc"])
    assert energy.metrics["msp_min_auroc"] == pytest.approx(result.metrics["min_auroc"])
    assert "energy_min_auroc" not in energy.metrics


def test_verify_budget_flag_sets_the_samples_not_the_resamples():
    assert budget_options(OOD) == ["samples"]
    assert OOD.verify_options["samples"] >= 1000
    assert OOD.verify_options["resamples"] > OOD.params["resamples"]["default"]
    with pytest.raises(ValueError, match="allowed: msp, energy, maxlogit, mahalanobis"):
        OOD(extra_detectors=["odin"])


# ----------------------------------------------------------------------------------------- statistics
def test_vectorized_statistics_equal_pytorch_ood_on_ties():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n_id, n_ood = rng.integers(2, 50, size=2)
        inside = rng.integers(0, rng.integers(2, 12), size=n_id).astype(float)
        outside = rng.integers(0, rng.integers(2, 12), size=n_ood).astype(float) + rng.integers(0, 3)
        area, fpr95 = separation(torch.tensor(inside), torch.tensor(outside))
        assert auroc_along(inside, outside) == pytest.approx(area, abs=1e-12)
        assert fpr95_along(inside, outside) == pytest.approx(fpr95, abs=1e-12)
    rows_id, rows_ood = rng.normal(size=(6, 40)), rng.normal(0.5, 1.0, size=(6, 30))
    expected = np.array([separation(torch.tensor(a), torch.tensor(b)) for a, b in zip(rows_id, rows_ood)])
    np.testing.assert_allclose(auroc_along(rows_id, rows_ood), expected[:, 0])
    np.testing.assert_allclose(fpr95_along(rows_id, rows_ood), expected[:, 1])


def test_bootstrap_intervals_cover_a_known_auroc():
    """N(0, 1) in-distribution against N(1, 1) OOD scores: AUROC = Phi(1 / sqrt 2) = 0.7602."""
    truth = 0.5 * (1 + math.erf(0.5))
    covered = 0
    for seed in range(60):
        generator = torch.Generator().manual_seed(seed)
        inside, outside = torch.randn(120, generator=generator), torch.randn(120, generator=generator) + 1.0
        low, high = _JointBootstrap(inside, [outside], seed=seed, resamples=200).interval(lambda a, f: a[0])
        covered += low <= truth <= high
    assert covered >= 52  # 95% nominal; 52 of 60 leaves room for the percentile bootstrap's small-sample slack


def test_joint_bootstrap_worst_case_interval_lies_below_the_sets():
    generator = torch.Generator().manual_seed(0)
    inside = torch.randn(150, generator=generator)
    easy, hard = torch.randn(150, generator=generator) + 3.0, torch.randn(150, generator=generator) + 0.3
    joint = _JointBootstrap(inside, [easy, hard], seed=0, resamples=200)
    worst, hard_alone = joint.interval(lambda a, f: a.min(axis=0)), joint.interval(lambda a, f: a[1])
    easy_alone = joint.interval(lambda a, f: a[0])
    assert worst[1] <= hard_alone[1] + 1e-12 and worst[1] < easy_alone[0]
    assert joint.interval(lambda a, f: f.max(axis=0))[0] >= joint.interval(lambda a, f: f[0])[0]


def test_a_perfectly_separated_set_gets_a_rule_of_three_interval_not_a_point():
    """Every resample of a perfectly separated set agrees, so the bootstrap alone would claim [1, 1]."""
    generator = torch.Generator().manual_seed(0)
    inside, far = torch.rand(150, generator=generator), torch.rand(100, generator=generator) + 5.0
    joint = _JointBootstrap(inside, [far, -far], seed=0, resamples=200)
    assert joint.interval(lambda a, f: a[0]) == pytest.approx((1.0 - 3.0 / 100, 1.0))  # 100: the smaller sample
    assert joint.interval(lambda a, f: f[0]) == pytest.approx((0.0, 3.0 / 100))  # no OOD input passes as ID
    assert joint.interval(lambda a, f: a[1]) == pytest.approx((0.0, 3.0 / 100))  # perfectly wrong: bounded too
    # only an agreement at a bound of [0, 1] is widened (the mean of a perfect and a perfectly wrong set is not)
    assert joint.interval(lambda a, f: a.mean(axis=0)) == pytest.approx((0.5, 0.5))


# ----------------------------------------------------------------------------------------- discrimination
def test_outlier_exposure_still_beats_a_plain_model_on_held_out_far_sets(digits, plain):
    exposed = train(digits, outlier_exposure=OUTLIERS)
    options = {**OOD.verify_options, "samples": 200, "sets": ["uniform", "gaussian"]}
    before, after = OOD(**options).evaluate(plain, context(digits, "test")), \
        OOD(**options).evaluate(exposed, context(digits, "test"))
    assert after.metrics["far_min_auroc"] > before.metrics["far_min_auroc"] + 0.05
    assert after.intervals["far_min_auroc"][0] > before.metrics["far_min_auroc"]


@pytest.mark.parametrize("name", ["letters", "glyphs", "typed_digits", "scribbles"])
def test_drawn_families_fit_large_inputs_drawn_small(name):
    """Images over MAX_RENDER a side are drawn at most that size and resized (fast, small caches)."""
    reference = torch.rand(3, 3, 2 * ood_sets.MAX_RENDER, ood_sets.MAX_RENDER + 16)
    out = ood_sets.generate(name, reference, 6, torch.Generator().manual_seed(0), split="test")
    assert out.shape == (6, *reference.shape[1:]) and 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    ink = out.flatten(1).mean(dim=1)
    assert (ink > 0.005).all() and (ink < 0.7).all()  # a drawing on black in every image
