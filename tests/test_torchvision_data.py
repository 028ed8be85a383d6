"""`data.name = "torchvision"`: each set read from tiny files written here in its standard on-disk layout (no network).

The writers produce the exact formats torchvision's classes read (CIFAR python pickles, SVHN .mat, raw IDX), so the
tests cover shapes, class names, splits, a search and export on CIFAR-10-shaped data, and the one-line errors for
missing and corrupt files, for every file each set reads.
"""
from __future__ import annotations

import importlib.util
import os
import pickle
import shutil
import string
from pathlib import Path
from typing import Callable

import numpy as np
import optuna
import pytest
import torch
from safetensors.torch import load_file

import search_spaces
from objectives import ood_sets
from nas.records import trial_record
from nas import config as config_module
from nas import data
from nas.cli import main
from nas.errors import DataError

N_TRAIN_PER_FILE, N_TEST = 12, 10
Written = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # train images (n, c, h, w) bytes, labels; test too


def _images(rng: np.random.Generator, labels: np.ndarray, channels: int, size: int) -> np.ndarray:
    """Bytes whose brightness tells the class apart (something to learn), plus noise so no two images are equal."""
    base = (labels[:, None, None, None] % 10 * 20 + 30).astype(np.int64)
    noise = rng.integers(0, 25, size=(len(labels), channels, size, size))
    return (base + noise).clip(0, 255).astype(np.uint8)


def _labelled(rng: np.random.Generator, n: int, num_classes: int, channels: int, size: int, first: int = 0):
    labels = (np.arange(n) % num_classes + first).astype(np.int64)  # every class present
    return _images(rng, labels - first, channels, size), labels


def _pickle(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(content))


def write_cifar(root: Path, dataset: str) -> Written:
    rng = np.random.default_rng(0)
    if dataset == "CIFAR10":
        folder, label_key, meta_key, num_classes = root / "cifar-10-batches-py", "labels", "label_names", 10
        train_files, test_file, meta_file = [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta"
    else:
        folder, label_key, meta_key, num_classes = root / "cifar-100-python", "fine_labels", "fine_label_names", 100
        train_files, test_file, meta_file = ["train"], "test", "meta"
    parts = []
    for file in train_files + [test_file]:
        n = N_TRAIN_PER_FILE if file != test_file else N_TEST
        images, labels = _labelled(rng, n if num_classes == 10 else 2 * num_classes, num_classes, 3, 32)
        _pickle(folder / file, {"data": images.reshape(len(images), -1), label_key: labels.tolist()})
        parts.append((images, labels))
    _pickle(folder / meta_file, {meta_key: [f"class-{i}" for i in range(num_classes)]})
    train = parts[:-1]
    return np.concatenate([p[0] for p in train]), np.concatenate([p[1] for p in train]), *parts[-1]


def write_svhn(root: Path, dataset: str) -> Written:
    scipy_io = pytest.importorskip("scipy.io", reason="scipy (SVHN's .mat reader) is not installed")
    rng = np.random.default_rng(0)
    written = []
    for split, n in (("train", 3 * N_TRAIN_PER_FILE), ("test", N_TEST)):
        images, labels = _labelled(rng, n, 10, 3, 32)
        stored_labels = np.where(labels == 0, 10, labels)  # SVHN stores digit 0 as label 10
        root.mkdir(parents=True, exist_ok=True)
        scipy_io.savemat(root / f"{split}_32x32.mat", {"X": images.transpose(2, 3, 1, 0),
                                                       "y": stored_labels[:, None].astype(np.uint8)})
        written += [images, labels]
    return tuple(written)


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of an array of unsigned bytes: magic 00 00 08 <dims>, big-endian sizes, then the data."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist_family(root: Path, dataset: str, emnist_split: str = "letters") -> Written:
    rng = np.random.default_rng(0)
    if dataset == "EMNIST":
        prefixes = (f"emnist-{emnist_split}-train", f"emnist-{emnist_split}-test")
        num_classes, first = 26, 1  # letters: labels 1-26 ("N/A" is class 0)
    else:
        prefixes, num_classes, first = ("train", "t10k"), 10, 0
    raw = root / dataset / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    written = []
    for prefix, n in zip(prefixes, (3 * N_TRAIN_PER_FILE, N_TEST)):
        images, labels = _labelled(rng, n + num_classes, num_classes, 1, 28, first)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images[:, 0]))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
        written += [images, labels]
    return tuple(written)


