"""``nas verify``: re-evaluate an exported model on the held-out test split and gate on requirements.

The same objective code as the search runs through :class:`nas.study.Experiment` (``split="test"``, no
staging, so every metric is measured), with each objective's ``verify_options`` instead of the search's
budgets (larger samples, a strong attack, more detectors) and the budgets of ``--attack-samples`` /
``--ood-samples``. Every number carries its 95% interval; a requirement passes when its whole interval
meets the bound, fails when none of it does and is inconclusive when the interval straddles the bound.
Exit code 0 only when every requirement passes; 1 when one fails or is not evaluated, when one is
inconclusive (unless ``--allow-inconclusive``) or, with ``--fail-on-gap``, when a metric degraded from
validation to test by more than the intervals explain; 2 for bad input, a damaged or altered export
included. Usable as a CI gate; ``--json`` prints the report for machines.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch

import objectives
import search_spaces

from . import config as config_module
from .card import (display_name, estimates, fmt_interval, fmt_samples, fmt_value, how_measured, metric_rows,
                   objective_options, requirement_rows, requirement_text, row_names)
from .errors import UsageError
from .export import build_model_source, load_state, manifest_checksum, state_dict_from_bytes
from .export_format import (DEFAULT_ATTACK_SAMPLES, DEFAULT_GAP_TOLERANCE, EXPORT_FORMAT, FORMAT_VERSION,
                            REQUIRED_FILES)
from .files import describe, read_json, reading
from .requirements import FAIL, INCONCLUSIVE, NOT_EVALUATED, PASS, check_requirements_table, requirement_metrics
from .schema import Field
from .study import Experiment

# A degradation counts only when the 95% interval of (test - validation) lies wholly on the worse side; the
# tolerance (0 by default) further ignores significant but negligible ones.
# --FLAG (as verify_export's keyword) -> the objective whose sample budgets it sets
BUDGET_FLAGS = {"attack_samples": "adversarial", "ood_samples": "ood"}
EXPORT_HINT = "create one with 'nas export --storage URL --study-name NAME --trial N --out FOLDER'"
REEXPORT = "re-export the trial (nas export ... --out THIS_FOLDER --force)"
# The entries of spec.json that verify reads and the JSON types they must have ("a.*": every value of table a),
# so a damaged or hand-edited manifest is one line naming the entry, not a traceback deep inside scoring.
MANIFEST_FIELDS: dict[str, tuple[type, ...]] = {
    "format": (str,), "format_version": (int,), "study": (str,), "trial": (int,), "seed": (int, type(None)),
    "spec": (dict,), "spec.input_shape": (list,), "experiment": (dict,), "weights": (dict,), "weights.sha256": (str,),
    "recipe": (dict,), "recipe.outlier_families_seen": (list,), "validation_metrics": (dict,),
    "validation_metrics.*": (int, float, type(None)), "validation_objectives": (dict,),
    "validation_objectives.*": (dict,), "sha256": (dict,), "sha256.*": (str,), "manifest_sha256": (str,),
}
REQUIRED_MANIFEST_FIELDS = ("format", "spec", "spec.input_shape", "experiment", "weights", "weights.sha256")
# Entries a format 2 export must have: the checksums of every file and of spec.json itself.
CHECKSUM_FIELDS = ("sha256", "manifest_sha256")


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

    Every file it records a checksum for must be intact (format 2): a file changed after export means the
    folder is not the one that was written, and its verdict would not be worth trusting. Format 1 exports
    recorded the weights' checksum only; a ``card.json`` beside them must at least be a JSON table.
    """
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder; pass the folder 'nas export' wrote ({EXPORT_HINT})")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise UsageError(f"{folder} is not an export folder (missing {', '.join(missing)}); {EXPORT_HINT}")
    path = folder / "spec.json"
    manifest = read_json(path, "export manifest", REEXPORT)
    check_manifest_fields(manifest, path)
    version = manifest.get("format_version", 1)
    if version > FORMAT_VERSION:
        raise UsageError(f"{folder} was exported by a newer version (format {version}, this one reads "
                         f"{FORMAT_VERSION}); upgrade robust-nas")
    if version >= 2:
        absent = [name for name in CHECKSUM_FIELDS if name not in manifest]
        if absent:
            raise UsageError(f"{path} is corrupt (no '{absent[0]}' entry); {REEXPORT}")
        for name, expected in manifest["sha256"].items():
            if name in ("", ".", "..") or Path(name).name != name or "\\" in name:
                raise UsageError(f"{path} is corrupt (a checksum of {name!r}, which is not a file name); {REEXPORT}")
            check_checksum(folder / name, expected)
    card = folder / "card.json"
    if card.exists() and not isinstance(read_json(card, "robustness card", REEXPORT), dict):
        raise UsageError(f"robustness card {card} is corrupt (not a JSON table); {REEXPORT}")
    return manifest


