"""Every declared config field, fed values its declaration rules out: one line naming the key path, exit 2.

The cases are generated (like scikit-learn's ``generate_invalid_param_val``) by walking the schemas the
config layer validates against: a field added to any of them is covered without touching this file.
"""
from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest

import objectives
import search_spaces
from conftest import REPO
from nas import config as config_module
from nas.cli import main
from nas.config import DATA_FIELDS, STUDY_FIELDS, objective_fields, space_fields
from nas.recipe import RECIPE_FIELDS
from nas.requirements import REQUIREMENT_FIELDS, requirement_metrics
from nas.schema import Declaration, Field

KeyPath = tuple[str, ...]
BASE: dict[KeyPath, Any] = {
    ("study", "name"): "fields", ("study", "storage"): "sqlite:///runs/fields.db", ("study", "n_trials"): 1,
    ("data", "name"): "synthetic", ("space", "name"): "mlp", ("training", "epochs"): 1, ("objectives", "accuracy"): {},
}
# One value of each TOML type; a field rejects those whose type it does not declare.
TYPE_SAMPLES: dict[type, Any] = {bool: True, int: 7, float: 2.5, str: "text", list: ["text"], dict: {"key": 1}}
UNKNOWN = "no-such-choice"


def declared_tables() -> Iterator[Table]:
    """(table path, its fields, base keys the table needs) for every table the config layer declares."""
    yield from _with_sub_tables(("study",), STUDY_FIELDS)
    yield ("data",), parsed(DATA_FIELDS), {}
    for name in search_spaces.available():
        yield ("space",), parsed(space_fields(search_spaces.get(name))), {("space", "name"): name}
    yield from _with_sub_tables(("training",), RECIPE_FIELDS)
    for name in objectives.available():
        yield ("objectives", name), parsed(objective_fields(objectives.get(name))), {}
    metrics = requirement_metrics()
    for name in objectives.available():  # every metric has the same schema: one plain and one dotted name per objective
        for metric in [name] + [m for m in metrics if m.startswith(f"{name}.")][:1]:
            yield ("requirements", metric), parsed(REQUIREMENT_FIELDS), {}


Table = tuple[KeyPath, dict[str, Field], dict[KeyPath, Any]]


def parsed(declarations: dict[str, Declaration]) -> dict[str, Field]:
    """The declarations as the schema module reads them (types, bounds, choices, sub-table)."""
    return {key: Field.parse(declaration, key) for key, declaration in declarations.items()}


def _with_sub_tables(path: KeyPath, declarations: dict[str, Declaration]) -> Iterator[Table]:
    fields = parsed(declarations)
    yield path, fields, {}
    for key, field in fields.items():
        if field.table is not None:
            yield from _with_sub_tables(path + (key,), field.table)


def _accepts(field: Field, value: Any) -> bool:
    return isinstance(value, field.types) and not (isinstance(value, bool) and bool not in field.types)


def _beyond(bound: float, field: Field, sign: int) -> float:
    step = 1 if field.types == (int,) else max(abs(bound), 1.0) / 2
    return bound + sign * step


def invalid_scalars(field: Field) -> dict[str, Any]:
    """Single values the declaration rules out: wrong type, outside the bounds, not finite, empty, unknown choice."""
    cases = {f"type {kind.__name__}": sample for kind, sample in TYPE_SAMPLES.items() if not _accepts(field, sample)
             and not (field.searchable and kind in (list, dict))}
    if field.numeric:
        cases.update({"nan": math.nan, "inf": math.inf, "-inf": -math.inf})
        if field.low is not None:
            cases["below low"] = _beyond(field.low, field, -1)
        if field.high is not None:
            cases["above high"] = _beyond(field.high, field, +1)
    if str in field.types and not field.allow_empty:
        cases.update({"empty string": "", "blank string": "  "})
    if field.choices is not None and list not in field.types:
        unknown = {str: UNKNOWN, int: max((c for c in field.choices if type(c) is int), default=0) + 1}
        cases.update({f"unknown choice {k.__name__}": v for k, v in unknown.items() if _accepts(field, v)})
    if list in field.types:
        if not field.allow_empty:
            cases["empty list"] = []
        cases.update({f"item {label}": [value] for label, value in invalid_scalars(field.item_field).items()})
        if field.choices is not None:
            cases["unknown item"] = [UNKNOWN]
    return cases


