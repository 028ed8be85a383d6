"""What an export folder holds and the budgets ``nas verify`` reads it with: constants only, no torch, so that the
CLI can describe ``nas export`` and ``nas verify`` (``nas --help``) without loading the library behind them."""
from __future__ import annotations

EXPORT_FORMAT = "robust-nas-export"
# 2: per-file checksums (``sha256``) and the manifest's own (``manifest_sha256``), validation intervals
# (``validation_objectives``), the fitted temperature (``calibration``). Format 1 exports are still read.
FORMAT_VERSION = 2
REQUIRED_FILES = ("model.py", "weights.safetensors", "spec.json")
# --format NAME -> file written next to model.py
EXTRA_FORMATS = {"export": "model.pt2", "onnx": "model.onnx", "torchscript": "model.torchscript.pt"}

# nas verify: test samples the strong attack runs on (RobustBench-style budgets; the search screens on fewer)
DEFAULT_ATTACK_SAMPLES = 1000
# nas verify: validation-to-test degradations smaller than this are ignored even when beyond sampling noise
DEFAULT_GAP_TOLERANCE = 0.0