def check_checksum(path: Path, expected: str) -> bytes:
    """The bytes of an export's file when they match the sha256 that spec.json records; one line otherwise."""
    if not path.is_file():
        raise UsageError(f"{path} is missing (spec.json records its checksum); {REEXPORT}")
    with reading(path, "export file", REEXPORT):
        blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != expected:
        raise UsageError(f"{path} does not match the checksum in spec.json (it, or spec.json, was changed or damaged "
                         f"after export); {REEXPORT}")
    return blob


def check_manifest_checksum(manifest: dict[str, Any], path: Path) -> None:
    """spec.json's own content must be what export wrote (format 2): an edited bound, spec or result is refused."""
    if manifest.get("format_version", 1) >= 2 and manifest_checksum(manifest) != manifest["manifest_sha256"]:
        raise UsageError(f"{path} does not match its own checksum ('manifest_sha256'): it was edited or damaged "
                         f"after export; {REEXPORT}")


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
    """model.py built, the weights loaded, and both checked against spec.json; then spec.json's own checksum."""
    weights = folder / "weights.safetensors"
    with reading(weights, "weights", REEXPORT):
        blob = weights.read_bytes()
    if hashlib.sha256(blob).hexdigest() != manifest["weights"]["sha256"]:
        raise UsageError(f"{weights} does not match the checksum in spec.json (corrupt or replaced); {REEXPORT}")
    model = build_model_source(folder / "model.py")
    where = f"weights {weights} (loaded into the model {folder / 'model.py'} builds)"
    load_state(model, state_dict_from_bytes(blob, f"weights {weights}"), where)
    # the spec first: an edited architecture is named as such; any other edit of spec.json by the checksum
    _check_spec_matches(model, manifest, folder / "spec.json")
    check_manifest_checksum(manifest, folder / "spec.json")
    return model.eval()


# ---------------------------------------------------------------------------------------------- options
def budget_options(cls: type[objectives.Objective]) -> list[str]:
    """The sample budgets of an objective that a budget flag sets: ``samples`` and every ``*_samples`` option
    (not ``fit_*``: the data a detector is fitted on is not what the numbers are measured on)."""
    return [key for key in cls.params if (key == "samples" or key.endswith("_samples")) and not key.startswith("fit_")]


def _flag(keyword: str) -> str:
    return "--" + keyword.replace("_", "-")


def verification_options(config: dict[str, Any], budgets: dict[str, int | None]) -> dict[str, dict[str, Any]]:
    """The options each measured objective runs with in verify: the experiment's, then the objective's
    ``verify_options`` (larger samples, a stronger attack, ...), then the budget flags (``attack_samples``:
    every sample budget of the adversarial objective, ``ood_samples``: of the OOD objective)."""
    needed = [*config["objectives"], *(requirement_metrics()[metric][0] for metric in config["requirements"])]
    tables = {}
    for name in dict.fromkeys(needed):
        cls = objectives.get(name)
        table = {**config["objectives"].get(name, {}), **cls.verify_options}
        for keyword, objective in BUDGET_FLAGS.items():
            if objective != name or budgets.get(keyword) is None:
                continue
            for key in budget_options(cls):
                declared = Field.parse(cls.params[key], f"objectives.{name}.{key}")
                too_low = declared.low is not None and budgets[keyword] < declared.low
                if too_low or declared.high is not None and budgets[keyword] > declared.high:
                    raise UsageError(f"{_flag(keyword)} {budgets[keyword]} is out of range for {name}.{key}; "
                                     f"allowed: [{declared.low}, {declared.high}]")
                table[key] = budgets[keyword]
        try:
            cls(**{key: value for key, value in table.items() if key != "direction"})
        except ValueError as error:
            raise UsageError(f"objective '{name}' cannot run with verify's options: {error}") from None
        tables[name] = table
    return tables


