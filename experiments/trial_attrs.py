"""Measure what a search writes into Optuna's user attributes: bytes per trial and write calls per trial.

optuna-dashboard (and any plain Optuna client) renders every user attribute of every trial, so bulky ones make
its trial list unusable; each ``set_trial_user_attr`` is also one storage transaction. Run from the repository root:

    python experiments/trial_attrs.py experiments/smoke-robust.toml --trials 2
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402

import nas  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="experiment TOML file")
    parser.add_argument("--trials", type=int, default=2)
    args = parser.parse_args()

    calls: collections.Counter[tuple[int, str]] = collections.Counter()
    original = optuna.storages.RDBStorage.set_trial_user_attr

    def counting(self, trial_id, key, value):  # noqa: ANN001, ANN202
        calls[(trial_id, key)] += 1
        return original(self, trial_id, key, value)

    optuna.storages.RDBStorage.set_trial_user_attr = counting
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        study = nas.search(args.config, n_trials=args.trials, storage=f"sqlite:///{tmp}/attrs.db")
        seconds = time.perf_counter() - started
        trials = study.get_trials(deepcopy=False)
        ids = {trial._trial_id: trial.number for trial in trials}
        for trial in trials:
            sizes = {key: len(json.dumps(value)) for key, value in trial.user_attrs.items()}
            writes = {key: n for (tid, key), n in calls.items() if ids.get(tid) == trial.number}
            print(f"trial {trial.number} ({trial.state.name}): {sum(sizes.values())} bytes of user attrs in "
                  f"{len(sizes)} attrs, {sum(writes.values())} set_trial_user_attr calls")
            for key in sorted(sizes, key=lambda k: -sizes[k]):
                print(f"  {key:28s} {sizes[key]:6d} bytes  {writes.get(key, 0)} writes")
        print(f"search: {seconds:.1f} s for {len(trials)} trials")


if __name__ == "__main__":
    main()
