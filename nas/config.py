"""Experiment config: a TOML file validated up front, with messages that name the key path.

Every section is checked against its declarations in the one format of :mod:`nas.schema`: the study and
data sections here, ``[space]`` from the chosen search space's ``params``, ``[training]`` from
:mod:`nas.recipe`, each ``[objectives.<name>]`` from that objective's ``params`` and ``[requirements]``
from :mod:`nas.requirements`. Searchable keys accept a scalar (fixed), a list (choice) or
``{low, high[, log]}`` (range).
"""
from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import objectives
import search_spaces

from . import data as data_module
from . import samplers
from .early_stopping import EARLY_STOPPING_FIELDS, check_early_stopping
from .errors import UsageError
from .extensions import REFERENCE
from .files import read_text
from .initial_design import DESIGNS, WARM_START_FIELDS, check_enqueue
from .recipe import RECIPE_FIELDS, check_recipe
from .requirements import check_requirements_table
from .schema import Declaration, check_table, check_value

SAMPLERS = list(samplers.BUILT_IN)

STUDY_FIELDS: dict[str, Declaration] = {
    "name": {"type": str, "default": "nas-study", "help": "study name in the storage"},
    "sampler": {"type": str, "default": "tpe",
                "help": f"{', '.join(SAMPLERS)}, an entry point of {samplers.ENTRY_POINT_GROUP} or a reference"},
    "sampler_options": {"type": dict, "default": {},
                        "help": "keyword arguments for the sampler, e.g. { n_startup_trials = 5, group = true }"},
    "n_trials": {"type": int, "default": 20, "low": 0, "high": 100000, "help": "target number of COMPLETE trials"},
    "timeout": {"type": float, "default": 0.0, "low": 0, "help": "seconds; 0 = no limit"},
    "seed": {"type": int, "default": 0, "low": 0, "high": 2**31 - 1},
    "storage": {"type": str, "default": "sqlite:///runs/nas.db"},
    "artifacts": {"type": str, "default": "", "allow_empty": True,
                  "help": "artifact folder for weights/details; default: next to the storage"},
    "device": {"type": str, "default": "auto"},
    "max_failed": {"type": int, "default": 0, "low": 0, "high": 100000,
                   "help": "stop after this many FAILED trials; 0 = n_trials"},
    "enqueue": {"type": list, "default": [], "allow_empty": True,
                "help": 'trials a new study runs first: tables of trial parameters, e.g. { "cnn.depth" = 2 } '
                        "(what one leaves out is sampled)"},
    "warm_start": {"type": dict, "default": {}, "table": WARM_START_FIELDS,
                   "help": "run the Pareto front of another study first (its parameters this config searches)"},
    "initial_design": {"type": str, "default": "none", "choices": DESIGNS,
                       "help": "anchors: a new study first tries the smallest and the largest model with the searched "
                               "robust training on, and the largest without; robust: its first 4 trials switch every "
                               "searched robust-training scheme on (nas.initial_design)"},
    "early_stopping": {"type": dict, "default": {}, "table": EARLY_STOPPING_FIELDS,
                       "help": "successive halving over epochs (nas.early_stopping); off unless rungs are given"},
}
DATA_FIELDS: dict[str, Declaration] = {
    "name": {"type": str, "default": "digits",
             "help": f"a built-in data set, an entry point of {data_module.ENTRY_POINT_GROUP} or a reference"},
    "data_dir": {"type": str, "default": "", "allow_empty": True,
                 "help": "folder holding the dataset files; default: where the loader looks"},
    "download": {"type": bool, "default": False, "help": "let torchvision fetch missing files into data.data_dir"},
    "dataset": {"type": str, "default": "", "allow_empty": True,
                "help": f"torchvision only (and required there): {', '.join(data_module.TORCHVISION_SETS)}"},
    "emnist_split": {"type": str, "default": "balanced", "choices": data_module.EMNIST_SPLITS,
                     "help": "torchvision EMNIST: which of its splits (and class sets) to read"},
    "train_size": {"type": int, "default": 0, "low": 0, "help": "0 = all"},
    "val_size": {"type": int, "default": 0, "low": 0, "help": "0 = all"},
    "test_size": {"type": int, "default": 0, "low": 0, "help": "0 = all"},
    "val_fraction": {"type": float, "default": 0.15, "low": 0.01, "high": 0.9},
    "test_fraction": {"type": float, "default": 0.15, "low": 0.01, "high": 0.9},
    "seed": {"type": int, "default": 0, "low": 0, "high": 2**31 - 1},
    "path": {"type": str, "default": "", "allow_empty": True, "help": "image-folder: the folder of class sub-folders"},
    "groups": {"type": str, "default": "", "allow_empty": True,
               "help": "image-folder: a CSV with columns file,group (file relative to data.path) giving each image a "
                       "subgroup, for per-group and worst-group accuracy"},
    "image_size": {"type": int, "default": 32, "low": 4, "high": 512},
    "grayscale": {"type": bool, "default": False},
    "synthetic_size": {"type": int, "default": 600, "low": 20, "high": 100000},
}
SECTIONS = ("study", "data", "space", "training", "objectives", "requirements")


