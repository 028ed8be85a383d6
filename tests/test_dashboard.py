"""`nas dashboard`: routes over plain HTTP, one-line errors, and the pages in real headless Chromium.

The study is a real `nas search` on digits with every robustness objective (OOD histograms, eps curves and
attribution maps come from the objectives themselves), one trial forced infeasible by a tiny learning rate,
a FAILED and a RUNNING trial added by hand, and an empty study beside it.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import ARTIFACTS, PATIENCE, run_nas
from nas.records import trial_record

STUDY = "fm1"
CONFIG = """
[study]
name = "fm1"
seed = 0
[data]
name = "digits"
train_size = 300
val_size = 100
[space]
name = "cnn"
depth = 1
channels = [8, 16]
cardinality = 1
hidden = [0, 32]
ensemble = 1
[training]
epochs = 2
batch_size = 64
lr = { low = 1e-5, high = 1e-2, log = true }
[objectives.accuracy]
[objectives.ood]
sets = ["uniform", "letters"]
samples = 64
[objectives.adversarial]
samples = 32
pgd_steps = 2
[objectives.explainability]
samples = 8
[objectives.params]
[requirements]
accuracy = { min = 0.5 }
"calibration.ece" = { max = 1.0 }
"""


def build_study(folder: Path) -> dict:
    """Study 'fm1' (three searched trials, one of them infeasible, plus a FAILED and a RUNNING one) and
    study 'empty' (no trial). Returns the config and the trial numbers the tests look for."""
    from nas import config as config_module
    from nas.storage import open_storage
    from nas.study import Experiment, create_or_load, run_search

    storage = f"sqlite:///{folder}/runs/nas.db"
    (folder / "fm1.toml").write_text(CONFIG)
    config = config_module.apply_overrides(config_module.load(folder / "fm1.toml"), {"study.storage": storage})
    study = create_or_load(config, resume=False)
    for lr in (5e-3, 1e-5, 8e-3):  # 1e-5 cannot learn digits in two epochs: accuracy < 0.5, infeasible
        study.enqueue_trial({"train.lr": lr})
    run_search(study, Experiment.from_config(config), 3)
    # Trials added by hand: no heartbeat, so the RUNNING one stays RUNNING.
    study = optuna.load_study(study_name=STUDY, storage=open_storage(storage, heartbeat_interval=None))
    searched = study.get_trials(states=(TrialState.COMPLETE,))
    spec = trial_record(study, searched[0])["spec"]
    failed = study.ask()
    failed.set_user_attr("spec", spec)
    failed.set_user_attr("fail_reason", "TrainingDiverged: loss became nan at epoch 1")
    study.tell(failed, state=TrialState.FAIL)
    running = study.ask()  # as a training trial looks: small attributes, its record comes when it ends
    running.set_user_attr("spec_summary", searched[0].user_attrs["spec_summary"])
    running.set_user_attr("last_epoch", {"epoch": 1, "epochs": 3, "train_loss": 2.0, "val_loss": 1.9,
                                         "val_accuracy": 0.4, "seconds": 0.1})
    create_or_load({**config, "study": {**config["study"], "name": "empty"}}, resume=False)
    infeasible = [t.number for t in searched if not t.user_attrs["feasible"]]
    scored = [t.number for t in searched if t.user_attrs["feasible"]]
    assert infeasible == [1] and len(scored) == 2, "the enqueued learning rates no longer give one infeasible trial"
    return {"storage": storage, "config": config, "searched": [t.number for t in searched], "robust": scored[0],
            "infeasible": infeasible[0], "failed": failed.number, "running": running.number, "completed": len(searched)}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dashboard")
    return {**build_study(folder), "folder": folder}


class Server:
    """The dashboard's Flask server on 127.0.0.1, a free port, in a daemon thread."""

    def __init__(self, app) -> None:
        import logging

        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)

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
    with urllib.request.urlopen(url, timeout=PATIENCE) as response:
        return response.status, response.read().decode()


def _update(server: Server, output: str, inputs: list[dict], state: list[dict] | None = None) -> dict:
    """POST one callback the way the browser does (Dash's /_dash-update-component route)."""
    component, prop = output.split(".")
    payload = {"output": output, "outputs": {"id": component, "property": prop}, "inputs": inputs,
               "changedPropIds": [f"{inputs[0]['id']}.{inputs[0]['property']}"], "state": state or []}
    request = urllib.request.Request(f"{server.url}/_dash-update-component", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=PATIENCE) as response:
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


def _drill_down(server: Server, trial, study: str = STUDY) -> str:
    return json.dumps(_update(server, "trial-body.children", [{"id": "trial", "property": "value", "value": trial},
                                                               {"id": "signature", "property": "data", "value": None}],
                              [{"id": "study", "property": "value", "value": study}]))


