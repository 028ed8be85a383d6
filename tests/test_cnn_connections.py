"""The richer CNN space (issue 13, item 3): residual and dense connections between blocks, depth up to 8; every
sampled spec builds, trains a step, exports and reloads (our packages blocked) to identical outputs; old specs build
as before."""
from __future__ import annotations

import optuna
import pytest
import torch
from conftest import assert_exports_reload_identically

import search_spaces
from nas import config as config_module
from nas.errors import UsageError
from search_spaces import SpecError
from search_spaces.cnn import PARAMS

RICH = {"depth": {"low": 1, "high": PARAMS["depth"]["high"]}, "channels": {"low": 4, "high": 12},
        "cardinality": [1, 2, 4], "connections": ["plain", "residual", "dense"], "kernel": [1, 3, 5],
        "pool": ["max", "avg", "none"], "batch_norm": [True, False], "activation": ["relu", "gelu", "tanh"],
        "dropout": {"low": 0.0, "high": 0.3}, "hidden": [0, 8], "ensemble": [1, 2]}
SHAPES = ([1, 28, 28], [3, 9, 7], [2, 30])
BASE = {"space": "cnn", "input_shape": [1, 8, 8], "num_classes": 3, "cardinality": 1, "batch_norm": False,
        "activation": "relu", "dropout": 0.0, "hidden": 0, "ensemble": 1,
        "blocks": [{"channels": 4, "kernel": 3, "pool": "none"}, {"channels": 4, "kernel": 3, "pool": "max"}]}

def _sampled(n: int = 12) -> list[dict]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=13))
    specs = []
    for index in range(n):
        trial = study.ask()
        shape = SHAPES[index % len(SHAPES)]
        spec = {**search_spaces.get("cnn").sample(trial, RICH), "input_shape": shape, "num_classes": 4,
                "normalize": {"mean": [0.2] * shape[0], "std": [0.5] * shape[0]}}
        study.tell(trial, 0.0)
        specs.append(spec)
    return specs


def test_the_rich_space_reaches_every_connection_and_deep_stacks():
    specs = _sampled(30)
    assert {spec["connections"] for spec in specs} == {"plain", "residual", "dense"}
    assert max(len(spec["blocks"]) for spec in specs) >= 6


def test_every_sampled_spec_builds_trains_a_step_exports_and_reloads_identically(tmp_path):
    specs, trained = _sampled(), []
    for index, spec in enumerate(specs):
        torch.manual_seed(index)
        model = search_spaces.build(spec).train()
        x, y = torch.rand(6, *spec["input_shape"]), torch.arange(6) % 4
        before = [p.detach().clone() for p in model.parameters()]
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss), spec
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), spec
        trained.append((spec, model))
    assert all(logits.shape == (5, 4) for logits in assert_exports_reload_identically(tmp_path, trained))


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_residual_and_dense_parameter_counts_and_shapes():
    # plain: conv 1->4 k3 (36 + 4), conv 4->4 k3 (144 + 4), pool to 4x4, linear 64->3 (192 + 3)
    plain = search_spaces.build({**BASE, "connections": "plain"})
    assert _count(plain) == 40 + 148 + 195
    # residual: the first block's shortcut projects 1->4 channels (1x1, no bias: 4); the second's is the identity
    residual = search_spaces.build({**BASE, "connections": "residual"})
    assert _count(residual) == 40 + 4 + 148 + 195
    # dense: block 2 sees 1 + 4 = 5 channels (180 + 4); its 1 + 4 + 4 = 9 are compressed to 4 by the transition
    # before the pool (36 + 4); linear 64->3
    dense = search_spaces.build({**BASE, "connections": "dense"})
    assert _count(dense) == 40 + 184 + 40 + 195
    # dense without a pool: no transition, the classifier sees all 9 channels of the 8x8 map
    unpooled = {**BASE, "connections": "dense", "blocks": [{"channels": 4, "kernel": 3, "pool": "none"}] * 2}
    assert _count(search_spaces.build(unpooled)) == 40 + 184 + 9 * 64 * 3 + 3
    x = torch.rand(5, 1, 8, 8)
    for model in (plain, residual, dense, search_spaces.build(unpooled)):
        assert model(x).shape == (5, 3)


def test_residual_adds_the_shortcut_and_dense_keeps_its_input():
    torch.manual_seed(0)
    spec = {**BASE, "blocks": [{"channels": 4, "kernel": 3, "pool": "none"}] * 2}
    residual = search_spaces.build({**spec, "connections": "residual"}).eval()
    second = residual.features[1]
    with torch.no_grad():
        for parameter in second.body.parameters():
            parameter.zero_()  # a dead body: the block passes its input through (ReLU of the identity shortcut)
        x = torch.rand(3, 4, 8, 8)
        assert torch.equal(second(x), torch.relu(x))
    dense = search_spaces.build({**spec, "connections": "dense"}).eval()
    with torch.no_grad():
        x = torch.rand(3, 1, 8, 8)
        features = dense.features(dense.normalize(x))
    assert features.shape == (3, 9, 8, 8)
    torch.testing.assert_close(features[:, :1], dense.normalize(x))  # the stage input, concatenated through


def test_old_specs_build_exactly_as_before():
    """A spec stored before ``connections`` existed builds the plain network: same modules, keys and outputs."""
    old = {k: v for k, v in {**BASE, "cardinality": 2, "batch_norm": True}.items()}
    old["blocks"] = [{"channels": 4, "kernel": 3, "pool": "none"}, {"channels": 8, "kernel": 3, "pool": "max"}]
    torch.manual_seed(0)
    legacy = search_spaces.build(old).eval()
    torch.manual_seed(0)
    plain = search_spaces.build({**old, "connections": "plain"}).eval()
    assert list(legacy.state_dict()) == list(plain.state_dict())
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(legacy(x), plain(x))
    keys = list(search_spaces.build(BASE).state_dict())  # the cardinality-1 plain chain has no shortcut
    assert keys == ["normalize.mean", "normalize.std", "features.0.body.0.weight", "features.0.body.0.bias",
                    "features.1.body.0.weight", "features.1.body.0.bias", "classifier.2.weight", "classifier.2.bias"]
    assert search_spaces.summary(BASE) == "cnn 4k3-4k3m"
    assert search_spaces.summary({**BASE, "connections": "dense"}) == "cnn 4k3-4k3m dense"


def test_connections_and_depth_are_validated_in_specs_and_configs():
    with pytest.raises(SpecError, match=r"spec\.connections must be one of \['plain', 'residual', 'dense'\]"):
        search_spaces.build({**BASE, "connections": "skip"})
    with pytest.raises(SpecError, match="spec.blocks must hold 1-8 blocks, got 9"):
        search_spaces.build({**BASE, "blocks": [BASE["blocks"][0]] * 9})
    assert _count(search_spaces.build({**BASE, "blocks": [BASE["blocks"][0]] * 8})) > 0
    raw = {"data": {"name": "synthetic"}, "space": {"name": "cnn", "connections": ["plain", "skip"]}}
    with pytest.raises(UsageError, match=r"space\.connections\[1\] = 'skip' is not allowed; allowed: plain, residual, "
                                         "dense"):
        config_module.resolve(raw)
    with pytest.raises(UsageError, match=r"space\.depth\.high = 9 is out of range; allowed: \[1, 8\]"):
        config_module.resolve({**raw, "space": {"name": "cnn", "depth": {"low": 1, "high": 9}}})
    resolved = config_module.resolve({**raw, "space": {"name": "cnn", "connections": ["residual", "dense"]}})
    assert resolved["space"]["connections"] == ["residual", "dense"]
