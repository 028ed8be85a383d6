"""Benchmark: trials per hour with 1 vs 2 local workers, and per-trial storage overhead by storage.

    .venv/bin/python experiments/bench_workers.py [--trials 24] [--postgres postgresql://user@host/db]

Both throughput runs evaluate the same architectures (parameters drawn once with a seeded random
sampler and enqueued), so the ratio measures the workers, not luck in sampling; 1- and 2-worker runs
alternate for --rounds rounds and the medians are reported (other load on the machine shows up as
spread between rounds, and the load average is printed). Storage overhead is
the time spent inside Optuna storage calls during real smoke trials (same enqueued parameters on
each storage), divided by the number of trials. Without --postgres a throw-away PostgreSQL server is
started like the tests do (fsync on, as in production). Prints a markdown table of one run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "experiments" / "smoke.toml"


def draw_params(n_trials: int, seed: int = 0) -> list[dict[str, Any]]:
    """Parameters of ``n_trials`` smoke-space candidates, drawn with a seeded random sampler."""
    import search_spaces
    from nas import config as config_module
    from nas.recipe import sample_recipe

    config = config_module.load(SMOKE)
    space = search_spaces.get(config["space"]["name"])
    ranges = {k: v for k, v in config["space"].items() if k != "name"}
    draft = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    params = []
    for _ in range(n_trials):
        trial = draft.ask()
        space.sample(trial, ranges)
        sample_recipe(trial, config["training"])
        params.append(trial.params)
    return params


def nas(*args: str, cwd: Path, threads: int | None = None) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "160"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # torch's default thread count follows it
    result = subprocess.run([sys.executable, "-m", "nas", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"nas {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


def throughput(workers: int, params: list[dict[str, Any]], threads: int | None = None,
               journal: bool = False) -> dict[str, float]:
    """Run the smoke search on the enqueued parameters with ``workers`` local workers; trials per hour."""
    from nas.storage import open_storage

    workdir = Path(tempfile.mkdtemp(prefix=f"bench-w{workers}-"))
    url = f"journal:{workdir}/bench.journal" if journal or workers > 1 else f"sqlite:///{workdir}/bench.db"
    common = [str(SMOKE), "--storage", url, "--study-name", "bench"]
    nas("search", *common, "--n-trials", "0", cwd=workdir)
    study = optuna.load_study(study_name="bench", storage=open_storage(url, heartbeat_interval=None))
    for values in params:
        study.enqueue_trial(values)
    started = time.perf_counter()
    nas("search", *common, "--resume", "--n-trials", str(len(params)), "--workers", str(workers),
        cwd=workdir, threads=threads)
    wall = time.perf_counter() - started
    trials = optuna.load_study(study_name="bench", storage=open_storage(url, heartbeat_interval=None)).get_trials(
        states=(TrialState.COMPLETE,))
    assert len(trials) == len(params), f"{len(trials)} COMPLETE trials, expected {len(params)}"
    span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    return {"wall": wall, "span": span, "per_hour": 3600 * len(trials) / span,
            "per_hour_wall": 3600 * len(trials) / wall}


class _StorageTimer:
    """Adds up the seconds spent in every public method of one storage object."""

    def __init__(self, storage: optuna.storages.BaseStorage) -> None:
        self.seconds = 0.0
        self.calls = 0
        for name in dir(optuna.storages.BaseStorage):
            if not name.startswith("_") and callable(getattr(storage, name, None)):
                setattr(storage, name, self._timed(getattr(storage, name)))

    def _timed(self, method):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        return timed


def storage_overhead(url: str, params: list[dict[str, Any]]) -> dict[str, float]:
    """Real smoke trials in this process on ``url``; seconds inside storage calls per trial."""
    from nas import config as config_module
    from nas.study import Experiment, create_or_load, run_search
    from nas.optuna_compat import study_storage

    config = config_module.load(SMOKE)
    config["study"]["storage"] = url
    config["study"]["name"] = f"overhead-{time.time_ns()}"
    config["study"]["artifacts"] = tempfile.mkdtemp(prefix="bench-artifacts-")
    experiment = Experiment.from_config(config)
    study = create_or_load(config, resume=False)
    for values in params:
        study.enqueue_trial(values)
    timer = _StorageTimer(study_storage(study))
    started = time.perf_counter()
    run_search(study, experiment, len(params))
    total = time.perf_counter() - started
    return {"per_trial_ms": 1000 * timer.seconds / len(params), "calls": timer.calls / len(params),
            "share": timer.seconds / total}


def _median(rounds: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {name: {key: statistics.median(r[name][key] for r in rounds) for key in rounds[0][name]}
            for name in rounds[0]}


def _start_postgres(url: str | None) -> tuple[str | None, Any]:
    """The URL to measure and the throw-away server to destroy afterwards (None when given or unavailable)."""
    if url is not None:
        return url, None
    sys.path.insert(0, str(REPO / "tests"))
    from test_distributed import TemporaryPostgres, postgres_bin

    if postgres_bin() is None:
        return None, None
    server = TemporaryPostgres(postgres_bin(), durable=True).create()
    return server.url, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40, help="trials per throughput run (default 40)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of every run (default 3)")
    parser.add_argument("--overhead-trials", type=int, default=8, help="trials per storage-overhead run (default 8)")
    parser.add_argument("--postgres", help="PostgreSQL URL to measure (default: start a throw-away server)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    params = draw_params(args.trials)
    load_before = os.getloadavg()[0]

    runs = {"1 worker, SQLite, all threads (default)": lambda: throughput(1, params),
            "1 worker, journal file, 1 thread": lambda: throughput(1, params, threads=1, journal=True),
            "2 workers, journal file, 1 thread each": lambda: throughput(2, params)}
    rounds = [{name: run() for name, run in runs.items()} for _ in range(args.rounds)]

    postgres_url, server = _start_postgres(args.postgres)
    folder = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    storages = {"SQLite": f"sqlite:///{folder}/o.db", "journal file": f"journal:{folder}/o.journal"}
    if postgres_url:
        storages["PostgreSQL"] = postgres_url
    try:
        overhead_rounds = [{name: storage_overhead(url, params[: args.overhead_trials])
                            for name, url in storages.items()}
                           for _ in range(args.rounds)]
    finally:
        if server is not None:
            server.destroy()
    load_after = os.getloadavg()[0]

    print(f"\n{cores} CPU cores, load average {load_before:.1f} before / {load_after:.1f} after; smoke config, "
          f"{args.trials} identical candidates per run; medians of {args.rounds} alternating rounds\n")
    print("| run | wall s | trials/hour (first start to last finish) | trials/hour (wall, incl. start-up) |")
    print("|---|---|---|---|")
    for name, result in _median(rounds).items():
        print(f"| {name} | {result['wall']:.1f} | {result['per_hour']:.0f} | {result['per_hour_wall']:.0f} |")
    two = list(runs)[-1]
    for base in (name for name in runs if name != two):
        ratios = [r[two]["per_hour"] / r[base]["per_hour"] for r in rounds]
        walls = [r[base]["wall"] / r[two]["wall"] for r in rounds]
        print(f"\n2 workers vs {base}: {statistics.median(ratios):.2f}x trials/hour "
              f"(rounds {', '.join(f'{x:.2f}' for x in ratios)}), "
              f"{statistics.median(walls):.2f}x wall incl. start-up; goal >= 1.7x")
    print("\n| storage | storage time per trial (ms) | storage calls per trial | share of run time | vs SQLite |")
    print("|---|---|---|---|---|")
    overhead = _median(overhead_rounds)
    for name, result in overhead.items():
        print(f"| {name} | {result['per_trial_ms']:.1f} | {result['calls']:.0f} | {100 * result['share']:.1f}% | "
              f"{result['per_trial_ms'] / overhead['SQLite']['per_trial_ms']:.2f}x |")
    if not postgres_url:
        print("\n(PostgreSQL row missing: no server binaries found; pass --postgres URL)")


if __name__ == "__main__":
    main()
