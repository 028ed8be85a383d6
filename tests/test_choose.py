"""Choosing a model in the dashboard: the front table, recipe encodings, the suggested pick, importance and
sane axes, on synthetic studies (no training), in real headless Chromium where it is installed."""
from __future__ import annotations

import pytest

from choose_study import NAMES, make_study
from conftest import ARTIFACTS, PATIENCE
from test_dashboard import Server, trial_point_center

MANY = 24


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    folder = tmp_path_factory.mktemp("choose")
    make_study(folder, "many", MANY)
    make_study(folder, "one", 1)
    return make_study(folder, "few", 4)


@pytest.fixture(scope="module")
def snaps(storage):
    from nas.dashboard.source import StudySource

    source = StudySource(storage)
    return {name: source.snapshot(name) for name in ("many", "one", "few")}


# --------------------------------------------------------------------------------------------- plain data
def test_table_rows_name_the_recipe_and_the_requirement_result(snaps):
    from nas.dashboard import choose

    snap = snaps["many"]
    rows = choose.table_rows(snap)
    assert [r["trial"] for r in rows] == [t.number for t in snap.completed]
    for row, trial in zip(rows, snap.completed):
        adversarial = snap.record(trial)["recipe"]["adversarial"]["enabled"]
        assert ("adversarial training" in row["family"]) == adversarial
        assert ("adversarial training" in row["recipe"]) == adversarial  # nas.card.recipe_text's words
        assert row["requirements"] == ("PASS" if trial.user_attrs["feasible"] else "FAIL: accuracy")
        assert (row["front"] == "yes") == (trial.number in snap.front)
    assert {r["family"] for r in rows} == set(choose.FAMILIES), "the synthetic study mixes every recipe family"


def test_suggested_pick_is_the_feasible_front_model_with_the_best_worst_objective(snaps):
    from nas.dashboard import choose

    snap = snaps["many"]
    advice = choose.recommendation(snap)
    front = [t for t in snap.completed if t.number in advice["feasible"]]
    assert front and all(snap.feasible(t) and t.number in snap.front for t in front)
    scores = choose.scaled(front, snap)
    worst = {number: min(values) for number, values in scores.items()}
    assert advice["pick"] == max(worst, key=lambda n: (worst[n], sum(scores[n]), -n))
    assert worst[advice["pick"]] > min(worst.values()), "the rule must discriminate between front models"
    assert f"trial {advice['pick']}" in advice["why"] and "best worst-scaled objective" in advice["rule"]


def test_importance_per_objective_or_a_clear_message(snaps, tmp_path):
    from nas.dashboard import choose, figures
    from nas.dashboard.source import StudySource

    # 40 trials: with fewer, PED-ANOVA's top quantile holds too few trials with the conditional eps to rank it fairly
    study = StudySource(make_study(tmp_path, "importance", 40)).snapshot("importance")
    values, message = choose.importances(study)
    assert message is None and list(values) == NAMES
    for name in NAMES:
        assert set(values[name]) == set(study.completed[0].params) | {"train.adversarial.eps"}
        assert abs(sum(values[name].values()) - 1) < 1e-6
    # outlier exposure is what lifts OOD AUROC in this study, the adversarial eps what lifts PGD accuracy, and the
    # architecture (width and depth) alone sets the parameter count
    assert max(values["ood"], key=values["ood"].get) == "train.outlier_exposure.enabled"
    assert max(values["adversarial"], key=values["adversarial"].get) == "train.adversarial.eps"
    assert values["params"]["space.channels"] + values["params"]["space.depth"] > 0.8
    figure = figures.importance_figure(values)
    assert [t.name for t in figure.data] == NAMES and all(t.type == "bar" for t in figure.data)
    values, message = choose.importances(snaps["few"])
    assert values == {} and "at least 8 completed trials" in message and "has 4" in message
    assert message in figures.importance_figure(values, message).layout.annotations[0].text


def test_one_completed_trial_draws_sane_axes(snaps):
    from nas.dashboard import choose, figures

    assert choose.scaled(snaps["one"].completed, snaps["one"]) == {0: [1.0] * len(NAMES)}, "alone is best, not worst"

    snap = snaps["one"]
    trial = snap.completed[0]
    figure = figures.pareto_figure(snap, "accuracy", "ood")
    for axis, value in ((figure.layout.xaxis, trial.values[0]), (figure.layout.yaxis, trial.values[1])):
        low, high = axis.range
        assert low < value < high and high - low <= 0.2 * abs(value), (axis.range, value)


