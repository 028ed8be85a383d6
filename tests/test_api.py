"""The Python API (``from nas import search, load, front, export, verify``): the README example runs as written,
each function returns what it documents, and bad input is the CLI's one-line UsageError.

Everything runs for real on tiny synthetic data (an 8-unit MLP, one epoch) in a temporary folder.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from conftest import PATIENCE

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

import nas
from nas.cli import main as cli_main
from nas.commands.search import OVERRIDES
from nas.config import DATA_FIELDS, STUDY_FIELDS
from nas.errors import UsageError
from nas.export import pick_trial
from nas.records import trial_record

REPO = Path(__file__).resolve().parents[1]
TINY_TOML = """\
[study]
name = "{name}"
n_trials = 2
sampler = "random"
device = "cpu"
storage = "{storage}"

[data]
name = "synthetic"
synthetic_size = 240

[space]
name = "mlp"
depth = 1
width = [8]

[training]
epochs = 1
batch_size = 32

[objectives.accuracy]
[objectives.params]

[requirements]
accuracy = {{ min = 0.0 }}
"""


def tiny_config(name: str, storage: str) -> dict:
    """The tiny experiment as the dict ``nas.search`` also accepts (the same tables as the TOML file)."""
    return tomllib.loads(TINY_TOML.format(name=name, storage=storage))


def readme_example() -> str:
    """The code block after the ``python-api-example`` marker in README.md."""
    match = re.search(r"<!-- python-api-example -->\s*```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert match, "README.md has no python-api-example block"
    return match.group(1)


def test_readme_example_runs(tmp_path, monkeypatch):
    """The README's example, unchanged, with experiments/smoke.toml replaced by the tiny synthetic experiment."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").mkdir()
    smoke = TINY_TOML.format(name="smoke", storage="sqlite:///runs/smoke.db")
    (tmp_path / "experiments" / "smoke.toml").write_text(smoke)
    namespace: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(readme_example(), "README.md:python-api-example", "exec"), namespace)
    assert isinstance(namespace["study"], optuna.Study) and namespace["study"].study_name == "api-demo"
    assert namespace["folder"] == Path("exported/api-demo") and (tmp_path / "exported/api-demo/spec.json").is_file()
    assert isinstance(namespace["result"], nas.VerifyResult)
    lines = printed.getvalue().splitlines()
    assert len(lines) == len(nas.front(namespace["study"])) + 1  # one line per front row, then the verdict
    assert lines[-1].startswith("True []")  # accuracy >= 0.0 holds


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One tiny search through the API (config given as a dict), shared by the return-value tests."""
    folder = tmp_path_factory.mktemp("api")
    storage = f"sqlite:///{folder / 'api.db'}"
    study = nas.search(tiny_config("api", storage), seed=3, out=folder / "front")
    return study, storage, folder


def test_search_returns_the_study_and_writes_the_front(searched):
    study, storage, folder = searched
    assert isinstance(study, optuna.Study) and study.study_name == "api"
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 2
    assert study.user_attrs["config"]["study"]["seed"] == 3  # the override reached the stored config
    written = json.loads((folder / "front" / "api-pareto.json").read_text())
    assert written["front"] == nas.front(study)  # the rows 'nas search' writes are the rows front() returns


def test_load_and_front(searched):
    study, storage, _ = searched
    loaded = nas.load(storage, "api")
    assert loaded.study_name == "api" and [t.number for t in loaded.trials] == [t.number for t in study.trials]
    rows = nas.front(loaded)
    assert rows and all({"trial", "accuracy", "params", "feasible", "spec"} <= set(row) for row in rows)
    assert {row["trial"] for row in rows} <= {t.number for t in loaded.trials}


def test_export_by_trial_and_by_pick(searched, tmp_path):
    study, storage, _ = searched
    by_number = nas.export(study, trial=0, out=tmp_path / "t0")
    assert by_number == tmp_path / "t0" and json.loads((by_number / "spec.json").read_text())["trial"] == 0
    picked = nas.export(study, pick="min:params", out=tmp_path / "picked", storage=storage)
    expected = pick_trial(study, "min:params").number
    assert json.loads((picked / "spec.json").read_text())["trial"] == expected


def test_verify_returns_per_metric_values_and_the_verdict(searched, tmp_path):
    study, _, _ = searched
    folder = nas.export(study, trial=0, out=tmp_path / "export")
    stored = nas.verify(folder)
    assert stored.passed and stored.failed == [] and set(stored.test) >= {"accuracy", "params"}
    assert stored.validation["accuracy"] == trial_record(study, study.trials[0])["metrics"]["accuracy"]
    assert stored.report["passed"] is True and stored.report["split"] == "test"
    impossible = nas.verify(folder, {"accuracy": {"min": 1.5}})  # a table replaces the stored requirements
    assert not impossible.passed and impossible.failed == ["accuracy"]
    assert impossible.test["accuracy"] == stored.test["accuracy"]
    requirements = tmp_path / "requirements.toml"
    requirements.write_text("[requirements]\nparams = { max = 1.0 }\n")
    from_file = nas.verify(folder, requirements)  # or a TOML file, as 'nas verify --requirements'
    assert not from_file.passed and from_file.failed == ["params"]


def test_search_resume_and_create_only(searched, tmp_path):
    study, storage, _ = searched
    with pytest.raises(UsageError, match="already exists"):  # the same check as 'nas search' without --resume
        nas.search(tiny_config("api", storage), seed=3, out=tmp_path)
    resumed = nas.search(tiny_config("api", storage), seed=3, n_trials=3, resume=True, out=tmp_path)
    assert len(resumed.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 3
    created = nas.search(tiny_config("api-empty", storage), n_trials=0, out=tmp_path)
    assert created.study_name == "api-empty" and created.trials == []


def bad_values(declaration: dict) -> list:
    """Values its declaration rejects: the wrong type, below/above the limits, outside the choices."""
    wrong_type = "not-a-number" if declaration["type"] in (int, float) else 5
    values = [wrong_type]
    values += [declaration["low"] - 1] if "low" in declaration else []
    values += [declaration["high"] + 1] if "high" in declaration else []
    values += ["no-such-choice"] if "choices" in declaration else []
    return values


def declaration(key: str) -> dict:
    section, entry = OVERRIDES[key].split(".", 1)
    return {"study": STUDY_FIELDS, "data": DATA_FIELDS}[section][entry]


OVERRIDE_CASES = [(key, value) for key in OVERRIDES for value in bad_values(declaration(key))]


def cli_error(*args: str) -> str:
    """The error line 'nas ARGS' prints (the CLI run in this process)."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(list(args)) == 2
    return stderr.getvalue()