# ---------------------------------------------------------------------------------------------- gaps
def _half_width(interval: list[float] | None) -> float | None:
    if interval is None or not all(isinstance(end, (int, float)) and math.isfinite(end) for end in interval):
        return None
    return abs(interval[1] - interval[0]) / 2


def degradation(direction: str | None, validation: float | None, validation_interval: list[float] | None,
                test: float | None, test_interval: list[float] | None,
                tolerance: float = DEFAULT_GAP_TOLERANCE) -> tuple[list[float] | None, bool | None]:
    """The 95% interval of ``test - validation`` and whether it shows a degradation beyond sampling noise.

    The two estimates are independent (different splits): the standard error of the difference combines the
    half-widths of both 95% intervals (normal approximation). A degradation is flagged only when the whole
    interval of the difference lies on the worse side of 0 for the metric's ``direction`` and the gap exceeds
    ``tolerance`` (absolute within [-1, 1], relative to the value above). A better test value is never flagged.
    Returns ``(None, None)`` when a side has no value or no interval (the noise is unknown: nothing to test),
    and ``(interval, None)`` for a metric without a known direction.
    """
    numbers = (validation, test)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers):
        return None, None
    halves = (_half_width(validation_interval), _half_width(test_interval))
    if None in halves:
        return None, None
    gap, margin = test - validation, math.hypot(*halves)
    interval = [gap - margin, gap + margin]
    if direction not in ("maximize", "minimize"):
        return interval, None
    worse_by_at_least = -interval[1] if direction == "maximize" else interval[0]
    return interval, worse_by_at_least > 0 and abs(gap) > tolerance * max(1.0, abs(validation))


