"""``nas export``: one trial becomes a self-contained folder a person can ship.

The folder holds ``model.py`` (readable PyTorch source that imports only torch), ``weights.safetensors``
(the trained weights, no pickle), ``spec.json`` (spec, recipe, preprocessing, seed, config hash, the validation
results with their intervals and the experiment config ``nas verify`` needs) and the robustness card
(``card.md``/``card.json``). Everything is read from the trial's user attributes and its weights artifact; no
model is unpickled. ``spec.json`` holds the sha256 of every other file of the folder and of its own content
(``manifest_sha256``), so ``nas verify`` notices a file changed or damaged after export.

Example::

    study = nas.storage.load_study("sqlite:///runs/nas.db", "fm1")
    trial = pick_trial(study, "max:accuracy where feasible")
    export_trial(study, trial.number, Path("exported/fm1"), storage_url="sqlite:///runs/nas.db")
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import itertools
import json
import math
import re
import shutil
import sys
import types
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Iterable

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import TrialState
from safetensors.torch import load as load_safetensors

import search_spaces

from . import codegen
from . import data as data_module
from ._version import __version__
from .card import build_card, write_card
from .errors import UsageError
from .export_format import EXPORT_FORMAT, EXTRA_FORMATS, FORMAT_VERSION
from .files import check_folder_path, describe
from .pareto import is_feasible
from .records import Records, artifact_folders, trial_record
from .storage import is_artifact_id, strip_credentials
from .study import CONFIG_ATTR, stored_config

_PICK = re.compile(r"^\s*(max|min)\s*[:\s]\s*([A-Za-z_][\w.]*)\s*(?:(?:where|,)\s*(feasible))?\s*$", re.IGNORECASE)
_module_ids = itertools.count()


# ---------------------------------------------------------------------------------------------- trials
def _numbers(trials: Iterable[optuna.trial.FrozenTrial], limit: int = 20) -> str:
    numbers = [str(t.number) for t in trials]
    return ", ".join(numbers[:limit]) + (", ..." if len(numbers) > limit else "") if numbers else "none"


def get_trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    """The COMPLETE trial ``number`` of ``study``, or a one-line :class:`UsageError` saying which exist."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    by_number = {t.number: t for t in trials}
    if number not in by_number:
        span = f"trials 0-{len(trials) - 1}" if trials else "no trials"
        raise UsageError(f"no trial {number} in study '{study.study_name}' (it has {span}); "
                         f"COMPLETE trials: {_numbers(complete)}")
    trial = by_number[number]
    if trial.state != TrialState.COMPLETE:
        reason = trial.user_attrs.get("fail_reason")
        raise UsageError(
            f"trial {number} of study '{study.study_name}' is {trial.state.name}{f' ({reason})' if reason else ''}; "
            f"only COMPLETE trials can be exported; COMPLETE trials: {_numbers(complete)}"
        )
    return trial


