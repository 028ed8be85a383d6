"""`nas export`: generated model.py reproduces the trial's model, the card, --pick, constraints, bad input."""
from __future__ import annotations

import ast
import json
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from conftest import assert_exports_reload_identically
from optuna.trial import TrialState
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save_file

import search_spaces
from nas import codegen
from nas import config as config_module
from nas import data as data_module
from nas import optuna_compat
from nas.card import pareto_rank, row_names
from nas.cli import main
from nas.errors import UsageError
from nas.export import export_trial, load_model_source, pick_trial, read_weights
from nas.records import trial_record
from nas.storage import load_study
from nas.study import Experiment, create_or_load, run_search

DATA = {"name": "synthetic", "synthetic_size": 240}
SPACES = {
    "mlp-ensemble": {"name": "mlp", "depth": 1, "width": [16], "activation": ["gelu"], "batch_norm": [True],
                     "ensemble": 2},
    "cnn-cardinality": {"name": "cnn", "depth": 2, "channels": [8], "cardinality": [2], "pool": ["max"], "hidden": [16],
                        "batch_norm": [True], "ensemble": 1},
    "cnn-ensemble": {"name": "cnn", "depth": 1, "channels": [8], "cardinality": [4], "pool": ["avg"], "hidden": [0],
                     "batch_norm": [False], "ensemble": 2},
}
# Widths 8 and 64 give about 550 and 4400 parameters: a 2000-parameter cap splits the trials.
MIXED = {"name": "mlp", "depth": 1, "width": [8, 64], "ensemble": 1}
PARAMS_CAP = 2000.0

ISOLATED_SCRIPT = r'''
import importlib.util, sys
site, folder, inputs, out = sys.argv[1:]
sys.path.append(site)
sys.path.insert(0, folder)
for name in ("nas", "search_spaces", "objectives"):
    if importlib.util.find_spec(name) is not None:
        raise SystemExit(f"isolation broken: {name} is importable")
import torch
from safetensors.torch import load_file, save_file
import model
net = model.build()
net.load_state_dict(load_file(folder + "/weights.safetensors"), strict=True)
net.eval()
with torch.no_grad():
    logits = net(load_file(inputs)["x"])
save_file({"logits": logits.contiguous()}, out)
'''


def run_study(storage: str, name: str, space: dict, n_trials: int = 1,
              requirements: dict | None = None) -> optuna.Study:
    """A tiny seeded study (synthetic 8x8 data, 2 epochs) run in-process; returns it."""
    raw = {
        "study": {"name": name, "storage": storage, "n_trials": n_trials, "sampler": "random", "device": "cpu"},
        "data": DATA, "space": space, "training": {"epochs": 2, "batch_size": 32},
        "objectives": {"accuracy": {}, "params": {}}, "requirements": requirements or {},
    }
    config = config_module.resolve(raw)
    study = create_or_load(config, resume=False)
    run_search(study, Experiment.from_config(config), n_trials)
    return study


def cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as stop:  # argparse's own usage errors
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_usage_error(capsys, args: list[str], *fragments: str) -> None:
    code, _, err = cli(capsys, *args)
    assert code == 2, err
    assert err.startswith("nas: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    storage = f"sqlite:///{root}/nas.db"
    torch.set_num_threads(1)
    for name, space in SPACES.items():
        run_study(storage, name, space)
    run_study(storage, "mixed", MIXED, n_trials=6, requirements={"params": {"max": PARAMS_CAP}})
    run_study(storage, "impossible", MIXED, n_trials=2, requirements={"params": {"max": 10.0}})
    return root, storage


def _export(capsys, storage: str, study: str, out: Path, *extra: str) -> Path:
    code, stdout, err = cli(capsys, "export", "--storage", storage, "--study-name", study, "--out", str(out), *extra)
    assert code == 0, err
    assert f"nas verify {out}" in " ".join(stdout.split())
    return out


# ------------------------------------------------------------------------------------------ round trip
@pytest.mark.parametrize("name", list(SPACES))
def test_exported_model_reproduces_the_scored_model_in_an_isolated_process(runs, capsys, tmp_path, name):
    root, storage = runs
    folder = _export(capsys, storage, name, tmp_path / "out", "--trial", "0")
    study = load_study(storage, name)
    trial = study.trials[0]
    dataset = data_module.load(config_module.resolve({"data": DATA})["data"])
    save_file({"x": dataset.val_x.contiguous()}, str(tmp_path / "inputs.safetensors"))
    script = tmp_path / "isolated.py"
    script.write_text(ISOLATED_SCRIPT)
    site = str(Path(torch.__file__).resolve().parents[1])
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(script), site, str(folder), str(tmp_path / "inputs.safetensors"),
         str(tmp_path / "logits.safetensors")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    exported_logits = load_file(str(tmp_path / "logits.safetensors"))["logits"]

    record = trial_record(study, trial)
    reference = search_spaces.build(record["spec"])
    reference.load_state_dict(load_file(str(folder / "weights.safetensors")), strict=True)
    stored = search_spaces.build(record["spec"])
    stored.load_state_dict(load_bytes(read_weights(study, trial)), strict=True)  # straight from the artifact store
    with torch.no_grad():
        torch.testing.assert_close(exported_logits, stored.eval()(dataset.val_x), atol=1e-6, rtol=0)
        torch.testing.assert_close(exported_logits, reference.eval()(dataset.val_x), atol=1e-6, rtol=0)
    accuracy = (exported_logits.argmax(1) == dataset.val_y).float().mean().item()
    assert accuracy == pytest.approx(record["metrics"]["accuracy"], abs=1e-6)  # the model the trial scored


@pytest.mark.parametrize("name", list(SPACES))
def test_generated_source_compiles_and_imports_only_torch(runs, capsys, tmp_path, name):
    root, storage = runs
    folder = _export(capsys, storage, name, tmp_path / "out", "--trial", "0")
    source = folder / "model.py"
    py_compile.compile(str(source), cfile=str(tmp_path / "model.pyc"), doraise=True)
    imported = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert "torch" in imported and imported <= {"torch", *sys.stdlib_module_names}, imported
    assert "def build(calibrated: bool = False)" in source.read_text()
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "card.md", "model.py", "spec.json",
                                                         "weights.safetensors"]
    manifest = json.loads((folder / "spec.json").read_text())
    study = load_study(storage, name)
    record = trial_record(study, study.trials[0])
    assert manifest["spec"] == record["spec"] and manifest["recipe"] == record["recipe"]
    assert manifest["seed"] == record["seed"] and manifest["config_hash"] == record["config_hash"]
    assert manifest["preprocessing"]["class_names"] == ["top", "bottom", "left", "right"]
    assert manifest["preprocessing"]["normalize"] == record["spec"]["normalize"]
    assert "***" in manifest["experiment"]["study"]["storage"] or "@" not in manifest["experiment"]["study"]["storage"]


def _randomise_batch_norm(model: torch.nn.Module) -> None:
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator))
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)


CODEGEN_SPECS = {
    "cnn-1d-card4-bn": {"space": "cnn", "blocks": [{"channels": 8, "kernel": 5, "pool": "max"},
                                                   {"channels": 16, "kernel": 3, "pool": "none"}],
                        "cardinality": 4, "batch_norm": True, "activation": "silu", "dropout": 0.1, "hidden": 12,
                        "ensemble": 1,
                        "input_shape": [1, 40], "num_classes": 10, "normalize": {"mean": [0.1], "std": [0.9]}},
    "cnn-2d-rgb-ensemble": {"space": "cnn", "blocks": [{"channels": 4, "kernel": 1, "pool": "avg"},
                                                       {"channels": 4, "kernel": 7, "pool": "max"}],
                            "cardinality": 2, "batch_norm": False, "activation": "leaky_relu", "dropout": 0.0,
                            "hidden": 0, "ensemble": 3, "input_shape": [3, 9, 7], "num_classes": 3,
                            "normalize": {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}},
    "cnn-pools-past-1px": {"space": "cnn", "blocks": [{"channels": 6, "kernel": 3, "pool": "max"}] * 4,
                           "cardinality": 1, "batch_norm": False, "activation": "tanh", "dropout": 0.0, "hidden": 0,
                           "ensemble": 1,
                           "input_shape": [1, 5, 5], "num_classes": 2},
    "mlp-1d": {"space": "mlp", "hidden": [12, 6, 4], "activation": "tanh", "dropout": 0.3, "batch_norm": False,
               "ensemble": 1,
               "input_shape": [2, 20], "num_classes": 5, "normalize": {"mean": [0.0, 1.0], "std": [1.0, 2.0]}},
}


@pytest.mark.parametrize("name", list(CODEGEN_SPECS))
def test_codegen_matches_search_space_build(tmp_path, name):
    spec = CODEGEN_SPECS[name]
    torch.manual_seed(0)
    reference = search_spaces.build(spec)
    _randomise_batch_norm(reference)
    path = tmp_path / "model.py"
    path.write_text(codegen.generate(spec))
    generated = load_model_source(path).build()
    generated.load_state_dict(reference.state_dict(), strict=True)
    x = torch.rand(6, *spec["input_shape"])
    with torch.no_grad():
        torch.testing.assert_close(generated.eval()(x), reference.eval()(x), atol=1e-6, rtol=0)