def _check_budget(keyword: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UsageError(f"{_flag(keyword)} must be an integer >= 1, got {value!r}")


# ---------------------------------------------------------------------------------------------- verify
def verify_export(
    folder: str | Path,
    requirements: dict[str, dict[str, float]] | str | os.PathLike | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    gap_tolerance: float = DEFAULT_GAP_TOLERANCE,
    attack_samples: int | None = DEFAULT_ATTACK_SAMPLES,
    ood_samples: int | None = None,
) -> dict[str, Any]:
    """Measure every objective of the export on the test split; return the report (``passed`` says the verdict).

    ``requirements`` (a ``[requirements]`` table, or a TOML file holding one) replaces the ones stored with the
    export (those of the experiment that ran the search). ``attack_samples`` / ``ood_samples`` set the sample
    budgets of the adversarial / OOD objective (None: the objective's ``verify_options`` or the search's).
    """
    if isinstance(gap_tolerance, bool) or not isinstance(gap_tolerance, (int, float)) \
            or not math.isfinite(gap_tolerance) or gap_tolerance < 0:
        raise UsageError(f"--gap-tolerance must be a number >= 0, got {gap_tolerance!r}")
    budgets = {"attack_samples": attack_samples, "ood_samples": ood_samples}
    for keyword, value in budgets.items():
        _check_budget(keyword, value)
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
    options = verification_options(config, budgets)
    config["objectives"] = {**config["objectives"], **options}
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
    try:
        results = experiment.score(model, context, staged=False)
    except ValueError as error:  # an objective refusing this model or data (e.g. OOD sets it was trained on)
        raise UsageError(f"cannot measure the export on the test split: {describe(error)}") from None
    except SystemExit as stop:  # model.py's code, run by every forward pass, must not end verify with its code
        raise UsageError(f"{folder / 'model.py'}: the model called exit({stop.code!r}) while it was scored; "
                         f"{REEXPORT}") from None
    test = {name: result.to_json() for name, result in results.items()}
    report = _report(folder, manifest, config, experiment, context, test, options, gap_tolerance)
    # which attack broke how many samples, and how long each took: where the robust accuracy came from
    report["strong_attack"] = (results["adversarial"].details or {}).get("strong") if "adversarial" in results \
        else None
    return report


def _report(folder: Path, manifest: dict[str, Any], config: dict[str, Any], experiment: Experiment,
            context: objectives.EvaluationContext, test: dict[str, dict[str, Any]],
            options: dict[str, dict[str, Any]], gap_tolerance: float) -> dict[str, Any]:
    """The verdict: one row per metric (both splits, intervals, gap) and one per requirement."""
    validation = manifest.get("validation_objectives") or {}
    validation_table = estimates(validation)
    legacy = manifest.get("validation_metrics") or {}  # format 1: values without intervals
    requirements = requirement_rows(config["requirements"], estimates(test))
    rows = metric_rows(test, reference=validation)
    for row in rows:
        names = row_names(row)
        before = next((validation_table[name] for name in names if name in validation_table), None) or {
            "value": next((legacy[name] for name in names if name in legacy), None), "interval": None, "samples": None}
        row.update(test=row.pop("value"), test_interval=row.pop("interval"), test_samples=row.pop("samples"),
                   validation=before["value"], validation_interval=before["interval"],
                   validation_samples=before["samples"])
        numbers = (row["test"], row["validation"])
        row["gap"] = numbers[0] - numbers[1] if all(isinstance(v, (int, float)) for v in numbers) else None
        row["gap_interval"], row["degraded"] = degradation(
            row["direction"], row["validation"], row["validation_interval"], row["test"], row["test_interval"],
            gap_tolerance)
        row["requirements"] = [requirement for requirement in requirements if requirement["metric"] in names]
        verdicts = {requirement["verdict"] for requirement in row["requirements"]}
        row["verdict"] = next((v for v in (NOT_EVALUATED, FAIL, INCONCLUSIVE, PASS) if v in verdicts), None)
    required = [requirement["metric"] for requirement in requirements]
    rows.sort(key=lambda row: min((required.index(n) for n in row_names(row) if n in required), default=len(required)))
    failed = [row["metric"] for row in requirements if row["verdict"] in (FAIL, NOT_EVALUATED)]
    inconclusive = [row["metric"] for row in requirements if row["verdict"] == INCONCLUSIVE]
    samples = {name: sorted({int(n) for n in (result.get("samples") or {}).values()}) for name, result in test.items()}
    return {
        "export": str(folder),
        "study": manifest.get("study"),
        "trial": manifest.get("trial"),
        "format_version": manifest.get("format_version", 1),
        "integrity": ("every file and spec.json checksummed" if manifest.get("format_version", 1) >= 2 else
                      "format 1 export: only the weights are checksummed; re-export it to cover model.py and the card"),
        "split": "test",
        "n_samples": len(context.x),
        "samples": samples,
        "options": {name: objective_options(name, table) for name, table in options.items()},
        "settings": {name: result.get("settings") or {} for name, result in test.items()},
        "device": str(experiment.device),
        "gap_tolerance": gap_tolerance,
        "metrics": rows,
        "requirements": requirements,
        "failed": failed,
        "inconclusive": inconclusive,
        "gaps": [row["metric"] for row in rows if row["degraded"]],
        "verdict": FAIL if failed else INCONCLUSIVE if inconclusive else PASS,
        "passed": not failed and not inconclusive,
        "seconds": {name: result.get("seconds") for name, result in test.items()},
    }


# ---------------------------------------------------------------------------------------------- output
def _sample_counts(report: dict[str, Any]) -> str:
    """``accuracy 10,000, adversarial 1,000, ood 200-1,000``: the samples behind each objective's numbers."""
    parts = []
    for name, counts in report["samples"].items():
        if counts:
            counts_text = fmt_samples(counts[0]) + (f"-{fmt_samples(counts[-1])}" if len(counts) > 1 else "")
        else:
            counts_text = "not reported"
        parts.append(f"{name} {counts_text}")
    return ", ".join(parts)


def _estimate(value: Any, interval: list[float] | None) -> str:
    return fmt_value(value, interval) + (f" {fmt_interval(interval)}" if interval is not None else "")


def _is_detail(row: dict[str, Any]) -> bool:
    """A per-item metric (one per OOD set, ...) that the table folds away, unless a requirement names it or it
    degraded beyond its intervals."""
    if row["requirements"] or row["degraded"]:
        return False
    try:
        prefixes = objectives.get(row["objective"]).detail_prefixes
    except KeyError:
        return False
    local = row["metric"].split(".", 1)[1] if "." in row["metric"] else ""
    return any(local.startswith(prefix) for prefix in prefixes)


def print_report(report: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    from .progress import make_console

    console = make_console()
    table = Table(title=f"verify {report['export']} (study '{report['study']}', trial {report['trial']}) on the "
                        f"held-out test split ({fmt_samples(report['n_samples'])} samples); samples per objective: "
                        f"{_sample_counts(report)}")
    for column in ("metric", "validation [95%]", "test [95%]", "n", "gap", "requirement", "result"):
        table.add_column(column, justify="left" if column in ("metric", "requirement", "result") else "right")
    styles = {PASS: "green", FAIL: "red", INCONCLUSIVE: "yellow", NOT_EVALUATED: "red"}
    folded = [row for row in report["metrics"] if _is_detail(row)]
    for row in report["metrics"]:
        if row in folded:
            continue
        gap = fmt_value(row["gap"], row["gap_interval"]) + (" !" if row["degraded"] else "")
        bounds = ", ".join(requirement_text(requirement) for requirement in row["requirements"])
        verdict = row["verdict"]
        table.add_row(display_name(row), _estimate(row["validation"], row["validation_interval"]),
                      _estimate(row["test"], row["test_interval"]), fmt_samples(row["test_samples"]), gap, bounds,
                      Text(verdict.upper() if verdict in (FAIL, NOT_EVALUATED) else verdict or "",
                           styles.get(verdict, "")))
    console.print(table)
    if folded:
        console.print(f"{len(folded)} per-set detail rows not shown (" + ", ".join(sorted({row['objective'] for row
                      in folded})) + "); --json has every row.", soft_wrap=True)
    console.print(f"Integrity: {report['integrity']}. 95% intervals: Wilson for accuracies, seeded bootstrap "
                  "otherwise; none shown where the objective reports none (exact counts, or an objective without "
                  "intervals). How each objective measured:", soft_wrap=True)
    for name, options in report["options"].items():
        console.print(f"  {name}: {how_measured(report['settings'].get(name) or {}, options)}", soft_wrap=True)
    strong = report.get("strong_attack")
    if strong:
        broken = ", ".join(f"{attack} {count}" for attack, count in strong.get("broken_by", {}).items())
        seconds = ", ".join(f"{attack} {fmt_value(value)} s" for attack, value in (strong.get("seconds") or {}).items())
        console.print(f"  strong attack on {strong.get('samples')} samples: broken by {broken}"
                      + (f"; time {seconds}" if seconds else ""), soft_wrap=True)
    for row in report["metrics"]:
        if row["degraded"]:
            console.print(f"gap: {row['metric']} is {fmt_value(row['test'], row['test_interval'])} on test vs "
                          f"{fmt_value(row['validation'], row['validation_interval'])} on validation (difference "
                          f"{fmt_interval(row['gap_interval'])}, 95%): worse than sampling noise explains; "
                          + ("the held-out OOD sets (other fonts, images and seeds) are harder for this model"
                             if row["objective"] == "ood" else "the search may have overfit its validation split"),
                          style="yellow", soft_wrap=True)
    if not report["requirements"]:
        console.print("no requirements given (none stored with the export and no --requirements file): nothing to "
                      "gate on")
        return
    total = len(report["requirements"])
    if report["passed"]:
        console.print(Text.assemble(("PASS", "green"), f": all {total} requirement(s) hold on the test split "
                                                       "(on their whole 95% interval where the metric has one)"))
        return
    if report["failed"]:
        console.print(Text.assemble(("FAIL", "red"), f": {len(report['failed'])} of {total} requirement(s) do not "
                                    f"hold on the test split: {', '.join(report['failed'])}"))
    if report["inconclusive"]:
        console.print(Text.assemble(("INCONCLUSIVE", "yellow"), f": {len(report['inconclusive'])} of {total} "
                                    f"requirement(s) have a 95% interval that straddles the bound: "
                                    f"{', '.join(report['inconclusive'])} (more samples, e.g. --attack-samples, "
                                    "would decide; --allow-inconclusive accepts them)"))


def exit_code(report: dict[str, Any], allow_inconclusive: bool = False, fail_on_gap: bool = False) -> int:
    """0 when every requirement passes; 1 on a fail, an inconclusive one (unless allowed) or, with
    ``fail_on_gap``, a degradation beyond sampling noise."""
    if report["failed"] or (report["inconclusive"] and not allow_inconclusive):
        return 1
    return 1 if fail_on_gap and report["gaps"] else 0
