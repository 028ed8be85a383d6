"""Real data: a small CNN reaches a sane accuracy on a Fashion-MNIST subset (digits when it is not installed)."""
from __future__ import annotations

import torch

import search_spaces
from nas import data
from nas.training import train


def _dataset():
    if data.debian_fashion_mnist_dir() is not None:
        return data.load({"name": "fashion-mnist", "train_size": 3000, "val_size": 1000, "seed": 0}), 0.70
    return data.load({"name": "digits", "seed": 0}), 0.85


def test_small_cnn_learns_real_data():
    dataset, floor = _dataset()
    assert dataset.train_x.min() >= 0 and dataset.train_x.max() <= 1
    assert len(set(dataset.val_y.tolist())) == dataset.num_classes
    spec = {"space": "cnn",
            "blocks": [{"channels": 16, "kernel": 3, "pool": "max"}, {"channels": 32, "kernel": 3, "pool": "max"}],
            "cardinality": 1, "batch_norm": True, "activation": "relu", "dropout": 0.1, "hidden": 0, "ensemble": 1,
            **dataset.preprocessing()}
    torch.manual_seed(0)
    model = search_spaces.build(spec)
    recipe = {"epochs": 2, "batch_size": 64, "lr": 3e-3, "optimizer": "adam", "weight_decay": 0.0,
              "label_smoothing": 0.0}
    result = train(model, recipe, dataset, torch.device("cpu"), seed=0)
    assert result.history[-1]["val_accuracy"] >= floor, result.history
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"] * 1.05


def test_splits_are_seeded_and_disjoint():
    first = data.load({"name": "digits", "seed": 3})
    again = data.load({"name": "digits", "seed": 3, "val_fraction": 0.15})
    other = data.load({"name": "digits", "seed": 4})
    assert torch.equal(first.val_x, again.val_x)
    assert not torch.equal(first.val_x, other.val_x)
    rows = lambda x: {tuple(r.flatten().tolist()) for r in x}  # noqa: E731
    assert not rows(first.val_x) & rows(first.test_x)
    assert len(first.train_x) + len(first.val_x) + len(first.test_x) == 1797


def test_mnist1d_is_generated_locally():
    dataset = data.load({"name": "mnist1d", "train_size": 500, "seed": 0})
    assert dataset.input_shape == [1, 40] and dataset.num_classes == 10 and not dataset.is_image


def test_image_folder_loads_users_images(tmp_path):
    from PIL import Image

    rng = torch.Generator().manual_seed(0)
    for label, value in (("cats", 40), ("dogs", 200)):
        (tmp_path / label).mkdir()
        for i in range(12):
            pixels = (torch.rand(20, 20, 3, generator=rng) * 30 + value).clamp(0, 255).byte().numpy()
            Image.fromarray(pixels).save(tmp_path / label / f"{i}.png")
    dataset = data.load({"name": "image-folder", "path": str(tmp_path), "image_size": 16, "seed": 0})
    assert dataset.class_names == ["cats", "dogs"]
    assert dataset.input_shape == [3, 16, 16]
    assert len(dataset.train_x) + len(dataset.val_x) + len(dataset.test_x) == 24
    assert 0.0 <= dataset.train_x.min() and dataset.train_x.max() <= 1.0
