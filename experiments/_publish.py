"""What every benchmark does with its result: print the markdown, and write it to ``--out`` when given."""
from __future__ import annotations

from pathlib import Path


def publish(lines: list[str], out: Path | None) -> None:
    text = "\n".join(lines)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
