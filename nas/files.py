"""Reading the files a user hands the tool, and making the folders it writes into.

Every reader goes through here, so a missing, unreadable, truncated or binary file becomes one
:class:`~nas.errors.UsageError` line that names the file and says what to do, never a traceback
from a decoder deep inside a library.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import UsageError


def describe(error: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), at most 200 characters."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


@contextlib.contextmanager
def reading(path: str | Path, what: str, fix: str, error_class: type[UsageError] = UsageError) -> Iterator[None]:
    """Turn any error raised while decoding ``path`` into ``error_class("<what> <path> cannot be read (...); <fix>")``.

    Decoders (gzip, PIL, SQLite, JSON, safetensors) each raise their own error types, and often
    ``ValueError``/``SyntaxError``/``EOFError`` rather than ``OSError``; a :class:`UsageError` raised
    inside (already one line) passes through unchanged.
    """
    try:
        yield
    except UsageError:
        raise
    except Exception as error:
        raise error_class(f"{what} {path} cannot be read ({describe(error)}); {fix}") from None


def read_text(path: str | Path, what: str, fix: str) -> str:
    """The UTF-8 text of ``path``; an unreadable or binary file is one line naming it."""
    with reading(path, what, fix):
        blob = Path(path).read_bytes()
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UsageError(
            f"{what} {path} is not UTF-8 text (byte {error.start} is {blob[error.start:error.start + 1]!r}: "
            f"a binary or corrupt file); {fix}"
        ) from None


def read_json(path: str | Path, what: str, fix: str) -> Any:
    """The parsed JSON of ``path``; an empty, cut-off or garbled file is one line naming it."""
    text = read_text(path, what, fix)
    if not text.strip():
        raise UsageError(f"{what} {path} is corrupt (the file is empty); {fix}")
    try:
        return json.loads(text)
    except ValueError as error:
        raise UsageError(f"{what} {path} is corrupt (not JSON: {describe(error)}); {fix}") from None


def _blocked(path: Path, what: str, reason: str) -> UsageError:
    return UsageError(f"{what}: cannot create the folder {path} ({reason}); choose another path")


def check_folder_path(path: str | Path, what: str) -> Path:
    """Fail early, creating nothing, when a file stands where ``path`` or one of its parent folders must be."""
    path = Path(path)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise _blocked(path, what, f"{blocker} is a file, not a folder")
    return path


def prepare_folder(path: str | Path, what: str) -> Path:
    """Create the folder ``path`` (and its parents) for output, or one line saying what is in the way."""
    path = check_folder_path(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # no permission, read-only file system, ...
        raise _blocked(path, what, describe(error)) from None
    return path
