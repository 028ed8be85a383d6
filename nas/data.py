"""Datasets held in memory as tensors, with seeded train/val/test splits.

Images are float tensors in pixel space ``[0, 1]``; the model normalises them itself (the mean/std
computed here on the training split go into the spec). The test split is only for ``verify``/``export``.
"""
from __future__ import annotations

import csv
import functools
import gzip
import pickle
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from objectives import ood_sets

from .errors import DataError
from .extensions import installed, load_extension
from .files import describe, read_text, reading

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
FASHION_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


@dataclass
class Dataset:
    """Train/val/test tensors plus what the spec and the objectives need to know about them."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    class_names: list[str]
    is_image: bool = True
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    data_range: tuple[float, float] = (0.0, 1.0)
    # a subgroup index per sample of the validation and test splits (e.g. from data.groups), named by group_names
    group_names: list[str] | None = None
    val_groups: torch.Tensor | None = None
    test_groups: torch.Tensor | None = None

    @property
    def input_shape(self) -> list[int]:
        return list(self.train_x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def preprocessing(self) -> dict[str, Any]:
        """The keys every spec carries so a model can be rebuilt without this dataset."""
        return {
            "input_shape": self.input_shape,
            "num_classes": self.num_classes,
            "normalize": {"mean": self.mean, "std": self.std},
        }


# ---------------------------------------------------------------------------------------------- loaders
# Each loader returns (x_pool, y_pool, x_test, y_test, class_names, is_image); x as float32 numpy. A loader whose
# samples carry subgroup labels appends a SampleGroups as a seventh item.


@dataclass(frozen=True)
class SampleGroups:
    """A subgroup index per sample of the pool (and of the test set, when the loader has one), and their names."""

    pool: np.ndarray
    test: np.ndarray | None
    names: list[str]


IDX_FIX = ("replace it with an intact copy (apt-get install --reinstall dataset-fashion-mnist, or delete the folder's "
           "IDX files and set data.download = true)")


def _idx_problem(raw: bytes) -> str | None:
    """What is wrong with the bytes of an IDX file of unsigned bytes, or None: the header must describe them exactly."""
    if len(raw) < 4:
        return f"{len(raw)} bytes, shorter than the 4-byte IDX header" if raw else "the file is empty"
    if raw[:3] != b"\x00\x00\x08" or not 1 <= raw[3] <= 4:
        return f"header {raw[:4].hex(' ')} is not an IDX header of unsigned bytes (00 00 08 then 1-4 dimensions)"
    dims = raw[3]
    if len(raw) < 4 + 4 * dims:
        return f"the header is cut off ({len(raw)} bytes)"
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    expected, found = int(np.prod(shape)), len(raw) - 4 - 4 * dims
    if expected != found:
        return f"the header announces shape {shape}, {expected} bytes of data, but {found} follow (truncated or padded)"
    return None


def _read_idx(path: Path) -> np.ndarray:
    """One IDX file, raw or gzip-compressed; anything unreadable or inconsistent is a one-line :class:`DataError`."""
    with reading(path, "Fashion-MNIST file", IDX_FIX, DataError):  # gzip raises OSError, EOFError or zlib.error
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                raw = handle.read()
        else:
            raw = path.read_bytes()
    problem = _idx_problem(raw)
    if problem:
        raise DataError(f"Fashion-MNIST file {path} is not a valid IDX file ({problem}); {IDX_FIX}")
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _read_fashion_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, h, w)`` and labels ``(n,)`` in ``[0, 10)``, or one line naming the file that does not fit."""
    images, labels = _read_idx(images_path), _read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(
            f"Fashion-MNIST file {images_path} holds a {images.ndim}-d array, not images (n, height, width); {IDX_FIX}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"Fashion-MNIST file {labels_path} holds labels of shape {list(labels.shape)}, not one per image of "
            f"{images_path} ({len(images)}); {IDX_FIX}"
        )
    if len(labels) and int(labels.max()) >= len(FASHION_CLASSES):
        raise DataError(f"Fashion-MNIST file {labels_path} holds label {int(labels.max())}, outside 0-9; {IDX_FIX}")
    return images, labels


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz", directory / "FashionMNIST" / "raw" / stem):
        if candidate.is_file():
            return candidate
    return None


