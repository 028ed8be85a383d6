"""Shared test helpers: run the CLI in a subprocess and write small experiment files."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
# The longest any wait in a test may take, in seconds: generous, because the suite runs on busy 2-core machines.
PATIENCE = 600.0
CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium, driven by Playwright (dashboard and report tests)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "tests" / "artifacts"  # screenshots, to look at
T = TypeVar("T")


def wait_for(condition: Callable[[], T], what: str, timeout: float = PATIENCE, interval: float = 0.2) -> T:
    """Poll ``condition`` until it returns something truthy and return that; fail naming ``what`` after a timeout."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        time.sleep(interval)
    return value


def run_nas(*args: str, cwd: Path, timeout: float = PATIENCE,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m nas ARGS`` in ``cwd`` with a wide terminal so tables are not wrapped."""
    environment = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "nas", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environment
    )


DIGITS = {"name": "digits", "seed": 0, "train_size": 600, "val_size": 200, "val_fraction": 0.15, "test_fraction": 0.15}
TINY_CNN = {"space": "cnn", "blocks": [{"channels": 16, "kernel": 3, "pool": "max"}], "cardinality": 1,
            "batch_norm": True, "activation": "relu", "dropout": 0.0, "hidden": 32, "ensemble": 1}


def train_tiny(dataset, recipe: dict, spec: dict = TINY_CNN):
    """A small CNN (``spec``) trained on ``dataset`` with ``recipe`` and its robust-training schemes, seed 0, on one
    thread (module fixtures run outside ``_quiet_threads``); returned in eval mode."""
    import torch

    import search_spaces
    from nas import training
    from nas.robust_training import make_batch_loss

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = search_spaces.build({**spec, **dataset.preprocessing()})
        training.train(model, recipe, dataset, torch.device("cpu"), seed=0,
                       batch_loss=make_batch_loss(recipe, dataset.data_range))
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def smoke_study(storage: str, n_trials: int, search: bool = True):
    """``experiments/smoke.toml`` in ``storage`` with ``n_trials``: (config, study), searched unless ``search`` is
    False (then the caller runs it, e.g. with its own experiment)."""
    from nas import config as config_module
    from nas.study import Experiment, create_or_load, run_search

    config = config_module.apply_overrides(config_module.load(EXPERIMENTS / "smoke.toml"),
                                           {"study.storage": storage, "study.n_trials": n_trials})
    study = create_or_load(config, resume=False)
    if search:
        run_search(study, Experiment.from_config(config), n_trials)
    return config, study


ISOLATED_RELOAD = r'''
import importlib, importlib.util, sys
site, folder, count = sys.argv[1:]
sys.path.append(site)
sys.path.insert(0, folder)
for name in ("nas", "search_spaces", "objectives"):
    if importlib.util.find_spec(name) is not None:
        raise SystemExit(f"isolation broken: {name} is importable")
import torch
from safetensors.torch import load_file, save_file
for index in range(int(count)):
    net = importlib.import_module(f"model_{index}").build()
    net.load_state_dict(load_file(f"{folder}/weights_{index}.safetensors"), strict=True)
    with torch.no_grad():
        logits = net.eval()(load_file(f"{folder}/inputs_{index}.safetensors")["x"])
    save_file({"logits": logits.contiguous()}, f"{folder}/logits_{index}.safetensors")
'''


def assert_exports_reload_identically(folder: Path, models: list) -> list:
    """Each ``(spec, model)``: its generated ``model.py``, run by an interpreter where our packages cannot be
    imported, loads the model's weights and gives the same logits on 5 random inputs as ``search_spaces.build``
    with them. Returns the exported logits."""
    import torch
    from safetensors.torch import load_file, save_file

    import search_spaces
    from nas import codegen

    for index, (spec, model) in enumerate(models):
        (folder / f"model_{index}.py").write_text(codegen.generate(spec), encoding="utf-8")
        save_file(model.state_dict(), str(folder / f"weights_{index}.safetensors"))
        save_file({"x": torch.rand(5, *spec["input_shape"])}, str(folder / f"inputs_{index}.safetensors"))
    (folder / "isolated.py").write_text(ISOLATED_RELOAD)
    site = str(Path(torch.__file__).resolve().parents[1])
    result = subprocess.run([sys.executable, "-I", "-S", str(folder / "isolated.py"), site, str(folder),
                             str(len(models))], capture_output=True, text=True, timeout=PATIENCE, cwd=folder)
    assert result.returncode == 0, result.stderr
    exported = []
    for index, (spec, _) in enumerate(models):
        reference = search_spaces.build(spec)
        reference.load_state_dict(load_file(str(folder / f"weights_{index}.safetensors")), strict=True)
        with torch.no_grad():
            expected = reference.eval()(load_file(str(folder / f"inputs_{index}.safetensors"))["x"])
        logits = load_file(str(folder / f"logits_{index}.safetensors"))["logits"]
        torch.testing.assert_close(logits, expected, atol=1e-6, rtol=0, msg=lambda m: f"{spec}: {m}")
        exported.append(logits)
    return exported


def component_text(components) -> str:
    """Every string in a Dash component tree, joined (what the page would show)."""
    if isinstance(components, (list, tuple)):
        return " ".join(component_text(c) for c in components)
    if isinstance(components, str):
        return components
    return component_text(getattr(components, "children", None) or [])


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


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for the tests that import this fixture (dashboard, choosing a model)."""
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()