CLASS_FIELD: Declaration = {"type": str, "default": "", "help": '"package.module:Name" of an Objective subclass'}
SPACE_NAME_FIELD: Declaration = {"type": str, "default": "cnn", "help": f"a built-in space, an entry point of "
                                 f"{search_spaces.ENTRY_POINT_GROUP} or a reference"}


def space_fields(space: search_spaces.SearchSpace) -> dict[str, Declaration]:
    """``[space]``: the space's name plus its declared searchable options."""
    return {"name": {**SPACE_NAME_FIELD, "default": space.name}, **space.params}


def objective_fields(cls: type[objectives.Objective], by_reference: bool = False) -> dict[str, Declaration]:
    """``[objectives.<name>]``: the fixed direction plus the objective's declared options (and ``class`` when the
    table names the class by reference)."""
    direction = {"type": str, "default": cls.direction, "choices": (cls.direction,), "help": cls.description}
    return {**({"class": CLASS_FIELD} if by_reference else {}), "direction": direction, **cls.params}


def _check_sampler(path: str, name: str) -> None:
    try:
        samplers.factory(name)
    except LookupError as error:
        raise UsageError(f"config: {path} = {error}") from None


def _check_sampler_options(study: dict[str, Any]) -> None:
    """Options the sampler's constructor rejects are one line at config time, not a failure of the first trial."""
    if study["sampler_options"]:
        try:
            samplers.create(study["sampler"], study["seed"], study["sampler_options"])
        except LookupError as error:
            raise UsageError(f"config: study.sampler_options: {error}") from None


def _check_dataset(path: str, name: str) -> None:
    try:
        data_module.loader(name)
    except UsageError as error:
        raise UsageError(f"config: {path}{str(error).removeprefix('data.name')}") from None


# Keys naming a component a user may bring: each check turns a name that finds nothing into one line.
NAMED_KEYS = {"study.sampler": _check_sampler, "data.name": _check_dataset}


def _space(table: dict[str, Any]) -> search_spaces.SearchSpace:
    """The space ``[space] name`` names: built-in, installed or ``"package.module:Name"`` of a SearchSpace."""
    name = check_value("space.name", table.get("name", SPACE_NAME_FIELD["default"]), SPACE_NAME_FIELD)
    if not REFERENCE.fullmatch(name) and name not in search_spaces.available():
        raise UsageError(f"config: space.name = {name!r} is not allowed; allowed: "
                         f"{', '.join(search_spaces.available())}, or \"package.module:Name\" of a SearchSpace")
    try:
        return search_spaces.get(name)
    except search_spaces.SpecError as error:
        raise UsageError(f"config: space.name = {error}") from None


def _objective(name: str, options: Any) -> type[objectives.Objective]:
    """The class of ``[objectives.<name>]``: registered or installed under ``name``, or named by its ``class`` key
    (then registered under ``name``, which must be the class's own ``name``)."""
    if not isinstance(options, dict) or "class" not in options:
        try:
            return objectives.get(name)
        except KeyError as error:
            raise UsageError(f"config: [objectives.{name}]: {error.args[0]}; or name a class of your own with "
                             'class = "package.module:Name"') from None
    path = f"objectives.{name}.class"
    reference = check_value(path, options["class"], CLASS_FIELD)
    if not REFERENCE.fullmatch(reference):
        raise UsageError(f'config: {path} = {reference!r} is not "package.module:Name" of an Objective subclass')
    try:
        cls = objectives.load(reference)
    except (KeyError, ValueError) as error:
        raise UsageError(f"config: {path} = {error.args[0]}") from None
    if cls.name != name:
        raise UsageError(f"config: {path} = {reference!r} is the objective '{cls.name}'; "
                         f"name its table [objectives.{cls.name}]")
    try:
        registered = objectives.get(name)
    except KeyError:
        registered = cls
    if registered is not cls:
        raise UsageError(f"config: {path} = {reference!r}: the name '{name}' is taken by "
                         f"{registered.__module__}.{registered.__name__}; give the class another name")
    return objectives.register(cls)


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
    missing = (f"requirements file {path} does not exist or is not a file; pass a TOML file with a [requirements] "
               "table (e.g. experiments/requirements.toml)")
    raw = _read_toml(path, "requirements", missing)
    if not isinstance(raw.get("requirements"), dict):
        raise UsageError(f"requirements: {path} has no [requirements] table; "
                         "write e.g. '[requirements]' then 'accuracy = { min = 0.9 }'")
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
    for dotted, check in NAMED_KEYS.items():
        section, key = dotted.split(".")
        check(dotted, resolved[section][key])
    _check_sampler_options(resolved["study"])
    space_table = raw.get("space", {})
    if not isinstance(space_table, dict):
        raise UsageError("config: [space] must be a table")
    resolved["space"] = check_table("space", space_table, space_fields(_space(space_table)))
    resolved["training"] = check_table("training", raw.get("training", {}), RECIPE_FIELDS)
    objective_table = raw.get("objectives", {"accuracy": {}, "params": {}})
    if not isinstance(objective_table, dict) or not objective_table:
        raise UsageError(
            f"config: [objectives] needs at least one objective table; allowed: {', '.join(objectives.available())}")
    resolved["objectives"] = {}
    for name, options in objective_table.items():
        fields = objective_fields(_objective(name, options), isinstance(options, dict) and "class" in options)
        resolved["objectives"][name] = check_table(f"objectives.{name}", options, fields)
    resolved["requirements"] = check_requirements_table(raw.get("requirements", {}))
    _check_data_split(resolved["data"])
    _check_data_dataset(resolved["data"])
    _check_groups(resolved)
    _check_strong_requirements(resolved)
    check_recipe(resolved)
    check_early_stopping(resolved)
    check_enqueue(resolved)
    return resolved


