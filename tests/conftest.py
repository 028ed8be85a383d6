"""Shared test helpers: run the CLI in a subprocess and write small experiment files."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"


def run_nas(*args: str, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m nas ARGS`` in ``cwd`` with a wide terminal so tables are not wrapped."""
    environment = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "nas", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environment
    )


@pytest.fixture
def nas_cli():
    return run_nas


@pytest.fixture(autouse=True)
def _quiet_threads():
    """Tests run side by side on small machines: one torch thread each keeps them predictable."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
