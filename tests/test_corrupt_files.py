"""Every file the tool reads, damaged the ways files get damaged: one line naming it, exit 2, never a traceback.

The matrix is generated: (each file the tool reads) x (truncated, emptied, replaced with random bytes, and for
text files non-UTF-8 bytes). Each case lays out an intact setup, damages one file and runs the real CLI; the
same setup left intact passes the same command, so the damage is what the command rejects.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
import pytest
import torch

from nas import config as config_module
from nas.cli import main
from nas.data import FASHION_FILES
from nas.export import export_trial
from nas.storage import load_study, open_storage
from nas.study import Experiment, create_or_load, run_search
from nas.verify import MANIFEST_FIELDS

STUDY = "matrix"
SPACE = {"name": "mlp", "depth": 1, "width": [8], "ensemble": 1}
SYNTHETIC = {"name": "synthetic", "synthetic_size": 120}


# ------------------------------------------------------------------------------------------ damage
def truncated(blob: bytes, rng: np.random.Generator) -> bytes:
    return blob[: len(blob) // 2]


def emptied(blob: bytes, rng: np.random.Generator) -> bytes:
    return b""


def random_bytes(blob: bytes, rng: np.random.Generator) -> bytes:
    return rng.bytes(max(len(blob), 64))


def non_utf8(blob: bytes, rng: np.random.Generator) -> bytes:
    """Latin-1 bytes in the middle of otherwise intact text (a file saved in the wrong encoding)."""
    return blob[: len(blob) // 2] + "café ½".encode("latin-1") + blob[len(blob) // 2:]


BINARY_DAMAGE = (truncated, emptied, random_bytes)
TEXT_DAMAGE = (*BINARY_DAMAGE, non_utf8)


# ------------------------------------------------------------------------------------------ setups
@pytest.fixture(scope="module")
def study_files(tmp_path_factory) -> dict[str, Path]:
    """One tiny search (synthetic data, one MLP, one epoch), kept as SQLite, as a journal and as an export folder."""
    root = tmp_path_factory.mktemp("corrupt-source")
    storage = f"sqlite:///{root}/nas.db"
    torch.set_num_threads(1)
    config = config_module.resolve({
        "study": {"name": STUDY, "storage": storage, "n_trials": 1, "sampler": "random", "device": "cpu"},
        "data": SYNTHETIC, "space": SPACE, "training": {"epochs": 1, "batch_size": 32},
    })
    run_search(create_or_load(config, resume=False), Experiment.from_config(config), 1)
    journal = open_storage(f"journal:{root}/nas.journal")
    optuna.copy_study(from_study_name=STUDY, from_storage=storage, to_storage=journal)
    export_trial(load_study(storage, STUDY), 0, root / "export", storage_url=storage)
    return {"sqlite": root / "nas.db", "journal": root / "nas.journal", "export": root / "export"}


def _write_config(folder: Path, data: dict[str, Any]) -> Path:
    lines = [f"[study]\nname = \"{STUDY}\"\nstorage = \"sqlite:///{folder / 'nas.db'}\"\nn_trials = 1\n"
             "sampler = \"random\"\ndevice = \"cpu\"\n", "[data]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in data.items()]
    lines += ["[space]", *(f"{key} = {json.dumps(value)}" for key, value in SPACE.items()),
              "[training]\nepochs = 1\nbatch_size = 32\n[objectives.accuracy]\n[objectives.params]\n"]
    path = folder / "experiment.toml"
    path.write_text("\n".join(lines))
    return path


def _search(folder: Path, data: dict[str, Any]) -> list[str]:
    return ["search", str(_write_config(folder, data)), "--out", str(folder / "out")]


def _idx(array: np.ndarray) -> bytes:
    """The IDX format of unsigned bytes: 00 00 08 NDIM, each dimension as a big-endian uint32, then the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _fashion_folder(folder: Path, compressed: bool) -> Path:
    rng = np.random.default_rng(0)
    data = folder / "fashion"
    data.mkdir()
    arrays = {"train": 60, "t10k": 20}
    for prefix, n in arrays.items():
        labels = rng.integers(0, 10, size=n)
        images = rng.integers(0, 60, size=(n, 8, 8)) + (labels[:, None, None] * 19)
        for stem, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            blob = _idx(array)
            (data / f"{stem}.gz").write_bytes(gzip.compress(blob)) if compressed else (data / stem).write_bytes(blob)
    return data


def idx_setup(stem: str, compressed: bool) -> Callable[[Path, dict], tuple[Path, list[str]]]:
    def setup(folder: Path, study_files: dict) -> tuple[Path, list[str]]:
        data = _fashion_folder(folder, compressed)
        argv = _search(folder, {"name": "fashion-mnist", "data_dir": str(data)})
        return data / (f"{stem}.gz" if compressed else stem), argv
    return setup


def config_setup(folder: Path, study_files: dict) -> tuple[Path, list[str]]:
    argv = _search(folder, SYNTHETIC)
    path = Path(argv[1])
    # A file cut at a line end can still be valid TOML (a shorter, different config): the cut must break a value.
    with pytest.raises(config_module.tomllib.TOMLDecodeError):  # tomllib, or tomli before Python 3.11
        config_module.tomllib.loads(truncated(path.read_bytes(), np.random.default_rng()).decode())
    return path, argv


