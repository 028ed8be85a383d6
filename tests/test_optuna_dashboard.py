"""optuna-dashboard, which users already run on Optuna studies, stays usable on ours: a real search served by the
real optuna-dashboard, its trial list opened in real Chromium at a 1,600 px wide window.

optuna-dashboard prints every user attribute of the selected trial on one line each; with the bulky results kept
as user attributes (before ``nas.records``) the trial list page was about 8,000 px wide.
"""
from __future__ import annotations

import threading
import urllib.error
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from optuna.artifacts import FileSystemArtifactStore

from conftest import ARTIFACTS, PATIENCE, smoke_study, wait_for
from nas.storage import open_existing_storage

optuna_dashboard = pytest.importorskip("optuna_dashboard", reason="pip install 'robust-nas[dev]' installs it")

VIEWPORT = {"width": 1600, "height": 1000}
MAX_PAGE_WIDTH = 3000  # px, at the 1,600 px window: a little sideways scrolling at most
MAX_ROW_HEIGHT = 300  # px, a trial's entry in the list and its block of user attributes


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # one line per request would drown the test output
        pass


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A two-trial smoke search in a temporary SQLite file, served by optuna-dashboard on a free port."""
    folder = tmp_path_factory.mktemp("optuna-dashboard")
    storage = f"sqlite:///{folder / 'nas.db'}"
    _, study = smoke_study(storage, 2)
    study_id = open_existing_storage(storage).get_study_id_from_name(study.study_name)
    app = optuna_dashboard.wsgi(storage, artifact_store=FileSystemArtifactStore(str(folder / "artifacts")))
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    wait_for(lambda: _answers(f"{url}/api/studies"), "optuna-dashboard to answer")
    yield url, study_id
    server.shutdown()
    server.server_close()
    thread.join(timeout=30)


def test_trial_list_has_sane_width_and_row_heights(served, browser):
    url, study_id = served
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(PATIENCE * 1000)
    try:
        page.goto(f"{url}/dashboard/studies/{study_id}/trials")
        page.wait_for_selector("li:has-text('Trial 1')")  # the trial list
        page.wait_for_selector("text=User Attributes")  # the selected trial's details, attributes included
        page.wait_for_selector("text=weights_artifact")  # the last attribute written when a trial ends
        width = page.evaluate("() => document.documentElement.scrollWidth")
        rows = page.evaluate("""() => Array.from(document.querySelectorAll('li'))
            .filter(li => /^Trial \\d+/.test(li.innerText)).map(li => li.getBoundingClientRect().height)""")
        attributes = page.evaluate("""() => {
            const label = Array.from(document.querySelectorAll('*'))
                .find(e => e.children.length == 0 && e.textContent.trim() == 'User Attributes');
            let block = label;  // climb to the label's row, whose other cell holds the attributes
            while (block && block.getBoundingClientRect().height < 20) block = block.parentElement;
            const value = block.nextElementSibling || block.parentElement.nextElementSibling || block;
            return value.getBoundingClientRect().height;
        }""")
        page.screenshot(path=str(ARTIFACTS / "optuna-dashboard-trials.png"), full_page=True)
    finally:
        page.close()
    assert len(rows) == 2, rows
    assert width < MAX_PAGE_WIDTH, f"the trial list page is {width} px wide at a {VIEWPORT['width']} px window"
    assert max(rows) < MAX_ROW_HEIGHT, rows
    assert attributes < MAX_ROW_HEIGHT, f"the user attributes of one trial take {attributes} px"