def debian_fashion_mnist_dir() -> Path | None:
    """Where Debian's ``dataset-fashion-mnist`` package put its IDX files, asked of ``dpkg -L``."""
    try:
        listing = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in listing.stdout.splitlines():
        if line.endswith(FASHION_FILES["train_x"] + ".gz"):
            return Path(line).parent
    return None


def _load_fashion_mnist(options: dict[str, Any]) -> tuple:
    searched: list[str] = []
    candidates: list[Path] = []
    if options.get("data_dir"):
        candidates.append(Path(options["data_dir"]).expanduser())
    debian = debian_fashion_mnist_dir()
    if debian is not None:
        candidates.append(debian)
    for directory in candidates:
        searched.append(str(directory))
        paths = {key: _find_idx(directory, stem) for key, stem in FASHION_FILES.items()}
        if all(paths.values()):
            train_x, train_y = _read_fashion_split(paths["train_x"], paths["train_y"])
            test_x, test_y = _read_fashion_split(paths["test_x"], paths["test_y"])
            return train_x, train_y, test_x, test_y, FASHION_CLASSES, True
    if options.get("download"):
        from torchvision.datasets import FashionMNIST

        root = Path(options.get("data_dir") or "runs/data")
        try:
            train = FashionMNIST(root, train=True, download=True)
            test = FashionMNIST(root, train=False, download=True)
        except Exception as error:  # network errors vary by platform
            raise DataError(f"data.download: could not download Fashion-MNIST into {root} ({error})") from None
        return (train.data.numpy(), train.targets.numpy(), test.data.numpy(), test.targets.numpy(), FASHION_CLASSES,
                True)
    where = ", ".join(searched) if searched else "no --data-dir given and Debian package not installed"
    raise DataError(
        f"Fashion-MNIST not found ({where}); install it with 'apt-get install dataset-fashion-mnist', "
        "or pass --data-dir DIR holding the IDX files, or set data.download = true to let torchvision fetch it"
    )


def _load_digits(options: dict[str, Any]) -> tuple:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    return x, digits.target, None, None, [str(i) for i in range(10)], True


def _load_mnist1d(options: dict[str, Any]) -> tuple:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = int(options.get("seed", 0)) + 42
    data = make_dataset(args)  # generated locally; never mnist1d's download
    x, x_test = data["x"].astype(np.float32), data["x_test"].astype(np.float32)
    return x[:, None, :], data["y"], x_test[:, None, :], data["y_test"], [str(i) for i in range(10)], False


def _load_synthetic(options: dict[str, Any]) -> tuple:
    """Four classes of 1x8x8 images: a bright bar in one of four positions plus noise. Learnable in seconds."""
    rng = np.random.default_rng(int(options.get("seed", 0)))
    n = int(options.get("synthetic_size", 600))
    y = rng.integers(0, 4, size=n)
    x = rng.uniform(0.0, 0.35, size=(n, 1, 8, 8)).astype(np.float32)
    for index, label in enumerate(y):
        if label == 0:
            x[index, 0, 1:3, :] += 0.6
        elif label == 1:
            x[index, 0, 5:7, :] += 0.6
        elif label == 2:
            x[index, 0, :, 1:3] += 0.6
        else:
            x[index, 0, :, 5:7] += 0.6
    return np.clip(x, 0.0, 1.0), y, None, None, ["top", "bottom", "left", "right"], True


LETTERS_POOL, LETTERS_TEST = 8000, 2000  # images rendered when data.train_size / val_size / test_size are 0 (all)
LETTERS_SIZE = 28
LETTERS_DESCRIPTION = (
    "notMNIST-like letters A-J, 28x28, rendered offline from matplotlib's bundled fonts with random size, position, "
    "rotation and stroke width; train and validation typed in {train}; the test split in {test} (typefaces the "
    "training never saw)")


def letters_description() -> str:
    """What ``data.name = "letters"`` holds, naming the fonts of each split (the installed ones)."""
    return LETTERS_DESCRIPTION.format(train=", ".join(ood_sets.font_names("val")),
                                      test=", ".join(ood_sets.font_names("test")))


