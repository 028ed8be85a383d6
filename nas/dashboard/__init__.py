"""``nas dashboard``: a read-only Dash app over a live Optuna storage.

Studies, the Pareto explorer (any two or three objectives, parallel coordinates, hypervolume history),
a trial drill-down (spec, recipe, curves, OOD histograms, accuracy-vs-eps, attribution maps, requirements),
a side-by-side compare and a zip export of one trial. It binds 127.0.0.1 by default and refreshes on an
interval, so it can watch a search while it runs.

Example::

    app = create_app("sqlite:///runs/nas.db", study_name="fm1")
    app.run(host="127.0.0.1", port=8050)
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from ..errors import UsageError

__all__ = ["create_app", "register_command"]


def __getattr__(name: str) -> Any:
    """``create_app`` is imported on first use, so ``nas`` commands other than this one never load Dash."""
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _cmd_dashboard(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be in 1-65535, got {args.port}")
    if not args.refresh > 0:
        raise UsageError(f"--refresh must be a positive number of seconds, got {args.refresh}")
    from .app import create_app

    app = create_app(args.storage, args.study_name, refresh_seconds=args.refresh)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.stderr.write(f"nas: warning: serving on {args.host} exposes the dashboard (no login) to that network\n")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request: the page polls every few seconds
    print(f"dashboard on http://{args.host}:{args.port}/ (read-only; Ctrl+C to stop)", flush=True)
    app.run(host=args.host, port=args.port, debug=False)
    return 0


def register_command(subparsers: Any) -> None:
    from ..cli_types import non_empty_str, port, positive_float

    parser = subparsers.add_parser(
        "dashboard", help="explore studies in the browser: Pareto fronts, trial drill-down, compare, export",
        description="Serve a read-only Dash app over an Optuna storage; it refreshes while a search is running.",
    )
    parser.add_argument("--storage", required=True, type=non_empty_str,
                        help="storage URL used by 'nas search', e.g. sqlite:///runs/nas.db")
    parser.add_argument("--study-name", type=non_empty_str,
                        help="study to open first (default: the only study, else pick one in the page)")
    parser.add_argument("--host", default="127.0.0.1", type=non_empty_str,
                        help="interface to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=port, default=8050, help="port (default 8050)")
    parser.add_argument("--refresh", type=positive_float, default=5.0,
                        help="seconds between live refreshes (default 5)")
    parser.set_defaults(handler=_cmd_dashboard)