WRITERS: dict[str, Callable[[Path, str], Written]] = {
    "CIFAR10": write_cifar, "CIFAR100": write_cifar, "SVHN": write_svhn,
    **{name: write_mnist_family for name in ("MNIST", "KMNIST", "FashionMNIST", "EMNIST")},
}


def expected_classes(dataset: str) -> list[str]:
    if dataset.startswith("CIFAR"):
        return [f"class-{i}" for i in range(10 if dataset == "CIFAR10" else 100)]
    if dataset == "SVHN":
        return [str(i) for i in range(10)]
    if dataset == "EMNIST":
        return ["N/A", *string.ascii_lowercase]
    from torchvision import datasets

    return list(getattr(datasets, dataset).classes)


def options(root: Path, dataset: str, **extra) -> dict:
    raw = {"name": "torchvision", "dataset": dataset, "data_dir": str(root),
           **({"emnist_split": "letters"} if dataset == "EMNIST" else {}), **extra}
    return config_module.resolve({"data": raw})["data"]


def _rows(x: torch.Tensor) -> list[bytes]:
    """Each image of a loaded split as the bytes it was written from."""
    return [row.numpy().tobytes() for row in (x * 255).round().to(torch.uint8)]


def test_every_declared_set_has_a_writer():
    assert set(WRITERS) == set(data.TORCHVISION_SETS)


@pytest.mark.parametrize("dataset", data.TORCHVISION_SETS)
def test_each_set_loads_with_its_shapes_classes_and_splits(dataset, tmp_path):
    train_x, train_y, test_x, test_y = WRITERS[dataset](tmp_path, dataset)
    loaded = data.load(options(tmp_path, dataset, val_fraction=0.25))
    channels, size = (3, 32) if dataset in ("CIFAR10", "CIFAR100", "SVHN") else (1, 28)
    assert loaded.input_shape == [channels, size, size] and loaded.is_image
    assert loaded.class_names == expected_classes(dataset)
    assert len(loaded.train_x) + len(loaded.val_x) == len(train_x) and len(loaded.val_x) == round(len(train_x) * 0.25)
    assert len(loaded.mean) == len(loaded.std) == channels
    assert 0.0 <= float(loaded.train_x.min()) and float(loaded.train_x.max()) <= 1.0
    # the official test split is the test files, pixel for pixel; train and val come from the training files
    for split_x, split_y, images, labels in ((loaded.test_x, loaded.test_y, test_x, test_y),
                                            (torch.cat([loaded.train_x, loaded.val_x]),
                                             torch.cat([loaded.train_y, loaded.val_y]), train_x, train_y)):
        written = {image.tobytes(): int(label) for image, label in zip(images, labels)}
        assert len(written) == len(images)  # the writer's images are distinct, so each one is found by its pixels
        loaded_pairs = dict(zip(_rows(split_x), split_y.tolist()))
        assert loaded_pairs == written


def test_sizes_subset_each_split_and_seeds_pick_them(tmp_path):
    write_cifar(tmp_path / "first", "CIFAR10")
    shutil.copytree(tmp_path / "first", tmp_path / "copy")  # another folder: loaded afresh, not from the cache
    sizes = {"train_size": 20, "val_size": 5, "test_size": 4}
    small = data.load(options(tmp_path / "first", "CIFAR10", **sizes, seed=1))
    again = data.load(options(tmp_path / "copy", "CIFAR10", **sizes, seed=1))
    other = data.load(options(tmp_path / "first", "CIFAR10", **sizes, seed=2))
    assert (len(small.train_x), len(small.val_x), len(small.test_x)) == (20, 5, 4)
    assert small.train_x.dtype == torch.float32 and torch.equal(small.train_x, again.train_x)
    assert not torch.equal(small.train_x, other.train_x)


