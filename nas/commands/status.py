"""``nas status``: trial counts by state and the Pareto front of a stored study."""
from __future__ import annotations

import argparse
from typing import Any

from ..cli_types import add_storage_options


def run_status(args: argparse.Namespace) -> int:
    from ..pareto import print_front
    from ..progress import make_console
    from ..storage import load_study, mask_url
    from ..study import counts

    study = load_study(args.storage, args.study_name)
    console = make_console()
    tally = {state: n for state, n in counts(study).items() if n}
    console.print(f"study '{study.study_name}' in {mask_url(args.storage)}: "
                  + (", ".join(f"{n} {s}" for s, n in tally.items()) or "no trials"))
    print_front(study, console)
    return 0


def register_command(subparsers: Any) -> None:
    status = subparsers.add_parser(
        "status", help="trial counts by state and the Pareto front of a study",
        description="Show trial counts by state and the Pareto front table of a stored study.")
    add_storage_options(status)
    status.set_defaults(handler=run_status)
