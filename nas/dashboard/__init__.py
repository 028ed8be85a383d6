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
import errno
import logging
import os
import socket
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


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def trusted_hosts(host: str, allow_hosts: list[str]) -> set[str] | None:
    """The host names the server answers (from the Host header, port and IPv6 brackets dropped); ``None`` answers any.

    A page on some other site cannot make the browser talk to a dashboard on 127.0.0.1 under its own
    name (DNS rebinding): only the names the server was started with are answered, everything else gets 400.
    """
    if host in WILDCARD_HOSTS and not allow_hosts:
        return None
    names = [host, *allow_hosts, *(LOOPBACK_NAMES if host in LOOPBACK_NAMES else ())]
    return {host_name(name) for name in names if name not in WILDCARD_HOSTS}


def host_name(header: str) -> str:
    """``"[::1]:8050"`` -> ``"::1"``, ``"LocalHost:8050"`` -> ``"localhost"``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def refuse_other_hosts(server: Any, allowed: set[str] | None) -> None:
    """Answer 400 to any request whose Host header names another host."""
    if allowed is None:
        return
    from flask import abort, request

    @server.before_request
    def _check_host() -> None:
        if host_name(request.headers.get("Host", "")) not in allowed:
            abort(400, description="unknown host name; start 'nas dashboard' with --allow-host NAME to answer it")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or a one-line :class:`UsageError` (nothing is printed as served before)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # the family werkzeug will use for this host
    try:
        address = socket.getaddrinfo(host or None, port, family, socket.SOCK_STREAM)[0][4][:2]
    except (socket.gaierror, UnicodeError) as error:
        raise UsageError(f"--host {host!r} cannot be resolved ({error}); "
                         "pass an address of this machine such as 127.0.0.1") from None
    try:
        return socket.create_server(address, family=family)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {host} is already in use; "
                             "pass another --port or stop the program using it") from None
        raise UsageError(f"cannot listen on {host}:{port} ({os.strerror(error.errno) if error.errno else error}); "
                         "pass --host 127.0.0.1 or another --port") from None


def _cmd_dashboard(args: argparse.Namespace) -> int:
    listener = bind(args.host, args.port)
    from werkzeug.serving import make_server

    from .app import create_app

    try:
        app = create_app(args.storage, args.study_name, refresh_seconds=args.refresh)
        allowed = trusted_hosts(args.host, args.allow_host or [])
        refuse_other_hosts(app.server, allowed)
        server = make_server(args.host, args.port, app.server, threaded=True, fd=listener.fileno())
    except BaseException:
        listener.close()
        raise
    if args.host not in LOOPBACK_NAMES:
        sys.stderr.write(f"nas: warning: serving on {args.host} exposes the dashboard (no login) to that network\n")
        if allowed is None:
            sys.stderr.write("nas: warning: any Host header is answered; "
                             "pass --allow-host NAME for each name users type\n")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request: the page polls every few seconds
    print(f"dashboard on http://{args.host}:{args.port}/ (read-only; Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        listener.close()
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
    parser.add_argument("--allow-host", action="append", metavar="NAME", type=non_empty_str,
                        help="also answer requests addressed to this host name (repeatable); by default only the "
                             "--host value (and localhost names when it is a loopback address) is answered")
    parser.add_argument("--refresh", type=positive_float, default=5.0,
                        help="seconds between live refreshes (default 5)")
    parser.set_defaults(handler=_cmd_dashboard)
