"""``nas analyze``: its parser; the analysis itself is :mod:`nas.analysis` (imported when the command runs, so
``nas --help`` does not load torch or optuna)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..cli_types import Number, add_storage_options, non_empty_str, positive_int, seed


def run_analyze(args: argparse.Namespace) -> int:
    from ..analysis import analyze, print_analysis, write_analysis
    from ..progress import make_console
    from ..storage import load_study

    study = load_study(args.storage, args.study_name)
    found = analyze(study, bin_width=args.bin_width, min_trials=args.min_trials, seed=args.seed,
                    storage_url=args.storage)
    if args.json:
        print(json.dumps(found.to_json(), indent=2))
    else:
        print_analysis(found, make_console())
    if args.out:
        csv_path, json_path = write_analysis(found, Path(args.out))
        if not args.json:
            print(f"analysis written to {csv_path} and {json_path}")
    return 0


def register_command(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="importance of each searched choice per objective, and robustness compared at equal accuracy",
        description="PED-ANOVA importance of every searched parameter per objective, and the equal-accuracy "
                    "comparison of the seed paper: completed trials are grouped into validation-accuracy bins and, "
                    "within bins, ensembles vs single models, cardinality > 1 vs 1, adversarial training and "
                    "outlier exposure on vs off are compared on every robustness metric (pooled ratio with a "
                    "seeded bootstrap 95% interval and n per group).",
    )
    add_storage_options(parser)
    parser.add_argument("--bin-width", type=Number(float, low=0, high=100, low_open=True), default=1.0,
                        help="width of the validation-accuracy bins in percentage points (default 1)")
    parser.add_argument("--min-trials", type=positive_int, default=3,
                        help="fewest trials per group in matched bins for a comparison to give a number (default 3)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the bootstrap intervals (default 0)")
    parser.add_argument("--out", type=non_empty_str, help="folder to write analysis.csv and analysis.json into")
    parser.add_argument("--json", action="store_true", help="print the analysis as JSON instead of tables")
    parser.set_defaults(handler=run_analyze)