def _valid_bounds(field: Field) -> tuple[Any, Any]:
    low = field.low if field.low is not None else 0
    high = field.high if field.high is not None else low + 2
    kind = int if field.types == (int,) else float
    return kind(low), kind(high)


def invalid_values(field: Field) -> dict[str, Any]:
    """Scalars, plus the choice-list and range forms of a searchable field."""
    cases = invalid_scalars(field)
    if not field.searchable:
        return cases
    cases.update({f"choice {label}": [value] for label, value in invalid_scalars(field).items()})
    cases.update({"empty choice list": [], "empty range": {}})
    if field.numeric and field.choices is None:
        low, high = _valid_bounds(field)
        bounds = {"low": low, "high": high}
        cases.update({
            "range without high": {"low": low}, "range reversed": {"low": high, "high": low},
            "range unknown key": {**bounds, "sigma": 1}, "range log not bool": {**bounds, "log": "yes"},
            "range step zero": {**bounds, "step": 0}, "range step negative": {**bounds, "step": -1},
            "range step nan": {**bounds, "step": math.nan},
        })
        for label, value in invalid_scalars(field).items():
            cases[f"range {label}"] = {**bounds, "high": value} if label == "above high" else {**bounds, "low": value}
    elif field.choices:
        cases["range over choices"] = {"low": field.choices[0], "high": field.choices[-1]}
    return cases


def generate_cases() -> Iterator[tuple[str, str, dict[str, dict[KeyPath, Any]]]]:
    """Per declared key: (id, the key path the message must name, {what is wrong: the config as dotted keys})."""
    for table, fields, needs in declared_tables():
        cases: dict[KeyPath, dict[str, Any]] = {table + ("no_such_key",): {"unknown key": 1}}
        if fields and all(field.default is None for field in fields.values()):
            cases[table] = {"empty table": {}, "not a table": 7}  # nothing to default to: the table needs a key
        for key, field in fields.items():
            if field.table is None:
                cases[table + (key,)] = invalid_values(field)
            else:
                cases[table + (key,)] = {f"type {k.__name__}": v for k, v in TYPE_SAMPLES.items() if k is not dict}
        for path, values in cases.items():
            key_path = ".".join(path)
            case_id = key_path + "".join(f"[{v}]" for v in needs.values())
            base = {**BASE, **needs}
            yield case_id, key_path, {label: with_value(base, path, value) for label, value in values.items()}


