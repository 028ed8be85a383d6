"""``nas export``: its parser; the export itself is :func:`nas.export.export_trial` (imported when the command
runs, so ``nas --help`` does not load torch)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..cli_types import add_storage_options, non_empty_str, non_negative_int
from ..export_format import EXTRA_FORMATS


def run_export_command(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..export import _check_formats, export_trial, get_trial, pick_trial
    from ..paths import safe_filename
    from ..progress import make_console
    from ..storage import load_study

    console = make_console()
    if (args.trial is None) == (args.pick is None):
        raise UsageError("pass exactly one of --trial N or --pick SELECTOR (e.g. --pick 'max:accuracy where feasible')")
    _check_formats(args.format or ())
    study = load_study(args.storage, args.study_name)
    trial = (get_trial(study, args.trial) if args.trial is not None
             else pick_trial(study, args.pick, args.storage, args.artifacts))
    out_dir = Path(args.out) if args.out else Path("exported") / f"{safe_filename(study.study_name)}-t{trial.number}"
    folder = export_trial(study, trial.number, out_dir, storage_url=args.storage, artifacts=args.artifacts,
                          formats=args.format or (), data_dir=args.data_dir, force=args.force)
    card = json.loads((folder / "card.json").read_text())
    feasible = card["requirements"]["feasible"]
    console.print(
        f"exported trial {trial.number} of study '{study.study_name}' ({card['model']['architecture']}) to {folder}: "
        f"{', '.join(sorted(p.name for p in folder.iterdir()))}", soft_wrap=True,
    )
    console.print(
        f"Pareto rank {card['pareto']['rank']} of {card['pareto']['n_complete']} trials; "
        f"requirements on validation: {'all pass' if feasible else 'NOT all met'}; "
        f"check it on the held-out test split with: nas verify {folder}", soft_wrap=True,
    )
    return 0


def register_command(subparsers: Any) -> None:
    """Add ``nas export`` to the CLI (picked up by ``nas.cli``)."""
    parser = subparsers.add_parser(
        "export", help="write one trial as a self-contained PyTorch module with weights and a robustness card",
        description="Export a COMPLETE trial: model.py (imports only torch), weights.safetensors, spec.json, card.md "
                    "and card.json.",
    )
    add_storage_options(parser)
    parser.add_argument("--trial", type=non_negative_int, help="trial number to export")
    parser.add_argument("--pick", type=non_empty_str,
                        help="choose the trial by a metric: 'max:accuracy', 'min:params where feasible', ...")
    parser.add_argument("--out", type=non_empty_str, help="output folder (default: exported/<study>-t<trial>)")
    parser.add_argument("--artifacts", type=non_empty_str,
                        help="artifact folder holding the weights (default: the one recorded on the study)")
    parser.add_argument("--format", action="append", choices=sorted(EXTRA_FORMATS),
                        help="also write model.pt2 (export, torch.export), model.onnx (onnx; needs onnx+onnxscript) "
                             "or model.torchscript.pt (torchscript); repeatable")
    parser.add_argument("--data-dir", type=non_empty_str,
                        help="folder holding the dataset, for class names and split sizes on the card")
    parser.add_argument("--force", action="store_true", help="replace an earlier export in --out")
    parser.set_defaults(handler=run_export_command)
