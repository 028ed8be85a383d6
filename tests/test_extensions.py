"""Extensions without touching our packages: the documented example end to end, entry points of a real (tiny)
distribution, and one line (exit 2) for every reference that names nothing or the wrong kind of thing.

The bad references and bad option values are generated: every key that takes a reference x every way a reference
can be wrong, and every option the example's space and objective declare x the values its declaration rules out.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import optuna
import pytest

from conftest import EXPERIMENTS, REPO, run_nas
from nas.cli import main
from nas.schema import Field
from test_config_fields import invalid_values, toml_text

CUSTOM = EXPERIMENTS / "custom"
CUSTOM_TOML = CUSTOM / "custom.toml"


def example_env(*extra: Path) -> dict[str, str]:
    """PYTHONPATH: our checkout (its packages win over any installed copy), the example folder, then ``extra``."""
    return {"PYTHONPATH": os.pathsep.join(map(str, [REPO, CUSTOM, *extra]))}


def test_the_documented_example_searches_exports_and_verifies(tmp_path):
    """custom.toml names a space, objective, data set and sampler of its own; search, export and verify find them."""
    search = run_nas("search", str(CUSTOM_TOML), cwd=tmp_path, env=example_env())
    assert search.returncode == 0, search.stderr
    assert "trial 1 done (tiny" in search.stdout
    export = run_nas("export", "--storage", "sqlite:///runs/custom.db", "--pick", "max:accuracy", "--out", "out",
                     cwd=tmp_path, env=example_env())
    assert export.returncode == 0, export.stderr
    manifest = json.loads((tmp_path / "out" / "spec.json").read_text())
    assert manifest["spec"]["space"] == "my_extensions:TINY", "the spec keeps the reference: the space is found again"
    assert manifest["experiment"]["objectives"]["margin"]["class"] == "my_extensions:Margin"
    source = (tmp_path / "out" / "model.py").read_text()
    assert (CUSTOM / "tiny_model.py").read_text().split("class TinyNet", 1)[1].split("\n\n\n")[0] in source
    verify = run_nas("verify", "out", cwd=tmp_path, env=example_env())
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "margin.undecided" in verify.stdout and "PASS" in verify.stdout


BROKEN_MODULE = "raise RuntimeError('broken on import')\n"
# Each key that takes a reference: how to set it in custom.toml, and what it expects.
REFERENCE_KEYS = {
    "space.name": ("space", "name", "SearchSpace"),
    "data.name": ("data", "name", "function load(options)"),
    "study.sampler": ("study", "sampler", "sampler"),
    "objectives.margin.class": ("objectives", "margin", "Objective subclass"),
}
# Per key, a reference in my_extensions that is the wrong kind of thing for it.
WRONG_KIND = {"space.name": "my_extensions:Margin", "data.name": "my_extensions:TINY_PARAMS",
              "study.sampler": "my_extensions:TINY", "objectives.margin.class": "my_extensions:TINY"}
BAD_REFERENCES = {"no such module": "no_such_module:Thing", "no such attribute": "my_extensions:NoSuchThing",
                  "module raises on import": "broken_extension:Thing", "wrong kind": None}


def custom_config() -> dict:
    return tomllib.loads(CUSTOM_TOML.read_text())


def write_config(config: dict, path: Path) -> None:
    """``config`` as TOML: a dotted key per option, a header for an objective table without options."""
    flat = {}
    for section, table in config.items():
        for key, value in table.items():
            if section == "objectives":
                flat.update({(section, key, option): item for option, item in value.items()})
            else:
                flat[(section, key)] = value
    empty = "".join(f"[objectives.{name}]\n" for name, options in config["objectives"].items() if not options)
    path.write_text(toml_text(flat) + empty)


def one_line_error(config: dict, tmp_path: Path, capsys) -> str:
    write_config(config, tmp_path / "bad.toml")
    code = main(["search", str(tmp_path / "bad.toml")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("nas: error: "), (code, err)
    assert not (tmp_path / "runs").exists(), "rejected before any storage or training"
    return err


@pytest.fixture
def example_importable(tmp_path, monkeypatch):
    (tmp_path / "broken_extension.py").write_text(BROKEN_MODULE)
    monkeypatch.syspath_prepend(str(CUSTOM))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("problem", BAD_REFERENCES)
@pytest.mark.parametrize("key", REFERENCE_KEYS)
def test_a_bad_reference_is_one_line_naming_the_key_and_what_it_expects(key, problem, tmp_path, capsys,
                                                                        example_importable):
    reference = BAD_REFERENCES[problem] or WRONG_KIND[key]
    section, name, expected = REFERENCE_KEYS[key]
    config = custom_config()
    if section == "objectives":
        config["objectives"][name]["class"] = reference
    else:
        config[section][name] = reference
    err = one_line_error(config, tmp_path, capsys)
    assert f"{key} = '{reference}'" in err and expected in err, err
    if problem == "module raises on import":
        assert "RuntimeError: broken on import" in err


def _declared_cases():
    """(key path, bad value) for every option the example's space and objective declare."""
    sys.path.insert(0, str(CUSTOM))
    try:
        import my_extensions
    finally:
        sys.path.remove(str(CUSTOM))
    tables = {("space",): my_extensions.TINY.params, ("objectives", "margin"): my_extensions.Margin.params}
    for table, declarations in tables.items():
        for key, declaration in declarations.items():
            for label, value in invalid_values(Field.parse(declaration, key)).items():
                yield pytest.param(table + (key,), value, id=f"{'.'.join(table + (key,))}-{label}")