def test_drill_down_route_on_every_kind_of_trial_and_hostile_values(server, built):
    assert "No trial picked" in _drill_down(server, "../../etc/passwd")
    assert "no longer in this storage" in _drill_down(server, built["robust"], study="../no-such-study")
    assert "TrainingDiverged: loss became nan" in _drill_down(server, built["failed"])
    running = _drill_down(server, built["running"])
    assert "Still running" in running and "learning-graph" in running and "ood-graph" not in running
    assert "epoch 1 of 3" in running  # the live epoch, until the learning curve is stored with the record
    infeasible = _drill_down(server, built["infeasible"])  # staged evaluation skipped the expensive objectives
    assert ("FAIL" in infeasible and "skipped (a requirement already failed)" in infeasible
            and "ood-graph" not in infeasible)
    scored = _drill_down(server, built["robust"])
    for graph in ("ood-graph", "eps-graph", "attribution-graph", "reliability-graph", "learning-graph"):
        assert graph in scored


def test_masking_flags_are_shown_only_when_raised(built):
    """The eps curve carries the adversarial objective's gradient-masking warning, and nothing when none is raised."""
    from nas.dashboard import figures
    from nas.dashboard.source import StudySource, load_details

    snap = StudySource(built["storage"]).snapshot(STUDY)
    adversarial = load_details(snap, snap.trial(built["robust"]))[0]["adversarial"]
    clean = figures.eps_figure([("trial", {**adversarial, "masking_flags": [], "masking_reasons": []})])
    flagged = figures.eps_figure([("trial", {**adversarial, "masking_flags": ["no_drop_with_eps"],
                                             "masking_reasons": ["accuracy does not fall as eps grows"]})])
    assert not [a for a in clean.layout.annotations if "masking" in a.text]
    assert [a for a in flagged.layout.annotations if "accuracy does not fall as eps grows" in a.text]
    assert flagged.data[0].name.endswith("masking?") and not clean.data[0].name.endswith("masking?")
    assert [p["eps"] for p in adversarial["eps_curve"]] == list(clean.data[0].x)


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
    # another process: the storage check opens and closes the database file, which in this process would drop
    # the SQLite locks of the module's server (its later reads could then miss a search's new trials)
    result = run_nas("dashboard", "--storage", built["storage"], "--study-name", "fm9", cwd=tmp_path)
    code, stderr = result.returncode, result.stderr
    assert code == 2 and stderr.count("\n") == 1
    assert "no study named 'fm9'" in stderr and "fm1" in stderr and "empty" in stderr
    code, stderr = cli("dashboard", "--storage", built["storage"], "--port", "70000")
    assert code == 2 and "--port must be an integer in 1-65535" in stderr
    code, stderr = cli("dashboard", "--storage", built["storage"], "--refresh", "0")
    assert code == 2 and "--refresh must be a number > 0" in stderr


def test_command_serves_on_localhost(built, tmp_path):
    """`nas dashboard` itself: binds 127.0.0.1, answers HTTP, stops on terminate."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "nas", "dashboard", "--storage", built["storage"],
                                "--port", str(port)],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                status, page = _get(f"http://127.0.0.1:{port}/")
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("dashboard did not start: "
                                         f"{process.stderr.read() if process.poll() is not None else 'timeout'}")
                time.sleep(0.3)
        assert status == 200 and "Robust NAS dashboard" in page
    finally:
        process.terminate()
        process.wait(timeout=PATIENCE)


def test_dashboard_never_writes_to_the_study(built):
    """Rendering every view leaves the storage byte-for-byte as it was."""
    from nas.dashboard import callbacks, figures
    from nas.dashboard.source import StudySource

    db = Path(built["storage"][len("sqlite:///"):])
    before = _digest(db)
    source = StudySource(built["storage"])
    snap = source.snapshot(STUDY)
    figures.pareto_figure(snap, "accuracy", "params")
    figures.parallel_figure(snap)
    figures.hypervolume_figure(snap)
    for trial in snap.trials:
        callbacks.trial_body(snap, trial)
    callbacks.compare_body(snap, snap.completed[:3])
    source.study_rows()
    assert _digest(db) == before


def _digest(path: Path) -> str:
    """The file's SHA-256, read by another process: closing any descriptor of an SQLite file in this process
    releases every POSIX lock the process's open connections hold on it (the server threads' and, later, a
    search's), which corrupted the database in a later test."""
    return subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]


# ------------------------------------------------------------------------------------ real browser
@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    opened.set_default_timeout(PATIENCE * 1000)  # every wait below polls for its condition up to this long
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


def trial_point_center(page, number: int) -> dict[str, float]:
    """Where the Pareto plot draws the marker whose customdata is ``number`` (page coordinates)."""
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
    return box


def _click_trial_point(page, number: int) -> None:
    """Click the rendered marker of trial ``number`` with the real mouse."""
    box = trial_point_center(page, number)
    page.mouse.move(box["x"], box["y"])
    page.mouse.click(box["x"], box["y"])


