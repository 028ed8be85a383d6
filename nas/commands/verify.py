"""``nas verify``: its parser; the verification itself is :func:`nas.verify.verify_export` (imported when the
command runs, so ``nas --help`` does not load torch)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from ..cli_types import non_empty_str, non_negative_float, positive_int
from ..export_format import DEFAULT_ATTACK_SAMPLES, DEFAULT_GAP_TOLERANCE


def run_verify_command(args: argparse.Namespace) -> int:
    from ..verify import exit_code, print_report, verify_export

    report = verify_export(args.folder, args.requirements, data_dir=args.data_dir, device=args.device,
                           gap_tolerance=args.gap_tolerance, attack_samples=args.attack_samples,
                           ood_samples=args.ood_samples)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return exit_code(report, args.allow_inconclusive, args.fail_on_gap)


def register_command(subparsers: Any) -> None:
    """Add ``nas verify`` to the CLI (picked up by ``nas.cli``)."""
    parser = subparsers.add_parser(
        "verify", help="re-evaluate an exported model on the held-out test split; exit 0 only if every requirement "
                       "holds",
        description="Measure every objective of an export on the test split (never used by the search), with "
                    "verification budgets, 95%% intervals on every number, and compare with the requirements and the "
                    "validation values. Exit 0: all requirements pass; 1: one fails or is inconclusive (its interval "
                    "straddles the bound); 2: bad input or an export changed after it was written.",
    )
    parser.add_argument("folder", type=non_empty_str, help="export folder written by 'nas export'")
    parser.add_argument("--requirements", type=non_empty_str,
                        help="TOML file with a [requirements] table (default: the experiment's own requirements)")
    parser.add_argument("--data-dir", type=non_empty_str,
                        help="folder holding the dataset files (overrides the experiment's data.data_dir)")
    parser.add_argument("--device", default="auto", type=non_empty_str, help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--attack-samples", type=positive_int, default=DEFAULT_ATTACK_SAMPLES,
                        help="test samples the adversarial objective attacks (each of its sample budgets: search-time "
                             "PGD and strong attack; default %(default)s)")
    parser.add_argument("--ood-samples", type=positive_int,
                        help="test samples per OOD set (the OOD objective's sample budgets; default: its verify "
                             "budget)")
    parser.add_argument("--allow-inconclusive", action="store_true",
                        help="exit 0 when no requirement fails even if some are inconclusive")
    parser.add_argument("--gap-tolerance", type=non_negative_float, default=DEFAULT_GAP_TOLERANCE,
                        help="ignore validation-to-test degradations smaller than this, even when beyond sampling "
                             "noise (absolute for values within [-1, 1], relative above; default %(default)s)")
    parser.add_argument("--fail-on-gap", action="store_true",
                        help="exit 1 when a metric is worse on test than on validation by more than the intervals "
                             "explain")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    parser.set_defaults(handler=run_verify_command)