def _check_strong_requirements(config: dict[str, Any]) -> None:
    """A search-time requirement on the strong attack's numbers needs the strong attack in the search; without it
    every trial would be infeasible for a metric never measured."""
    if config["objectives"].get("adversarial", {}).get("strong"):
        return
    strong = [metric for metric in config["requirements"] if metric.startswith("adversarial.strong_")]
    if strong:
        raise UsageError(f"config: requirements.{strong[0]} needs the strong attack during the search; set "
                         "objectives.adversarial.strong = true (minutes per trial), or keep the requirement for "
                         "'nas verify --requirements FILE', which always runs it")


def _check_groups(config: dict[str, Any]) -> None:
    """Worst-group accuracy needs group labels: say so before any trial runs, not in every trial's failure."""
    if config["data"].get("groups"):
        return
    group_metrics = ("accuracy.worst_group", "accuracy.group_gap")
    wanted = [f"requirements.{metric}" for metric in config["requirements"] if metric in group_metrics]
    if config["objectives"].get("accuracy", {}).get("aggregate") == "worst_group":
        wanted.insert(0, "objectives.accuracy.aggregate = \"worst_group\"")
    if wanted:
        raise UsageError(f"config: {wanted[0]} needs group labels per sample; set data.groups to a CSV with columns "
                         "file,group (image-folder data), or use aggregate = \"mean\" / \"worst_class\"")


def _check_data_split(data: dict[str, Any]) -> None:
    """Validation and test fractions are carved out of one pool: together they must leave training samples."""
    if data["val_fraction"] + data["test_fraction"] >= 1:
        raise UsageError(
            f"config: data.val_fraction ({data['val_fraction']}) + data.test_fraction ({data['test_fraction']}) "
            "must be below 1, or no samples are left for training; lower one of them"
        )


def _check_data_dataset(data: dict[str, Any]) -> None:
    """``data.dataset`` picks a torchvision set: required with ``data.name = "torchvision"``, meaningless otherwise."""
    torchvision = data["name"] == "torchvision"
    if torchvision and data["dataset"] not in data_module.TORCHVISION_SETS:
        raise UsageError(f"config: data.name = \"torchvision\" needs data.dataset, one of "
                         f"{', '.join(data_module.TORCHVISION_SETS)}; got {data['dataset']!r}")
    if not torchvision and data["dataset"]:
        raise UsageError(f"config: data.dataset = {data['dataset']!r} only applies to data.name = \"torchvision\" "
                         f"(got data.name = {data['name']!r}); remove data.dataset or set data.name = \"torchvision\"")


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
        if dotted in NAMED_KEYS:
            NAMED_KEYS[dotted](f"{dotted} (command line)", config[section][key])
    return config


def fingerprint(config: dict[str, Any]) -> str:
    """Hash of what defines the experiment (not how long or where it runs)."""
    relevant = {k: v for k, v in config.items() if k != "study"}
    relevant["seed"] = config["study"]["seed"]
    relevant["sampler"] = config["study"]["sampler"]
    if config["study"].get("sampler_options"):  # absent from older studies' fingerprints
        relevant["sampler_options"] = config["study"]["sampler_options"]
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:12]
