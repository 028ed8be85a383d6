"""The trials a new study runs first: ``study.enqueue`` checked against what the config searches, and the anchors
(smallest and largest model, robust training on; the largest without it) run before anything is sampled."""
from __future__ import annotations

import copy

import pytest
from conftest import component_text

from nas import config as config_module
from nas import initial_design
from nas.cli import main
from nas.study import Experiment, create_or_load, run_search

TOML = """
[study]
name = "design"
storage = "sqlite:///runs/design.db"
n_trials = {n_trials}
initial_design = "{design}"
{enqueue}
[data]
name = "digits"
train_size = 300
val_size = 100
[space]
name = "cnn"
depth = {{ low = 1, high = 2 }}
channels = [4, 8]
hidden = [0, 16]
ensemble = [1, 2]
[training]
epochs = 1
lr = {{ low = 1e-3, high = 1e-2, log = true }}
[training.adversarial]
enabled = [true, false]
eps = {{ low = 0.05, high = 0.15 }}
[objectives.accuracy]
[objectives.params]
"""


def config_of(tmp_path, n_trials=6, design="anchors", enqueue="", name="design.toml"):
    path = tmp_path / name
    path.write_text(TOML.format(n_trials=n_trials, design=design, enqueue=enqueue))
    config = config_module.load(path)
    return config_module.apply_overrides(config, {"study.storage": f"sqlite:///{tmp_path}/design.db"})


def test_anchors_are_the_extremes_of_the_searched_ranges(tmp_path):
    config = config_of(tmp_path)
    (smallest, _), (largest, _), (plain, _) = initial_design.anchors(config)
    assert smallest == {"cnn.depth": 1, "cnn.block0.channels": 4, "cnn.block0.kernel": 3, "cnn.hidden": 0,
                        "cnn.ensemble": 1, "train.adversarial.enabled": True}
    assert largest == {"cnn.depth": 2, "cnn.block0.channels": 8, "cnn.block0.kernel": 5, "cnn.block1.channels": 8,
                       "cnn.block1.kernel": 5, "cnn.hidden": 16, "cnn.ensemble": 2, "train.adversarial.enabled": True}
    assert plain == {**largest, "train.adversarial.enabled": False}
    # Without a searched robust-training switch: only the two sizes; a fixed option is never named.
    fixed = copy.deepcopy(config)
    fixed["training"]["adversarial"]["enabled"], fixed["space"]["ensemble"] = False, 1
    sizes = initial_design.anchors(fixed)
    assert [origin for _, origin in sizes] == ["anchor: the smallest model", "anchor: the largest model"]
    assert all("train.adversarial.enabled" not in p and "cnn.ensemble" not in p for p, _ in sizes)
    mlp = config_module.resolve({"space": {"name": "mlp", "depth": 2, "width": [32, 64]}})
    assert [params for params, _ in initial_design.anchors(mlp)] == [
        {"mlp.layer0.width": 32, "mlp.layer1.width": 32, "mlp.ensemble": 1},
        {"mlp.layer0.width": 64, "mlp.layer1.width": 64, "mlp.ensemble": 3}]


def test_a_new_study_runs_its_design_first_and_a_resumed_one_does_not_again(tmp_path):
    entry = 'enqueue = [ { cnn.depth = 2, "train.lr" = 0.002, cnn.block1.channels = 4 } ]'
    config = config_of(tmp_path, n_trials=5, enqueue=entry)
    study = create_or_load(config, resume=False)
    run_search(study, Experiment.from_config(config), 5)
    trials = study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 5
    expected = [({"cnn.depth": 2, "train.lr": 0.002, "cnn.block1.channels": 4}, "study.enqueue[0]"),
                *initial_design.anchors(config)]
    for trial, (params, origin) in zip(trials, expected):  # in order, each with every enqueued value; the rest sampled
        assert {key: trial.params[key] for key in params} == params
        assert trial.user_attrs["origin"] == origin
    assert trials[4].system_attrs.get("fixed_params") is None  # sampled as usual after the design

    again = create_or_load(config, resume=True)
    run_search(again, Experiment.from_config(config), 6)
    assert len(again.get_trials(deepcopy=False)) == 6
    assert again.get_trials(deepcopy=False)[5].system_attrs.get("fixed_params") is None


def test_the_design_is_cut_to_the_trial_budget(tmp_path):
    config = config_of(tmp_path, n_trials=2)
    assert initial_design.plan(config) == initial_design.anchors(config)[:2]
    assert [origin for _, origin in initial_design.plan(config)] == [
        "anchor: the smallest model, robust training on", "anchor: the largest model, robust training on"]
    assert initial_design.plan(config_of(tmp_path, design="none")) == []


def test_a_robust_start_up_runs_first_with_every_searched_robust_scheme_on(tmp_path):
    config = config_of(tmp_path, n_trials=6, design="robust")
    design = initial_design.plan(config)
    assert design == [({"train.adversarial.enabled": True}, f"robust start-up {i}/4: adversarial training on")
                      for i in range(1, 5)]
    study = create_or_load(config, resume=False)
    run_search(study, Experiment.from_config(config), 6)
    trials = study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6
    assert all(t.params["train.adversarial.enabled"] is True and t.user_attrs["origin"] == origin
               for t, (_, origin) in zip(trials[:4], design))
    # Everything else of those trials is sampled (not all alike), and the sampler takes over after them.
    assert len({(t.params["cnn.depth"], t.params["train.lr"]) for t in trials[:4]}) == 4
    assert all("origin" not in t.user_attrs and t.system_attrs.get("fixed_params") is None for t in trials[4:])
    assert initial_design.plan(config_of(tmp_path, n_trials=2, design="robust")) == design[:2]