def _letters_pool_size(options: dict[str, Any]) -> int:
    """Images to render for the train + validation pool: enough for data.train_size and data.val_size after the
    seeded validation split (``_load_cached`` takes ``round(n * val_fraction)`` of them for validation)."""
    train, val = int(options.get("train_size") or 0), int(options.get("val_size") or 0)
    if not train and not val:
        return LETTERS_POOL
    fraction = float(options.get("val_fraction", 0.15))
    n = max(train + val, 2)
    while n - round(n * fraction) < train or round(n * fraction) < val:
        n += 1
    return n


def _load_letters(options: dict[str, Any]) -> tuple:
    """Letters A-J typed in matplotlib's fonts, augmented; the test split in typefaces disjoint from the pool's
    (``objectives.ood_sets.FONT_POOLS``: the pool uses the "val" typefaces, the test split the "test" ones), so test
    accuracy measures generalisation to unseen fonts. Deterministic for ``data.seed`` and the sizes."""
    seed = int(options.get("seed", 0))
    size, n_test = LETTERS_SIZE, int(options.get("test_size") or 0) or LETTERS_TEST
    try:
        x_pool, y_pool = ood_sets.render_labelled(ood_sets.LETTERS, "val", _letters_pool_size(options), size, size,
                                                  seed=seed * 2 + 1)
        x_test, y_test = ood_sets.render_labelled(ood_sets.LETTERS, "test", n_test, size, size, seed=seed * 2 + 2)
    except (OSError, ValueError) as error:  # fonts missing or unreadable
        raise DataError(f"data.name = 'letters': {error}") from None
    return x_pool, y_pool, x_test, y_test, list(ood_sets.LETTERS), True


KNOWN_CLASSES: dict[str, list[str]] = {
    "letters": list(ood_sets.LETTERS),
    "digits": [str(i) for i in range(10)],
    "fashion-mnist": FASHION_CLASSES,
}


def known_class_names(options: dict[str, Any]) -> list[str] | None:
    """The class names of the built-in data set a ``[data]`` table names, without loading it (None when they depend
    on the data), so a config can be checked up front, e.g. for OOD sets that depict its classes."""
    name = options.get("name")
    if name == "torchvision" and options.get("dataset") == "SVHN":
        return [str(digit) for digit in range(10)]
    if name == "torchvision" and options.get("dataset") == "EMNIST":
        from torchvision.datasets import EMNIST

        return list(EMNIST.classes_split_dict.get(options.get("emnist_split", "balanced"), [])) or None
    return KNOWN_CLASSES.get(name)


GROUPS_FIX = ("write a UTF-8 CSV with a header line file,group and one row per image, the file relative to data.path "
              "(e.g. cats/0001.png,young)")


def _read_groups(path: Path, root: Path, files: list[str]) -> SampleGroups:
    """The group of each of ``files`` (image paths) from the CSV ``data.groups``: every image exactly once."""
    if not path.is_file():
        raise DataError(f"data.groups: {path} does not exist or is not a file; {GROUPS_FIX}")
    text = read_text(path, "data.groups:", GROUPS_FIX).removeprefix("\ufeff")  # spreadsheets write a BOM
    where = f"data.groups: {path}"
    reader = csv.DictReader(text.splitlines())
    columns = [name.strip() for name in reader.fieldnames or []]
    if "file" not in columns or "group" not in columns:
        raise DataError(f"{where} has columns {columns or 'none (empty file)'}, it needs file and group; {GROUPS_FIX}")
    reader.fieldnames = columns
    index = {Path(file).relative_to(root).as_posix(): position for position, file in enumerate(files)}
    groups: dict[int, str] = {}
    rows: dict[str, int] = {}
    for row in reader:
        file, group = (row.get("file") or "").strip().removeprefix("./"), (row.get("group") or "").strip()
        if not file or not group:
            raise DataError(f"{where}, line {reader.line_num}: needs a file and a group, got {row.get('file')!r}, "
                            f"{row.get('group')!r}; {GROUPS_FIX}")
        if file not in index:
            raise DataError(f"{where}, line {reader.line_num}: {file!r} is not an image of data.path ({root}); "
                            f"{GROUPS_FIX}")
        if file in rows:
            raise DataError(f"{where}, line {reader.line_num}: {file!r} is listed again (first on line {rows[file]}); "
                            "give each image one row")
        rows[file] = reader.line_num
        groups[index[file]] = group
    missing = [file for file, position in index.items() if position not in groups]
    if missing:
        raise DataError(f"{where} gives no group to {len(missing)} of {len(files)} images of data.path (e.g. "
                        f"{missing[0]!r}); give every image a row")
    names = sorted(set(groups.values()))
    number = {name: position for position, name in enumerate(names)}
    return SampleGroups(np.array([number[groups[position]] for position in range(len(files))]), None, names)


