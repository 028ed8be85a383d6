"""The `letters` data set (issue 13, item 1): notMNIST-like A-J typed in matplotlib's fonts, augmented, with a test
split in typefaces training never saw; its OOD family letters_kt; letters (A-J) refused as OOD for letters data."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import objectives
import search_spaces
from nas.records import trial_record
from nas import config as config_module
from nas import data, training
from nas.errors import UsageError
from objectives import ood_sets
from objectives.ood import OOD

SMALL = {"name": "letters", "seed": 0, "train_size": 300, "val_size": 60, "test_size": 100, "val_fraction": 0.15}
RECIPE = {"epochs": 4, "batch_size": 64, "lr": 3e-3, "optimizer": "adam", "weight_decay": 0.0, "label_smoothing": 0.0,
          "max_grad_norm": 0.0}
SPEC = {"space": "cnn", "blocks": [{"channels": 16, "kernel": 3, "pool": "max"},
                                   {"channels": 32, "kernel": 3, "pool": "max"}],
        "cardinality": 1, "batch_norm": True, "activation": "relu", "dropout": 0.0, "hidden": 0, "ensemble": 1}


def test_two_loads_give_the_same_images_and_another_seed_others():
    first, second = data.loader("letters")(SMALL), data.loader("letters")(SMALL)  # the loader itself, not the cache
    for a, b in zip(first[:4], second[:4]):
        assert np.array_equal(a, b)
    other = data.loader("letters")({**SMALL, "seed": 1})
    assert not np.array_equal(first[0], other[0]) and not np.array_equal(first[2], other[2])
    assert first[4] == list("ABCDEFGHIJ") and first[5] is True


def test_sizes_classes_and_an_augmented_task():
    dataset = data.load(SMALL)
    assert (len(dataset.train_x), len(dataset.val_x), len(dataset.test_x)) == (300, 60, 100)
    assert dataset.input_shape == [1, 28, 28] and dataset.class_names == list("ABCDEFGHIJ")
    for labels in (dataset.train_y, dataset.val_y, dataset.test_y):
        counts = torch.bincount(labels, minlength=10)
        assert counts.min() >= 2  # every class in every split
    assert 0.0 <= float(dataset.train_x.min()) and float(dataset.train_x.max()) <= 1.0
    # augmentation: images of one class differ in size (ink) and position (centre of mass), not only in font
    a_images = dataset.train_x[dataset.train_y == 0].flatten(1)
    ink = a_images.mean(1)
    assert float(ink.std()) > 0.2 * float(ink.mean())
    columns = torch.arange(28.0).repeat(28)
    centre = (a_images * columns).sum(1) / a_images.sum(1)
    assert float(centre.max() - centre.min()) > 3.0


def test_test_fonts_never_appear_in_training_or_validation(monkeypatch):
    used: dict[str, set[str]] = {}
    render, draw = ood_sets.render_labelled, ood_sets._draw_glyph
    current: list[str] = []

    def recording_render(characters, split, *args, **kwargs):
        current.append(split)
        return render(characters, split, *args, **kwargs)

    def recording_draw(character, font_path, *args, **kwargs):
        used.setdefault(current[-1], set()).add(font_path.rsplit("/", 1)[-1])
        return draw(character, font_path, *args, **kwargs)

    monkeypatch.setattr(ood_sets, "render_labelled", recording_render)
    monkeypatch.setattr(ood_sets, "_draw_glyph", recording_draw)
    data.loader("letters")({**SMALL, "train_size": 500, "test_size": 400})
    assert current == ["val", "test"]  # the pool (train + validation) from one pool of fonts, the test split another
    pool, test = used["val"], used["test"]
    assert pool == set(ood_sets.FONT_POOLS["val"]) and test == set(ood_sets.FONT_POOLS["test"])  # all of each drawn
    assert not pool & test

    def typeface(name: str) -> str:
        return name.split("-")[0].removesuffix(".ttf")

    assert not {typeface(name) for name in pool} & {typeface(name) for name in test}
    description = data.letters_description()
    assert "DejaVuSansMono" in description and "cmr10" in description


def test_a_tiny_cnn_beats_chance_by_far_on_unseen_fonts():
    dataset = data.load({**SMALL, "train_size": 1500, "val_size": 200, "test_size": 400})
    torch.manual_seed(0)
    model = search_spaces.build({**SPEC, **dataset.preprocessing()})
    training.train(model, RECIPE, dataset, torch.device("cpu"), seed=0)
    with torch.no_grad():
        accuracy = (model.eval()(dataset.test_x).argmax(1) == dataset.test_y).float().mean().item()
    assert accuracy > 0.5, accuracy  # chance: 0.1; the test split's typefaces were never trained on


def _resolve(sets: list[str] | None = None, outliers: list[str] | None = None, name: str = "letters",
             **data_options: str) -> dict:
    ood = {} if sets is None else {"sets": sets}
    raw = {"data": {"name": name, **data_options}, "objectives": {"accuracy": {}, "ood": ood}}
    if outliers is not None:
        raw["training"] = {"outlier_exposure": {"enabled": True, "families": outliers}}
    return config_module.resolve(raw)


def test_the_config_refuses_letters_a_to_j_as_ood_for_letters_data():
    with pytest.raises(UsageError, match=r"objectives\.ood\.sets has \['letters'\].*letters_kt"):
        _resolve(["uniform", "letters"])
    with pytest.raises(UsageError, match=r"objectives\.ood\.sets has \['letters'\]"):
        _resolve()  # the default sets hold letters
    with pytest.raises(UsageError, match=r"outlier_exposure\.families has \['letters'\]"):
        _resolve(["uniform", "letters_kt"], outliers=["letters", "mixup"])
    assert _resolve(["uniform", "letters_kt", "glyphs"])["objectives"]["ood"]["sets"][1] == "letters_kt"
    assert _resolve(["uniform", "letters"], name="synthetic")  # letters are OOD for other data
    with pytest.raises(UsageError, match=r"typed_digits"):
        _resolve(["uniform", "typed_digits"], name="digits")
    # EMNIST's letters split names its (upper- and lowercase) letters a-z: A-J are its classes too
    with pytest.raises(UsageError, match=r"\['letters'\].*\(N/A, a, b, c"):
        _resolve(["uniform", "letters"], name="torchvision", dataset="EMNIST", emnist_split="letters")
    assert _resolve(["uniform", "letters"], name="torchvision", dataset="EMNIST", emnist_split="digits")


def test_the_objective_refuses_sets_that_depict_the_data_classes():
    x = torch.rand(30, 1, 28, 28)
    letters_context = objectives.EvaluationContext(x=x, y=torch.arange(30) % 10, num_classes=10, seed=0, split="val",
                                                   class_names=list("ABCDEFGHIJ"))
    with pytest.raises(ValueError, match=r"\['letters'\] depict classes .*A, B"):
        OOD(sets=["uniform", "letters"], samples=20).evaluate(torch.nn.Flatten(), letters_context)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    result = OOD(sets=["uniform", "letters_kt"], samples=20).evaluate(model, letters_context)
    assert "auroc_letters_kt" in result.metrics
    assert ood_sets.in_distribution("letters_kt", list("ABCDEFGHIJ")) == []
    assert ood_sets.in_distribution("letters", ["A", "Z"]) == ["A"]


def test_letters_kt_are_other_letters_in_each_split_s_fonts():
    reference = torch.rand(4, 1, 28, 28)
    val = ood_sets.generate("letters_kt", reference, 40, torch.Generator().manual_seed(0), split="val")
    again = ood_sets.generate("letters_kt", reference, 40, torch.Generator().manual_seed(0), split="val")
    test = ood_sets.generate("letters_kt", reference, 40, torch.Generator().manual_seed(0), split="test")
    assert torch.equal(val, again) and not torch.equal(val, test)
    assert ood_sets.group("letters_kt") == "near" and "letters_kt" in ood_sets.related("letters")
    assert set(ood_sets.get("letters_kt").depicts) == set("KLMNOPQRST")


def test_a_search_on_letters_trains_a_dense_network_and_scores_letters_kt(tmp_path):
    from nas.study import Experiment, create_or_load, run_search

    raw = {
        "study": {"name": "letters", "storage": f"sqlite:///{tmp_path}/nas.db", "n_trials": 1, "sampler": "random",
                  "device": "cpu"},
        "data": {**SMALL, "train_size": 200, "val_size": 60, "test_size": 60},
        "space": {"name": "cnn", "depth": 2, "channels": [8], "cardinality": [1], "pool": ["max"], "hidden": [0],
                  "connections": ["dense"], "ensemble": 1},
        "training": {"epochs": 1, "batch_size": 32},
        "objectives": {"accuracy": {}, "ood": {"sets": ["uniform", "letters_kt"], "samples": 20}},
    }
    config = config_module.resolve(raw)
    study = create_or_load(config, resume=False)
    run_search(study, Experiment.from_config(config), 1)
    trial = study.trials[0]
    assert trial.state.name == "COMPLETE", trial.user_attrs
    record = trial_record(study, trial)
    assert record["spec"]["connections"] == "dense"
    assert "ood.auroc_letters_kt" in record["metrics"], record["metrics"]