def test_config_requires_dataset_for_torchvision_only(capsys, tmp_path):
    for raw, fragment in (({"name": "torchvision"}, "needs data.dataset"),
                          ({"name": "torchvision", "dataset": "ImageNet"}, "needs data.dataset"),
                          ({"name": "digits", "dataset": "CIFAR10"}, "only applies to data.name")):
        code, err = cli(capsys, tmp_path, "search", str(experiment(tmp_path, raw)))
        assert code == 2 and err.startswith("nas: error: config: ") and err.count("\n") == 1, err
        assert fragment in err and "CIFAR10" in err, err


# ---------------------------------------------------------------------------------------------- bad files
CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda blob: blob[: len(blob) // 2],
    "empty": lambda blob: b"",
    "garbage": lambda blob: bytes(range(256)) * 4,
}
CORRUPT_CASES = [(dataset, kind) for dataset in data.TORCHVISION_SETS for kind in CORRUPTIONS]


@pytest.mark.parametrize(("dataset", "kind"), CORRUPT_CASES)
def test_a_corrupt_file_is_one_line_naming_it(dataset, kind, tmp_path):
    clean = tmp_path / "clean"
    WRITERS[dataset](clean, dataset)
    files = sorted(path for path in clean.rglob("*") if path.is_file())  # the loader reads each: none is spare
    for index, file in enumerate(files):
        root = tmp_path / f"case{index}"
        for source in files:
            target = root / source.relative_to(clean)
            target.parent.mkdir(parents=True, exist_ok=True)
            blob = source.read_bytes()
            target.write_bytes(CORRUPTIONS[kind](blob) if source == file else blob)
        with pytest.raises(DataError) as raised:
            data.load(options(root, dataset))
        message = str(raised.value)
        assert "\n" not in message and str(root / file.relative_to(clean)) in message, message
        assert "download = true" in message, message


@pytest.mark.parametrize(("relabel", "fragment"), [(lambda labels: labels[:5], "images but 5 labels"),
                                                    (lambda labels: labels * 0 + 12, "labels 12-12, outside 0-9")])
def test_labels_that_do_not_fit_the_images_are_one_line(relabel, fragment, tmp_path):
    """Valid IDX files that disagree with each other: a label count or value the images cannot have."""
    test_labels = write_mnist_family(tmp_path, "MNIST")[3]
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(relabel(test_labels)))
    with pytest.raises(DataError, match=fragment) as raised:
        data.load(options(tmp_path, "MNIST"))
    assert "\n" not in str(raised.value) and "t10k-labels-idx1-ubyte" in str(raised.value)


