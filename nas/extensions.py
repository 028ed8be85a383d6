"""Finding a user's own data set or sampler: an entry point of our groups, or a ``"package.module:Name"`` reference.

(``search_spaces`` and ``objectives`` hold the same few lines for their registries: they never import ``nas``.)
"""
from __future__ import annotations

import re
import sys
from importlib.metadata import EntryPoint, entry_points
from typing import Any

REFERENCE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")  # "package.module:Name", as an entry point's value


def installed(group: str) -> list[str]:
    """Names of the entry points of ``group`` (not imported)."""
    return sorted({point.name for point in entry_points(group=group)})


def load_extension(group: str, name: str) -> Any:
    """The object ``name`` points at: a ``"package.module:Name"`` reference, else the entry point ``name`` of
    ``group``; None when it is neither. An import that fails is an ``ImportError`` of one line."""
    if REFERENCE.fullmatch(name):
        if name.split(".")[0].split(":")[0] in sys.stdlib_module_names:  # never an extension; some act on import
            raise ImportError(f"{name!r} names a standard-library module, not an extension")
        target: EntryPoint | None = EntryPoint(name, name, group)
    else:
        target = next(iter(entry_points(group=group, name=name)), None)
    if target is None:
        return None
    try:
        return target.load()
    except Exception as error:  # whatever the user's module raises while it is imported
        raise ImportError(f"cannot import {target.value!r} ({type(error).__name__}: {error})".splitlines()[0]) from None
