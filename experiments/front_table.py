"""The README's quickstart front table, regenerated from the current code (run it after any change that moves numbers).

    .venv/bin/python experiments/front_table.py                       # runs the quickstart into a temporary folder
    .venv/bin/python experiments/front_table.py --storage sqlite:///runs/quickstart.db   # reads a study already run

With no ``--storage`` it runs ``nas search experiments/quickstart.toml`` (Fashion-MNIST from Debian's
``dataset-fashion-mnist``, or ``--data-dir``) in a temporary folder and times it. Either way it prints, as
markdown, the wall time (when it ran the search) and the front: trial, architecture, recipe, each objective's
value (accuracy, min OOD AUROC, PGD accuracy at the scored eps), and the mean confidence on uniform noise, sorted by
accuracy as in the README. ``--out FILE`` writes the markdown too.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "experiments"))

from _publish import publish  # noqa: E402

COLUMNS = ("trial", "architecture", "recipe", "accuracy", "ood (min AUROC)", "adversarial (PGD acc.)",
           "confidence on uniform noise")


def short_recipe(record: dict[str, Any]) -> str:
    """``plain``, ``FGSM eps 0.10``, ``outlier exposure`` or ``FGSM eps 0.10 + outlier exposure``."""
    recipe = record.get("recipe") or {}
    parts = []
    adversarial = recipe.get("adversarial") or {}
    if adversarial.get("enabled"):
        attack = "FGSM" if adversarial.get("attack", "fgsm") == "fgsm" else f"PGD-{adversarial.get('steps', '?')}"
        parts.append(f"{attack} eps {adversarial.get('eps', 0):.2f}")
    if (recipe.get("outlier_exposure") or {}).get("enabled"):
        parts.append("outlier exposure")
    return " + ".join(parts) or "plain"


def _number(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def front_lines(storage: str, study_name: str) -> list[str]:
    import optuna

    from nas.pareto import front_trials
    from nas.records import Records

    study = optuna.load_study(study_name=study_name, storage=storage)
    front, _ = front_trials(study)
    records = Records(study, storage)
    rows = []
    for trial in sorted(front, key=lambda t: -(records(t).get("metrics") or {}).get("accuracy", 0.0)):
        record = records(trial)
        metrics = record.get("metrics") or {}
        uniform = metrics.get("ood.confidence_uniform")
        rows.append([str(trial.number), record.get("spec_summary", ""), short_recipe(record),
                     _number(metrics.get("accuracy"), 3), _number(metrics.get("ood"), 2),
                     _number(metrics.get("adversarial"), 2), _number(uniform, 2)])
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", help="read this storage instead of running the quickstart")
    parser.add_argument("--study-name", default="quickstart")
    parser.add_argument("--config", default=str(REPO / "experiments" / "quickstart.toml"))
    parser.add_argument("--data-dir", help="passed to nas search")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    args = parser.parse_args()
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        storage = args.storage
        if storage is None:
            storage = f"sqlite:///{tmp}/quickstart.db"
            command = [sys.executable, "-m", "nas", "search", args.config, "--storage", storage,
                       "--study-name", args.study_name, "--out", tmp]
            if args.data_dir:
                command += ["--data-dir", args.data_dir]
            start = time.perf_counter()
            result = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if result.returncode != 0:
                sys.stderr.write(result.stderr)
                return result.returncode
            lines.append(f"Measured wall time: {int(seconds // 60)} min {seconds % 60:.0f} s "
                         f"(`nas search {Path(args.config).name}`, this machine, as loaded as it was).")
            lines.append("")
        lines += front_lines(storage, args.study_name)
    publish(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
