"""`nas search --workers K` on one machine (journal storage), worker bookkeeping and fault tolerance."""
from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import EXPERIMENTS, PATIENCE, run_nas, wait_for
from test_distributed import assert_exact, retry_of, write_config

from nas.errors import UsageError
from nas.storage import (StorageUnavailable, describe_error, fail_trials_of_dead_workers, mask_url, open_artifact_store,
                         open_storage, study_names, worker_id)


def journal_study(workdir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(f"journal:{workdir}/{name}.journal"))


def start_search(workdir: Path, config: Path, *options: str) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "nas", "search", str(config),
                             "--storage", f"sqlite:///{workdir}/{config.stem}.db", "--workers", "2", *options],
                            cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_running_trial(workdir: Path, name: str, min_epochs: int = 1) -> optuna.trial.FrozenTrial:
    """The first trial of study ``name`` that has trained ``min_epochs`` epochs, once the search has written the study
    into its journal (the file exists a moment before the study does)."""
    journal = workdir / f"{name}.journal"

    def running() -> optuna.trial.FrozenTrial | None:
        if not journal.exists() or name not in study_names(open_storage(f"journal:{journal}")):
            return None
        trials = journal_study(workdir, name).get_trials(states=(TrialState.RUNNING,))
        return next((t for t in trials if t.user_attrs.get("last_epoch", {}).get("epoch", 0) >= min_epochs), None)

    return wait_for(running, f"a trial of study '{name}' to train {min_epochs} epoch(s)")