BAD = {
    "unknown parameter": ('enqueue = [ { "cnn.widht" = 8 } ]',
                          ["study.enqueue[0]: unknown parameter 'cnn.widht'", "this config searches", "cnn.depth",
                           "train.lr"]),
    "deeper block than the entry's depth": ('enqueue = [ { cnn.depth = 1, cnn.block1.channels = 4 } ]',
                                            ["unknown parameter 'cnn.block1.channels'"]),
    "empty entry": ('enqueue = [ {}, { cnn.depth = 3 } ]',
                                         ["study.enqueue[0] must be a non-empty table"]),
    "out of range": ('enqueue = [ { cnn.depth = 3 } ]',
                     ["study.enqueue[0]: cnn.depth = 3 is outside what the config searches (an integer in [1, 2])"]),
    "a value sample() cannot take": ('enqueue = [ { cnn.depth = "two" } ]',
                                     ["cnn.depth = 'two' is outside what the config searches (an integer in [1, 2])"]),
    "not a choice": ('enqueue = [ { "cnn.block0.channels" = 16 } ]', ["one of 4, 8"]),
    "wrong type": ('enqueue = [ { "train.adversarial.enabled" = "yes" } ]', ["one of True, False"]),
    "not a table": ('enqueue = [ 3 ]', ["study.enqueue[0] must be a non-empty table of trial parameters"]),
    "unknown design": ("", ["study.initial_design = 'corners' is not allowed", "anchors, robust, none"]),
    "robust start-up without a searched switch": ("", ["study.initial_design = 'robust' needs a searched "
                                                       "robust-training switch", "[training.adversarial] enabled"]),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_entry_is_one_line_naming_it(case, tmp_path, capsys, monkeypatch):
    enqueue, fragments = BAD[case]
    design = {"unknown design": "corners", "robust start-up without a searched switch": "robust"}.get(case, "anchors")
    text = TOML.format(n_trials=3, design=design, enqueue=enqueue)
    if design == "robust":
        text = text.replace("enabled = [true, false]", "enabled = false")
    (tmp_path / "bad.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["search", "bad.toml"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("nas: error: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not (tmp_path / "runs").exists()  # nothing was created


def test_a_warm_start_runs_the_front_of_another_study_first(tmp_path):
    """A cheap search's front seeds a new one: each front trial's parameters that the new config searches, in
    trial order (here channels are fixed at 8, so the source's channel choices are left out)."""
    source = config_of(tmp_path, n_trials=4, design="none")
    cheap = create_or_load(source, resume=False)
    run_search(cheap, Experiment.from_config(source), 4)
    front = sorted(cheap.best_trials, key=lambda t: t.number)

    (tmp_path / "full.toml").write_text(
        TOML.format(n_trials=len(front) + 1, design="none",
                    enqueue=f'warm_start = {{ storage = "sqlite:///{tmp_path}/design.db", study = "design" }}')
        .replace('name = "design"', 'name = "full"').replace("channels = [4, 8]", "channels = 8")
        .replace("sqlite:///runs/design.db", f"sqlite:///{tmp_path}/full.db"))
    config = config_module.load(tmp_path / "full.toml")
    study = create_or_load(config, resume=False)
    waiting = study.get_trials(deepcopy=False)
    assert len(waiting) == len(front) and all(t.state.name == "WAITING" for t in waiting)
    for trial, best in zip(waiting, front):
        fixed = trial.system_attrs["fixed_params"]
        assert fixed == {k: v for k, v in best.params.items() if not k.endswith(".channels")}, (fixed, best.params)
        assert trial.user_attrs["origin"] == f"warm start: trial {best.number} of study 'design'"
    run_search(study, Experiment.from_config(config), len(front) + 1)
    assert [t.state.name for t in study.get_trials(deepcopy=False)] == ["COMPLETE"] * (len(front) + 1)
    # the dashboard's trial view says where an enqueued trial comes from
    from nas.dashboard import callbacks
    from nas.dashboard.source import StudySource

    snap = StudySource(config["study"]["storage"]).snapshot("full")
    page = component_text(callbacks.trial_body(snap, snap.trials[0]))
    assert f"Run first, from warm start: trial {front[0].number} of study 'design'" in page


def test_a_warm_start_that_cannot_be_read_creates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.toml").write_text(TOML.format(n_trials=2, design="none",
                                                 enqueue='warm_start = { storage = "sqlite:///runs/none.db" }'))
    assert main(["search", "w.toml"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "study.warm_start: storage sqlite:///runs/none.db" in err, err
    assert not (tmp_path / "runs").exists()


def test_stored_config_keeps_no_warm_start_password(tmp_path):
    from nas.study import _storable

    config = config_of(tmp_path)
    config["study"]["warm_start"]["storage"] = "postgresql://nas:s3cret@db.example/nas"
    assert "s3cret" not in str(_storable(config))