def with_value(config: dict[KeyPath, Any], path: KeyPath, value: Any) -> dict[KeyPath, Any]:
    """``config`` with ``path`` set; keys that are prefixes of it (inline tables) make way for it."""
    kept = {key: v for key, v in config.items() if key != path[: len(key)] and path != key[: len(path)]}
    return {**kept, path: value}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    return "{" + ", ".join(f"{toml_key((k,))} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_key(path: KeyPath) -> str:
    return ".".join(part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else json.dumps(part) for part in path)


def toml_text(config: dict[KeyPath, Any]) -> str:
    return "".join(f"{toml_key(path)} = {toml_value(value)}\n" for path, value in config.items())


CASES = {case_id: (key_path, configs) for case_id, key_path, configs in generate_cases()}


def test_every_declared_table_is_walked():
    """The generator reaches the sub-tables and every objective, space and requirement metric."""
    walked = {".".join(table) for table, _, _ in declared_tables()}
    assert {"training.adversarial", "training.outlier_exposure", "objectives.ood", "requirements.accuracy"} <= walked
    assert sum(len(configs) for _, configs in CASES.values()) > 1000


@pytest.mark.parametrize("table, fields, needs", list(declared_tables()),
                         ids=lambda v: ".".join(v) if isinstance(v, tuple) else "")
def test_base_with_each_default_is_valid(table, fields, needs):
    """The base config with any one declared default written out resolves: invalid cases fail for their value only."""
    for key, field in fields.items():
        if field.default is not None:
            config = with_value({**BASE, **needs}, table + (key,), field.default)
            config_module.resolve(tomllib.loads(toml_text(config)))


@pytest.mark.parametrize("case_id", CASES)
def test_invalid_values_are_one_line_naming_the_key(case_id, tmp_path, capsys, monkeypatch):
    key_path, configs = CASES[case_id]
    monkeypatch.chdir(tmp_path)
    wrong = []
    for label, config in configs.items():
        (tmp_path / "bad.toml").write_text(toml_text(config))
        code = main(["search", "bad.toml"])
        err = capsys.readouterr().err.strip()
        if code != 2 or len(err.splitlines()) != 1 or not err.startswith("nas: error: ") or key_path not in err:
            wrong.append(f"{label}: exit {code}, stderr {err!r}")
    assert not wrong, "\n".join(wrong)
    assert not (tmp_path / "runs").exists(), "rejected before any storage or training"


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.9, 0.1), (0.6, 0.45)])
def test_fractions_leaving_no_training_samples_are_rejected_up_front(fractions, tmp_path, capsys, monkeypatch):
    config = {**BASE, ("data", "val_fraction"): fractions[0], ("data", "test_fraction"): fractions[1]}
    (tmp_path / "split.toml").write_text(toml_text(config))
    monkeypatch.chdir(tmp_path)
    assert main(["search", "split.toml"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.val_fraction" in err and "data.test_fraction" in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("key", [key for key, field in DATA_FIELDS.items() if field.get("help") == "0 = all"])
def test_a_size_beyond_the_data_is_one_warning_saying_what_is_used(key, capsys):
    """``data.train_size`` (val, test) beyond the split: the split is used whole, and stderr says so in one line."""
    from nas import data

    options = config_module.check_table("data", {"name": "synthetic", "synthetic_size": 321, key: 100000}, DATA_FIELDS)
    dataset = data.load(options)
    used = len(getattr(dataset, f"{key.removesuffix('_size')}_x"))
    err = capsys.readouterr().err.strip()
    assert err == f"nas: warning: data.{key} = 100000, but only {used} samples are available; using {used}"
    assert 0 < used < 321


def test_rounding_that_leaves_no_training_sample_is_one_line():
    """Fractions below 1 together can still round every sample into validation and test on a tiny pool."""
    from nas import data
    from nas.errors import DataError

    options = config_module.check_table("data", {"name": "synthetic", "synthetic_size": 20, "val_fraction": 0.5,
                                                 "test_fraction": 0.49}, DATA_FIELDS)
    with pytest.raises(DataError, match="no training samples left of 20.*data.val_fraction"):
        data.load(options)


@pytest.mark.parametrize("declaration", [{"default": 1, "hihg": 5}, {"default": None}, {"type": set, "default": set()}],
                         ids=["unknown declaration key", "no type", "unknown type"])
def test_a_malformed_declaration_is_one_line_naming_the_key(declaration):
    """A user's own objective or space declaring an option wrongly hears which option and what a declaration takes."""
    from nas.errors import UsageError
    from nas.schema import check_table

    with pytest.raises(UsageError) as error:
        check_table("objectives.mine", {}, {"size": declaration})
    assert "objectives.mine.size is declared" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("path", sorted(p for p in (REPO / "experiments").rglob("*.toml")
                                        if p.name != "requirements.toml"), ids=lambda p: p.name)
def test_every_shipped_experiment_config_is_valid(path, monkeypatch):
    """The configs the README and the benchmarks run (quickstart, smoke, the paper's) pass validation as shipped."""
    monkeypatch.syspath_prepend(str(path.parent))  # experiments/custom imports its own extensions
    config = config_module.load(path)
    assert config["study"]["n_trials"] >= 1 and config["objectives"]