@pytest.mark.parametrize("key,value", OVERRIDE_CASES, ids=[f"{k}={v!r}" for k, v in OVERRIDE_CASES])
def test_search_rejects_bad_overrides_like_the_cli(key, value, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML.format(name="bad", storage=f"sqlite:///{tmp_path / 'bad.db'}"))
    with pytest.raises(UsageError) as raised:
        nas.search(config, **{key: value})
    message = str(raised.value)
    assert "\n" not in message and OVERRIDES[key] in message
    assert not (tmp_path / "bad.db").exists()  # rejected before anything was created
    if declaration(key)["type"] is str and isinstance(value, str):  # the CLI parses these as strings, then checks
        # them against the config declarations: the same line
        assert cli_error("search", str(config), f"--{key.replace('_', '-')}", value) == f"nas: error: {message}\n"


def test_search_rejects_a_bad_config_like_the_cli(tmp_path):
    missing = tmp_path / "missing.toml"
    with pytest.raises(UsageError) as raised:
        nas.search(missing)
    assert cli_error("search", str(missing)) == f"nas: error: {raised.value}\n"
    for config, fragment in ((42, "config must be"), ({"nonsense": {}}, "unknown section [nonsense]"),
                             (tiny_config("x", "sqlite:///x.db") | {"data": {"name": "nope"}}, "data.name")):
        with pytest.raises(UsageError, match=re.escape(fragment)):
            nas.search(config)
    with pytest.raises(UsageError, match="unknown search option 'n_trial'"):
        nas.search(tiny_config("x", "sqlite:///x.db"), n_trial=3)
    for workers in ("2", 0):
        with pytest.raises(UsageError, match="--workers must"):
            nas.search(tiny_config("x", f"sqlite:///{tmp_path / 'x.db'}"), workers=workers)
    assert not (tmp_path / "x.db").exists()


def test_bad_input_to_load_export_and_verify(searched, tmp_path):
    study, storage, _ = searched
    for call, fragment in (
        (lambda: nas.load(""), "storage must be"),
        (lambda: nas.load(f"sqlite:///{tmp_path / 'none.db'}"), "no such file"),
        (lambda: nas.load(storage, "no-such-study"), "no study named 'no-such-study'"),
        (lambda: nas.front("api"), "expected an optuna.Study"),
        (lambda: nas.export(study, out=tmp_path / "e"), "exactly one of"),
        (lambda: nas.export(study, trial=0, pick="max:accuracy", out=tmp_path / "e"), "exactly one of"),
        (lambda: nas.export(study, trial=99, out=tmp_path / "e"), "no trial 99"),
        (lambda: nas.export(study, pick="best", out=tmp_path / "e"), "is not a selector"),
        (lambda: nas.verify(None), "export_dir must be"),
        (lambda: nas.verify(tmp_path), "is not an export folder"),
        (lambda: nas.verify(tmp_path, {"no_such_metric": {"min": 1}}), "unknown requirement metric"),
        (lambda: nas.verify(tmp_path, gap_tolerance=-1), "--gap-tolerance must be"),
    ):
        with pytest.raises(UsageError, match=re.escape(fragment)):
            call()
    with pytest.raises(UsageError) as raised:
        nas.export(study, 99)
    cli_line = cli_error("export", "--storage", storage, "--study-name", "api", "--trial", "99")
    assert cli_line == f"nas: error: {raised.value}\n"


def test_import_nas_is_light_and_keeps_the_api_names():
    """``import nas`` loads neither torch nor optuna; importing the nas.export/nas.verify modules (as the CLI does)
    leaves ``nas.export``/``nas.verify`` the API functions."""
    script = ("import sys, nas; assert not {'torch', 'optuna'} & set(sys.modules), sorted(sys.modules)\n"
              "import nas.export, nas.verify\n"
              "from nas import export, verify\n"
              "assert callable(export) and callable(verify) and export is nas.api.export, export\n"
              "from nas.export import export_trial\n")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, timeout=PATIENCE)