def test_two_local_workers_share_a_journal_study(tmp_path):
    config = write_config(tmp_path, "duo", n_trials=5)
    result = run_nas("search", str(config), "--storage", f"sqlite:///{tmp_path}/duo.db", "--workers", "2",
                     "--threads", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"journal:{tmp_path}/duo.journal" in result.stdout  # SQLite was swapped for a journal file, and said so
    assert not (tmp_path / "duo.db").exists()
    study = journal_study(tmp_path, "duo")
    complete = assert_exact(study, 5)
    assert len({t.user_attrs["worker"] for t in complete}) == 2, "both workers must have run trials"
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 5, "workers must not sample the same parameters"
    # The parent's live display covers trials of both workers; its front is the study's front.
    assert sorted(int(line.split()[1]) for line in result.stdout.splitlines()
                  if line.startswith("trial ") and " done " in line) == [t.number for t in complete]
    front = sorted(int(line.split("│")[1]) for line in result.stdout.split("Pareto front of study")[1].splitlines()
                   if line.startswith("│"))
    assert front == sorted(t.number for t in study.best_trials)
    logs = sorted((tmp_path / "logs").glob("duo-worker*.log"))
    # --threads and the passive OpenMP wait policy reach the worker processes
    assert len(logs) == 2 and all(" 1 thread(s) (OMP_WAIT_POLICY PASSIVE)" in log.read_text() for log in logs)


def test_kill9_local_worker_trial_is_failed_and_retried(tmp_path):
    config = write_config(tmp_path, "kill", n_trials=3, slow=True)
    search = start_search(tmp_path, config)
    victim = wait_for_running_trial(tmp_path, "kill")
    os.kill(int(victim.user_attrs["worker"].rpartition(":")[2]), signal.SIGKILL)
    out, err = search.communicate(timeout=PATIENCE)
    assert search.returncode == 0, out + err  # the study reached its target, so the search succeeded
    assert "was killed by SIGKILL" in out and f"trial {victim.number} of that worker is marked FAILED" in out
    study = journal_study(tmp_path, "kill")
    assert_exact(study, 3)
    failed, retry = study.trials[victim.number], retry_of(study, victim)
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["fail_reason"] == \
        f"worker {victim.user_attrs['worker']} died (its process is gone); parameters retried as trial {retry.number}"


def test_search_fails_when_every_worker_dies(tmp_path):
    config = write_config(tmp_path, "wiped", n_trials=3, slow=True)
    search = start_search(tmp_path, config)
    wait_for_running_trial(tmp_path, "wiped")
    children = Path(f"/proc/{search.pid}/task/{search.pid}/children").read_text().split()
    assert len(children) == 2
    for pid in children:
        os.kill(int(pid), signal.SIGKILL)
    out, err = search.communicate(timeout=PATIENCE)
    assert search.returncode == 1, out + err
    # Both deaths, in worker order whichever the parent noticed first.
    assert "no trial completed in study 'wiped': worker 0 was killed by SIGKILL" in err
    assert "; worker 1 was killed by SIGKILL" in err
    assert err.count("nas: error:") == 1 and "Traceback" not in out + err
    study = journal_study(tmp_path, "wiped")
    assert not study.get_trials(states=(TrialState.RUNNING,)) and study.get_trials(states=(TrialState.WAITING,))


def test_sigterm_stops_workers_cleanly_and_resume_finishes(tmp_path):
    config = write_config(tmp_path, "term", n_trials=3, slow=True)
    search = start_search(tmp_path, config)
    wait_for_running_trial(tmp_path, "term")
    search.send_signal(signal.SIGTERM)
    out, err = search.communicate(timeout=PATIENCE)
    assert search.returncode == 130, out + err
    assert "Traceback" not in out + err and "--resume" in err
    study = journal_study(tmp_path, "term")
    assert not study.get_trials(states=(TrialState.RUNNING,)), "no trial may be left RUNNING"
    abandoned = study.get_trials(states=(TrialState.FAIL,))
    assert abandoned and all(t.user_attrs["fail_reason"] == "abandoned: worker stopped by SIGTERM" for t in abandoned)
    resumed = start_search(tmp_path, config, "--resume")
    out, err = resumed.communicate(timeout=PATIENCE)
    assert resumed.returncode == 0, out + err
    assert_exact(journal_study(tmp_path, "term"), 3)


def test_bad_worker_counts_are_one_line_errors(tmp_path):
    for option in (["--workers", "0"], ["--workers", "2", "--storage", "sqlite:///:memory:"]):
        result = run_nas("search", str(EXPERIMENTS / "smoke.toml"), *option, cwd=tmp_path)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "--workers" in result.stderr
    missing = run_nas("worker", "--study-name", "x", cwd=tmp_path, env={"NAS_STORAGE": ""})
    assert missing.returncode == 2 and "--storage is required (or set NAS_STORAGE)" in missing.stderr


# ------------------------------------------------------------------ the rules behind those runs, in-process
def test_a_trial_that_would_overshoot_the_target_stands_down():
    from nas.study import _is_surplus

    study = optuna.create_study(directions=["maximize"])
    first, second, third = study.ask(), study.ask(), study.ask()
    study.tell(first, 1.0)
    # target 2: trial 1 fills the last slot; trial 2 (created later) must not run as well.
    assert not _is_surplus(study, second.number, 2)
    assert _is_surplus(study, third.number, 2)
    study.tell(second, state=TrialState.FAIL)  # the slot opens again when the earlier trial fails
    assert not _is_surplus(study, third.number, 2)


def test_search_waits_for_trials_under_way_instead_of_overshooting(tmp_path):
    from nas import config as config_module
    from nas.study import Experiment, create_or_load, run_search

    config = config_module.load(write_config(tmp_path, "wait", n_trials=2))
    config["study"]["storage"] = f"journal:{tmp_path}/wait.journal"
    experiment = Experiment.from_config(config)
    study = create_or_load(config, resume=False)
    run_search(study, experiment, 1)
    elsewhere = study.ask()  # a trial another live worker on this host is running
    elsewhere.set_user_attr("worker", worker_id())
    started = time.monotonic()
    run_search(study, experiment, 2, timeout=1.5, poll_seconds=0.1)
    assert time.monotonic() - started >= 1.5 and len(study.trials) == 2, "it must wait, not start a third trial"
    study.tell(elsewhere, state=TrialState.FAIL)
    run_search(study, experiment, 2)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2


def test_journal_trials_of_dead_local_workers_are_failed_and_retried_once(tmp_path):
    study = optuna.create_study(storage=open_storage(f"journal:{tmp_path}/dead.journal"), directions=["maximize"])
    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"]).pid
    os.waitpid(dead_pid, 0)
    orphan, alive = study.ask(), study.ask()
    orphan.suggest_float("x", 0.0, 1.0)
    orphan.set_user_attr("worker", f"{socket.gethostname()}:{dead_pid}")
    orphan.set_user_attr("history", [{"epoch": 1}])
    alive.set_user_attr("worker", worker_id())
    assert fail_trials_of_dead_workers(study) == [orphan.number]
    assert fail_trials_of_dead_workers(study) == []
    trials = study.get_trials()
    assert trials[orphan.number].state == TrialState.FAIL and trials[alive.number].state == TrialState.RUNNING
    (retry,) = [t for t in trials if t.state == TrialState.WAITING]
    assert retry.params == trials[orphan.number].params and retry.system_attrs["failed_trial"] == orphan.number
    assert retry.user_attrs == {}, "the retry starts clean, without the dead run's history or worker"
    reason = trials[orphan.number].user_attrs["fail_reason"]
    assert reason.endswith(f"died (its process is gone); parameters retried as trial {retry.number}")


def test_a_trial_stranded_by_a_lost_database_is_failed_with_its_reason_and_retried_once(tmp_path):
    from nas.storage import fail_stranded_trial

    storage = open_storage(f"sqlite:///{tmp_path}/cut.db", heartbeat_interval=None)
    study = optuna.create_study(storage=storage, directions=["maximize"])
    cut = study.ask()
    cut.suggest_float("x", 0.0, 1.0)
    cut.set_user_attr("history", [{"epoch": 1}])
    reason = "database unreachable during the trial (connection refused)"
    retry = fail_stranded_trial(study, cut.number, reason)
    assert fail_stranded_trial(study, cut.number, reason) == retry, "a second recovery must not queue a second retry"
    trials = optuna.load_study(study_name=study.study_name, storage=f"sqlite:///{tmp_path}/cut.db").get_trials()
    assert trials[cut.number].state == TrialState.FAIL
    assert trials[cut.number].user_attrs["fail_reason"] == f"{reason}; parameters retried as trial {retry}"
    assert [t.number for t in trials if t.state == TrialState.WAITING] == [retry]
    assert trials[retry].params == trials[cut.number].params and trials[retry].user_attrs == {}


def test_passwords_are_masked_even_with_odd_characters():
    url = "postgresql+psycopg://nas:p@ss:w/rd@db.example:5432/nas"
    assert mask_url(f"cannot reach {url} now") == "cannot reach postgresql+psycopg://nas:***@db.example:5432/nas now"
    assert mask_url("postgresql://nas@db/nas") == "postgresql://nas@db/nas"
    assert "p@ss:w/rd" not in describe_error(RuntimeError("auth failed for p@ss:w/rd\nmore"), url)
    assert StorageUnavailable("x").exit_code == 3 and isinstance(StorageUnavailable("x"), UsageError)


class _DictStore:
    """An in-memory artifact store with S3-like keys (slashes allowed), to check the prefixing."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def open_reader(self, artifact_id):
        return io.BytesIO(self.objects[artifact_id])

    def write(self, artifact_id, content_body):
        self.objects[artifact_id] = content_body.read()

    def remove(self, artifact_id):
        del self.objects[artifact_id]


def test_artifact_store_locations(tmp_path):
    from optuna.artifacts import download_artifact, upload_artifact

    from nas.storage import _PrefixedArtifactStore

    try:
        import boto3  # noqa: F401
    except ImportError:
        with pytest.raises(UsageError, match=r"needs boto3.*robust-nas\[s3\]"):
            open_artifact_store("s3://bucket/prefix")
    bucket = _DictStore()
    store = _PrefixedArtifactStore(bucket, "runs/big/")
    study = optuna.create_study()
    (tmp_path / "w.bin").write_bytes(b"weights")
    artifact_id = upload_artifact(artifact_store=store, file_path=str(tmp_path / "w.bin"), study_or_trial=study)
    assert bucket.objects == {f"runs/big/{artifact_id}": b"weights"}
    download_artifact(artifact_store=store, artifact_id=artifact_id, file_path=str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == b"weights"
    store.remove(artifact_id)
    assert bucket.objects == {}
    folder = open_artifact_store(tmp_path / "shared" / "artifacts")  # a plain folder is created on first use
    assert (tmp_path / "shared" / "artifacts").is_dir() and folder.__class__.__name__ == "FileSystemArtifactStore"


def test_reconnect_waits_for_the_database_and_gives_up_after_retry_for(monkeypatch):
    import sqlalchemy.exc

    from nas import worker

    url = "postgresql://nas:pw-123@db/nas"
    lost = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused: pw-123"))
    monkeypatch.setattr(worker.time, "sleep", lambda seconds: None)

    class Database:
        def __init__(self, answers: list[bool]) -> None:
            self.answers = answers

        @property
        def user_attrs(self):
            if not (self.answers.pop(0) if self.answers else False):
                raise lost
            return {}

    calls = []

    def step():
        calls.append(len(calls))
        if len(calls) == 1:
            raise lost
        return "finished"

    def down():
        raise lost

    assert worker.run_with_reconnect(Database([False, False, True]), url, step, retry_for=60) == "finished"
    assert len(calls) == 2, "the step runs again once the database answers"
    with pytest.raises(StorageUnavailable) as gone:
        worker.run_with_reconnect(Database([]), url, step=down, retry_for=0.05)
    assert "lost the connection to postgresql://nas:***@db/nas" in str(gone.value) and "pw-123" not in str(gone.value)
    with pytest.raises(ValueError):  # anything but a lost connection is not retried
        worker.run_with_reconnect(Database([]), url, step=lambda: int("x"), retry_for=60)