def _load_image_folder(options: dict[str, Any]) -> tuple:
    from torchvision import datasets, transforms

    path = options.get("path")
    if not path or not Path(path).is_dir():
        raise DataError(f"data.path: image-folder needs an existing folder of class sub-folders, got {path!r}")
    size = int(options.get("image_size", 32))
    steps = [transforms.Resize((size, size))]
    if options.get("grayscale", False):
        steps.append(transforms.Grayscale(1))
    steps.append(transforms.ToTensor())
    try:
        folder = datasets.ImageFolder(path, transform=transforms.Compose(steps))
    except (FileNotFoundError, RuntimeError) as error:
        raise DataError(f"data.path: {error}") from None
    images = []
    for index, (file, _) in enumerate(folder.samples):
        with reading(file, "data.path: image", "delete or replace that file", DataError):  # PIL: OSError, SyntaxError
            images.append(folder[index][0])
    loaded = torch.stack(images).numpy(), np.asarray(folder.targets), None, None, list(folder.classes), True
    if not options.get("groups"):
        return loaded
    files = [file for file, _ in folder.samples]
    return (*loaded, _read_groups(Path(options["groups"]).expanduser(), Path(path).expanduser(), files))


# ---------------------------------------------------------------------------------------------- torchvision
# torchvision's own dataset classes read each set's standard on-disk layout; the md5 sums they hold belong to the
# download, so local copies are checked by decoding them instead (a corrupt file is one line naming it).

TORCHVISION_SETS = ("CIFAR10", "CIFAR100", "SVHN", "MNIST", "KMNIST", "FashionMNIST", "EMNIST")
EMNIST_SPLITS = ("byclass", "bymerge", "balanced", "letters", "digits", "mnist")


@dataclass(frozen=True)
class TorchvisionSet:
    """The files one torchvision data set reads, relative to ``data.data_dir``."""

    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str = ""  # CIFAR's pickled class names


def _mnist_family_files(name: str, train_prefix: str = "train", test_prefix: str = "t10k") -> TorchvisionSet:
    def pair(prefix: str) -> tuple[str, ...]:
        return (f"{name}/raw/{prefix}-images-idx3-ubyte", f"{name}/raw/{prefix}-labels-idx1-ubyte")

    return TorchvisionSet(pair(train_prefix), pair(test_prefix))


def _torchvision_layout(dataset: str, emnist_split: str) -> TorchvisionSet:
    """The files ``dataset`` reads, relative to the data folder (EMNIST's depend on its split)."""
    if dataset == "CIFAR10":
        folder = "cifar-10-batches-py"
        return TorchvisionSet(tuple(f"{folder}/data_batch_{i}" for i in range(1, 6)), (f"{folder}/test_batch",),
                              f"{folder}/batches.meta")
    if dataset == "CIFAR100":
        return TorchvisionSet(("cifar-100-python/train",), ("cifar-100-python/test",), "cifar-100-python/meta")
    if dataset == "SVHN":
        return TorchvisionSet(("train_32x32.mat",), ("test_32x32.mat",))
    if dataset == "EMNIST":
        return _mnist_family_files("EMNIST", f"emnist-{emnist_split}-train", f"emnist-{emnist_split}-test")
    return _mnist_family_files(dataset)


def _torchvision_base(dataset: str) -> type:
    from torchvision import datasets

    return getattr(datasets, dataset)


def _torchvision_class(dataset: str, file: str) -> type:
    """torchvision's class for ``dataset``, narrowed to read ``file`` alone and to check files by existence only."""
    base = _torchvision_base(dataset)
    if dataset.startswith("CIFAR"):
        meta = {**base.meta, "md5": None}
        return type(base.__name__, (base,), {"train_list": [[Path(file).name, None]], "test_list": [], "meta": meta})
    if dataset == "SVHN":
        split_list = {split: [url, name, None] for split, (url, name, _) in base.split_list.items()}
        return type(base.__name__, (base,), {"split_list": split_list})
    return base  # the MNIST family checks existence only and keeps its class name in its raw folder


