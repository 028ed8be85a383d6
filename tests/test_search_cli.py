"""End-to-end: `nas search` / `nas status` in a subprocess on the smoke config."""
from __future__ import annotations

import csv
import json
import shutil

import optuna
import pytest
from optuna.trial import TrialState

from conftest import EXPERIMENTS
from nas.records import trial_record


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from conftest import run_nas

    workdir = tmp_path_factory.mktemp("smoke")
    shutil.copy(EXPERIMENTS / "smoke.toml", workdir / "smoke.toml")
    result = run_nas("search", "smoke.toml", "--n-trials", "3", "--threads", "1", cwd=workdir)
    return workdir, result


def _study(workdir):
    return optuna.load_study(study_name="smoke", storage=f"sqlite:///{workdir}/runs/smoke.db")


def test_search_runs_end_to_end_and_fronts_agree(smoke_run):
    workdir, result = smoke_run
    assert result.returncode == 0, result.stderr
    assert ", 1 CPU thread(s)" in result.stdout  # --threads reached torch
    study = _study(workdir)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 3
    for trial in complete:
        record = trial_record(study, trial, f"sqlite:///{workdir}/runs/smoke.db")
        for key in ("spec", "recipe", "seed", "history", "train_seconds", "objectives", "metrics", "weights_artifact"):
            assert key in record, key
        assert set(record["objectives"]) >= {"accuracy", "params"}
        assert all(r["seconds"] >= 0 for r in record["objectives"].values())
        assert len(record["history"]) == record["recipe"]["epochs"]
    best = sorted(t.number for t in study.best_trials)
    assert best, "a front must exist"
    written = json.loads((workdir / "runs" / "smoke-pareto.json").read_text())
    assert sorted(row["trial"] for row in written["front"]) == best
    with (workdir / "runs" / "smoke-pareto.csv").open() as handle:
        assert sorted(int(row["trial"]) for row in csv.DictReader(handle)) == best
    printed_table = result.stdout.split("Pareto front of study")[1]
    printed = sorted(int(line.split("│")[1]) for line in printed_table.splitlines() if line.startswith("│"))
    assert printed == best
    for row in written["front"]:
        trial = study.trials[row["trial"]]
        assert row["accuracy"] == pytest.approx(trial.values[0])
        assert row["params"] == pytest.approx(trial.values[1])


def test_resume_keeps_completed_trials(smoke_run, nas_cli):
    workdir, _ = smoke_run
    before = {t.number: t.values for t in _study(workdir).get_trials(states=(TrialState.COMPLETE,))}
    again = nas_cli("search", "smoke.toml", cwd=workdir)
    assert again.returncode == 2 and "already exists" in again.stderr and "--resume" in again.stderr
    resumed = nas_cli("search", "smoke.toml", "--resume", "--n-trials", "4", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr
    after = {t.number: t.values for t in _study(workdir).get_trials(states=(TrialState.COMPLETE,))}
    assert len(after) == 4
    assert all(after[number] == values for number, values in before.items())


def test_status_shows_counts_and_front(smoke_run, nas_cli):
    workdir, _ = smoke_run
    status = nas_cli("status", "--storage", "sqlite:///runs/smoke.db", "--study-name", "smoke", cwd=workdir)
    assert status.returncode == 0, status.stderr
    assert "COMPLETE" in status.stdout and "Pareto front" in status.stdout
    missing = nas_cli("status", "--storage", "sqlite:///runs/smoke.db", "--study-name", "nope", cwd=workdir)
    assert missing.returncode == 2 and "no study named 'nope'" in missing.stderr and "Traceback" not in missing.stderr


def test_diverging_trial_is_failed_with_reason_and_study_finishes(tmp_path, nas_cli):
    (tmp_path / "diverge.toml").write_text(
        """
[study]
name = "diverge"
sampler = "random"
n_trials = 2
max_failed = 30
storage = "sqlite:///runs/d.db"
[data]
name = "synthetic"
[space]
name = "mlp"
depth = 2
width = 64
batch_norm = false
ensemble = 1
dropout = 0.0
activation = "relu"
[training]
epochs = 2
lr = 10.0
optimizer = "sgd"
[objectives.accuracy]
"""
    )
    result = nas_cli("search", "diverge.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="diverge", storage=f"sqlite:///{tmp_path}/runs/d.db")
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert failed, "lr=10 with SGD must diverge for some seeds"
    assert all("diverged" in t.user_attrs["fail_reason"] for t in failed)
    assert "FAILED: training diverged" in result.stdout
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2


def test_python_dash_m_and_help(tmp_path, nas_cli):
    result = nas_cli("--help", cwd=tmp_path)
    assert result.returncode == 0 and "search" in result.stdout and "status" in result.stdout
    search_help = nas_cli("search", "--help", cwd=tmp_path)
    for option in ("--n-trials", "--storage", "--study-name", "--seed", "--resume", "--device", "--data-dir"):
        assert option in search_help.stdout
