"""argparse ``type=`` validators and option groups shared by every sub-command.

A bad value becomes one line naming the option (``nas: error: --timeout must be a number >= 0, got 'nan'``)
and exit code 2. Each validator declares what it accepts (kind, bounds, finiteness, emptiness), so a test can
derive the values it must refuse for every option that uses it.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Number:
    """A finite ``int`` or ``float`` within ``[low, high]`` (``low`` itself excluded when ``low_open``)."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            return f"{what} in {self.low}-{self.high}"
        if self.low is not None:
            return f"{what} {'>' if self.low_open else '>='} {self.low}"
        return what

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text)
        except ValueError:
            value = math.nan  # not a number: refused below like NaN
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and value > self.high
        if not math.isfinite(value) or too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}")
        return value


@dataclass(frozen=True)
class Text:
    """A string that is not empty or blank (names, URLs, paths: an empty one is always a slip)."""

    def __call__(self, text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"must not be empty, got {text!r}")
        return text


positive_int = Number(int, low=1)
non_negative_int = Number(int, low=0)
seed = Number(int, low=0, high=2**31 - 1)
port = Number(int, low=1, high=65535)
positive_float = Number(float, low=0, low_open=True)
non_negative_float = Number(float, low=0)
non_empty_str = Text()


def add_storage_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--storage`` and ``--study-name``, the way every sub-command that opens a stored study takes them."""
    parser.add_argument("--storage", required=required, type=non_empty_str,
                        help="Optuna storage URL: sqlite:///runs/nas.db, postgresql://user@host/db or journal:PATH")
    parser.add_argument("--study-name", type=non_empty_str,
                        help="study name (optional when the storage holds exactly one study)")
