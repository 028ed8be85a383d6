"""One schema format for every declared option, and its one validator.

Config sections, objective options (``Objective.params``) and search-space options (``SearchSpace.params``)
are declared alike, as plain data, so ``objectives`` and ``search_spaces`` (which never import ``nas``)
can write them too. One declaration per key::

    {"type": int, "default": 20, "low": 0, "high": 100000, "help": "target number of COMPLETE trials"}

``type``
    bool, int, float (any finite number; integers become floats), str, list or dict; may be left out when
    ``default`` is a bool, int, float or str.
``default``
    what a missing key gets. For a searchable option: the default searched value (a scalar, a list of
    choices or ``{low, high}``).
``low``, ``high``
    inclusive bounds of a number; for a searchable option, the hard limits of every value it may take.
``choices``
    the allowed values (of each item, for a list).
``help``
    what the key means; some messages quote it.
``searchable``
    a list is a choice and ``{low, high[, log][, step]}`` a range, sampled per trial.
``allow_empty``
    an empty string or list means "unset" instead of being an error.
``table``
    the declarations of a sub-table's keys (type dict); a missing sub-table gets their defaults.

Every message names the key path, what is allowed and what was given, the way scikit-learn validates
parameters; the caller turns it into one line on stderr.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

Declaration = Mapping[str, Any]
DECLARATION_KEYS = ("type", "default", "low", "high", "choices", "help", "searchable", "allow_empty", "table")
TYPE_NAMES = {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list",
              dict: "a table"}


@dataclass(frozen=True)
class Field:
    """A declaration read once: the accepted Python types and the rules the validator applies."""

    types: tuple[type, ...]
    default: Any = None
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    searchable: bool = False
    help: str = ""
    allow_empty: bool = False
    table: Mapping[str, Declaration] | None = None

    @classmethod
    def parse(cls, declaration: Declaration, path: str = "option") -> Field:
        """Read ``declaration``; a malformed one (e.g. from a user's own objective) is one line naming ``path``."""
        unknown = sorted(set(declaration) - set(DECLARATION_KEYS))
        if unknown:
            raise UsageError(f"{path} is declared with unknown key(s) {unknown}; a declaration takes: "
                             f"{', '.join(DECLARATION_KEYS)}")
        kind = declaration.get("type", type(declaration.get("default")))
        if kind not in TYPE_NAMES:
            raise UsageError(f"{path} is declared without a known type; declare 'type' as one of "
                             f"{', '.join(t.__name__ for t in TYPE_NAMES)}, got {declaration!r}")
        choices = declaration.get("choices")
        return cls((int, float) if kind is float else (kind,), declaration.get("default"),
                   None if choices is None else tuple(choices), declaration.get("low"), declaration.get("high"),
                   bool(declaration.get("searchable", False)), declaration.get("help", ""),
                   bool(declaration.get("allow_empty", False)), declaration.get("table"))

    @property
    def numeric(self) -> bool:
        return set(self.types) <= {int, float}

    @property
    def item_field(self) -> Field:
        """The schema every item of a list field is checked against: its default's item types and the choices."""
        kinds = tuple(dict.fromkeys(type(item) for item in self.default or ()))
        kinds = (int, float) if float in kinds else kinds
        return Field(kinds or (object,), choices=self.choices)


def type_names(types: tuple[type, ...]) -> str:
    """``(int, float)`` -> ``"a finite number"``: what a message says a key must be."""
    if set(types) == {int, float}:
        return "a finite number"
    return " or ".join(dict.fromkeys(TYPE_NAMES.get(t, t.__name__) for t in types))


def _check_scalar(path: str, value: Any, field: Field) -> Any:
    ok_type = isinstance(value, field.types) and not (isinstance(value, bool) and bool not in field.types)
    if not ok_type:
        raise UsageError(f"config: {path} must be {type_names(field.types)}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"config: {path} must be a finite number, got {value!r}")
    if isinstance(value, list):
        if not value and not field.allow_empty:
            raise UsageError(f"config: {path} must be a non-empty list")
        return [_check_scalar(f"{path}[{i}]", item, field.item_field) for i, item in enumerate(value)]
    if field.types == (int, float) and isinstance(value, int):
        value = float(value)
    if field.choices is not None and value not in field.choices:
        raise UsageError(f"config: {path} = {value!r} is not allowed; allowed: {', '.join(map(str, field.choices))}")
    if isinstance(value, str) and not value.strip() and not field.allow_empty:
        raise UsageError(f"config: {path} must not be empty{f' ({field.help})' if field.help else ''}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if (field.low is not None and value < field.low) or (field.high is not None and value > field.high):
            low = field.low if field.low is not None else "-inf"
            high = field.high if field.high is not None else "inf"
            raise UsageError(f"config: {path} = {value!r} is out of range; allowed: [{low}, {high}]")
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
        checked["step"] = _check_scalar(f"{path}.step", value["step"], Field(field.types))
        if checked["step"] <= 0:
            raise UsageError(f"config: {path}.step must be greater than 0, got {checked['step']!r}")
    return checked


def check_value(path: str, value: Any, declaration: Declaration) -> Any:
    """Validate one value against its declaration (a choice list or range when searchable, a sub-table's keys)."""
    field = Field.parse(declaration, path)
    if field.table is not None:
        return check_table(path, value, field.table)
    if field.searchable and isinstance(value, list) and list not in field.types:
        if not value:
            raise UsageError(f"config: {path} must be a non-empty list of choices")
        return [_check_scalar(f"{path}[{i}]", v, field) for i, v in enumerate(value)]
    if field.searchable and isinstance(value, dict) and dict not in field.types:
        return _check_range(path, value, field)
    return _check_scalar(path, value, field)


def check_table(path: str, table: Any, declarations: Mapping[str, Declaration]) -> dict[str, Any]:
    """Validate a table against its declarations; unknown keys are errors, missing keys get defaults."""
    if not isinstance(table, dict):
        raise UsageError(f"config: [{path}] must be a table, got {table!r}")
    for key in table:
        if key not in declarations:
            raise UsageError(f"config: unknown key {path}.{key}; allowed: {', '.join(sorted(declarations))}")
    return {key: check_value(f"{path}.{key}", table[key] if key in table else default_value(declaration), declaration)
            for key, declaration in declarations.items()}


def default_value(declaration: Declaration) -> Any:
    """A missing key's value: a sub-table gets its own defaults, anything else a copy of its default."""
    return {} if "table" in declaration else copy.deepcopy(declaration.get("default"))