def _emnist_split(dataset: str, options: dict[str, Any]) -> dict[str, str]:
    """EMNIST's ``split`` keyword (its files and class set); nothing for the other sets."""
    return {"split": options.get("emnist_split", "balanced")} if dataset == "EMNIST" else {}


def _torchvision_fix(dataset: str, root: Path) -> str:
    return (f"replace it with an intact copy, or delete it and set data.download = true "
            f"([data] name = \"torchvision\", dataset = \"{dataset}\", data_dir = \"{root}\", download = true)")


def _read_torchvision_split(dataset: str, root: Path, files: tuple[str, ...], train: bool,
                            options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images ``(n, c, h, w)`` or ``(n, h, w)`` as bytes, labels and class names of one split, file by file."""
    what, fix = f"data.dataset = {dataset!r}: file", _torchvision_fix(dataset, root)
    if dataset in ("CIFAR10", "CIFAR100"):
        images, labels, classes = [], [], []
        for file in files:
            with reading(root / file, what, fix, DataError):
                part = _torchvision_class(dataset, file)(str(root), train=True)
            images.append(part.data.transpose(0, 3, 1, 2))  # torchvision keeps CIFAR as HWC
            labels.extend(part.targets)
            classes = list(part.classes)
        return np.concatenate(images), np.asarray(labels), classes
    if dataset == "SVHN":
        with reading(root / files[0], what, fix, DataError):
            part = _torchvision_class(dataset, files[0])(str(root), split="train" if train else "test")
        return part.data, part.labels, [str(digit) for digit in range(10)]
    for file in files:  # the MNIST family: torchvision's IDX reader does not check that the data fits the header
        with reading(root / file, what, fix, DataError):
            problem = _idx_problem((root / file).read_bytes())
        if problem:
            raise DataError(f"{what} {root / file} is not a valid IDX file ({problem}); {fix}")
    with reading(root / files[0], what, fix, DataError):
        part = _torchvision_class(dataset, files[0])(str(root), train=train, **_emnist_split(dataset, options))
    return part.data.numpy(), part.targets.numpy(), list(part.classes)


def _download_torchvision(dataset: str, root: Path, options: dict[str, Any]) -> None:
    """Let torchvision fetch and checksum the files (its own classes, md5 sums included); failures are one line."""
    base = _torchvision_base(dataset)
    splits = ({"split": "train"}, {"split": "test"}) if dataset == "SVHN" else ({"train": True}, {"train": False})
    try:
        root.mkdir(parents=True, exist_ok=True)
        for split in splits:
            base(str(root), download=True, **split, **_emnist_split(dataset, options))
    except Exception as error:  # network, disk and checksum errors vary by platform
        raise DataError(f"data.download: could not download {dataset} into {root} ({describe(error)}); "
                        "check the network connection, or copy the files there yourself and set "
                        "data.download = false") from None


def _load_torchvision(options: dict[str, Any]) -> tuple:
    """One of torchvision's image sets from ``data.data_dir`` in its standard layout (downloaded only when asked)."""
    dataset = options.get("dataset", "")
    if dataset not in TORCHVISION_SETS:
        raise DataError(f"data.dataset = {dataset!r} is not a torchvision data set this tool reads; "
                        f"allowed: {', '.join(TORCHVISION_SETS)}")
    root = Path(options.get("data_dir") or "runs/data").expanduser()
    layout = _torchvision_layout(dataset, options.get("emnist_split", "balanced"))
    expected = [*layout.train_files, *layout.test_files, *([layout.meta_file] if layout.meta_file else [])]
    missing = [file for file in expected if not (root / file).is_file()]
    if missing and options.get("download"):
        _download_torchvision(dataset, root, options)
        missing = [file for file in expected if not (root / file).is_file()]
    if missing:
        raise DataError(
            f"data.dataset = {dataset!r}: {len(missing)} of its files are missing under {root}: {', '.join(missing)} "
            f"(torchvision's standard layout); copy them there, or download them with [data] name = \"torchvision\", "
            f"dataset = \"{dataset}\", data_dir = \"{root}\", download = true")
    fix = _torchvision_fix(dataset, root)
    if layout.meta_file:  # torchvision reads CIFAR's class names after each batch; check the names file first
        with reading(root / layout.meta_file, f"data.dataset = {dataset!r}: file", fix, DataError):
            with open(root / layout.meta_file, "rb") as handle:
                pickle.load(handle, encoding="latin1")[_torchvision_base(dataset).meta["key"]]
    train_x, train_y, classes = _read_torchvision_split(dataset, root, layout.train_files, True, options)
    test_x, test_y, _ = _read_torchvision_split(dataset, root, layout.test_files, False, options)
    for files, images, labels in ((layout.train_files, train_x, train_y), (layout.test_files, test_x, test_y)):
        where = f"data.dataset = {dataset!r}: {', '.join(str(root / file) for file in files)}"
        if len(images) != len(labels):
            raise DataError(f"{where} hold {len(images)} images but {len(labels)} labels; {fix}")
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < len(classes):
            raise DataError(f"{where} hold labels {int(labels.min())}-{int(labels.max())}, outside "
                            f"0-{len(classes) - 1}; {fix}")
    return train_x, train_y, test_x, test_y, classes, True


LOADERS: dict[str, Callable[[dict[str, Any]], tuple]] = {
    "fashion-mnist": _load_fashion_mnist,
    "digits": _load_digits,
    "letters": _load_letters,
    "mnist1d": _load_mnist1d,
    "image-folder": _load_image_folder,
    "synthetic": _load_synthetic,
    "torchvision": _load_torchvision,
}


ENTRY_POINT_GROUP = "robust_nas.datasets"
LOADER_EXPECTED = (f'a built-in data set, an entry point of group {ENTRY_POINT_GROUP} or "package.module:Name" of a '
                   "function load(options) -> (x_pool, y_pool, x_test, y_test, class_names, is_image)")


def available() -> list[str]:
    """Built-in and installed (entry point) names; installed ones are not imported until used."""
    return sorted({*LOADERS, *installed(ENTRY_POINT_GROUP)})


def loader(name: str) -> Callable[[dict[str, Any]], tuple]:
    """The loader of a built-in or installed data set, or of a ``"package.module:Name"`` reference to a function
    ``load(options)`` returning ``(x_pool, y_pool, x_test, y_test, class_names, is_image)`` (tests may be None)."""
    if name in LOADERS:
        return LOADERS[name]
    try:
        found = load_extension(ENTRY_POINT_GROUP, name)
    except ImportError as error:
        raise DataError(f"data.name = {name!r}: {error}; expected {LOADER_EXPECTED}") from None
    if found is None:
        raise DataError(f"data.name = {name!r} is not allowed; allowed: {', '.join(available())}, "
                        'or "package.module:Name" of a loader function')
    if isinstance(found, type) or not callable(found):
        what = f"class {found.__name__}" if isinstance(found, type) else f"a {type(found).__name__}"
        raise DataError(f"data.name = {name!r} is {what}, not a loader function; "
                        f"expected {LOADER_EXPECTED}")
    return found


# ---------------------------------------------------------------------------------------------- splits

def _take(options: dict[str, Any], key: str, size: int) -> int:
    """How many of ``size`` samples ``data.<key>`` (0 = all) keeps; asking for more than there are is said."""
    wanted = int(options.get(key) or 0)
    if wanted > size:
        sys.stderr.write(f"nas: warning: data.{key} = {wanted}, but only {size} samples are available; using {size}\n")
    return min(wanted, size) if wanted else size


def _pixel_scale(array: np.ndarray, is_image: bool) -> float:
    """255 for images stored as bytes (values above 1), else 1: pixels end up in ``[0, 1]``."""
    return 255.0 if is_image and len(array) and array.max() > 1.0 else 1.0


def _floats(array: np.ndarray, scale: float) -> torch.Tensor:
    """A float32 tensor of ``array / scale``; called on each split's subset, so a large pool is never all floats."""
    values = np.array(array, dtype=np.float32)
    if scale != 1.0:
        values /= scale
    return torch.from_numpy(values)


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, frozen: tuple) -> Dataset:
    options = dict(frozen)
    loaded = loader(name)(options)
    with_groups = isinstance(loaded, tuple) and len(loaded) == 7 and isinstance(loaded[6], SampleGroups)
    if not (isinstance(loaded, tuple) and len(loaded) == 6 or with_groups):
        raise DataError(f"data.name = {name!r} returned {type(loaded).__name__}, not the 6-tuple (x_pool, y_pool, "
                        "x_test, y_test, class_names, is_image), optionally with a nas.data.SampleGroups")
    x_pool, y_pool, x_test, y_test, class_names, is_image = loaded[:6]
    groups = loaded[6] if with_groups else None
    x_pool, y_pool = np.asarray(x_pool), np.asarray(y_pool)
    if is_image and x_pool.ndim == 3:  # (n, h, w) -> (n, 1, h, w)
        x_pool = x_pool[:, None]
    pool_scale = _pixel_scale(x_pool, is_image)
    rng = np.random.default_rng(int(options.get("seed", 0)))
    order = rng.permutation(len(x_pool))
    val_fraction = float(options.get("val_fraction", 0.15))
    n_val = max(1, int(round(len(order) * val_fraction)))
    if x_test is None:  # no official test split: carve one out of the pool, disjoint from val
        n_test = max(1, int(round(len(order) * float(options.get("test_fraction", 0.15)))))
        test_index, order = order[:n_test], order[n_test:]
        x_test, y_test, test_scale = x_pool[test_index], y_pool[test_index], pool_scale
        if groups is not None:
            groups = SampleGroups(groups.pool, groups.pool[test_index], groups.names)
    else:
        x_test = np.asarray(x_test)
        if is_image and x_test.ndim == 3:
            x_test = x_test[:, None]
        test_scale = _pixel_scale(x_test, is_image)
    if groups is not None and (len(groups.pool) != len(x_pool) or groups.test is None
                               or len(groups.test) != len(x_test)):
        raise DataError(f"data.name = {name!r} returned subgroup labels that do not match its samples one to one "
                        f"({len(groups.pool)} for {len(x_pool)} pool samples and "
                        f"{'none' if groups.test is None else len(groups.test)} for {len(x_test)} test samples)")
    val_index, train_index = order[:n_val], order[n_val:]
    if not len(train_index):
        raise DataError(f"data: no training samples left of {len(x_pool)} after the validation and test splits; "
                        "lower data.val_fraction or data.test_fraction")
    train_index = train_index[: _take(options, "train_size", len(train_index))]
    val_index = val_index[: _take(options, "val_size", len(val_index))]
    test_order = rng.permutation(len(x_test))[: _take(options, "test_size", len(x_test))]

    def labels(array: Any) -> torch.Tensor:
        return torch.from_numpy(np.asarray(array, dtype=np.int64))

    train_x = _floats(x_pool[train_index], pool_scale)
    reduce = [0] + list(range(2, train_x.dim()))
    mean = train_x.mean(dim=reduce).tolist()
    std = [max(s, 1e-3) for s in train_x.std(dim=reduce).tolist()]
    low, high = (0.0, 1.0) if is_image else (float(train_x.min()), float(train_x.max()))
    return Dataset(
        name=name,
        train_x=train_x,
        train_y=labels(y_pool[train_index]),
        val_x=_floats(x_pool[val_index], pool_scale),
        val_y=labels(y_pool[val_index]),
        test_x=_floats(x_test[test_order], test_scale),
        test_y=labels(np.asarray(y_test)[test_order]),
        class_names=list(class_names),
        is_image=is_image,
        mean=[round(m, 6) for m in mean],
        std=[round(s, 6) for s in std],
        data_range=(low, high),
        **({} if groups is None else {"group_names": list(groups.names), "val_groups": labels(groups.pool[val_index]),
                                      "test_groups": labels(np.asarray(groups.test)[test_order])}),
    )


def load(options: dict[str, Any]) -> Dataset:
    """Load the dataset described by a validated ``[data]`` config table (cached per process)."""
    name = options["name"]
    loader(name)  # an unknown or broken name is one line before the cache sees it
    if options.get("groups") and name != "image-folder":
        raise DataError(f"data.groups = {options['groups']!r} only applies to data.name = \"image-folder\" (got "
                        f"{name!r}); remove data.groups")
    frozen = tuple(sorted((k, v) for k, v in options.items() if k != "name" and not isinstance(v, (list, dict))))
    return _load_cached(name, frozen)