def test_parallel_coordinates_cover_searched_parameters_and_brushes_filter(snaps):
    from nas.dashboard import figures

    snap = snaps["many"]
    keys = [key for key, _ in figures.parallel_dimensions(snap)]
    assert keys[:1 + len(NAMES)] == ["trial", *(f"objective:{n}" for n in NAMES)]
    assert "param:train.adversarial.enabled" in keys and "param:train.adversarial.eps" in keys
    kept = figures.brushed(snap, {"objective:accuracy": [[0.8, 1.0]]})
    assert kept == {t.number for t in snap.completed if t.values[0] >= 0.8} and 0 < len(kept) < len(snap.completed)
    figure = figures.parallel_figure(snap, brushes={"objective:accuracy": [[0.8, 1.0]]})
    assert list(figure.data[0].dimensions[1].constraintrange) == [0.8, 1.0]


# ------------------------------------------------------------------------------------------ real browser
@pytest.fixture(scope="module")
def server(storage):
    from nas.dashboard import create_app

    running = Server(create_app(storage, "many", refresh_seconds=30.0))
    yield running
    running.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    opened = context.new_page()
    opened.set_default_timeout(PATIENCE * 1000)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(server.url)
    opened.wait_for_selector("#front-table td[data-dash-column=trial]")
    opened.wait_for_selector("#pareto-graph .scatterlayer .point")
    yield opened
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def _column(page, column: str) -> list[str]:
    return page.locator(f"#front-table td[data-dash-column={column}]").all_inner_texts()


def _ringed(page) -> int | None:
    """Points in the explorer's 'shortlisted' trace, or None when there is none (no filter applied)."""
    return page.evaluate("""() => {
        const gd = document.querySelector('#pareto-graph .js-plotly-plot');
        const ring = gd.data.find(t => (t.name || '').startsWith('shortlisted'));
        return ring ? ring.customdata.length : null;
    }""")


def test_table_sorts_filters_and_highlights_the_rows_left(page, snaps):
    from nas.dashboard import choose

    snap = snaps["many"]
    assert len(_column(page, "trial")) == len(snap.completed)
    assert _ringed(page) is None
    assert "meet every requirement" in page.inner_text("#recommendation")
    page.screenshot(path=str(ARTIFACTS / "choose-first-screen.png"))

    page.click("#front-table th[data-dash-column=accuracy] .column-header--sort")
    page.wait_for_function("""() => {
        const v = [...document.querySelectorAll('#front-table td[data-dash-column=accuracy]')].map(c => +c.innerText);
        return v.length > 1 && v.every((x, i) => i == 0 || v[i - 1] <= x);
    }""")
    threshold = 0.8
    expected = sorted(t.number for t in snap.completed if round(t.values[0], 4) >= threshold)
    assert 0 < len(expected) < len(snap.completed)
    cell = page.locator("#front-table th.dash-filter[data-dash-column=accuracy] input[type=text]")
    cell.fill(f">= {threshold}")
    cell.press("Enter")
    page.wait_for_function(f"""() => document.querySelectorAll(
        '#front-table td[data-dash-column=trial]').length == {len(expected)}""")
    assert sorted(int(n) for n in _column(page, "trial")) == expected
    page.wait_for_function(f"""() => {{
        const gd = document.querySelector('#pareto-graph .js-plotly-plot');
        const ring = gd && gd.data.find(t => (t.name || '').startsWith('shortlisted'));
        return ring && ring.customdata.length == {len(expected)};
    }}""")
    ringed = page.evaluate("""() => document.querySelector('#pareto-graph .js-plotly-plot').data
        .find(t => t.name.startsWith('shortlisted')).customdata""")
    assert sorted(ringed) == expected
    page.screenshot(path=str(ARTIFACTS / "choose-filtered.png"), full_page=True)

    plain = [n for n in expected if choose.recipe_family(snap.record(snap.trial(n))) == choose.PLAIN]
    assert plain and len(plain) < len(expected), "the recipe filter must remove some rows and keep others"
    page.click("#family-filter input[value='plain']")  # the recipe filter narrows the same shortlist
    page.wait_for_function(f"""() => document.querySelectorAll(
        '#front-table td[data-dash-column=trial]').length == {len(expected) - len(plain)}""")
    assert sorted(int(n) for n in _column(page, "trial")) == sorted(set(expected) - set(plain))


def test_hover_names_the_recipe_and_the_legend_lists_the_recipes_present(page, snaps):
    from nas.dashboard import choose

    snap = snaps["many"]
    names = page.evaluate("() => document.querySelector('#pareto-graph .js-plotly-plot').data"
                          ".filter(t => t.legendgroup == 'recipe').map(t => t.name)")
    present = {choose.recipe_family(snap.record(t)) for t in snap.completed}
    assert {n.rsplit(" (", 1)[0] for n in names} == present
    legend = " ".join(page.locator("#pareto-graph .legend .legendtext").all_text_contents())
    for family in present:
        assert family in legend
    front = next(t for t in snap.completed if t.number in snap.front)
    page.locator("#pareto-graph").scroll_into_view_if_needed()
    box = trial_point_center(page, front.number)
    page.mouse.move(box["x"], box["y"])
    page.wait_for_selector("#pareto-graph .hoverlayer .hovertext", timeout=30_000)
    hover = " ".join(page.locator("#pareto-graph .hoverlayer text").all_text_contents())
    assert f"trial {front.number}" in hover and choose.recipe_family(snap.record(front)) in hover and "recipe:" in hover
    labels = page.locator("#pareto-graph .scatterlayer .textpoint").all_text_contents()
    assert f"#{front.number}" in labels  # front points are labelled with their trial number
    page.screenshot(path=str(ARTIFACTS / "choose-hover.png"))


