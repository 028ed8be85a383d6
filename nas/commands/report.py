"""``nas report``: its parser; the report itself is built by :mod:`nas.report` (imported when the command runs,
so ``nas --help`` does not load torch)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..cli_types import add_storage_options, non_empty_str


def run_report_command(args: argparse.Namespace) -> int:
    from ..dashboard.source import Snapshot
    from ..paths import safe_filename
    from ..report import write_report
    from ..storage import load_study

    study = load_study(args.storage, args.study_name)
    out = Path(args.out or f"{safe_filename(study.study_name)}-report.html")
    write_report(Snapshot.take(study, args.storage), out)
    print(f"report on study '{study.study_name}' written to {out} (self-contained; open it in any browser)")
    return 0


def register_command(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write one self-contained HTML report of a study (Pareto plots, front table, robustness per front trial)",
        description="Write a single HTML file with plotly embedded: study summary, Pareto explorer plots, the front as "
                    "a table and each front trial's robustness summary. It opens without network access.",
    )
    add_storage_options(parser)
    parser.add_argument("--out", type=non_empty_str, help="HTML file to write (default: <study>-report.html)")
    parser.set_defaults(handler=run_report_command)
