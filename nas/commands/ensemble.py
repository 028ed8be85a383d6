"""``nas ensemble``: its parser and printout; selection, scoring and recording are :mod:`nas.ensemble` (imported
when the command runs, so ``nas --help`` does not load torch or optuna)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from ..cli_types import add_storage_options, non_empty_str, positive_int, seed

OBJECTIVE_HELP = ("selection objective: accuracy (default) or calibration, scored on the members' cached validation "
                  "softmax with the study's options, or hypervolume: of the study's trials plus the ensemble, on the "
                  "study's objectives among accuracy, calibration and params")


def run_ensemble(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..card import estimates, fmt, fmt_interval, fmt_value
    from ..ensemble import build_ensemble
    from ..progress import make_console
    from ..storage import load_study, mask_url

    console = make_console()
    study = load_study(args.storage, args.study_name)
    quiet = args.json

    def on_step(step, member) -> None:
        if not quiet:
            note = "" if step.kept else " (not kept: an earlier step scored better)"
            console.print(f"  step {len(steps) + 1}: + trial {member.number} ({member.summary}): "
                          f"{args.objective} {step.score:.4f}{note}", soft_wrap=True)
        steps.append(step)

    steps: list[Any] = []
    if not quiet:
        console.print(f"Greedy selection with replacement on the validation split of study '{study.study_name}', "
                      f"{args.size} picks by {args.objective} (pool: {args.pool}):", soft_wrap=True)
    built = build_ensemble(study, args.storage, args.size, args.objective, pool=args.pool,
                           max_candidates=args.max_candidates, artifacts=args.artifacts, seed=args.seed,
                           on_step=on_step)
    if quiet:
        print(json.dumps(built.to_json(), indent=2))
        return 0

    best = built.best_member
    console.print(f"ensemble: {built.summary.removeprefix('ensemble: ')}", soft_wrap=True)
    table = Table(title=f"Ensemble (trial {built.trial_number}) on the validation split")
    table.add_column("objective")
    table.add_column("ensemble", justify="right")
    table.add_column("95% interval", justify="right")
    table.add_column(f"best single (trial {best['trial']})", justify="right")
    found = estimates(built.results)
    for name, value in built.values.items():
        row = found.get(name, {})
        skipped = built.results[name].get("skipped")
        arrow = "↑" if built.directions[name] == "maximize" else "↓"
        table.add_row(f"{name} {arrow}", "skipped" if skipped else fmt_value(value, row.get("interval")),
                      fmt_interval(row.get("interval")), fmt(best["values"].get(name)))
    console.print(table)
    picks = " + ".join(f"{weight}x trial {number}" if weight > 1 else f"trial {number}"
                       for number, weight in zip(built.members, built.weights))
    console.print(f"members: {picks} ({len(built.members)} distinct of {len(built.candidates)} candidates); "
                  f"best single on {built.objective}: trial {best['trial']} at {best['score']:.4f}", soft_wrap=True)
    passes = f"{len(built.members)} forward pass{'es' if len(built.members) > 1 else ''}"
    console.print(f"inference cost: {built.params:,} parameters (every distinct member once; a repeat is a weight), "
                  f"{passes} per input", soft_wrap=True)
    console.print(f"recorded as trial {built.trial_number} ({'feasible' if built.feasible else 'NOT feasible'}); "
                  f"export it with: nas export --storage {mask_url(args.storage)} --study-name {study.study_name} "
                  f"--trial {built.trial_number}", soft_wrap=True)
    return 0


def register_command(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ensemble", help="build a heterogeneous ensemble of stored trials (greedy selection), score and record it",
        description="Neural Ensemble Search from a finished study: greedy forward selection with replacement "
                    "(Caruana) on the validation split picks --size trials whose averaged softmax is best on "
                    "--objective, using each candidate's stored weights (no retraining). The ensemble is scored "
                    "with every objective of the study, exactly as the search scores a trial, and recorded as a new "
                    "trial, so it appears on the front, in the dashboard and report, and 'nas export' ships it.",
    )
    add_storage_options(parser)
    parser.add_argument("--size", type=positive_int, required=True,
                        help="greedy picks (with replacement); the best-scoring prefix of them is kept, so the "
                             "ensemble has at most this many picks")
    parser.add_argument("--objective", type=non_empty_str, default="accuracy", help=OBJECTIVE_HELP)
    parser.add_argument("--pool", type=non_empty_str, default="all",
                        help="candidates: all COMPLETE trials with stored weights (default) or the Pareto front")
    parser.add_argument("--max-candidates", type=positive_int, default=32,
                        help="keep the best N candidates by their stored value of the objective (accuracy for "
                             "hypervolume); each costs one validation pass, each step scores every one (default 32)")
    parser.add_argument("--artifacts", type=non_empty_str,
                        help="artifact folder holding the weights (default: the one recorded on the study); the "
                             "ensemble's weights are stored there too")
    parser.add_argument("--seed", type=seed, help="seed torch while the objectives score the ensemble "
                                                  "(default: the study's seed)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")
    parser.set_defaults(handler=run_ensemble)