def test_exported_source_is_the_trained_code_for_sampled_specs_of_every_space(tmp_path):
    """For every space, specs sampled from its full limits: model.py, run where our packages cannot be imported,
    gives the same logits as ``search_spaces.build`` on the same weights (one model source, not a re-implementation)."""
    cases = []
    for space_name in search_spaces.available():
        space = search_spaces.get(space_name)
        limits = {key: list(option["choices"]) if "choices" in option
                  else {"low": option["low"], "high": min(option["high"], 64)}
                  for key, option in space.params.items() if key not in ("depth", "ensemble")}
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=len(space_name)))
        for index in range(4):
            shape = [[1, 12, 12], [3, 9, 7], [2, 30]][index % 3]
            spec = {**space.sample(study.ask(), {**limits, "ensemble": 1 + index % 2, "depth": 1 + index % 3}),
                    "input_shape": shape, "num_classes": 3 + index,
                    "normalize": {"mean": [0.1 * c for c in range(shape[0])],
                                  "std": [0.5 + c for c in range(shape[0])]}}
            cases.append(spec)
    models = []
    for index, spec in enumerate(cases):
        torch.manual_seed(index)
        reference = search_spaces.build(spec)
        _randomise_batch_norm(reference)
        models.append((spec, reference))
    assert_exports_reload_identically(tmp_path, models)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_extra_formats_give_the_same_logits(runs, capsys, tmp_path):
    root, storage = runs
    folder = _export(capsys, storage, "cnn-ensemble", tmp_path / "out", "--trial", "0", "--format", "export",
                     "--format", "torchscript")
    model = search_spaces.build(json.loads((folder / "spec.json").read_text())["spec"])
    model.load_state_dict(load_file(str(folder / "weights.safetensors")))
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        expected = model.eval()(x)
        torch.testing.assert_close(torch.export.load(str(folder / "model.pt2")).module()(x), expected,
                                   atol=1e-6, rtol=0)
        torch.testing.assert_close(torch.jit.load(str(folder / "model.torchscript.pt"))(x), expected, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------ requirements
def _front_rows(stdout: str) -> dict[int, str]:
    """{trial: feasible column} from the printed Pareto table."""
    rows = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.split("│")]
        if len(cells) > 3 and cells[1].isdigit():
            rows[int(cells[1])] = cells[-3]
    return rows


def test_requirements_become_constraints_in_storage_and_the_printed_front(runs, capsys, monkeypatch):
    root, storage = runs
    monkeypatch.setenv("COLUMNS", "200")
    study = load_study(storage, "mixed")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    records = {t.number: trial_record(study, t) for t in complete}
    feasible = {t.number for t in complete if records[t.number]["metrics"]["params"] <= PARAMS_CAP}
    assert feasible and feasible != {t.number for t in complete}, "the cap should split the trials"
    for trial in complete:
        record = records[trial.number]
        assert trial.constraints["params"] == pytest.approx(record["metrics"]["params"] - PARAMS_CAP)
        assert trial.user_attrs["feasible"] is (trial.number in feasible)
        assert record["requirements"]["params"]["pass"] is (trial.number in feasible)
    code, stdout, _ = cli(capsys, "status", "--storage", storage, "--study-name", "mixed")
    printed = _front_rows(stdout)
    assert code == 0 and printed and set(printed) <= feasible and set(printed.values()) == {"yes"}

    code, stdout, _ = cli(capsys, "status", "--storage", storage, "--study-name", "impossible")
    printed = _front_rows(stdout)
    assert code == 0 and printed and set(printed.values()) == {"no"}


