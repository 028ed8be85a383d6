"""Experiment config: a TOML file validated up front, with messages that name the key path.

Every value is checked against a declared :class:`Field` (type, allowed values, bounds), the way
scikit-learn validates parameters: the message names the key, what is allowed and what was given.
Searchable fields accept a scalar (fixed), a list (choice) or ``{low, high[, log]}`` (range).
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import objectives
import search_spaces

from . import data as data_module
from .errors import UsageError
from .files import read_text

SAMPLERS = ["tpe", "nsga2", "nsga3", "random", "gp"]
_MISSING = object()


@dataclass(frozen=True)
class Field:
    """One config key: accepted Python types, default, allowed values or numeric bounds.

    Numbers must be finite; strings and lists must not be empty unless ``allow_empty`` (empty means
    "unset"). A list field's items have the types of its default's items and, if given, one of its
    ``choices``. ``table`` is the schema of a sub-table field.
    """

    types: tuple[type, ...]
    default: Any = None
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    searchable: bool = False
    help: str = ""
    allow_empty: bool = False
    table: dict[str, Field] | None = None

    @property
    def numeric(self) -> bool:
        return set(self.types) <= {int, float}

    @property
    def item_field(self) -> Field:
        """The schema every item of a list field is checked against."""
        kinds = tuple(dict.fromkeys(type(item) for item in self.default or ()))
        kinds = (int, float) if float in kinds else kinds
        return Field(kinds or (object,), choices=self.choices)


def _num(default: Any, low: float | None = None, high: float | None = None, searchable: bool = False,
         integer: bool = False, help: str = "") -> Field:
    return Field((int,) if integer else (int, float), default, None, low, high, searchable, help)


STUDY_FIELDS: dict[str, Field] = {
    "name": Field((str,), "nas-study", help="study name in the storage"),
    "sampler": Field((str,), "tpe", tuple(SAMPLERS)),
    "n_trials": _num(20, 0, 100000, integer=True, help="target number of COMPLETE trials"),
    "timeout": _num(0, 0, None, help="seconds; 0 = no limit"),
    "seed": _num(0, 0, 2**31 - 1, integer=True),
    "storage": Field((str,), "sqlite:///runs/nas.db"),
    "artifacts": Field((str,), "", help="artifact folder for weights/details; default: next to the storage",
                       allow_empty=True),
    "device": Field((str,), "auto"),
    "max_failed": _num(0, 0, 100000, integer=True, help="stop after this many FAILED trials; 0 = n_trials"),
}
DATA_FIELDS: dict[str, Field] = {
    "name": Field((str,), "digits", tuple(data_module.available())),
    "data_dir": Field((str,), "", help="folder holding the dataset files; default: where the loader looks",
                      allow_empty=True),
    "download": Field((bool,), False),
    "train_size": _num(0, 0, None, integer=True, help="0 = all"),
    "val_size": _num(0, 0, None, integer=True, help="0 = all"),
    "test_size": _num(0, 0, None, integer=True, help="0 = all"),
    "val_fraction": _num(0.15, 0.01, 0.9),
    "test_fraction": _num(0.15, 0.01, 0.9),
    "seed": _num(0, 0, 2**31 - 1, integer=True),
    "path": Field((str,), "", help="image-folder: the folder of class sub-folders", allow_empty=True),
    "image_size": _num(32, 4, 512, integer=True),
    "grayscale": Field((bool,), False),
    "synthetic_size": _num(600, 20, 100000, integer=True),
}
TRAINING_FIELDS: dict[str, Field] = {
    "epochs": _num(2, 1, 1000, searchable=True, integer=True),
    "batch_size": _num(128, 1, 65536, searchable=True, integer=True),
    "lr": _num(3e-3, 1e-6, 10.0, searchable=True),
    "optimizer": Field((str,), "adam", ("adam", "adamw", "sgd"), searchable=True),
    "weight_decay": _num(0.0, 0.0, 1.0, searchable=True),
    "label_smoothing": _num(0.0, 0.0, 0.5, searchable=True),
    "max_grad_norm": _num(0.0, 0.0, 1e6, help="0 = no clipping"),
}
SECTIONS = ("study", "data", "space", "training", "objectives", "requirements")


def _type_names(types: tuple[type, ...]) -> str:
    if set(types) == {int, float}:
        return "a finite number"
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))


def _check_scalar(path: str, value: Any, field: Field) -> Any:
    ok_type = isinstance(value, field.types) and not (isinstance(value, bool) and bool not in field.types)
    if not ok_type:
        raise UsageError(f"config: {path} must be {_type_names(field.types)}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"config: {path} must be a finite number, got {value!r}")
    if isinstance(value, list):
        if not value and not field.allow_empty:
            raise UsageError(f"config: {path} must be a non-empty list")
        return [_check_scalar(f"{path}[{i}]", item, field.item_field) for i, item in enumerate(value)]
    if field.types == (int, float) and isinstance(value, int):
        value = float(value) if not isinstance(field.default, int) else value
    if field.choices is not None and value not in field.choices:
        raise UsageError(f"config: {path} = {value!r} is not allowed; allowed: {', '.join(map(str, field.choices))}")
    if isinstance(value, str) and not value.strip() and not field.allow_empty:
        raise UsageError(f"config: {path} must not be empty{f' ({field.help})' if field.help else ''}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if (field.low is not None and value < field.low) or (field.high is not None and value > field.high):
            bounds = f"[{field.low if field.low is not None else '-inf'}, {field.high if field.high is not None else 'inf'}]"
            raise UsageError(f"config: {path} = {value!r} is out of range; allowed: {bounds}")
    return value


def _check_range(path: str, value: dict[str, Any], field: Field) -> dict[str, Any]:
    """``{low, high[, log][, step]}`` of a numeric field without fixed choices; bounds converted like scalars."""
    unknown = set(value) - {"low", "high", "log", "step"}
    if unknown or "low" not in value or "high" not in value:
        raise UsageError(
            f"config: {path} as a range must be {{low = .., high = ..[, log = true][, step = ..]}}, got {value!r}")
    if not field.numeric or field.choices is not None:
        allowed = f"; allowed: {', '.join(map(str, field.choices))}" if field.choices is not None else ""
        raise UsageError(f"config: {path} takes one value or a list of choices, not a range{allowed}")
    checked = {key: _check_scalar(f"{path}.{key}", value[key], field) for key in ("low", "high")}
    if checked["low"] > checked["high"]:
        raise UsageError(f"config: {path}: low ({checked['low']}) must not exceed high ({checked['high']})")
    if "log" in value:
        checked["log"] = _check_scalar(f"{path}.log", value["log"], Field((bool,)))
    if checked.get("log") and checked["low"] <= 0:
        raise UsageError(f"config: {path}: a log range needs low > 0, got {checked['low']}")
    if "step" in value:
        if checked.get("log"):
            raise UsageError(f"config: {path}: a range takes log = true or a step, not both")
        checked["step"] = _check_scalar(f"{path}.step", value["step"], Field(field.types, field.default))
        if checked["step"] <= 0:
            raise UsageError(f"config: {path}.step must be greater than 0, got {checked['step']!r}")
    return checked


def check_value(path: str, value: Any, field: Field) -> Any:
    """Validate one value (a range/choice too when the field is searchable, a sub-table's keys) and return it."""
    if field.table is not None:
        return check_table(path, value, field.table)
    if field.searchable and isinstance(value, list) and list not in field.types:
        if not value:
            raise UsageError(f"config: {path} must be a non-empty list of choices")
        return [_check_scalar(f"{path}[{i}]", v, field) for i, v in enumerate(value)]
    if field.searchable and isinstance(value, dict) and dict not in field.types:
        return _check_range(path, value, field)
    return _check_scalar(path, value, field)


def check_table(path: str, table: Any, fields: dict[str, Field]) -> dict[str, Any]:
    """Validate a table against declared fields; unknown keys are errors, missing keys get defaults."""
    if not isinstance(table, dict):
        raise UsageError(f"config: [{path}] must be a table, got {table!r}")
    for key in table:
        if key not in fields:
            raise UsageError(f"config: unknown key {path}.{key}; allowed: {', '.join(sorted(fields))}")
    return {key: check_value(f"{path}.{key}", table[key] if key in table else _default(field), field)
            for key, field in fields.items()}


def _default(field: Field) -> Any:
    """A missing key's value: a sub-table gets its own defaults, anything else a copy of its default."""
    return {} if field.table is not None else copy.deepcopy(field.default)


def _space_fields(space: search_spaces.SearchSpace) -> dict[str, Field]:
    fields: dict[str, Field] = {"name": Field((str,), space.name, tuple(search_spaces.available()))}
    for key, default in space.params.items():
        limit = space.limits[key]
        if isinstance(limit, list):
            kinds = tuple({type(v) for v in limit})
            fields[key] = Field(kinds, default, tuple(limit), searchable=True)
        else:
            integer = isinstance(limit[0], int) and isinstance(limit[1], int)
            fields[key] = _num(default, limit[0], limit[1], searchable=True, integer=integer)
    return fields


def _objective_fields(cls: type[objectives.Objective]) -> dict[str, Field]:
    fields = {"direction": Field((str,), cls.direction, (cls.direction,), help=cls.description)}
    for key, spec in cls.params.items():
        kinds = spec.get("type", type(spec["default"]))
        kinds = kinds if isinstance(kinds, tuple) else ((int, float) if kinds is float else (kinds,))
        choices = tuple(spec["choices"]) if "choices" in spec else None
        fields[key] = Field(kinds, spec["default"], choices, spec.get("low"), spec.get("high"))
    return fields


def requirement_metrics(objective_names: list[str] | None = None) -> dict[str, tuple[str, str]]:
    """Map every metric usable in ``[requirements]`` to ``(objective, metric)``."""
    names = objective_names or objectives.available()
    table: dict[str, tuple[str, str]] = {}
    for name in names:
        cls = objectives.get(name)
        table[name] = (name, name)
        for metric in cls.metrics:
            table[metric if metric == name else f"{name}.{metric}"] = (name, metric)
    return table


# One side of a ``[requirements]`` entry: ``accuracy = { min = 0.9 }``.
REQUIREMENT_FIELDS: dict[str, Field] = {
    "min": Field((int, float), None, help="the metric must be at least this"),
    "max": Field((int, float), None, help="the metric must be at most this"),
}


def check_requirements_table(table: Any) -> dict[str, dict[str, float]]:
    if not isinstance(table, dict):
        raise UsageError(f"config: [requirements] must be a table, got {table!r}")
    known = requirement_metrics()
    checked: dict[str, dict[str, float]] = {}
    for metric, bound in table.items():
        if metric not in known:
            raise UsageError(f"config: unknown requirement metric '{metric}'; allowed: {', '.join(sorted(known))}")
        if not isinstance(bound, dict) or not bound:
            raise UsageError(f"config: requirements.{metric} must be {{min = ..}}, {{max = ..}} or both, got {bound!r}")
        unknown = sorted(set(bound) - set(REQUIREMENT_FIELDS))
        if unknown:
            raise UsageError(
                f"config: unknown key requirements.{metric}.{unknown[0]}; allowed: {', '.join(REQUIREMENT_FIELDS)}")
        checked[metric] = {side: float(_check_scalar(f"requirements.{metric}.{side}", value, REQUIREMENT_FIELDS[side]))
                           for side, value in bound.items()}
        if checked[metric].get("min", -math.inf) > checked[metric].get("max", math.inf):
            raise UsageError(f"config: requirements.{metric}: min ({bound['min']}) must not exceed max ({bound['max']})")
    return checked


def _read_toml(path: Path, what: str, missing: str) -> dict[str, Any]:
    """The table of a TOML file; missing, binary, invalid or empty (no setting at all, e.g. cut to zero) is one line."""
    if not path.is_file():
        raise UsageError(missing)
    fix = "fix or replace the file (it must be a UTF-8 TOML text file)"
    try:
        table = tomllib.loads(read_text(path, f"{what}:", fix))
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{what}: {path} is not valid TOML ({error}); {fix}") from None
    if not table:
        raise UsageError(f"{what}: {path} is empty (no table and no setting); {fix}")
    return table


def load_requirements(path: str | Path) -> dict[str, dict[str, float]]:
    """The ``[requirements]`` table of a TOML file (a requirements file, or an experiment file)."""
    path = Path(path)
    missing = f"requirements file {path} does not exist or is not a file; pass a TOML file with a [requirements] table (e.g. experiments/requirements.toml)"
    raw = _read_toml(path, "requirements", missing)
    if not isinstance(raw.get("requirements"), dict):
        raise UsageError(f"requirements: {path} has no [requirements] table; write e.g. '[requirements]' then 'accuracy = {{ min = 0.9 }}'")
    try:
        return check_requirements_table(raw["requirements"])
    except UsageError as error:
        raise UsageError(f"{path}: {str(error).removeprefix('config: ')}") from None


def resolve(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate a raw config dict and return it with every default filled in (JSON-serialisable)."""
    for section in raw:
        if section not in SECTIONS:
            raise UsageError(f"config: unknown section [{section}]; allowed: {', '.join(SECTIONS)}")
    resolved: dict[str, Any] = {
        "study": check_table("study", raw.get("study", {}), STUDY_FIELDS),
        "data": check_table("data", raw.get("data", {}), DATA_FIELDS),
    }
    space_table = raw.get("space", {})
    if not isinstance(space_table, dict):
        raise UsageError("config: [space] must be a table")
    space_name = space_table.get("name", "cnn")
    if space_name not in search_spaces.available():
        raise UsageError(f"config: space.name = {space_name!r} is not allowed; allowed: {', '.join(search_spaces.available())}")
    resolved["space"] = check_table("space", space_table, _space_fields(search_spaces.get(space_name)))
    from .training import recipe_fields  # training declares the recipe schema (it may grow subtables)

    resolved["training"] = check_table("training", raw.get("training", {}), recipe_fields())
    objective_table = raw.get("objectives", {"accuracy": {}, "params": {}})
    if not isinstance(objective_table, dict) or not objective_table:
        raise UsageError(f"config: [objectives] needs at least one objective table; allowed: {', '.join(objectives.available())}")
    resolved["objectives"] = {}
    for name, options in objective_table.items():
        if name not in objectives.available():
            raise UsageError(f"config: unknown objective '{name}' in [objectives]; allowed: {', '.join(objectives.available())}")
        resolved["objectives"][name] = check_table(f"objectives.{name}", options, _objective_fields(objectives.get(name)))
    resolved["requirements"] = check_requirements_table(raw.get("requirements", {}))
    _check_data_split(resolved["data"])
    from .training import check_recipe  # cross-field rules (e.g. outlier families vs OOD sets)

    check_recipe(resolved)
    return resolved


def _check_data_split(data: dict[str, Any]) -> None:
    """Validation and test fractions are carved out of one pool: together they must leave training samples."""
    if data["val_fraction"] + data["test_fraction"] >= 1:
        raise UsageError(
            f"config: data.val_fraction ({data['val_fraction']}) + data.test_fraction ({data['test_fraction']}) "
            "must be below 1, or no samples are left for training; lower one of them"
        )


def load(path: str | Path) -> dict[str, Any]:
    """Read and validate a TOML experiment file."""
    path = Path(path)
    missing = f"config file not found: {path}; pass the path of an experiment TOML file (e.g. experiments/smoke.toml)"
    return resolve(_read_toml(path, "config", missing))


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """CLI options win over file values: ``{"study.n_trials": 40, "data.data_dir": ...}`` (None = unset)."""
    config = copy.deepcopy(config)
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, key = dotted.split(".", 1)
        fields = {"study": STUDY_FIELDS, "data": DATA_FIELDS}[section]
        config[section][key] = check_value(f"{dotted} (command line)", value, fields[key])
    return config


def fingerprint(config: dict[str, Any]) -> str:
    """Hash of what defines the experiment (not how long or where it runs)."""
    relevant = {k: v for k, v in config.items() if k != "study"}
    relevant["seed"] = config["study"]["seed"]
    relevant["sampler"] = config["study"]["sampler"]
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:12]
