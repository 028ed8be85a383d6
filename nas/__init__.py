"""Robust multi-objective neural architecture search: orchestration (config, data, training, study, CLI).

The Python API (``from nas import search, load, front, export, verify``) is loaded on first use, so
``import nas`` and ``nas --help`` stay fast: nothing here imports torch or optuna.
"""
from __future__ import annotations

import sys
import types
from ._version import __version__

# Names of the public API in nas.api. ``export`` and ``verify`` are also submodules (nas/export.py, nas/verify.py);
# the package keeps the functions under those names (see _Package), the modules stay importable by their full name.
API = ("search", "load", "front", "export", "verify", "VerifyResult", "SearchFailed")
__all__ = ["__version__", *API]


def __getattr__(name: str) -> object:
    if name in API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'nas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *API})


class _Package(types.ModuleType):
    """The ``nas`` package, except that importing ``nas.export``/``nas.verify`` does not replace the API functions
    of the same name (Python sets a submodule as an attribute of its package when it is imported)."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in API and isinstance(value, types.ModuleType):
            return  # the submodule is still sys.modules["nas.export"], reached by 'from nas.export import ...'
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