# ------------------------------------------------------------------------------------------ card and pick
def test_card_reports_requirements_rank_and_plain_summary(runs, capsys, tmp_path):
    root, storage = runs
    study = load_study(storage, "mixed")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    best = {t.number for t in study.best_trials}
    for trial in complete:
        assert (pareto_rank(study, trial)["rank"] == 1) is (trial.number in best)
    infeasible = next(t for t in complete if not t.user_attrs["feasible"])
    feasible = next(t for t in complete if t.user_attrs["feasible"])
    for trial in (feasible, infeasible):
        metrics = trial_record(study, trial)["metrics"]
        folder = _export(capsys, storage, "mixed", tmp_path / f"t{trial.number}", "--trial", str(trial.number))
        card = json.loads((folder / "card.json").read_text())
        markdown = (folder / "card.md").read_text()
        (row,) = card["requirements"]["table"]
        assert row["metric"] == "params" and row["max"] == PARAMS_CAP and row["interval"] is None  # an exact count
        assert (row["verdict"] == "pass") is trial.user_attrs["feasible"]
        rows = {name: r for r in card["metrics"] for name in row_names(r)}
        assert rows["params"]["value"] == metrics["params"]
        # staged evaluation: once the cheap params requirement fails, accuracy is skipped and the card says so
        assert rows["accuracy"]["skipped"] is not trial.user_attrs["feasible"]
        assert rows["accuracy"]["value"] == metrics.get("accuracy")
        assert card["pareto"]["n_complete"] == len(complete)
        assert card["data"]["class_names"] == ["top", "bottom", "left", "right"] and card["data"]["val_size"] > 0
        assert card["cost"]["params"] == metrics["params"] and card["cost"]["train_seconds"] > 0
        summary = " ".join(card["summary"])
        assert "test set" in summary and "4 categories" in summary
        if trial is feasible:
            assert "meets 1 of 1 standard (params <= 2000)" in summary
            assert "| params <= 2000 |" in markdown and "| pass |" in markdown
        else:
            assert "meets 0 of 1 standard; fails: params <= 2000" in summary
            assert "**FAIL**" in markdown and card["pareto"]["rank"] > 1
        assert "skipped (a cheaper requirement already failed)" in markdown or trial is feasible


def test_pareto_rank_puts_feasible_front_first():
    study = optuna.create_study(directions=["maximize", "minimize"])
    key = optuna_compat.constraints_key()
    for values, violation in [((0.9, 100), -1), ((0.8, 200), -1), ((0.95, 300), -1), ((0.99, 50), 5)]:
        study.add_trial(optuna.trial.create_trial(values=list(values), system_attrs={key: [violation]}))
    ranks = [pareto_rank(study, trial)["rank"] for trial in study.trials]
    # (0.8, 200) is dominated by (0.9, 100); the infeasible trial dominates all but ranks after every feasible one.
    assert ranks == [1, 2, 1, 3]


def test_pick_selects_by_metric_and_feasibility(runs):
    root, storage = runs
    study = load_study(storage, "mixed")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    metrics = {t.number: trial_record(study, t)["metrics"] for t in complete}
    accuracy = {n: m["accuracy"] for n, m in metrics.items() if "accuracy" in m}
    top = max(accuracy.values())
    assert pick_trial(study, "max:accuracy").number == min(n for n, a in accuracy.items() if a == top)
    assert pick_trial(study, "max accuracy").number == pick_trial(study, "MAX:accuracy").number
    feasible = [t for t in complete if t.user_attrs["feasible"]]
    chosen = pick_trial(study, "max:params where feasible")
    assert chosen.user_attrs["feasible"]
    assert metrics[chosen.number]["params"] == max(metrics[t.number]["params"] for t in feasible)
    smallest = min(m["params"] for m in metrics.values())
    assert metrics[pick_trial(study, "min:params").number]["params"] == smallest


