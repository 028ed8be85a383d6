"""`nas dashboard`: routes over plain HTTP, one-line errors, and the pages in real headless Chromium.

The study is built the way `nas search` builds it (real training on digits), plus two trials carrying
robustness details in the objectives' schema, a FAILED and a RUNNING trial, and an empty study.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import upload_artifact
from optuna.trial import TrialState

from conftest import EXPERIMENTS, REPO, run_nas

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "tests" / "artifacts"
STUDY = "fm1"


# ------------------------------------------------------------------------------------- the study
def _histogram(centre: float, n: int = 200) -> dict:
    """20 bins on [0, 1] with the mass around ``centre`` (a deterministic bell)."""
    weights = [2.718 ** (-((i + 0.5) / 20 - centre) ** 2 / 0.01) for i in range(20)]
    total = sum(weights)
    return {"edges": [i / 20 for i in range(21)], "counts": [round(n * w / total) for w in weights]}


def _details(accuracy: float, masking: bool) -> dict:
    """Robustness details in the schema the ood/adversarial/explainability/calibration objectives write."""
    grid = [0.0, 0.02, 0.05, 0.1, 0.2]
    curve = [{"eps": e, "accuracy": round(accuracy * (1.0 if masking else max(0.05, 1 - 4 * e)), 4)} for e in grid]
    image = [[((r * 8 + c) % 7) / 6 for c in range(8)] for r in range(8)]
    attribution = [[(c - 3.5) / 3.5 * (r / 7) for c in range(8)] for r in range(8)]
    return {
        "ood": {"detector": "msp", "in_distribution": {"mean_confidence": 0.9, "histogram": _histogram(0.9)},
                "sets": {"noise": {"auroc": 0.93, "fpr95": 0.3, "mean_confidence": 0.4, "histogram": _histogram(0.35)},
                         "letters": {"auroc": 0.71, "fpr95": 0.7, "mean_confidence": 0.7, "histogram": _histogram(0.7)}}},
        "adversarial": {"eps": 0.05, "clean_accuracy": accuracy, "fgsm_accuracy": curve[2]["accuracy"] + 0.02,
                        "pgd_accuracy": curve[2]["accuracy"], "noise_accuracy": accuracy - 0.01, "eps_curve": curve,
                        "median_min_eps": None if masking else 0.1,
                        "masking_flags": ["no_drop_with_eps"] if masking else []},
        "explainability": {"method": "integrated_gradients", "deletion_curve": [0.9, 0.5, 0.2, 0.1],
                           "insertion_curve": [0.1, 0.6, 0.8, 0.9],
                           "examples": [{"image": image, "attribution": attribution, "label": 3, "prediction": p} for p in (3, 5)]},
        "calibration": {"reliability": {"bin_confidence": [0.35, 0.65, 0.95], "bin_accuracy": [0.3, 0.5, 0.9], "bin_count": [10, 30, 160]}},
    }


def _add_scored_trial(study, store, spec, accuracy: float, masking: bool) -> int:
    """A COMPLETE trial with every attribute `nas search` stores, including a details artifact."""
    import search_spaces

    params = float(sum(p.numel() for p in search_spaces.build(spec).parameters()))
    trial = study.ask()
    requirement = {"accuracy": {"min": 0.5, "value": accuracy, "pass": accuracy >= 0.5}}
    metrics = {"accuracy": accuracy, "params": params, "ood.min_auroc": 0.71, "ood.auroc_noise": 0.93, "ood.auroc_letters": 0.71,
               "adversarial.pgd_accuracy": 0.3, "calibration.ece": 0.08}
    for key, value in {
        "spec": spec, "spec_summary": search_spaces.summary(spec), "seed": trial.number, "device": "cpu",
        "recipe": {"epochs": 2, "batch_size": 64, "lr": 0.003, "optimizer": "adam"}, "train_seconds": 0.5,
        "history": [{"epoch": 1, "train_loss": 1.9, "val_loss": 1.7, "val_accuracy": accuracy - 0.2, "seconds": 0.2},
                    {"epoch": 2, "train_loss": 1.1, "val_loss": 1.2, "val_accuracy": accuracy, "seconds": 0.2}],
        "objectives": {"accuracy": {"value": accuracy, "metrics": {}, "seconds": 0.01, "skipped": False},
                       "params": {"value": params, "metrics": {}, "seconds": 0.0, "skipped": False},
                       "ood": {"value": 0.71, "metrics": {}, "seconds": 0.4, "skipped": False},
                       "adversarial": {"value": 0.3, "metrics": {}, "seconds": 1.2, "skipped": False}},
        "metrics": metrics, "requirements": requirement, "feasible": accuracy >= 0.5,
    }.items():
        trial.set_user_attr(key, value)
    trial.set_constraint("accuracy", 0.5 - accuracy)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "details.json"
        path.write_text(json.dumps(_details(accuracy, masking)))
        trial.set_user_attr("details_artifact", upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial))
    study.tell(trial, [accuracy, params])
    return trial.number


def build_study(folder: Path) -> dict:
    """Study 'fm1': 3 searched trials, a robust feasible trial (masking flag raised), an infeasible one,
    a FAILED and a RUNNING trial; study 'empty' has no trial. Returns names and numbers for the tests."""
    from nas import config as config_module
    from nas.storage import open_artifact_store, open_storage
    from nas.study import Experiment, create_or_load, run_search

    storage = f"sqlite:///{folder}/runs/nas.db"
    overrides = {"study.storage": storage, "study.name": STUDY, "study.n_trials": 3, "data.train_size": 300, "data.val_size": 100}
    config = config_module.apply_overrides(config_module.load(EXPERIMENTS / "smoke.toml"), overrides)
    run_search(create_or_load(config, resume=False), Experiment.from_config(config), 3)
    # Trials added by hand: no heartbeat, so the RUNNING one stays RUNNING.
    study = optuna.load_study(study_name=STUDY, storage=open_storage(storage, heartbeat_interval=None))
    searched = [t for t in study.get_trials(states=(TrialState.COMPLETE,))]
    store = open_artifact_store(study.user_attrs["artifacts"])
    spec = searched[0].user_attrs["spec"]
    robust = _add_scored_trial(study, store, spec, accuracy=0.97, masking=True)
    infeasible = _add_scored_trial(study, store, searched[-1].user_attrs["spec"], accuracy=0.3, masking=False)
    failed = study.ask()
    failed.set_user_attr("spec", spec)
    failed.set_user_attr("fail_reason", "TrainingDiverged: loss became nan at epoch 1")
    study.tell(failed, state=TrialState.FAIL)
    running = study.ask()
    running.set_user_attr("spec", spec)
    running.set_user_attr("spec_summary", searched[0].user_attrs["spec_summary"])
    running.set_user_attr("history", [{"epoch": 1, "train_loss": 2.0, "val_loss": 1.9, "val_accuracy": 0.4, "seconds": 0.1}])
    create_or_load({**config, "study": {**config["study"], "name": "empty"}}, resume=False)
    return {"storage": storage, "searched": [t.number for t in searched], "robust": robust, "infeasible": infeasible,
            "failed": failed.number, "running": running.number, "completed": len(searched) + 2}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dashboard")
    return {**build_study(folder), "folder": folder}


class Server:
    """The dashboard's Flask server on 127.0.0.1, a free port, in a daemon thread."""

    def __init__(self, app) -> None:
        from werkzeug.serving import make_server

        self.httpd = make_server("127.0.0.1", 0, app.server, threaded=True)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture(scope="module")
