"""File names built from stored text (study names) that can never leave the folder they are meant for.

A study name is whatever someone wrote into a shared storage: ``../../x``, ``a/b``, ``..`` or a newline are
all valid Optuna study names. Every file or folder name derived from one goes through :func:`safe_filename`.

Example::

    out_dir / f"{safe_filename(study.study_name)}-pareto.csv"
"""
from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_LENGTH = 80


def safe_filename(name: str) -> str:
    """``name`` itself when it is a plain file name (letters, digits, ``_ . -``, no leading dot), else a cleaned
    form plus a short hash of the original, so two different names never share a file.

    >>> safe_filename("fm1"), safe_filename("../../etc/x")
    ('fm1', 'etc_x-56da1a2e')
    """
    text = str(name)
    cleaned = _UNSAFE.sub("_", text).strip("._-")[:MAX_LENGTH].rstrip("._-")
    if cleaned and cleaned == text:
        return cleaned
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{cleaned or 'study'}-{digest}"
