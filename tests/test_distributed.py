"""Distributed search on a real PostgreSQL server: several `nas worker` processes, kill -9, lost connections.

The server is started for this module from a temporary directory with the Debian binaries
(`dpkg -L postgresql-NN`), as the `postgres` system user when the tests run as root (initdb refuses
root), listening on 127.0.0.1 only, on a free port. User `postgres` has trust auth; user `nas` needs
its password, so masking and wrong-password handling are tested for real.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import PATIENCE, run_nas, wait_for
from nas.records import trial_record

PASSWORD = "s3cret-Pw-91"
CONFIG = """
[study]
name = "{name}"
sampler = "random"
n_trials = {n_trials}
seed = 0
artifacts = "{artifacts}"
[data]
name = "digits"
train_size = 300
val_size = 100
[space]
name = "{space}"
{space_table}
[training]
epochs = {epochs}
batch_size = 32
lr = {{ low = 1e-3, high = 1e-2, log = true }}
[objectives.accuracy]
[objectives.params]
"""
FAST_SPACE = ("mlp", "depth = { low = 1, high = 2 }\nwidth = [16, 32]\nensemble = 1")
SLOW_SPACE = ("cnn", "depth = 2\nchannels = [16]\nensemble = 1")


def postgres_bin() -> Path | None:
    """The folder holding initdb/pg_ctl, found through dpkg (Debian/Ubuntu) or PATH."""
    packages = (subprocess.run(["dpkg-query", "-W", "-f", "${Package}\n", "postgresql-[0-9]*"],
                               capture_output=True, text=True)
                if shutil.which("dpkg-query") else None)
    for package in sorted((packages.stdout.split() if packages else []), reverse=True):
        files = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True).stdout.splitlines()
        for path in files:
            if path.endswith("/bin/pg_ctl") and Path(path).with_name("initdb").exists():
                return Path(path).parent
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and Path(found).with_name("initdb").exists() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TemporaryPostgres:
    """A throw-away PostgreSQL cluster on 127.0.0.1 with a password-protected user ``nas`` and database ``nas``."""

    def __init__(self, bin_dir: Path, durable: bool = False) -> None:
        self.bin_dir, self.durable = bin_dir, durable
        self.root = Path(tempfile.mkdtemp(prefix="nas-pg-"))  # not under pytest's 0700 tree: postgres must reach it
        self.root.chmod(0o755)
        self.port = free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://nas:{PASSWORD}@127.0.0.1:{self.port}/nas"

    def _run(self, *command: str) -> None:
        result = subprocess.run([*self.prefix, *command], capture_output=True, text=True, timeout=PATIENCE)
        if result.returncode != 0:
            log = self.root / "server.log"
            raise RuntimeError(f"{command[0]} failed: {result.stderr}{log.read_text() if log.exists() else ''}")

    def create(self) -> "TemporaryPostgres":
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.root / "data"), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8")
        (self.root / "data" / "pg_hba.conf").write_text(
            "local all all trust\nhost all nas 127.0.0.1/32 scram-sha-256\nhost all all 127.0.0.1/32 trust\n"
        )
        self.start()
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as admin:
            admin.execute(f"CREATE ROLE nas LOGIN PASSWORD '{PASSWORD}'")
            admin.execute("CREATE DATABASE nas OWNER nas")
        return self

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
                   "-c max_connections=60")
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-l", str(self.root / "server.log"),
                  "-w", "-t", str(int(PATIENCE)), "-o", options, "start")

    def stop(self) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w",
                  "-t", str(int(PATIENCE)), "stop")

    def connections(self) -> int:
        """Open connections from nas processes (their application_name is 'nas')."""
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as admin:
            return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'nas'").fetchone()[0]

    def destroy(self) -> None:
        try:
            self.stop()
        except RuntimeError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
    server = TemporaryPostgres(bin_dir).create()
    yield server
    server.destroy()


def write_config(workdir: Path, name: str, n_trials: int, slow: bool = False) -> Path:
    space, table = SLOW_SPACE if slow else FAST_SPACE
    path = workdir / f"{name}.toml"
    path.write_text(CONFIG.format(name=name, n_trials=n_trials, artifacts=workdir / "shared-artifacts", space=space,
                                  space_table=table, epochs=12 if slow else 1))
    return path


def start_worker(workdir: Path, url: str, study: str, *options: str) -> subprocess.Popen:
    """``nas worker`` with the URL in NAS_STORAGE (as `nas search --workers` passes it); its output goes to a log
    file (``process.log``) that a test can read while it runs."""
    env = {**os.environ, "NAS_STORAGE": url, "COLUMNS": "200", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    log = workdir / f"{study}-worker{len(list(workdir.glob(f'{study}-worker*.log')))}.log"
    command = [sys.executable, "-m", "nas", "worker", "--study-name", study, "--threads", "1", *options]
    with log.open("w") as handle:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=handle, stderr=subprocess.STDOUT, text=True)
    process.log = log
    return process


def output(process: subprocess.Popen) -> str:
    return process.log.read_text()


_STORAGES: dict[str, optuna.storages.BaseStorage] = {}


def load(url: str, name: str) -> optuna.Study:
    """One storage (one small connection pool) per URL for the whole test process: polling loops call this often,
    and a fresh engine per call would hold its connections until garbage collection."""
    from nas.storage import open_storage

    if url not in _STORAGES:
        _STORAGES[url] = open_storage(url, heartbeat_interval=None)
    return optuna.load_study(study_name=name, storage=_STORAGES[url])


def create_study(workdir: Path, url: str, name: str, n_trials: int, slow: bool = False) -> None:
    config = write_config(workdir, name, n_trials, slow)
    created = run_nas("search", str(config), "--storage", url, "--n-trials", "0", cwd=workdir)
    assert created.returncode == 0, created.stdout + created.stderr
    assert PASSWORD not in created.stdout + created.stderr and "nas:***@" in created.stdout


def assert_exact(study: optuna.Study, n_trials: int) -> list[optuna.trial.FrozenTrial]:
    """Exactly n COMPLETE trials, nothing left RUNNING/WAITING, each complete one fully recorded and distinct."""
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n_trials, [(t.number, t.state.name) for t in trials]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for trial in complete:
        record = trial_record(study, trial)
        for key in ("spec", "recipe", "objectives", "metrics", "weights_artifact", "worker"):
            assert key in record, (trial.number, key)
        assert set(record["objectives"]) == {"accuracy", "params"}
        assert len(trial.values) == 2
    assert len({t.user_attrs["weights_artifact"] for t in complete}) == n_trials
    assert len({t.user_attrs["seed"] for t in complete}) == n_trials
    # A trial stood down only because the target was already covered: never one that trained.
    for trial in trials:
        if trial.state == TrialState.PRUNED:
            assert trial.user_attrs.get("surplus") and "last_epoch" not in trial.user_attrs
    return complete


def wait_all(processes: list[subprocess.Popen]) -> list[str]:
    """Wait for every worker to exit with code 0; their outputs."""
    for process in processes:
        wait_for(lambda: process.poll() is not None, f"worker {process.pid} to finish")
        assert process.returncode == 0, output(process)
    return [output(process) for process in processes]


def test_four_workers_reach_exactly_n_complete_trials(postgres, tmp_path):
    create_study(tmp_path, postgres.url, "four", n_trials=8)
    study = load(postgres.url, "four")
    assert study.user_attrs["config"]["study"]["storage"] == postgres.url.replace(f"nas:{PASSWORD}@", "nas@")
    ours = postgres.connections()  # this test process's own pool
    workers = [start_worker(tmp_path, postgres.url, "four") for _ in range(4)]
    peak = 0

    def finished() -> bool:
        nonlocal peak
        peak = max(peak, postgres.connections())
        return all(w.poll() is not None for w in workers)

    wait_for(finished, "4 workers to reach the target")
    outputs = wait_all(workers)
    complete = assert_exact(load(postgres.url, "four"), 8)
    assert len({t.user_attrs["worker"] for t in complete}) >= 2, "the trials must be shared between the workers"
    # The pool caps each worker at 2 connections (main thread + heartbeat thread).
    assert 1 <= peak - ours <= 2 * 4, (peak, ours)
    assert all(PASSWORD not in out for out in outputs)
    assert all("nas:***@127.0.0.1" in out for out in outputs)
    artifacts = list((tmp_path / "shared-artifacts").iterdir())
    assert len(artifacts) >= 2 * 8  # weights and details of every COMPLETE trial in the shared store
    status = run_nas("status", "--storage", postgres.url, "--study-name", "four", cwd=tmp_path)
    assert status.returncode == 0 and "8 COMPLETE" in status.stdout and PASSWORD not in status.stdout


def _running_trial_of(url: str, name: str, pid: int, min_epochs: int = 1) -> optuna.trial.FrozenTrial | None:
    for trial in load(url, name).get_trials(states=(TrialState.RUNNING,)):
        if (trial.user_attrs.get("worker", "").endswith(f":{pid}")
                and trial.user_attrs.get("last_epoch", {}).get("epoch", 0) >= min_epochs):
            return trial
    return None


def wait_for_trial_of(url: str, name: str, worker: subprocess.Popen) -> optuna.trial.FrozenTrial:
    """The trial ``worker`` runs, once it has trained an epoch."""
    def trial() -> optuna.trial.FrozenTrial | None:
        assert worker.poll() is None, f"the worker exited before it ran a trial: {output(worker)}"
        return _running_trial_of(url, name, worker.pid)

    return wait_for(trial, f"worker {worker.pid} to train a trial of study '{name}'")


def retry_of(study: optuna.Study, failed: optuna.trial.FrozenTrial) -> optuna.trial.FrozenTrial:
    """The one trial that reran the parameters of ``failed``, which must have COMPLETED."""
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == failed.number]
    assert len(retries) == 1 and retries[0].params == failed.params and retries[0].state == TrialState.COMPLETE, retries
    return retries[0]


def test_killed_worker_trial_is_failed_by_heartbeat_and_retried(postgres, tmp_path):
    create_study(tmp_path, postgres.url, "kill", n_trials=3, slow=True)
    victim = start_worker(tmp_path, postgres.url, "kill", "--heartbeat", "1")
    survivor = start_worker(tmp_path, postgres.url, "kill", "--heartbeat", "1")
    dead = wait_for_trial_of(postgres.url, "kill", victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    wait_all([survivor])
    study = load(postgres.url, "kill")
    assert_exact(study, 3)
    failed = study.trials[dead.number]
    assert failed.state == TrialState.FAIL
    retry = retry_of(study, dead)
    worker = dead.user_attrs["worker"]
    assert failed.user_attrs["fail_reason"] == f"heartbeat lost for over 4 s: its worker {worker} died or could not " \
                                              f"reach the database; parameters retried as trial {retry.number}"


def test_worker_rides_out_a_database_restart_then_gives_up_on_a_dead_one(postgres, tmp_path):
    create_study(tmp_path, postgres.url, "restart", n_trials=3, slow=True)
    worker = start_worker(tmp_path, postgres.url, "restart", "--heartbeat", "1", "--retry-for", str(PATIENCE))
    cut = wait_for_trial_of(postgres.url, "restart", worker)
    postgres.stop()
    try:  # the server stays down until the worker has lost the trial it was training
        wait_for(lambda: "unreachable" in output(worker), "the worker to notice that the database is down")
    finally:
        postgres.start()
    log = wait_all([worker])[0]
    assert PASSWORD not in log and "Traceback" not in log
    # Optuna's wrapper of the driver's error, and its own error path, used to be all the worker said.
    assert "updated_state" not in log and "exceeding max length" not in log, log
    study = load(postgres.url, "restart")
    assert_exact(study, 3)
    failed, retry = study.trials[cut.number], retry_of(study, cut)
    assert failed.state == TrialState.FAIL
    assert re.fullmatch(rf"database unreachable during the trial \(.+\); parameters retried as trial {retry.number}",
                        failed.user_attrs["fail_reason"]), failed.user_attrs["fail_reason"]
    assert f"trial {cut.number} was cut off and is marked FAILED, its parameters retried as trial {retry.number}" in log

    # A database that stays away: bounded retries, then one clear line and exit code 3.
    create_study(tmp_path, postgres.url, "gone", n_trials=3, slow=True)
    worker = start_worker(tmp_path, postgres.url, "gone", "--heartbeat", "1", "--retry-for", "4")
    wait_for_trial_of(postgres.url, "gone", worker)
    postgres.stop()
    try:
        wait_for(lambda: worker.poll() is not None, "the worker to give up on the database")
    finally:
        postgres.start()
    log = output(worker)
    assert worker.returncode == 3, log
    assert "lost the connection to postgresql://nas:***@127.0.0.1" in log and "restart 'nas worker'" in log
    assert PASSWORD not in log and "Traceback" not in log


def test_wrong_password_and_unreachable_host_are_one_line_exit_2(postgres, tmp_path):
    wrong = postgres.url.replace(PASSWORD, "not-the-Pw-77")
    unreachable = f"postgresql://nas:{PASSWORD}@127.0.0.1:{free_port()}/nas"
    for url, secret in ((wrong, "not-the-Pw-77"), (unreachable, PASSWORD)):
        for command in (["worker", "--storage", url, "--study-name", "x"], ["status", "--storage", url]):
            result = run_nas(*command, cwd=tmp_path)
            assert result.returncode == 2, result.stderr
            lines = result.stderr.strip().splitlines()
            assert (len(lines) == 1
                    and lines[0].startswith("nas: error: cannot open storage postgresql://nas:***@")), result.stderr
            assert secret not in result.stdout + result.stderr
    assert "password authentication failed" in run_nas("status", "--storage", wrong, cwd=tmp_path).stderr