def server(built):
    from nas.dashboard import create_app

    running = Server(create_app(built["storage"], STUDY, refresh_seconds=1.0))
    yield running
    running.close()


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read().decode()


def _update(server: Server, output: str, inputs: list[dict], state: list[dict] | None = None) -> dict:
    """POST one callback the way the browser does (Dash's /_dash-update-component route)."""
    component, prop = output.split(".")
    payload = {"output": output, "outputs": {"id": component, "property": prop}, "inputs": inputs,
               "changedPropIds": [f"{inputs[0]['id']}.{inputs[0]['property']}"], "state": state or []}
    request = urllib.request.Request(f"{server.url}/_dash-update-component", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


# -------------------------------------------------------------------------------------- plain HTTP
def test_routes_serve_the_page_and_layout(server):
    status, page = _get(server.url + "/")
    assert status == 200 and "Robust NAS dashboard" in page
    assert "cdn" not in page.lower(), "assets must be served locally (no network needed)"
    _, layout = _get(server.url + "/_dash-layout")
    for component in ("pareto-graph", "trial", "compare-trials", "export-button", "tick"):
        assert f'"{component}"' in layout
    _, dependencies = _get(server.url + "/_dash-dependencies")
    assert "trial-body.children" in dependencies


def test_drill_down_route_ignores_hostile_values(server, built):
    study = [{"id": "study", "property": "value", "value": STUDY}]
    body = _update(server, "trial-body.children", [{"id": "trial", "property": "value", "value": "../../etc/passwd"},
                                                    {"id": "signature", "property": "data", "value": None}], study)
    assert "No trial picked" in json.dumps(body)
    body = _update(server, "trial-body.children", [{"id": "trial", "property": "value", "value": built["robust"]},
                                                    {"id": "signature", "property": "data", "value": None}],
                   [{"id": "study", "property": "value", "value": "no-such-study"}])
    assert "no longer in this storage" in json.dumps(body)
    body = json.dumps(_update(server, "trial-body.children", [{"id": "trial", "property": "value", "value": built["failed"]},
                                                               {"id": "signature", "property": "data", "value": None}], study))
    assert "TrainingDiverged" in body


def cli(*args: str) -> tuple[int, str]:
    """``nas ARGS`` in this process (bad input never gets far enough to serve): exit code and stderr."""
    import contextlib
    import io

    from nas.cli import main

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(list(args))
    return code, stderr.getvalue()


def test_bad_storage_and_unknown_study_are_one_line_exit_2(built, tmp_path):
    code, stderr = cli("dashboard", "--storage", f"sqlite:///{tmp_path}/nope.db")
    assert code == 2 and stderr.count("\n") == 1 and "no such file" in stderr and "--storage" in stderr
    assert not (tmp_path / "nope.db").exists(), "a wrong URL must not create a database"
    code, stderr = cli("dashboard", "--storage", "runs/nas.db")
    assert code == 2 and "not a storage URL" in stderr
    code, stderr = cli("dashboard", "--storage", built["storage"], "--study-name", "fm9")
    assert code == 2 and stderr.count("\n") == 1
    assert "no study named 'fm9'" in stderr and "fm1" in stderr and "empty" in stderr
    code, stderr = cli("dashboard", "--storage", built["storage"], "--port", "70000")
    assert code == 2 and "--port" in stderr


def test_command_serves_on_localhost(built, tmp_path):
    """`nas dashboard` itself: binds 127.0.0.1, answers HTTP, stops on terminate."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "nas", "dashboard", "--storage", built["storage"], "--port", str(port)],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, page = _get(f"http://127.0.0.1:{port}/")
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"dashboard did not start: {process.stderr.read() if process.poll() is not None else 'timeout'}")
                time.sleep(0.3)
        assert status == 200 and "Robust NAS dashboard" in page
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_dashboard_never_writes_to_the_study(built):
    """Rendering every view leaves the storage byte-for-byte as it was."""
    from nas.dashboard import callbacks, figures
    from nas.dashboard.source import StudySource

    db = Path(built["storage"][len("sqlite:///"):])
    before = db.read_bytes()
    source = StudySource(built["storage"])
    snap = source.snapshot(STUDY)
    figures.pareto_figure(snap, "accuracy", "params")
    figures.parallel_figure(snap)
    figures.hypervolume_figure(snap)
    for trial in snap.trials:
        callbacks.trial_body(snap, trial)
    callbacks.compare_body(snap, snap.completed[:3])
    source.study_rows()
    assert db.read_bytes() == before


# ------------------------------------------------------------------------------------ real browser
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(server.url)
    yield opened
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


POINTS = "#pareto-graph .scatterlayer .point"


def _pick(page, dropdown: str, option: str) -> None:
    page.click(f"#{dropdown}")
    page.get_by_role("option", name=option, exact=True).click()


def _traces(page, graph: str) -> list[dict]:
    """The figure the browser is showing: type, name and point count of each trace."""
    return page.evaluate(f"""() => document.querySelector('#{graph} .js-plotly-plot').data.map(
        t => ({{type: t.type || 'scatter', name: t.name, n: (t.customdata || t.x || t.r || []).length}}))""")


def _click_trial_point(page, number: int) -> None:
    """Click the rendered marker whose customdata is ``number`` with the real mouse."""
    box = page.evaluate("""(number) => {
        const gd = document.querySelector('#pareto-graph .js-plotly-plot');
        const traces = gd.querySelectorAll('.scatterlayer .trace');
        for (let t = 0; t < gd.data.length; t++) {
            const index = (gd.data[t].customdata || []).indexOf(number);
            if (index >= 0) {
                const r = traces[t].querySelectorAll('path.point')[index].getBoundingClientRect();
                return {x: r.x + r.width / 2, y: r.y + r.height / 2};
            }
        }
        return null;
    }""", number)
    assert box, f"trial {number} is not drawn in the Pareto plot"
    page.mouse.move(box["x"], box["y"])
    page.mouse.click(box["x"], box["y"])


def test_pareto_plot_redraws_and_click_opens_drill_down(page, built):
    page.wait_for_function(f"document.querySelectorAll('{POINTS}').length == {built['completed']}", timeout=30000)
    names = [t["name"] for t in _traces(page, "pareto-graph")]
    assert any(n.startswith("Pareto front") for n in names) and any(n.startswith("infeasible") for n in names)
    page.screenshot(path=str(ARTIFACTS / "dashboard-pareto.png"), full_page=True)

    _pick(page, "y-axis", "ood.min_auroc")  # only the two robustness-scored trials measured it
    page.wait_for_function(f"document.querySelectorAll('{POINTS}').length == 2", timeout=20000)
    assert "ood.min_auroc" in page.locator("#pareto-graph .g-ytitle").text_content()
    page.click("#show input[value=infeasible]")  # hide infeasible trials: the one failing accuracy >= 0.5 goes
    page.wait_for_function(f"document.querySelectorAll('{POINTS}').length == 1", timeout=20000)
    page.click("#show input[value=infeasible]")
    _pick(page, "z-axis", "calibration.ece")
    page.wait_for_function("document.querySelector('#pareto-graph .js-plotly-plot').data.every(t => t.type == 'scatter3d')", timeout=20000)
    page.screenshot(path=str(ARTIFACTS / "dashboard-pareto-3d.png"))
    page.click("#z-axis .dash-dropdown-clear")
    _pick(page, "y-axis", "params ↓")
    page.wait_for_function(f"document.querySelectorAll('{POINTS}').length == {built['completed']}", timeout=20000)

    _click_trial_point(page, built["robust"])
    page.wait_for_selector("#ood-graph .main-svg", timeout=20000)
    assert f"Trial {built['robust']}" in page.inner_text("#trial-body")
    ood = page.inner_text("#ood-graph")
    assert "noise: AUROC 0.93" in ood and "letters: AUROC 0.71" in ood
    assert len([t for t in _traces(page, "ood-graph") if t["type"] == "bar"]) == 4  # in-distribution + set, per set
    page.wait_for_selector("#eps-graph .main-svg")
    assert "gradient masking" in page.inner_text("#trial-body")
    page.wait_for_selector("#attribution-graph .main-svg")
    assert [t["type"] for t in _traces(page, "attribution-graph")] == ["heatmap"] * 6  # image, image + map, per example
    assert "PASS" in page.inner_text("#requirements")
    page.screenshot(path=str(ARTIFACTS / "dashboard-trial.png"), full_page=True)


def test_compare_shows_two_trials(page, built):
    page.get_by_text("Compare", exact=True).click()
    page.wait_for_selector("#compare-graph .main-svg", timeout=30000)
    traces = _traces(page, "compare-graph")
    assert len(traces) == 2 and all(t["name"].startswith("trial ") for t in traces)
    header = page.locator("#compare-body table.data").first.locator("th").all_inner_texts()
    assert [h for h in header if h.startswith("trial ")] == [t["name"] for t in traces]
    page.screenshot(path=str(ARTIFACTS / "dashboard-compare.png"), full_page=True)


def test_export_button_downloads_the_export_folder(page, built):
    import zipfile

    searched = built["searched"][0]
    page.get_by_text("Trial", exact=True).click()
    page.click("#trial")
    page.locator(".dash-dropdown-option", has_text=f"#{searched} ·").click()
    page.wait_for_selector(f"#trial-body >> text=Trial {searched}", timeout=20000)
    with page.expect_download(timeout=60000) as download:
        page.click("#export-button")
    path = download.value.path()
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read(next(n for n in names if n.endswith("spec.json"))))
    assert download.value.suggested_filename == f"{STUDY}-trial{searched}.zip"
    assert {Path(n).name for n in names} >= {"model.py", "weights.safetensors", "spec.json"}
    assert manifest["trial"] == searched and manifest["study"] == STUDY
    assert f"Exported trial {searched}" in page.inner_text("#export-status")


def test_live_refresh_and_a_study_without_completed_trials(page, built):
    page.wait_for_selector(POINTS, timeout=30000)
    shown = page.locator(POINTS).count()
    from nas.storage import open_artifact_store

    study = optuna.load_study(study_name=STUDY, storage=built["storage"])
    store = open_artifact_store(study.user_attrs["artifacts"])
    added = _add_scored_trial(study, store, study.trials[built["searched"][0]].user_attrs["spec"], accuracy=0.99, masking=False)
    page.wait_for_function(f"document.querySelectorAll('{POINTS}').length == {shown + 1}", timeout=20000)
    assert added in [n for t in page.evaluate("() => document.querySelector('#pareto-graph .js-plotly-plot').data.map(t => t.customdata)") for n in t]

    _pick(page, "study", "empty")
    page.wait_for_selector("#pareto-graph >> text=has no completed trial yet", timeout=20000)
    assert page.locator(POINTS).count() == 0
    assert "no trials yet" in page.inner_text("#status")
    page.screenshot(path=str(ARTIFACTS / "dashboard-empty.png"))
    page.get_by_text("Trial", exact=True).click()
    page.wait_for_selector("#trial-body >> text=No trial picked", timeout=20000)