def test_importance_bars_for_every_objective_and_a_message_for_few_trials(page):
    page.wait_for_selector("#importance-graph .barlayer")
    traces = page.evaluate("() => document.querySelector('#importance-graph .js-plotly-plot').data"
                           ".map(t => [t.type, t.name])")
    assert traces == [["bar", name] for name in NAMES]
    page.locator("#importance-graph").screenshot(path=str(ARTIFACTS / "choose-importance.png"))
    page.locator("#parallel-graph").screenshot(path=str(ARTIFACTS / "choose-parallel.png"))
    page.click("#study")
    page.get_by_role("option", name="few", exact=True).click()
    page.wait_for_selector("#importance-graph >> text=needs at least 8 completed trials")
    assert page.locator("#importance-graph .barlayer").count() == 0


def test_equal_accuracy_ratios_are_drawn_with_their_verdict(page):
    """Adversarial training triples PGD accuracy in the synthetic study at any accuracy: drawn green, with its
    interval; outlier exposure's PGD ratio has no interval there (one trial per matched bin) and is grey."""
    from nas.dashboard.figures import BETTER_COLORS

    page.wait_for_selector("#analysis-graph .scatterlayer .point")
    traces = page.evaluate("() => document.querySelector('#analysis-graph .js-plotly-plot').data"
                           ".map(t => [t.xaxis, t.name, t.marker.color, t.error_x.visible])")
    assert ["x", "adversarial.pgd_accuracy", BETTER_COLORS["a"], True] in traces, traces
    assert ["x2", "adversarial.pgd_accuracy", BETTER_COLORS["undecided"], False] in traces, traces
    titles = page.locator("#analysis-graph .annotation-text").all_text_contents()
    assert "adversarial training / no adversarial training" in titles, titles
    page.locator("#analysis-graph").screenshot(path=str(ARTIFACTS / "choose-equal-accuracy.png"))


def test_one_trial_study_in_the_browser(page, snaps):
    page.click("#study")
    page.get_by_role("option", name="one", exact=True).click()
    page.wait_for_function("() => document.querySelectorAll('#front-table td[data-dash-column=trial]').length == 1")
    page.wait_for_function("() => document.querySelectorAll('#pareto-graph .scatterlayer .point').length == 1")
    ticks = page.locator("#pareto-graph .xtick text").all_text_contents()
    value = snaps["one"].completed[0].values[0]
    numbers = [float(t.replace("\u2212", "-")) for t in ticks]
    assert min(numbers) > value - 0.1 and max(numbers) < value + 0.1, ticks  # not -0.5 .. 1.8
    page.screenshot(path=str(ARTIFACTS / "choose-one-trial.png"))


# ------------------------------------------------------------------------------------------------ report
def test_report_table_sorts_links_and_shows_why(snaps, browser, tmp_path):
    from nas.dashboard import choose
    from nas.report import write_report

    snap = snaps["many"]
    out = write_report(snap, tmp_path / "many.html")
    text = out.read_text()
    pairs = len(NAMES) * (len(NAMES) - 1) // 2
    assert text.count("against") >= pairs, "every pair of objectives is drawn"
    for trial in snap.completed:
        if trial.number in snap.front:
            assert f'href="#trial-{trial.number}"' in text and f'id="trial-{trial.number}"' in text
    assert choose.recipe_words(snap.record(snap.completed[0])) in text
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(PATIENCE * 1000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(out.as_uri())
    page.wait_for_selector("#front-table tbody tr")
    column = 1 + choose.table_columns(snap).index("accuracy")
    read = (f"() => [...document.querySelectorAll('#front-table tbody tr td:nth-child({column})')]"
            ".map(c => +c.innerText)")
    before = page.evaluate(read)
    assert before != sorted(before), "rows start in trial order"
    page.click("#front-table th:has-text('accuracy')")
    values = page.evaluate(read)
    assert values == sorted(before)
    page.click("#front-table th:has-text('accuracy')")
    assert page.evaluate(read) == sorted(values, reverse=True)
    bars = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')]"
                         ".flatMap(g => g.data.filter(t => t.type == 'bar' && t.orientation == 'h').map(t => t.name))")
    assert bars == NAMES
    ratios = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')]"
                           ".flatMap(g => g.data.filter(t => t.error_x && t.error_x.visible).map(t => t.name))")
    assert "adversarial.pgd_accuracy" in ratios and "Robustness at equal accuracy" in text
    page.screenshot(path=str(ARTIFACTS / "choose-report.png"))
    page.close()
    assert not errors, errors
