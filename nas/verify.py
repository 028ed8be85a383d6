"""``nas verify``: re-evaluate an exported model on the held-out test split and gate on requirements.

The same objective code as the search runs through :class:`nas.study.Experiment` (``split="test"``,
no staging, so every metric is measured). Exit code 0 only when every requirement holds, 1 when one
fails (or, with ``--fail-on-gap``, when validation and test disagree by more than the tolerance),
2 for bad input. Usable as a CI gate; ``--json`` prints the report for machines.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch

import search_spaces

from . import config as config_module
from .errors import UsageError
from .export import EXPORT_FORMAT, FORMAT_VERSION, REQUIRED_FILES, build_model_source, load_state, state_dict_from_bytes
from .files import describe, read_json, reading
from .requirements import check_requirements_table
from .study import Experiment, check_requirements, flatten_metrics

DEFAULT_GAP_TOLERANCE = 0.05
EXPORT_HINT = "create one with 'nas export --storage URL --study-name NAME --trial N --out FOLDER'"
REEXPORT = "re-export the trial (nas export ... --out THIS_FOLDER --force)"
# The entries of spec.json that verify reads and the JSON types they must have ("a.*": every value of table a),
# so a damaged or hand-edited manifest is one line naming the entry, not a traceback deep inside scoring.
MANIFEST_FIELDS: dict[str, tuple[type, ...]] = {
    "format": (str,), "format_version": (int,), "study": (str,), "trial": (int,), "seed": (int, type(None)),
    "spec": (dict,), "spec.input_shape": (list,), "experiment": (dict,), "weights": (dict,), "weights.sha256": (str,),
    "recipe": (dict,), "recipe.outlier_families_seen": (list,), "validation_metrics": (dict,),
    "validation_metrics.*": (int, float, type(None)),
}
REQUIRED_MANIFEST_FIELDS = ("format", "spec", "spec.input_shape", "experiment", "weights", "weights.sha256")


def _entries(manifest: dict[str, Any], dotted: str) -> list[tuple[str, Any]]:
    """``(key path, value)`` of every entry ``dotted`` names that is present (``*`` matches each key of a table)."""
    found: list[tuple[str, Any]] = [("", manifest)]
    for part in dotted.split("."):
        deeper = []
        for where, table in found:
            if isinstance(table, dict):
                keys = list(table) if part == "*" else [part] if part in table else []
                deeper += [(f"{where}.{key}" if where else key, table[key]) for key in keys]
        found = deeper
    return found


def _type_names(types_: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table", type(None): "null"}
    return " or ".join(dict.fromkeys(names[t] for t in types_))


def check_manifest_fields(manifest: Any, path: Path) -> None:
    """Every entry of :data:`MANIFEST_FIELDS` has its declared type; the required ones are present."""
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise UsageError(f"{path} was not written by 'nas export' (no \"format\": \"{EXPORT_FORMAT}\"); {EXPORT_HINT}")
    for dotted, allowed in MANIFEST_FIELDS.items():
        entries = _entries(manifest, dotted)
        if not entries and dotted in REQUIRED_MANIFEST_FIELDS:
            raise UsageError(f"{path} is corrupt (no '{dotted}' entry); {REEXPORT}")
        for where, value in entries:
            if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
                got = json.dumps(value)[:60]
                raise UsageError(f"{path}: '{where}' must be {_type_names(allowed)}, got {got}; {REEXPORT}")


def read_manifest(folder: Path) -> dict[str, Any]:
    """``spec.json`` of an export folder, or a one-line :class:`UsageError` saying what is wrong.

    A ``card.json`` beside it must be intact too: a damaged file in the folder means the export is not the one
    that was written, and its verdict would not be worth trusting.
    """
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder; pass the folder 'nas export' wrote ({EXPORT_HINT})")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise UsageError(f"{folder} is not an export folder (missing {', '.join(missing)}); {EXPORT_HINT}")
    path = folder / "spec.json"
    manifest = read_json(path, "export manifest", REEXPORT)
    check_manifest_fields(manifest, path)
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise UsageError(f"{folder} was exported by a newer version (format {manifest['format_version']}, this one reads {FORMAT_VERSION}); upgrade robust-nas")
    card = folder / "card.json"
    if card.exists() and not isinstance(read_json(card, "robustness card", REEXPORT), dict):
        raise UsageError(f"robustness card {card} is corrupt (not a JSON table); {REEXPORT}")
    return manifest


def _structure(model: torch.nn.Module) -> list[str]:
    """What two builds of one architecture share: every tensor's name and shape, every leaf module's repr."""
    return [f"{name} {list(tensor.shape)}" for name, tensor in model.state_dict().items()] + [
        repr(module) for module in model.modules() if not list(module.children())]


def _check_spec_matches(model: torch.nn.Module, manifest: dict[str, Any], path: Path) -> None:
    """The spec in spec.json must build exactly the model of model.py and the weights (input shape included)."""
    try:
        reference = search_spaces.build(manifest["spec"])
    except Exception as error:  # SpecError, or whatever a wrongly typed value trips inside the builder
        raise UsageError(
            f"{path}: 'spec' is not an architecture this version can build ({describe(error)}); {REEXPORT}"
        ) from None
    expected, found = _structure(reference), _structure(model)
    if expected != found:
        first = next((i for i, (a, b) in enumerate(zip(expected, found)) if a != b), min(len(expected), len(found)))
        expected_part, found_part = (expected + ["nothing"])[first], (found + ["nothing"])[first]
        raise UsageError(
            f"{path}: 'spec' (input_shape {manifest['spec']['input_shape']}) does not describe the exported model: "
            f"{expected_part[:140]} per spec.json, {found_part[:140]} in model.py and the weights; {REEXPORT}"
        )


def _load_model(folder: Path, manifest: dict[str, Any]) -> torch.nn.Module:
    weights = folder / "weights.safetensors"
    with reading(weights, "weights", REEXPORT):
        blob = weights.read_bytes()
    if hashlib.sha256(blob).hexdigest() != manifest["weights"]["sha256"]:
        raise UsageError(f"{weights} does not match the checksum in spec.json (corrupt or replaced); {REEXPORT}")
    where = f"weights in {folder}"
    model = build_model_source(folder / "model.py")
    load_state(model, state_dict_from_bytes(blob, where), where)
    _check_spec_matches(model, manifest, folder / "spec.json")
    return model.eval()


def _gap_flagged(validation: float | None, test: float, tolerance: float) -> bool:
    """Absolute gap for metrics in [-1, 1] (accuracy, AUROC, ...), relative to the value for larger ones."""
    if validation is None or not math.isfinite(validation) or not math.isfinite(test):
        return False
    return abs(test - validation) > tolerance * max(1.0, abs(validation))


def verify_export(
    folder: str | Path,
    requirements: dict[str, dict[str, float]] | str | os.PathLike | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    gap_tolerance: float = DEFAULT_GAP_TOLERANCE,
) -> dict[str, Any]:
    """Measure every objective of the export on the test split; return the report (``passed`` says the verdict).

    ``requirements`` (a ``[requirements]`` table, or a TOML file holding one) replaces the ones stored with the
    export (those of the experiment that ran the search).
    """
    if isinstance(gap_tolerance, bool) or not isinstance(gap_tolerance, (int, float)) \
            or not math.isfinite(gap_tolerance) or gap_tolerance < 0:
        raise UsageError(f"--gap-tolerance must be a number >= 0, got {gap_tolerance!r}")
    if isinstance(requirements, (str, os.PathLike)):
        requirements = config_module.load_requirements(requirements)
    elif requirements is not None:
        requirements = check_requirements_table(requirements)
    folder = Path(folder)
    manifest = read_manifest(folder)
    model = _load_model(folder, manifest)
    try:
        config = config_module.resolve(manifest["experiment"])
    except UsageError as error:
        raise UsageError(
            f"{folder / 'spec.json'}: the stored 'experiment' is not a valid config ({error}); {REEXPORT}"
        ) from None
    if requirements is not None:
        config["requirements"] = requirements
    config["study"]["device"] = device
    if data_dir:
        config["data"]["data_dir"] = data_dir
    experiment = Experiment.from_config(config)
    if experiment.dataset.input_shape != manifest["spec"]["input_shape"]:
        raise UsageError(
            f"{folder / 'spec.json'}: the model takes inputs of shape {manifest['spec']['input_shape']}, but the "
            f"test data of data.name '{config['data']['name']}' has shape {experiment.dataset.input_shape}; "
            "pass the --data-dir the search used"
        )
    model.to(experiment.device)
    # the study seed (not the trial's): every export of a study is verified on the same test samples
    context = experiment.context(int(config["study"]["seed"]), manifest.get("recipe"), split="test")
    results = experiment.score(model, context, staged=False)
    metrics = flatten_metrics(results)
    checks = check_requirements(metrics, config["requirements"])
    validation = manifest.get("validation_metrics", {})
    rows = []
    for metric in [*checks, *(m for m in metrics if m not in checks)]:
        test, val = metrics.get(metric), validation.get(metric)
        row: dict[str, Any] = {"metric": metric, "validation": val, "test": test}
        row["gap"] = None if test is None or val is None else test - val
        row["gap_flagged"] = test is not None and _gap_flagged(val, test, gap_tolerance)
        if metric in checks:
            row.update(requirement={k: v for k, v in checks[metric].items() if k in ("min", "max")}, passed=checks[metric]["pass"] is True)
        rows.append(row)
    return {
        "export": str(folder),
        "study": manifest.get("study"),
        "trial": manifest.get("trial"),
        "split": "test",
        "n_samples": len(context.x),
        "device": str(experiment.device),
        "gap_tolerance": gap_tolerance,
        "metrics": rows,
        "requirements": len(checks),
        "failed": [row["metric"] for row in rows if row.get("passed") is False],
        "gaps": [row["metric"] for row in rows if row["gap_flagged"]],
        "passed": all(row["pass"] is True for row in checks.values()),
        "seconds": {name: result.seconds for name, result in results.items()},
    }


def _print_report(report: dict[str, Any]) -> None:
    from .progress import make_console
    from rich.table import Table
    from rich.text import Text

    from .card import bound_text, fmt

    console = make_console()
    table = Table(title=f"verify {report['export']} (study '{report['study']}', trial {report['trial']}): "
                        f"{report['n_samples']} held-out test samples")
    for column in ("metric", "validation", "test", "gap", "requirement", "result"):
        table.add_column(column, justify="left" if column in ("metric", "requirement", "result") else "right")
    for row in report["metrics"]:
        gap = fmt(row["gap"]) + (" !" if row["gap_flagged"] else "")
        requirement = bound_text(row["requirement"]) if "requirement" in row else ""
        result = Text("") if "passed" not in row else (Text("pass", "green") if row["passed"] else Text("FAIL", "red"))
        table.add_row(row["metric"], fmt(row["validation"]), fmt(row["test"]), gap, requirement, result)
    console.print(table)
    for row in report["metrics"]:
        if row["gap_flagged"]:
            console.print(f"gap: {row['metric']} is {fmt(row['test'])} on test vs {fmt(row['validation'])} on validation "
                          f"(tolerance {report['gap_tolerance']:g}): validation numbers may not carry over (the search "
                          "may have overfit its validation split, or the samples are too few)", style="yellow")
    if not report["requirements"]:
        console.print("no requirements given (none stored with the export and no --requirements file): nothing to gate on")
    elif report["passed"]:
        console.print(Text.assemble(("PASS", "green"), f": all {report['requirements']} requirement(s) hold on the test split"))
    else:
        console.print(Text.assemble(("FAIL", "red"), f": {len(report['failed'])} of {report['requirements']} requirement(s) do not "
                                    f"hold on the test split: {', '.join(report['failed'])}"))


def _cmd_verify(args: argparse.Namespace) -> int:
    report = verify_export(args.folder, args.requirements, data_dir=args.data_dir, device=args.device,
                           gap_tolerance=args.gap_tolerance)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report)
    if not report["passed"] or (args.fail_on_gap and report["gaps"]):
        return 1
    return 0


def register_command(subparsers: Any) -> None:
    """Add ``nas verify`` to the CLI (picked up by ``nas.cli``)."""
    from .cli_types import non_empty_str, non_negative_float

    parser = subparsers.add_parser(
        "verify", help="re-evaluate an exported model on the held-out test split; exit 0 only if every requirement holds",
        description="Measure every objective of an export on the test split (never used by the search), compare with the "
                    "requirements and with the validation values. Exit 0: all requirements hold; 1: one fails; 2: bad input.",
    )
    parser.add_argument("folder", type=non_empty_str, help="export folder written by 'nas export'")
    parser.add_argument("--requirements", type=non_empty_str,
                        help="TOML file with a [requirements] table (default: the experiment's own requirements)")
    parser.add_argument("--data-dir", type=non_empty_str,
                        help="folder holding the dataset files (overrides the experiment's data.data_dir)")
    parser.add_argument("--device", default="auto", type=non_empty_str, help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--gap-tolerance", type=non_negative_float, default=DEFAULT_GAP_TOLERANCE,
                        help="report metrics whose test value differs from validation by more than this "
                             "(absolute for values within [-1, 1], relative above; default %(default)s)")
    parser.add_argument("--fail-on-gap", action="store_true", help="exit 1 when a validation-vs-test gap exceeds the tolerance")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    parser.set_defaults(handler=_cmd_verify)
