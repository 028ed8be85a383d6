"""The Python API: ``from nas import search, load, front, export, verify``.

Each function calls the library functions behind the matching ``nas`` sub-command, so a notebook and the CLI
run the same code and reject the same bad input with the same one-line :class:`nas.errors.UsageError`.
They return plain objects: an ``optuna.Study``, rows of the Pareto front, the export folder, a :class:`VerifyResult`.

Example::

    study = search("experiments/smoke.toml", n_trials=4, study_name="demo")
    folder = export(study, pick="max:accuracy where feasible", out="exported/demo")
    print(verify(folder).passed)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from rich.console import Console

from .commands.search import run_configured_search, search_config
from .errors import UsageError
from .export import export_trial, get_trial, pick_trial
from .pareto import front_rows
from .paths import safe_filename
from .progress import make_console
from .storage import load_study
from .card import row_names
from .export_format import DEFAULT_ATTACK_SAMPLES, DEFAULT_GAP_TOLERANCE
from .verify import exit_code, verify_export

__all__ = ["search", "load", "front", "export", "verify", "VerifyResult", "SearchFailed"]


class SearchFailed(RuntimeError):
    """The search ran but failed as ``nas search`` exits 1: no trial completed, or its workers crashed."""


def search(config: str | os.PathLike | dict[str, Any], *, resume: bool = False, workers: int = 1,
           out: str | os.PathLike | None = None, verbose: bool = False, threads: int | None = None,
           **overrides: Any) -> optuna.Study:
    """Run (or resume) a search like ``nas search CONFIG`` and return its study.

    Args:
        config: an experiment TOML file, or the same tables as a dict (``{"study": {...}, "data": {...}, ...}``).
        resume: continue the existing study of the same config (``--resume``).
        workers: worker processes on this machine (``--workers``).
        out: folder for the Pareto front CSV/JSON (default: beside the storage, as the CLI does).
        verbose: print the progress and the front as the CLI does (default: silent).
        threads: torch CPU threads of the search, or of each worker (``--threads``).
        overrides: ``n_trials``, ``storage``, ``study_name``, ``seed``, ``sampler``, ``timeout``, ``device``,
            ``data_dir``, overriding the config like the CLI options of the same names; ``n_trials=0`` only
            creates the study (for ``nas worker``).
    Raises:
        UsageError: bad input (the one line ``nas search`` prints); SearchFailed: no trial completed.
    """
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise UsageError(f"--workers must be a whole number >= 1, got {workers!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise UsageError(f"--threads must be a whole number >= 1, got {threads!r}")
    resolved = search_config(config, overrides)
    console = make_console() if verbose else Console(quiet=True)
    outcome = run_configured_search(resolved, create_only=overrides.get("n_trials") == 0, resume=resume,
                                    workers=workers, out=out, console=console, threads=threads)
    if outcome.failure:
        raise SearchFailed(outcome.failure)
    return outcome.study


def load(storage: str, study_name: str | None = None) -> optuna.Study:
    """An existing study, as ``nas status --storage URL [--study-name NAME]`` reads it (the name may be left out
    when the storage holds one study)."""
    if not isinstance(storage, str) or not storage:
        raise UsageError(f"storage must be a storage URL such as sqlite:///runs/nas.db, got {storage!r}")
    return load_study(storage, study_name)


def _check_study(study: Any) -> optuna.Study:
    if not isinstance(study, optuna.Study):
        raise UsageError(f"expected an optuna.Study (from nas.search or nas.load), got {type(study).__name__}")
    return study


def front(study: optuna.Study) -> list[dict[str, Any]]:
    """The Pareto front as rows, the ones ``nas search`` prints and writes to ``<study>-pareto.json``:
    ``{"trial": 3, <objective>: value, ..., "feasible": True, "spec": "cnn d2 ..."}``.

    Plain dicts, so pandas stays optional: ``pandas.DataFrame(front(study))`` where pandas is installed.
    """
    return front_rows(_check_study(study))


def export(study: optuna.Study, trial: int | None = None, pick: str | None = None,
           out: str | os.PathLike | None = None, *, storage: str | None = None,
           artifacts: str | os.PathLike | None = None, formats: tuple[str, ...] | list[str] = (),
           data_dir: str | None = None, force: bool = False) -> Path:
    """Export one COMPLETE trial like ``nas export`` and return the folder.

    Choose the trial by number (``trial=3``) or by a selector (``pick="max:accuracy where feasible"``).
    ``out`` defaults to ``exported/<study>-t<trial>``; ``storage`` helps find the weights when the study's
    artifact folder was recorded relative to another working directory.
    """
    _check_study(study)
    if (trial is None) == (pick is None):
        raise UsageError("pass exactly one of --trial N or --pick SELECTOR (e.g. --pick 'max:accuracy where feasible')")
    chosen = get_trial(study, trial) if trial is not None else pick_trial(study, pick, storage, artifacts)
    folder = Path(out) if out else Path("exported") / f"{safe_filename(study.study_name)}-t{chosen.number}"
    return export_trial(study, chosen.number, folder, storage_url=storage, artifacts=artifacts, formats=formats,
                        data_dir=data_dir, force=force)


@dataclass(frozen=True)
class VerifyResult:
    """The verdict of ``nas verify`` on an export: per-metric test and validation values, and what failed."""

    passed: bool  # every requirement passes on the test split, intervals included (True when there are none)
    failed: list[str]  # requirement metrics that do not hold (or could not be evaluated)
    inconclusive: list[str]  # requirements whose 95% interval straddles the bound: more samples would decide
    gaps: list[str]  # metrics that degraded from validation to test by more than their intervals explain
    test: dict[str, float | None]  # every metric measured on the held-out test split, under each of its names
    validation: dict[str, float | None]  # the same metrics as the search measured them on validation
    intervals: dict[str, tuple[float, float]]  # 95% interval of each test value that has one
    report: dict[str, Any]  # the whole report, as 'nas verify --json' prints it


def verify(export_dir: str | os.PathLike, requirements: dict[str, dict[str, float]] | str | os.PathLike | None = None,
           *, data_dir: str | None = None, device: str = "auto", gap_tolerance: float = DEFAULT_GAP_TOLERANCE,
           attack_samples: int | None = DEFAULT_ATTACK_SAMPLES, ood_samples: int | None = None,
           allow_inconclusive: bool = False) -> VerifyResult:
    """Re-evaluate an export on the held-out test split like ``nas verify`` and return the verdict.

    ``requirements``: a ``{"accuracy": {"min": 0.9}}`` table or a TOML file with a ``[requirements]`` table;
    by default the experiment's own requirements, stored with the export. ``attack_samples`` / ``ood_samples``:
    the test samples of the strong attack and of the OOD sets (``--attack-samples`` / ``--ood-samples``).
    ``allow_inconclusive``: ``passed`` is True when nothing fails, even if some requirements are inconclusive.
    """
    if not isinstance(export_dir, (str, os.PathLike)) or not str(export_dir):
        raise UsageError(f"export_dir must be the folder 'nas export' wrote, got {export_dir!r}")
    report = verify_export(export_dir, requirements, data_dir=data_dir, device=device, gap_tolerance=gap_tolerance,
                           attack_samples=attack_samples, ood_samples=ood_samples)
    rows = report["metrics"]
    return VerifyResult(
        passed=exit_code(report, allow_inconclusive=allow_inconclusive) == 0, failed=list(report["failed"]),
        inconclusive=list(report["inconclusive"]), gaps=list(report["gaps"]),
        test={name: row["test"] for row in rows for name in row_names(row)},
        validation={name: row["validation"] for row in rows for name in row_names(row)},
        intervals={name: tuple(row["test_interval"]) for row in rows if row.get("test_interval")
                   for name in row_names(row)},
        report=report,
    )