def pick_trial(study: optuna.Study, selector: str, storage_url: str | None = None,
               artifacts: str | Path | None = None) -> optuna.trial.FrozenTrial:
    """Resolve ``"max:METRIC"``/``"min:METRIC"`` (optionally ``" where feasible"``) to a COMPLETE trial.

    ``METRIC`` is an objective or any requirement metric (``accuracy``, ``params``, ``ood.min_auroc``), read from
    the trials' records (``storage_url``/``artifacts`` locate them as for :func:`export_trial`);
    ties go to the earliest trial.
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    records = Records(study, storage_url, artifacts)
    measured = {t.number: records(t).get("metrics") or {} for t in complete}
    metrics = sorted({name for values in measured.values() for name in values})
    match = _PICK.match(selector or "")
    if not match:
        raise UsageError(
            f"--pick {selector!r} is not a selector; use 'max:METRIC' or 'min:METRIC', optionally followed by "
            f"' where feasible' (e.g. 'max:accuracy where feasible'); metrics: {', '.join(metrics) or 'none yet'}"
        )
    goal, metric, feasible_only = match.group(1).lower(), match.group(2), bool(match.group(3))
    if not complete:
        raise UsageError(f"study '{study.study_name}' has no COMPLETE trial to pick from")
    if metric not in metrics:
        raise UsageError(f"--pick: unknown metric '{metric}' in study '{study.study_name}'; "
                         f"allowed: {', '.join(metrics)}")
    candidates = [t for t in complete if metric in measured[t.number] and (is_feasible(t) or not feasible_only)]
    if not candidates:
        raise UsageError(
            f"--pick: no COMPLETE trial of study '{study.study_name}' meets every requirement; "
            "drop 'where feasible' or relax the requirements"
        )
    sign = 1.0 if goal == "max" else -1.0
    return max(candidates, key=lambda t: (sign * measured[t.number][metric], -t.number))


# ---------------------------------------------------------------------------------------------- weights
def read_weights(
    study: optuna.Study, trial: optuna.trial.FrozenTrial, storage_url: str | None = None,
    artifacts: str | Path | None = None,
) -> bytes:
    """The trial's safetensors bytes from the artifact store, or a one-line :class:`UsageError`."""
    artifact_id = trial.user_attrs.get("weights_artifact")
    if not artifact_id:
        raise UsageError(f"trial {trial.number} has no stored weights (user attr 'weights_artifact' missing); "
                         "re-run it with 'nas search'")
    if not is_artifact_id(artifact_id):
        raise UsageError(f"trial {trial.number}: stored weights artifact id {artifact_id!r} is not an artifact id "
                         "(it would name a path outside the artifact folder); the study's storage was altered")
    folders = [Path(folder) for folder in artifact_folders(study, storage_url, artifacts)]
    existing = [folder for folder in folders if folder.is_dir()]
    if not existing:
        raise UsageError(
            f"artifact folder not found (looked in {', '.join(map(str, folders)) or 'nowhere'}); "
            "pass --artifacts DIR, the folder 'nas search' wrote next to the storage"
        )
    for folder in existing:
        try:
            with FileSystemArtifactStore(str(folder)).open_reader(artifact_id) as reader:
                return reader.read()
        except ArtifactNotFound:
            continue
    raise UsageError(
        f"weights of trial {trial.number} (artifact {artifact_id}) are missing from {', '.join(map(str, existing))}; "
        "pass --artifacts DIR pointing at the study's artifact folder"
    )