def test_a_download_that_cannot_happen_is_one_line(tmp_path):
    """``data.download = true`` where the files cannot be written (no network needed to fail): one line saying so."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="data.download: could not download MNIST into") as raised:
        data.load(options(blocker / "data", "MNIST", download=True))
    assert "\n" not in str(raised.value) and str(blocker / "data") in str(raised.value)


def experiment(folder: Path, data_table: dict, **tables) -> Path:
    """An experiment TOML file (written with plain formatting: only strings, numbers, booleans and lists)."""
    def value(item) -> str:
        if isinstance(item, bool):
            return str(item).lower()
        if isinstance(item, str):
            return '"' + item.replace("\\", "\\\\") + '"'
        if isinstance(item, list):
            return "[" + ", ".join(value(v) for v in item) + "]"
        return repr(item)

    lines = []
    for section, table in {"study": {"name": "tv", "storage": f"sqlite:///{folder}/nas.db", "n_trials": 1,
                                     "sampler": "random", "device": "cpu"},
                           "data": data_table, **tables}.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value(item)}" for key, item in table.items()]
    path = folder / "experiment.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(capsys, cwd: Path, *args: str) -> tuple[int, str]:
    """``nas ARGS`` in-process (exit code, stderr)."""
    before = os.getcwd()
    os.chdir(cwd)
    try:
        code = main(list(args))
    except SystemExit as stop:
        code = stop.code
    finally:
        os.chdir(before)
    return code, capsys.readouterr().err


def test_missing_folder_and_corrupt_file_exit_2_with_one_line(capsys, tmp_path):
    missing = tmp_path / "nowhere"
    code, err = cli(capsys, tmp_path, "search", str(experiment(tmp_path, {"name": "torchvision", "dataset": "CIFAR10",
                                                                          "data_dir": str(missing)})))
    assert code == 2 and err.startswith("nas: error: ") and err.count("\n") == 1, err
    assert "cifar-10-batches-py/data_batch_1" in err and str(missing) in err and "download = true" in err, err
    write_cifar(tmp_path / "cifar", "CIFAR10")
    batch = tmp_path / "cifar" / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])
    code, err = cli(capsys, tmp_path, "search", str(experiment(tmp_path, {"name": "torchvision", "dataset": "CIFAR10",
                                                                          "data_dir": str(tmp_path / "cifar")})))
    assert code == 2 and err.startswith("nas: error: ") and err.count("\n") == 1 and str(batch) in err, err


# ---------------------------------------------------------------------------------------------- search + export
def test_cifar_shaped_search_scores_every_objective_and_exports_a_matching_model(capsys, tmp_path):
    """3x32x32 inputs through OOD sets, attacks and attribution maps, then an export that reproduces the logits."""
    write_cifar(tmp_path / "cifar", "CIFAR10")
    data_table = {"name": "torchvision", "dataset": "CIFAR10", "data_dir": str(tmp_path / "cifar"), "val_size": 16}
    path = experiment(
        tmp_path, data_table,
        space={"name": "cnn", "depth": 1, "channels": [4], "cardinality": [1], "hidden": [0], "ensemble": 1},
        training={"epochs": 1, "batch_size": 16},
        **{"objectives.accuracy": {}, "objectives.ood": {"samples": 10, "fit_samples": 20},
           "objectives.adversarial": {"samples": 8, "pgd_steps": 1, "curve_points": 1},
           "objectives.explainability": {"samples": 4, "steps": 2}, "objectives.calibration": {}},
    )
    code, err = cli(capsys, tmp_path, "search", str(path))
    assert code == 0, err
    study = optuna.load_study(study_name="tv", storage=f"sqlite:///{tmp_path}/nas.db")
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs
    record = trial_record(study, trial)
    metrics = record["metrics"]
    for objective in ("accuracy", "ood", "adversarial", "explainability", "calibration"):
        assert metrics[objective] is not None, (objective, metrics)  # a skipped objective has no metrics
    assert any(name.startswith("ood.auroc_") for name in metrics) and "adversarial.pgd_accuracy" in metrics, metrics
    assert record["spec"]["input_shape"] == [3, 32, 32]

    out = tmp_path / "export"
    code, err = cli(capsys, tmp_path, "export", "--storage", f"sqlite:///{tmp_path}/nas.db", "--study-name", "tv",
                    "--trial", "0", "--out", str(out))
    assert code == 0, err
    spec = importlib.util.spec_from_file_location("exported_tv_model", out / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    exported = module.build()
    weights = load_file(str(out / "weights.safetensors"))
    exported.load_state_dict(weights, strict=True)
    reference = search_spaces.build(record["spec"])
    reference.load_state_dict(weights, strict=True)
    loaded = data.load(config_module.resolve({"data": data_table})["data"])
    with torch.no_grad():
        logits = exported.eval()(loaded.val_x)
        torch.testing.assert_close(logits, reference.eval()(loaded.val_x), atol=1e-6, rtol=0)
    accuracy = (logits.argmax(1) == loaded.val_y).float().mean().item()
    assert accuracy == pytest.approx(metrics["accuracy"], abs=1e-6)  # the very model the trial scored


@pytest.mark.parametrize("family", ood_sets.available())
def test_every_outlier_family_fits_colour_32x32_inputs(family):
    """OOD scoring and outlier-exposure sets take the in-distribution shape: 3 channels of 32x32 here."""
    generator = torch.Generator().manual_seed(0)
    reference = torch.rand(12, 3, 32, 32, generator=generator)
    labels = torch.arange(12) % 3
    outliers = ood_sets.generate(family, reference, n=5, generator=generator, labels=labels)
    assert outliers.shape == (5, 3, 32, 32) and outliers.dtype == reference.dtype
    assert torch.isfinite(outliers).all() and 0.0 <= float(outliers.min()) and float(outliers.max()) <= 1.0