def image_setup(folder: Path, study_files: dict) -> tuple[Path, list[str]]:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, value in (("cats", 40), ("dogs", 200)):
        (folder / "images" / label).mkdir(parents=True)
        for i in range(6):
            pixels = np.clip(rng.normal(value, 20, size=(8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / "images" / label / f"{i}.png")
    argv = _search(folder, {"name": "image-folder", "path": str(folder / "images"), "image_size": 8})
    return folder / "images" / "dogs" / "3.png", argv


def groups_setup(folder: Path, study_files: dict) -> tuple[Path, list[str]]:
    """The image folder above with a subgroup per image (data.groups): the CSV is the damaged file."""
    _, argv = image_setup(folder, study_files)
    rows = ["file,group", *(f"{label}/{i}.png,{'ab'[i % 2]}" for label in ("cats", "dogs") for i in range(6))]
    groups = folder / "groups.csv"
    groups.write_text("\n".join(rows) + "\n")
    data = {"name": "image-folder", "path": str(folder / "images"), "image_size": 8, "groups": str(groups)}
    return groups, _search(folder, data)


def export_setup(name: str) -> Callable[[Path, dict], tuple[Path, list[str]]]:
    def setup(folder: Path, study_files: dict) -> tuple[Path, list[str]]:
        export = shutil.copytree(study_files["export"], folder / "export")
        return export / name, ["verify", str(export)]
    return setup


def requirements_setup(folder: Path, study_files: dict) -> tuple[Path, list[str]]:
    export = shutil.copytree(study_files["export"], folder / "export")
    requirements = folder / "requirements.toml"
    requirements.write_text("[requirements]\naccuracy = { min = 0.0 }\nparams = { max = 1e9 }\n")
    return requirements, ["verify", str(export), "--requirements", str(requirements)]


def storage_setup(kind: str) -> Callable[[Path, dict], tuple[Path, list[str]]]:
    def setup(folder: Path, study_files: dict) -> tuple[Path, list[str]]:
        path = Path(shutil.copy(study_files[kind], folder))
        url = f"sqlite:///{path}" if kind == "sqlite" else f"journal:{path}"
        return path, ["status", "--storage", url]
    return setup


@dataclass(frozen=True)
class ReadFile:
    """A file the tool reads: how to lay out an intact setup around it, and whether it is text.

    Files of one ``family`` share a setup (and its command), so one intact run covers them all.
    """

    family: str
    setup: Callable[[Path, dict], tuple[Path, list[str]]]
    text: bool


FILES: dict[str, ReadFile] = {
    "experiment-config": ReadFile("config", config_setup, text=True),
    "requirements": ReadFile("requirements", requirements_setup, text=True),
    **{f"idx-{stem}{suffix}": ReadFile(f"idx{suffix}", idx_setup(stem, bool(suffix)), text=False)
       for suffix in ("", ".gz") for stem in FASHION_FILES.values()},
    "image-folder-image": ReadFile("images", image_setup, text=False),
    "image-folder-groups": ReadFile("groups", groups_setup, text=True),
    "journal": ReadFile("journal", storage_setup("journal"), text=True),
    "sqlite": ReadFile("sqlite", storage_setup("sqlite"), text=False),
    **{name: ReadFile("export", export_setup(name), text=name.endswith((".json", ".py")))
       for name in ("spec.json", "card.json", "weights.safetensors", "model.py")},
}
CASES = [(name, damage) for name, read in FILES.items() for damage in (TEXT_DAMAGE if read.text else BINARY_DAMAGE)]
INTACT = sorted({read.family: name for name, read in FILES.items()}.values())


# ------------------------------------------------------------------------------------------ checks
def run_cli(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse; or a sys.exit() from a loaded file that got past the CLI
        code = stop.code
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert err.startswith("nas: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.mark.parametrize("name", INTACT)
def test_intact_setup_passes(name, study_files, tmp_path, capsys):
    _, argv = FILES[name].setup(tmp_path, study_files)
    code, err = run_cli(capsys, argv)
    assert code == 0, err


@pytest.mark.parametrize("name, damage", CASES, ids=[f"{name}-{damage.__name__}" for name, damage in CASES])
def test_damaged_file_is_one_line_naming_it(name, damage, study_files, tmp_path, capsys):
    path, argv = FILES[name].setup(tmp_path, study_files)
    rng = np.random.default_rng(int(hashlib.sha256(f"{name}-{damage.__name__}".encode()).hexdigest()[:8], 16))
    path.write_bytes(damage(path.read_bytes(), rng))
    code, err = run_cli(capsys, argv)
    assert_one_line_error(code, err, str(path))


# ------------------------------------------------------------------------------------------ spec.json contents
WRONG_VALUES = ["text", 7, 2.5, True, None, [1], {"a": 1}]


def _wrong_value(allowed: tuple[type, ...]) -> Any:
    return next(v for v in WRONG_VALUES if not isinstance(v, allowed) or isinstance(v, bool) and bool not in allowed)


def _edited_export(study_files: dict, folder: Path, keys: list[str], value: Any) -> Path:
    """A copy of the export whose spec.json has ``value`` at ``keys`` (``*``: the first key of that table)."""
    export = shutil.copytree(study_files["export"], folder / "export")
    manifest = json.loads((export / "spec.json").read_text())
    table = manifest
    for key in keys[:-1]:
        table = table[next(iter(table)) if key == "*" else key]
    table[next(iter(table)) if keys[-1] == "*" else keys[-1]] = value
    (export / "spec.json").write_text(json.dumps(manifest))
    return export


@pytest.mark.parametrize("dotted", MANIFEST_FIELDS)
def test_spec_json_entry_of_the_wrong_type(dotted, study_files, tmp_path, capsys):
    export = _edited_export(study_files, tmp_path, dotted.split("."), _wrong_value(MANIFEST_FIELDS[dotted]))
    code, err = run_cli(capsys, ["verify", str(export)])
    assert_one_line_error(code, err, str(export / "spec.json"), dotted.split(".")[-1].replace("*", ""))


def test_spec_entries_of_the_wrong_type(study_files, tmp_path, capsys):
    """Each key of the exported architecture spec, as a scalar of another type and as a container of another kind."""
    spec = json.loads((study_files["export"] / "spec.json").read_text())["spec"]
    assert {"input_shape", "num_classes", "normalize"} <= set(spec)
    for key, value in spec.items():
        for wrong in ("text" if not isinstance(value, str) else 7, {"a": 1} if isinstance(value, list) else [1]):
            export = _edited_export(study_files, tmp_path / f"{key}-{type(wrong).__name__}", ["spec", key], wrong)
            code, err = run_cli(capsys, ["verify", str(export)])
            assert_one_line_error(code, err, str(export / "spec.json"))


SPEC_CHANGES = {  # valid values that no longer describe the exported weights
    "input_shape": lambda shape: [shape[0], shape[1] * 2, shape[2] * 2],
    "num_classes": lambda n: n + 1,
    "hidden": lambda widths: [w * 2 for w in widths],
    "activation": lambda name: "relu" if name != "relu" else "tanh",
}


@pytest.mark.parametrize("key", SPEC_CHANGES)
def test_spec_json_disagreeing_with_the_weights(key, study_files, tmp_path, capsys):
    spec = json.loads((study_files["export"] / "spec.json").read_text())["spec"]
    export = _edited_export(study_files, tmp_path, ["spec", key], SPEC_CHANGES[key](spec[key]))
    code, err = run_cli(capsys, ["verify", str(export)])
    assert_one_line_error(code, err, str(export / "spec.json"), "does not describe the exported model")


# ------------------------------------------------------------------------------------------ model.py as code
MISBEHAVING_MODEL_CODE = {
    "raises-at-import": "raise RuntimeError('boom')\n",
    "exits-0-at-import": "import sys\nsys.exit(0)\n",
    "exits-0-in-build": "def build():\n    import sys\n    sys.exit(0)\n",
    "build-raises": "def build():\n    raise ValueError('no')\n",
    "build-returns-no-module": "def build():\n    return 42\n",
}


@pytest.mark.parametrize("code_text", MISBEHAVING_MODEL_CODE.values(), ids=MISBEHAVING_MODEL_CODE.keys())
def test_model_py_that_misbehaves_while_loading(code_text, study_files, tmp_path, capsys):
    export = shutil.copytree(study_files["export"], tmp_path / "export")
    (export / "model.py").write_text(code_text)
    code, err = run_cli(capsys, ["verify", str(export)])
    assert_one_line_error(code, err, str(export / "model.py"))


# ------------------------------------------------------------------------------------------ outputs under a file
OUTPUT_UNDER_A_FILE = {  # each command with a path under an existing file; {stored}: a database holding a study
    "search --out": "search {config} --out {blocker}/out",
    "search sqlite storage": "search {config} --storage sqlite:///{blocker}/x.db",
    "search journal storage": "search {config} --storage journal:{blocker}/x.journal",
    "status sqlite storage": "status --storage sqlite:///{blocker}/x.db",
    "export --out": "export --storage sqlite:///{stored} --trial 0 --out {blocker}/x",
    "report --out": "report --storage sqlite:///{stored} --out {blocker}/r.html",
}


@pytest.mark.parametrize("command", OUTPUT_UNDER_A_FILE.values(), ids=OUTPUT_UNDER_A_FILE.keys())
def test_path_under_an_existing_file(command, study_files, tmp_path, capsys):
    stored = Path(shutil.copy(study_files["sqlite"], tmp_path / "stored.db"))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    paths = {"config": _write_config(tmp_path, SYNTHETIC), "stored": stored, "blocker": blocker}
    code, err = run_cli(capsys, [part.format(**paths) for part in command.split()])
    assert_one_line_error(code, err, str(blocker))
    assert blocker.read_text() == "not a folder\n"
