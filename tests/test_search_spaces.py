"""Every sampled spec builds, runs, round-trips through JSON; ensembles average probabilities."""
from __future__ import annotations

import json

import optuna
import pytest
import torch

import search_spaces
from search_spaces import Ensemble, SpecError

SHAPES = {"image": [1, 28, 28], "small-image": [1, 8, 8], "signal": [1, 40], "rgb": [3, 16, 16]}


def _specs(space: str, shape: list[int], n: int = 12):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(n):
        trial = study.ask()
        spec = search_spaces.get(space).sample(trial)
        spec.update(input_shape=shape, num_classes=7, normalize={"mean": [0.5] * shape[0], "std": [0.25] * shape[0]})
        study.tell(trial, 0.0)
        yield spec


@pytest.mark.parametrize("space", ["mlp", "cnn"])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_sampled_specs_build_run_and_round_trip(space, shape):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for spec in _specs(space, shape):
        restored = json.loads(json.dumps(spec))
        assert restored == spec
        model = search_spaces.build(restored).eval()
        with torch.no_grad():
            out = model(torch.rand(5, *shape))
        assert out.shape == (5, 7)
        assert torch.isfinite(out).all()
        assert isinstance(search_spaces.summary(spec), str)


def test_cnn_space_covers_cardinality_and_ensembles():
    seen_cardinality, seen_ensemble = set(), set()
    for spec in _specs("cnn", [1, 28, 28], n=40):
        seen_cardinality.add(spec["cardinality"])
        seen_ensemble.add(spec["ensemble"])
        for block in spec["blocks"]:
            assert block["channels"] % spec["cardinality"] == 0
    assert len(seen_cardinality) >= 3 and len(seen_ensemble) >= 2


def test_grouped_block_uses_grouped_convolution():
    spec = {"space": "cnn", "input_shape": [1, 8, 8], "num_classes": 3,
            "blocks": [{"channels": 16, "kernel": 3, "pool": "max"}],
            "cardinality": 4, "batch_norm": True, "activation": "relu", "dropout": 0.0, "hidden": 0, "ensemble": 1}
    model = search_spaces.build(spec)
    groups = [m.groups for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert 4 in groups


def test_ensemble_output_is_average_of_member_probabilities():
    spec = next(_specs("cnn", [1, 8, 8]))
    spec["ensemble"] = 3
    torch.manual_seed(0)
    model = search_spaces.build(spec).eval()
    assert isinstance(model, Ensemble) and len(model.members) == 3
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        averaged = torch.stack([torch.softmax(m(x), 1) for m in model.members]).mean(0)
        assert torch.allclose(torch.softmax(model(x), 1), averaged, atol=1e-6)
        # members are independently initialised: they disagree
        assert not torch.allclose(model.members[0](x), model.members[1](x))


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"space": "transformer"}, "unknown search space 'transformer'"),
        ({"blocks": []}, "spec.blocks must hold"),
        ({"cardinality": 3}, "spec.cardinality must be one of"),
        ({"blocks": [{"channels": 10, "kernel": 3, "pool": "max"}], "cardinality": 4}, "divisible by cardinality"),
        ({"activation": "swish2"}, "spec.activation must be one of"),
        ({"ensemble": 0}, "spec.ensemble must be an int"),
        ({"input_shape": [28, 28, 1, 1]}, "spec.input_shape"),
    ],
)
def test_build_rejects_invalid_specs(change, fragment):
    spec = {"space": "cnn", "input_shape": [1, 8, 8], "num_classes": 3,
            "blocks": [{"channels": 8, "kernel": 3, "pool": "max"}],
            "cardinality": 1, "batch_norm": True, "activation": "relu", "dropout": 0.0, "hidden": 0, "ensemble": 1}
    spec.update(change)
    with pytest.raises(SpecError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        search_spaces.build(spec)


def test_deep_cnn_with_batch_norm_builds_when_maps_shrink_to_one_pixel():
    spec = {"space": "cnn", "input_shape": [1, 8, 8], "num_classes": 3, "cardinality": 2, "batch_norm": True,
            "blocks": [{"channels": 8, "kernel": 3, "pool": "max"}] * 5, "activation": "relu", "dropout": 0.0,
            "hidden": 0, "ensemble": 1}
    model = search_spaces.build(spec)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 3)
