"""Robust multi-objective neural architecture search: orchestration (config, data, training, study, CLI)."""

__version__ = "0.1.0"
