"""`nas ensemble`: greedy selection of stored trials, recorded as a trial, exported, bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save_file

import search_spaces
from nas import config as config_module
from nas import data as data_module
from nas.cli import main
from nas.errors import UsageError
from nas.export import read_weights
from nas.records import Records, trial_record
from nas.requirements import requirement_violation
from nas.storage import load_study
from nas.study import Experiment, create_or_load, run_search
from test_export import ISOLATED_SCRIPT, assert_usage_error, cli

DATA = {"name": "digits"}
PARAMS_CAP = 20000.0


def _config(storage: str, name: str, n_trials: int) -> dict:
    return config_module.resolve({
        "study": {"name": name, "storage": storage, "n_trials": n_trials, "sampler": "random", "device": "cpu"},
        "data": DATA, "space": {"name": "mlp", "depth": 1, "width": [16, 32, 64], "ensemble": 1},
        "training": {"epochs": 2, "batch_size": 64},
        "objectives": {"accuracy": {}, "calibration": {}, "params": {}},
        "requirements": {"params": {"max": PARAMS_CAP}},
    })


@pytest.fixture(scope="module")
def study_url(tmp_path_factory):
    """A seeded study of 6 small MLPs on digits (2 epochs each), and one created but never run."""
    root = tmp_path_factory.mktemp("ensemble")
    storage = f"sqlite:///{root}/nas.db"
    torch.set_num_threads(1)
    config = _config(storage, "digits", 6)
    run_search(create_or_load(config, resume=False), Experiment.from_config(config), 6)
    create_or_load(_config(storage, "empty", 1), resume=False)
    return storage


def _ensemble(capsys, storage: str, *extra: str) -> dict:
    code, out, err = cli(capsys, "ensemble", "--storage", storage, "--study-name", "digits", "--json", *extra)
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def built(study_url):
    """One ensemble by accuracy (4 picks), built through the CLI."""
    buffer = StringIO()  # a module fixture cannot use capsys
    with redirect_stdout(buffer):
        code = main(["ensemble", "--storage", study_url, "--study-name", "digits", "--size", "4", "--json"])
    assert code == 0
    return json.loads(buffer.getvalue())


def test_ensemble_is_recorded_with_members_and_beats_its_best_member(study_url, built):
    study = load_study(study_url, "digits")
    trial = study.trials[built["trial_number"]]
    records = Records(study, study_url)
    record = records(trial)
    singles = [t for t in study.trials if t.state == TrialState.COMPLETE and records(t)["spec"]["space"] == "mlp"]
    assert trial.state == TrialState.COMPLETE and len(singles) == 6
    members = trial.user_attrs["ensemble_members"]
    assert members == built["members"] and trial.user_attrs["ensemble_weights"] == built["weights"]
    assert sum(built["weights"]) == sum(step["kept"] for step in built["steps"]) <= 4
    assert record["spec"]["space"] == "ensemble" and trial.params == {}
    assert [m["hidden"] for m in record["spec"]["members"]] == \
        [records(study.trials[n])["spec"]["hidden"] for n in members]

    names = study.user_attrs["objective_names"]
    values = dict(zip(names, trial.values))
    assert values == built["values"]
    best_single = max(t.values[names.index("accuracy")] for t in singles)
    assert values["accuracy"] >= best_single
    assert built["steps"][0]["trial"] == built["best_member"]["trial"]
    assert study.trials[built["steps"][0]["trial"]].values[names.index("accuracy")] == best_single
    # params: every distinct member's parameters once (its cost), from the members' own params objective
    assert values["params"] == sum(study.trials[n].values[names.index("params")] for n in members)
    # requirements as Optuna constraints, as on a searched trial
    assert trial.constraints == {"params": requirement_violation(values["params"], {"max": PARAMS_CAP})}
    assert trial.user_attrs["feasible"] == (values["params"] <= PARAMS_CAP)
    assert set(record["objectives"]) == {"accuracy", "calibration", "params"}
    assert "objectives" not in trial.user_attrs and record["ensemble_selection"]["objective"] == "accuracy"
    # a built ensemble does not count toward the search's n_trials: a resumed search still runs its own trials
    from nas.study import _is_surplus, counts

    assert counts(study)["COMPLETE"] == len(singles)
    assert not _is_surplus(study, len(study.trials), len(singles) + 1)


def test_ensemble_exports_loads_isolated_and_averages_its_members_softmax(study_url, built, capsys, tmp_path):
    # this seeded study's selection mixes two architectures with unequal weights: both paths of the export are checked
    assert len(built["members"]) >= 2 and len(set(built["weights"])) > 1, built
    number = built["trial_number"]
    folder = tmp_path / "out"
    code, out, err = cli(capsys, "export", "--storage", study_url, "--study-name", "digits", "--trial", str(number),
                         "--out", str(folder))
    assert code == 0, err
    source = (folder / "model.py").read_text()
    assert source.count("class MLP(nn.Module)") == 1 and "class Ensemble(nn.Module)" in source
    assert "weights=WEIGHTS" in source and "MEMBER_0 = " in source

    dataset = data_module.load(config_module.resolve({"data": DATA})["data"])
    x = dataset.val_x[:64].contiguous()
    save_file({"x": x}, str(tmp_path / "inputs.safetensors"))
    script = tmp_path / "isolated.py"
    script.write_text(ISOLATED_SCRIPT)
    site = str(Path(torch.__file__).resolve().parents[1])
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(script), site, str(folder), str(tmp_path / "inputs.safetensors"),
         str(tmp_path / "logits.safetensors")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    exported = load_file(str(tmp_path / "logits.safetensors"))["logits"]

    study = load_study(study_url, "digits")
    mixture = torch.zeros(len(x), 10)
    for member, weight in zip(built["members"], built["weights"]):
        trial = study.trials[member]
        model = search_spaces.build(trial_record(study, trial)["spec"])
        model.load_state_dict(load_bytes(read_weights(study, trial)), strict=True)
        with torch.no_grad():
            mixture += weight * torch.softmax(model.eval()(x), dim=1)
    mixture /= sum(built["weights"])
    torch.testing.assert_close(exported, torch.log(mixture), atol=1e-5, rtol=0)


def test_other_selection_objectives(study_url, capsys):
    found = _ensemble(capsys, study_url, "--size", "2", "--objective", "hypervolume", "--pool", "front")
    assert found["objective"] == "hypervolume" and found["steps"][0]["score"] > 0
    study = load_study(study_url, "digits")
    front = {t.number for t in study.best_trials}
    assert set(found["candidates"]) <= front
    found = _ensemble(capsys, study_url, "--size", "2", "--objective", "calibration")
    steps = [step for step in found["steps"] if step["kept"]]
    assert steps[-1]["score"] <= found["best_member"]["score"]  # ECE: lower is better, the best prefix is kept


def test_ensemble_spec_is_validated_and_not_searchable():
    member = {"space": "mlp", "hidden": [8], "activation": "relu", "dropout": 0.0, "batch_norm": False,
              "input_shape": [1, 8, 8], "num_classes": 10}
    spec = {"space": "ensemble", "members": [member, member], "weights": [2, 1], "input_shape": [1, 8, 8],
            "num_classes": 10}
    assert search_spaces.summary(spec) == "ensemble: 2x mlp 8 relu + mlp 8 relu"
    for bad, fragment in [({**spec, "weights": [1]}, "spec.weights"),
                          ({**spec, "members": [spec]}, "spec.members[0] is an ensemble"),
                          ({**spec, "members": [{**member, "num_classes": 3}]}, "spec.members[0] has"),
                          ({**spec, "members": [{**member, "hidden": "8"}]}, "spec.members[0]: spec.hidden")]:
        with pytest.raises(search_spaces.SpecError, match=fragment.replace("[", r"\[")):
            search_spaces.build(bad)
    assert "ensemble" not in search_spaces.available()
    with pytest.raises(UsageError, match="space.name = 'ensemble' is not allowed"):
        config_module.resolve({"space": {"name": "ensemble"}})


def test_bad_input_is_one_line_and_exit_2(study_url, capsys):
    base = ["ensemble", "--storage", study_url]
    assert_usage_error(capsys, [*base, "--study-name", "digits", "--size", "2", "--objective", "ood"],
                       "--objective 'ood' is not allowed", "accuracy or calibration", "hypervolume")
    assert_usage_error(capsys, [*base, "--study-name", "digits", "--size", "0"], "--size must be an integer >= 1")
    assert_usage_error(capsys, [*base, "--study-name", "digits", "--size", "2", "--pool", "best"],
                       "--pool 'best' is not allowed; allowed: all, front")
    assert_usage_error(capsys, [*base, "--study-name", "nope", "--size", "2"], "nope")
    assert_usage_error(capsys, [*base, "--study-name", "empty", "--size", "2"],
                       "no COMPLETE trial with stored weights")