def test_pareto_plot_redraws_and_click_opens_drill_down(page, built):
    page.wait_for_function(f"document.querySelectorAll('{POINTS}').length == {built['completed']}")
    names = [t["name"] for t in _traces(page, "pareto-graph")]
    assert any(n.startswith("Pareto front") for n in names) and "fails a requirement" in names
    page.screenshot(path=str(ARTIFACTS / "dashboard-pareto.png"), full_page=True)

    _pick(page, "x-axis", "ood ↑")
    _pick(page, "y-axis", "adversarial ↑")
    page.wait_for_function("document.querySelector('#pareto-graph .g-ytitle').textContent.startsWith('adversarial')")
    assert page.locator("#pareto-graph .g-xtitle").text_content() == "ood ↑"
    assert page.locator(POINTS).count() == built["completed"]
    page.click("#show input[value=infeasible]")  # hide the trial that fails accuracy >= 0.5
    page.wait_for_function(f"document.querySelectorAll('{POINTS}').length == {built['completed'] - 1}")
    page.click("#show input[value=infeasible]")
    _pick(page, "z-axis", "explainability ↑")
    page.wait_for_function("document.querySelector('#pareto-graph .js-plotly-plot').data"
                           ".every(t => t.type == 'scatter3d')")
    assert sum(t["n"] for t in _traces(page, "pareto-graph")) == built["completed"]
    page.screenshot(path=str(ARTIFACTS / "dashboard-pareto-3d.png"))
    page.click("#z-axis .dash-dropdown-clear")
    page.wait_for_function(f"document.querySelectorAll('{POINTS}').length == {built['completed']}")

    _click_trial_point(page, built["robust"])
    page.wait_for_selector("#ood-graph .main-svg")
    assert f"Trial {built['robust']}" in page.inner_text("#trial-body")
    ood = page.inner_text("#ood-graph")
    assert "uniform: AUROC" in ood and "letters: AUROC" in ood
    assert len([t for t in _traces(page, "ood-graph") if t["type"] == "bar"]) == 4  # in-distribution + set, per set
    page.wait_for_selector("#eps-graph .main-svg")
    assert _traces(page, "eps-graph")[0]["n"] >= 3  # clean accuracy plus the eps grid
    page.wait_for_selector("#attribution-graph .main-svg")
    heatmaps = [t for t in _traces(page, "attribution-graph") if t["type"] == "heatmap"]
    assert heatmaps and len(heatmaps) % 3 == 0  # per example: the image, the image again, the map over it
    assert page.inner_text("#requirements").count("PASS") == 2
    # accuracy carries its 95% Wilson interval, inside [0, 1] and around the value
    value, low, high = map(float, re.search(r"(\d\.\d+) \[(\d\.\d+), (\d\.\d+)\]",
                                            page.inner_text("#requirements")).groups())
    assert 0 <= low <= value <= high <= 1 and low < high
    page.screenshot(path=str(ARTIFACTS / "dashboard-trial.png"), full_page=True)


def test_compare_shows_two_trials(page, built):
    page.get_by_text("Compare", exact=True).click()
    page.wait_for_selector("#compare-graph .main-svg")
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
    page.wait_for_selector(f"#trial-body >> text=Trial {searched}")
    with page.expect_download() as download:
        page.click("#export-button")
    path = download.value.path()
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read(next(n for n in names if n.endswith("spec.json"))))
    assert download.value.suggested_filename == f"{STUDY}-trial{searched}.zip"
    assert {Path(n).name for n in names} >= {"model.py", "weights.safetensors", "spec.json"}
    assert manifest["trial"] == searched and manifest["study"] == STUDY
    assert f"Exported trial {searched}" in page.inner_text("#export-status")


def test_live_refresh_while_a_search_runs_and_an_empty_study(page, built):
    """A search running beside the open page (another process, as users run it): its new trial appears
    without a reload. Not a thread here: the search's storage check opens and closes the SQLite file, which
    would drop the POSIX locks of the server's connections in this process and could corrupt the database."""
    page.wait_for_selector(POINTS)
    shown = page.locator(POINTS).count()
    study = optuna.load_study(study_name=STUDY, storage=built["storage"])
    # the hand-made RUNNING trial never ends
    target = len(study.get_trials(states=(TrialState.COMPLETE, TrialState.RUNNING))) + 1
    # one trial reaches the target; the timeout ends the wait for that RUNNING trial after it. The timeout counts
    # from the start of the search: 5 s was sometimes over before a busy 2-core machine started the trial.
    search = subprocess.Popen([sys.executable, "-m", "nas", "search", str(built["folder"] / "fm1.toml"), "--resume",
                               "--storage", built["storage"], "--n-trials", str(target), "--timeout", "60"],
                              cwd=built["folder"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        page.wait_for_function(f"document.querySelectorAll('{POINTS}').length == {shown + 1}")
    finally:
        _, errors = search.communicate(timeout=PATIENCE)
    assert search.returncode == 0, errors
    assert "running" in page.inner_text("#status")  # the hand-made RUNNING trial is still counted

    _pick(page, "study", "empty")
    page.wait_for_selector("#pareto-graph >> text=has no completed trial yet")
    assert page.locator(POINTS).count() == 0
    assert "no trials yet" in page.inner_text("#status")
    page.screenshot(path=str(ARTIFACTS / "dashboard-empty.png"))
    page.get_by_text("Trial", exact=True).click()
    page.wait_for_selector("#trial-body >> text=No trial picked")