def test_export_api_builds_the_folder_the_dashboard_zips(runs, tmp_path):
    root, storage = runs
    study = load_study(storage, "mixed")
    folder = export_trial(study, pick_trial(study, "max:accuracy").number, tmp_path / "api", storage_url=storage)
    assert (folder / "model.py").is_file() and json.loads((folder / "spec.json").read_text())["study"] == "mixed"
    with pytest.raises(UsageError, match="not empty"):
        export_trial(study, 0, folder, storage_url=storage)
    export_trial(study, 1, folder, storage_url=storage, force=True)  # replaces an earlier export
    assert json.loads((folder / "spec.json").read_text())["trial"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging folder left behind"


def test_fitted_temperature_travels_with_the_export(copied, capsys, tmp_path):
    """A trial that measured calibration.temperature: spec.json stores it and model.py applies it when asked."""
    study = load_study(copied, "mixed")
    source = next(t for t in study.get_trials(states=(TrialState.COMPLETE,)) if t.user_attrs["feasible"])
    metrics = {**trial_record(study, source)["metrics"], "calibration.temperature": 1.5}
    study.add_trial(optuna.trial.create_trial(values=source.values, params=source.params,
                                              distributions=source.distributions,
                                              user_attrs={**source.user_attrs, "metrics": metrics}))
    number = study.trials[-1].number
    folder = _export(capsys, copied, "mixed", tmp_path / "calibrated", "--trial", str(number))
    assert json.loads((folder / "spec.json").read_text())["calibration"] == {"temperature": 1.5}
    module = load_model_source(folder / "model.py")
    assert module.TEMPERATURE == 1.5
    raw, calibrated = module.build(), module.build(calibrated=True)
    for model in (raw, calibrated):
        model.load_state_dict(load_file(str(folder / "weights.safetensors")))
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(calibrated.eval()(x), raw.eval()(x) / 1.5, atol=1e-6, rtol=0)
    plain = _export(capsys, copied, "mixed", tmp_path / "plain", "--trial", str(source.number))
    assert json.loads((plain / "spec.json").read_text())["calibration"] == {"temperature": None}


# ------------------------------------------------------------------------------------------ bad input
@pytest.fixture
def copied(runs, tmp_path):
    """A copy of the storage (the artifact folder recorded on the studies stays shared, read-only)."""
    root, _ = runs
    shutil.copy(root / "nas.db", tmp_path / "nas.db")
    return f"sqlite:///{tmp_path}/nas.db"


def test_bad_input_unknown_study_or_trial(runs, capsys, tmp_path):
    root, storage = runs
    base = ["export", "--storage", storage, "--study-name"]
    assert_usage_error(capsys, [*base, "nope", "--trial", "0"], "no study named 'nope'", "mixed")
    assert_usage_error(capsys, [*base, "mixed", "--trial", "99"], "no trial 99", "trials 0-5")
    assert_usage_error(capsys, [*base, "mixed"], "exactly one of --trial N or --pick")


def test_bad_input_trial_not_complete(copied, capsys):
    study = load_study(copied, "mixed")
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "training diverged"}))
    number = study.trials[-1].number
    assert_usage_error(capsys, ["export", "--storage", copied, "--study-name", "mixed", "--trial", str(number)],
                       f"trial {number} of study 'mixed' is FAIL (training diverged)", "only COMPLETE trials")


def test_bad_input_spec_this_version_cannot_build(copied, capsys):
    study = load_study(copied, "mixed")
    spec = {**trial_record(study, study.trials[0])["spec"], "space": "transformer"}
    weights = study.trials[0].user_attrs["weights_artifact"]  # readable weights: the spec is what fails
    study.add_trial(optuna.trial.create_trial(values=[0.5, 100.0],
                                              user_attrs={"spec": spec, "weights_artifact": weights}))
    number = str(study.trials[-1].number)
    assert_usage_error(capsys, ["export", "--storage", copied, "--study-name", "mixed", "--trial", number],
                       "cannot build its spec", "unknown search space 'transformer'")


def test_bad_input_missing_or_corrupt_weights(runs, capsys, tmp_path):
    root, storage = runs
    base = ["export", "--storage", storage, "--study-name", "mixed", "--trial", "0"]
    (tmp_path / "empty").mkdir()
    assert_usage_error(capsys, [*base, "--artifacts", str(tmp_path / "empty"), "--out", str(tmp_path / "a")],
                       "are missing from")
    assert_usage_error(capsys, [*base, "--artifacts", str(tmp_path / "absent"), "--out", str(tmp_path / "b")],
                       "artifact folder not found")
    artifacts = tmp_path / "artifacts"
    shutil.copytree(root / "artifacts", artifacts)
    weights = artifacts / load_study(storage, "mixed").trials[0].user_attrs["weights_artifact"]
    weights.write_bytes(weights.read_bytes()[:100])
    assert_usage_error(capsys, [*base, "--artifacts", str(artifacts), "--out", str(tmp_path / "c")],
                       "weights of trial 0 are corrupt")
    assert not (tmp_path / "c").exists()


def test_bad_input_selector_format_and_output(runs, capsys, tmp_path):
    root, storage = runs
    base = ["export", "--storage", storage, "--study-name", "mixed"]
    assert_usage_error(capsys, [*base, "--pick", "best accuracy"], "is not a selector", "max:METRIC")
    assert_usage_error(capsys, [*base, "--pick", "max:speed"], "unknown metric 'speed'", "allowed: accuracy")
    impossible = ["export", "--storage", storage, "--study-name", "impossible"]
    assert_usage_error(capsys, [*impossible, "--pick", "min:params where feasible"], "meets every requirement")
    assert_usage_error(capsys, [*base, "--trial", "0", "--format", "pdf"], "invalid choice: 'pdf'")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert_usage_error(capsys, [*base, "--trial", "0", "--out", str(tmp_path / "busy")], "is not empty")
    assert_usage_error(capsys, [*base, "--trial", "0", "--out", str(tmp_path / "busy"), "--force"],
                       "not an export folder")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    if not all(map(__import__("importlib").util.find_spec, ("onnx", "onnxscript"))):
        assert_usage_error(capsys, [*base, "--trial", "0", "--format", "onnx"], "needs the", "--format export")
