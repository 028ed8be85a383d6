"""`nas report`: one self-contained HTML file that renders in headless Chromium with the network cut off."""
from __future__ import annotations

import re

import optuna
import pytest

from conftest import PATIENCE, run_nas
from conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from test_dashboard import STUDY, build_study, cli


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    return {**build_study(folder), "folder": folder}


@pytest.fixture(scope="module")
def report(built):
    out = built["folder"] / "shared" / "fm1.html"
    result = run_nas("report", "--storage", built["storage"], "--study-name", STUDY, "--out", str(out),
                     cwd=built["folder"])
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    return out


def test_report_is_self_contained(report, built):
    text = report.read_text()
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"?https?://", text), "no external scripts or stylesheets"
    assert text.count("Plotly.newPlot") >= 4  # Pareto, parallel coordinates, hypervolume, robustness plots
    study = optuna.load_study(study_name=STUDY, storage=built["storage"])
    front = sorted(t.number for t in study.best_trials)
    for number in front:
        assert f'id="trial-{number}"' in text
    assert f'id="trial-{built["infeasible"]}"' not in text, "an infeasible trial is not on the feasible front"


def test_report_renders_offline_in_chromium(report, built):
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    study = optuna.load_study(study_name=STUDY, storage=built["storage"])
    front = sorted(t.number for t in study.best_trials)
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(offline=True, viewport={"width": 1300, "height": 900})
        context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else
                      (requested.append(route.request.url), route.abort()))
        page = context.new_page()
        page.set_default_timeout(PATIENCE * 1000)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(report.as_uri())
        page.wait_for_selector("#figure-1 .scatterlayer .point")
        pareto_points = page.locator("#figure-1 .scatterlayer .point").count()
        drawn = page.locator(".plotly-graph-div .main-svg").count()
        rows = page.locator("#front-table tbody tr").count()
        links = page.locator("#front-table tbody a").all_inner_texts()
        ood = page.locator(f"#trial-{built['robust']} .plotly-graph-div").count()
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        browser.close()
    assert not requested, f"the report tried to reach the network: {requested}"
    assert not errors, errors
    assert pareto_points == built["completed"]
    assert drawn >= 4
    assert rows == built["completed"]  # every completed trial, the front ones linked to their sections
    assert links == [f"#{number}" for number in front]
    assert ood == 5  # learning curves, OOD histograms, accuracy-vs-eps, attribution maps, reliability diagram


def test_report_of_a_study_without_completed_trials(built, tmp_path):
    out = tmp_path / "empty.html"
    code, stderr = cli("report", "--storage", built["storage"], "--study-name", "empty", "--out", str(out))
    assert code == 0, stderr
    assert "no completed trial yet" in out.read_text()


def test_report_errors_are_one_line_exit_2(built, tmp_path):
    code, stderr = cli("report", "--storage", f"sqlite:///{tmp_path}/none.db", "--out", str(tmp_path / "r.html"))
    assert code == 2 and "no such file" in stderr and stderr.count("\n") == 1
    code, stderr = cli("report", "--storage", built["storage"], "--study-name", "nope")
    assert code == 2 and "no study named 'nope'" in stderr and "fm1" in stderr
    code, stderr = cli("report", "--storage", built["storage"])
    assert code == 2 and "--study-name is required" in stderr
    code, stderr = cli("report", "--storage", built["storage"], "--study-name", STUDY, "--out", str(tmp_path))
    assert code == 2 and "is a folder" in stderr and stderr.count("\n") == 1
    assert not list(tmp_path.glob("*.html")) and not (tmp_path / "none.db").exists()