def state_dict_from_bytes(blob: bytes, where: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, or a one-line :class:`UsageError` for a truncated or garbled one."""
    try:
        return load_safetensors(blob)
    except Exception as error:  # safetensors raises its own error types for truncated/garbled files
        raise UsageError(f"{where} are corrupt: not a readable safetensors file ({describe(error)})") from None


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line error when the weights do not fit the architecture."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        detail = " ".join(str(error).split())[:300]
        raise UsageError(f"{where} do not match the architecture: {detail}") from None


@contextlib.contextmanager
def _running_model_code(path: Path, failure: str) -> Iterator[None]:
    """model.py is code read from a file: whatever it raises, even ``SystemExit`` from a stray ``sys.exit(0)``
    (which would end the command with a false success), is one line naming the file. Ctrl-C still stops."""
    try:
        yield
    except (UsageError, KeyboardInterrupt):
        raise
    except BaseException as error:
        raise UsageError(f"{path} {failure} ({type(error).__name__}: {describe(error)}); re-export the trial") from None


def load_model_source(path: Path) -> types.ModuleType:
    """Import a generated ``model.py`` by path (each call gets a fresh module object)."""
    name = f"_nas_exported_model_{next(_module_ids)}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # inspect.getsource (TorchScript) looks modules up here
    try:
        with _running_model_code(path, "cannot be loaded"):
            module_spec.loader.exec_module(module)
    except UsageError:
        sys.modules.pop(name, None)
        raise
    if not callable(getattr(module, "build", None)):
        sys.modules.pop(name, None)
        raise UsageError(f"{path} defines no build() function; it is not an exported model.py")
    return module


def build_model_source(path: Path) -> torch.nn.Module:
    """``build()`` of the ``model.py`` at ``path``: a fresh ``nn.Module``, or one line saying why not."""
    module = load_model_source(path)
    try:
        with _running_model_code(path, "build() failed"):
            model = module.build()
    finally:
        sys.modules.pop(module.__name__, None)
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"{path}: build() returned {type(model).__name__}, not a torch.nn.Module; re-export the trial")
    return model


# ---------------------------------------------------------------------------------------------- export
def _dataset_info(config: dict[str, Any], data_dir: str | None) -> dict[str, Any]:
    """What the card says about the data; the dataset itself is optional (export works without it)."""
    options = dict(config["data"])
    if data_dir:
        options["data_dir"] = data_dir
    info: dict[str, Any] = {"name": options["name"], "seed": options["seed"]}
    try:
        dataset = data_module.load(options)
    except UsageError as error:
        info["note"] = f"dataset not available at export time, so class names and split sizes are unknown ({error})"
        return info
    info.update(
        train_size=len(dataset.train_x), val_size=len(dataset.val_x), test_size=len(dataset.test_x),
        input_shape=dataset.input_shape, class_names=dataset.class_names,
        normalize={"mean": dataset.mean, "std": dataset.std}, input_range=list(dataset.data_range),
    )
    return info


def _check_formats(formats: Iterable[str]) -> list[str]:
    formats = list(dict.fromkeys(formats))
    for name in formats:
        if name not in EXTRA_FORMATS:
            raise UsageError(f"--format {name!r} is not allowed; allowed: {', '.join(EXTRA_FORMATS)}")
    if "onnx" in formats:
        missing = [package for package in ("onnx", "onnxscript") if importlib.util.find_spec(package) is None]
        if missing:
            raise UsageError(
                f"--format onnx needs the {' and '.join(missing)} package(s), which are not installed; "
                f"install them (pip install {' '.join(missing)}) or use --format export (torch.export, no extra "
                "package)"
            )
    return formats


def _write_format(name: str, model: torch.nn.Module, example: torch.Tensor, folder: Path) -> None:
    path = folder / EXTRA_FORMATS[name]
    batch = {0: torch.export.Dim("batch")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notes from the exporters
        if name == "export":
            torch.export.save(torch.export.export(model, (example,), dynamic_shapes=(batch,)), str(path))
        elif name == "onnx":
            torch.onnx.export(model, (example,), str(path), dynamo=True, dynamic_shapes=(batch,), input_names=["x"])
        else:
            torch.jit.script(model).save(str(path))


def _check_output(out_dir: Path, force: bool) -> None:
    check_folder_path(out_dir.parent, f"--out {out_dir}")
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} exists and is not a folder; choose another --out")
    if not any(out_dir.iterdir()):
        return
    if not force:
        raise UsageError(f"--out {out_dir} exists and is not empty; pass --force to replace an earlier export, "
                         "or choose another --out")
    if not is_export(out_dir):
        raise UsageError(f"refusing to replace {out_dir}: it is not an export folder "
                         "(no spec.json written by 'nas export')")


def is_export(folder: Path) -> bool:
    """Does ``folder`` hold a ``spec.json`` written by ``nas export``? (Unreadable or garbled: no.)"""
    try:
        manifest = json.loads((folder / "spec.json").read_bytes())
    except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
        return False
    return isinstance(manifest, dict) and manifest.get("format") == EXPORT_FORMAT


def file_checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file of an export folder but spec.json, which records them."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.iterdir()) if path.is_file() and path.name != "spec.json"}


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """sha256 of spec.json's content without its own ``manifest_sha256`` entry (canonical JSON)."""
    content = {key: value for key, value in manifest.items() if key != "manifest_sha256"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def fitted_temperature(metrics: dict[str, Any]) -> float | None:
    """The temperature the calibration objective fitted on the validation split, when the trial measured one."""
    value = metrics.get("calibration.temperature")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def export_trial(
    study: optuna.Study,
    trial_number: int,
    out_dir: str | Path,
    *,
    storage_url: str | None = None,
    artifacts: str | Path | None = None,
    formats: Iterable[str] = (),
    data_dir: str | None = None,
    force: bool = False,
) -> Path:
    """Write the export folder of one COMPLETE trial and return its path.

    Args:
        study: the study holding the trial (``nas.storage.load_study``).
        trial_number: which trial (see :func:`pick_trial` to choose by a metric).
        out_dir: the folder to create; with ``force`` an earlier export there is replaced.
        storage_url: the study's storage, used to find the artifact folder when the study's own path is relative.
        artifacts: the artifact folder holding the weights (default: the one recorded on the study).
        formats: extra files: ``"export"`` (torch.export ``model.pt2``), ``"onnx"``, ``"torchscript"``.
        data_dir: where the dataset lives, for class names and split sizes on the card (optional).
    """
    out_dir = Path(out_dir)
    formats = _check_formats(formats)
    _check_output(out_dir, force)
    trial = get_trial(study, trial_number)
    blob = read_weights(study, trial, storage_url, artifacts)  # first: a missing artifact folder is named as such
    view = trial_record(study, trial, storage_url, artifacts)
    spec = view.get("spec")
    if not isinstance(spec, dict):
        raise UsageError(f"trial {trial.number} has no architecture spec (it was not run by 'nas search')")
    try:
        model = search_spaces.build(spec)
    except search_spaces.SpecError as error:
        raise UsageError(f"trial {trial.number}: this version cannot build its spec ({error}); "
                         "export it with the version that ran the search") from None
    where = f"weights of trial {trial.number}"
    load_state(model, state_dict_from_bytes(blob, where), where)
    model.eval()

    stored = study.user_attrs.get(CONFIG_ATTR) or {}
    config = stored_config(study, strip_credentials(storage_url or stored.get("study", {}).get("storage", "")))
    data = _dataset_info(config, data_dir)
    validation_metrics = view.get("metrics", {})
    temperature = fitted_temperature(validation_metrics)
    try:
        source = codegen.generate(spec, class_names=data.get("class_names"),
                                  origin={"study": study.study_name, "trial": trial.number}, temperature=temperature)
    except search_spaces.SpecError as error:
        raise UsageError(f"trial {trial.number}: {error}") from None

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}-{uuid.uuid4().hex[:12]}"
    staging.mkdir()  # mode 0777 less the user's umask, like any other output (mkdtemp would make it 0700)
    generated: types.ModuleType | None = None
    try:
        (staging / "model.py").write_text(source, encoding="utf-8")
        (staging / "weights.safetensors").write_bytes(blob)
        generated = load_model_source(staging / "model.py")
        exported = generated.build()
        load_state(exported, load_safetensors(blob), "exported weights")
        exported.eval()
        example = torch.rand(4, *spec["input_shape"], generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            logits = model(example)
            reproduced = torch.allclose(exported(example), logits, atol=1e-6, rtol=0.0)
            if temperature is not None:  # build(calibrated=True): the same logits divided by the temperature
                calibrated = generated.build(calibrated=True)
                calibrated.load_state_dict(exported.state_dict())
                reproduced &= torch.allclose(calibrated.eval()(example), logits / temperature, atol=1e-6, rtol=0.0)
            if not reproduced:
                raise RuntimeError(f"internal error: generated model.py does not reproduce trial {trial.number}; "
                                   f"please report this spec: {json.dumps(spec)}")
        for name in formats:
            _write_format(name, exported, example, staging)
        card = build_card(study, trial, config, model, data, view)
        write_card(card, staging)
        preprocessing = {
            "input_shape": spec["input_shape"], "num_classes": spec["num_classes"], "normalize": spec.get("normalize"),
            "class_names": data.get("class_names"), "input_range": data.get("input_range"),
            "note": "channels-first inputs in their raw range (pixels in [0, 1]); the model normalises them itself",
        }
        manifest = {
            "format": EXPORT_FORMAT, "format_version": FORMAT_VERSION, "robust_nas_version": __version__,
            "study": study.study_name, "trial": trial.number,
            "spec": spec, "spec_summary": search_spaces.summary(spec), "recipe": view.get("recipe", {}),
            "seed": trial.user_attrs.get("seed"), "config_hash": trial.user_attrs.get("config_hash"),
            "preprocessing": preprocessing,
            "validation_metrics": validation_metrics,
            "validation_objectives": view.get("objectives", {}),
            "calibration": {"temperature": temperature},
            "feasible": is_feasible(trial),
            "weights": {"file": "weights.safetensors", "sha256": hashlib.sha256(blob).hexdigest()},
            "files": sorted(p.name for p in staging.iterdir()) + ["spec.json"],
            "sha256": file_checksums(staging),
            "experiment": config,
        }
        manifest = json.loads(json.dumps(manifest))  # checksummed as verify will read it back
        manifest["manifest_sha256"] = manifest_checksum(manifest)
        (staging / "spec.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir) if any(out_dir.iterdir()) else out_dir.rmdir()
        staging.rename(out_dir)
    finally:
        if generated is not None:  # the module was only needed to check and trace the export
            sys.modules.pop(generated.__name__, None)
        if staging.exists():
            shutil.rmtree(staging)
    return out_dir