@pytest.mark.parametrize("path, value", list(_declared_cases()))
def test_a_custom_option_is_validated_by_its_own_declaration(path, value, tmp_path, capsys, example_importable):
    config = custom_config()
    table = config
    for part in path[:-1]:
        table = table[part]
    table[path[-1]] = value
    err = one_line_error(config, tmp_path, capsys)
    assert ".".join(path) in err, err


def test_a_class_under_another_table_name_is_one_line(tmp_path, capsys, example_importable):
    config = custom_config()
    config["objectives"]["gap"] = config["objectives"].pop("margin")
    config.pop("requirements")
    err = one_line_error(config, tmp_path, capsys)
    assert "objectives.gap.class" in err and "[objectives.margin]" in err, err


ENTRY_POINTS = """\
[robust_nas.spaces]
tiny = my_extensions:TINY
[robust_nas.objectives]
margin = my_extensions:Margin
[robust_nas.datasets]
stripes = my_extensions:load_stripes
[robust_nas.samplers]
seeded-random = my_extensions:make_sampler
"""

CHECK_INSTALLED = """
import optuna, objectives, search_spaces
from nas import config, data, samplers
from nas.errors import UsageError
from nas.study import create_sampler

assert "tiny" in search_spaces.available() and "margin" in objectives.available(), "listed before any import"
assert "stripes" in data.available() and "seeded-random" in samplers.available()
raw = {"study": {"sampler": "seeded-random", "storage": "sqlite:///unused.db"},
       "data": {"name": "stripes", "synthetic_size": 60}, "space": {"name": "tiny", "width": 8},
       "training": {"epochs": 1}, "objectives": {"accuracy": {}, "margin": {"samples": 20}},
       "requirements": {"margin.undecided": {"max": 1.0}}}
resolved = config.resolve(raw)
assert "class" not in resolved["objectives"]["margin"], "an installed objective needs no reference"
trial = optuna.create_study().ask()
spec = {**search_spaces.get("tiny").sample(trial), **data.load(resolved["data"]).preprocessing()}
assert spec["space"] == "tiny" and type(search_spaces.build(spec)).__name__ == "TinyNet"
assert isinstance(create_sampler("seeded-random", 3), optuna.samplers.RandomSampler)
try:
    config.resolve({**raw, "space": {"name": "vit"}})
except UsageError as error:
    assert "allowed: cnn, mlp, tiny" in str(error), error
else:
    raise AssertionError("an unknown space was accepted")
print("installed extensions found")
"""


def test_entry_points_of_an_installed_distribution_are_found_by_name(tmp_path):
    """A real dist-info folder on sys.path (what pip writes), read by importlib.metadata in a fresh interpreter."""
    info = tmp_path / "site" / "robust_nas_demo-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: robust-nas-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    environment = {**os.environ, **example_env(tmp_path / "site")}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(CHECK_INSTALLED)], cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "installed extensions found" in result.stdout, result.stderr


def test_sampler_options_reach_the_sampler():
    """``study.sampler_options`` are keyword arguments of any sampler, built-in or referenced, over our defaults."""
    from nas import config as config_module
    from nas.study import create_sampler

    def first_points(sampler, n: int = 6) -> list[float]:
        study = optuna.create_study(sampler=sampler)
        study.optimize(lambda trial: (trial.suggest_float("x", -1, 1) - 0.5) ** 2, n_trials=n)
        return [trial.params["x"] for trial in study.trials]

    raw = {"study": {"sampler": "optuna.samplers:QMCSampler", "sampler_options": {"qmc_type": "halton"}},
           "data": {"name": "synthetic"}, "space": {"name": "mlp"}}
    study = config_module.resolve(raw)["study"]
    halton = create_sampler(study["sampler"], study["seed"], study["sampler_options"])
    assert isinstance(halton, optuna.samplers.QMCSampler)
    assert first_points(halton) != first_points(create_sampler(study["sampler"], study["seed"], {"qmc_type": "sobol"}))
    # the built-in TPE's 8 random start-up trials give way to the user's 2: the same seeded start, then TPE
    ours = first_points(create_sampler("tpe", 0))
    theirs = first_points(create_sampler("tpe", 0, {"n_startup_trials": 2}))
    assert ours[:2] == theirs[:2] and ours[2:] != theirs[2:]

