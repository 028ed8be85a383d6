"""Bad configs and options: one clear line naming the key and the allowed values, exit code 2."""
from __future__ import annotations

import pytest

from nas.cli import main

BASE = """
[study]
name = "bad"
storage = "sqlite:///runs/bad.db"
n_trials = 1
[data]
name = "synthetic"
[space]
name = "mlp"
[training]
epochs = 1
[objectives.accuracy]
"""

CASES = {
    "unknown section": (BASE + "[extras]\nfoo = 1\n", ["unknown section [extras]", "allowed: study, data"]),
    "unknown study key": (BASE.replace('n_trials = 1', 'n_trials = 1\ntrials = 3'),
                          ["unknown key study.trials", "allowed:", "n_trials"]),
    "bad sampler": (BASE.replace('n_trials = 1', 'n_trials = 1\nsampler = "bayes"'),
                    ["study.sampler = 'bayes'", "allowed: tpe, nsga2, nsga3, random, gp"]),
    "sampler option it does not take": (BASE.replace('n_trials = 1', 'n_trials = 1\nsampler_options = { warp = 3 }'),
                                        ["study.sampler_options: 'tpe' does not accept the options ['warp']"]),
    "strong-attack requirement without the strong attack": (
        BASE + "[requirements]\n\"adversarial.strong_gap\" = { max = 0.05 }\n",
        ["requirements.adversarial.strong_gap needs the strong attack during the search",
         "objectives.adversarial.strong = true"]),
    "wrong type": (BASE.replace("n_trials = 1", 'n_trials = "many"'), ["study.n_trials must be an integer", "'many'"]),
    "unknown dataset": (BASE.replace('name = "synthetic"', 'name = "imagenet"'),
                        ["data.name = 'imagenet'", "fashion-mnist"]),
    "unknown space": (BASE.replace('name = "mlp"', 'name = "vit"'), ["space.name = 'vit'", "allowed: cnn, mlp"]),
    "unknown objective": (BASE + "[objectives.beauty]\n", ["unknown objective 'beauty'", "allowed:", "accuracy"]),
    "out of range": (BASE.replace("epochs = 1", "epochs = 0"), ["training.epochs = 0 is out of range", "allowed: [1"]),
    "bad range": (BASE.replace("epochs = 1", "epochs = 1\nlr = { low = 0.1, high = 0.01 }"),
                  ["training.lr: low (0.1) must not exceed high (0.01)"]),
    "space value outside limits": (BASE.replace('name = "mlp"', 'name = "mlp"\ndepth = { low = 1, high = 40 }'),
                                   ["space.depth.high = 40 is out of range"]),
    "bad choice in list": (BASE.replace('name = "mlp"', 'name = "mlp"\nactivation = ["relu", "softsign"]'),
                           ["space.activation[1] = 'softsign' is not allowed", "allowed:"]),
    "unknown requirement": (BASE + "[requirements]\nspeed = { min = 1 }\n",
                            ["unknown requirement metric 'speed'", "allowed:"]),
    "malformed requirement": (BASE + "[requirements]\naccuracy = 0.9\n", ["requirements.accuracy must be {min = ..}"]),
    "wrong objective direction": (BASE.replace("[objectives.accuracy]",
                                               '[objectives.accuracy]\ndirection = "minimize"'),
                                  ["objectives.accuracy.direction = 'minimize' is not allowed", "allowed: maximize"]),
    "invalid toml": ("[study\nname=", ["is not valid TOML"]),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_config_gives_one_line_and_exit_2(name, tmp_path, capsys, monkeypatch):
    text, fragments = CASES[name]
    (tmp_path / "bad.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["search", "bad.toml"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("nas: error: ")
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_missing_file_and_bad_cli_values(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["search", "nope.toml"]) == 2
    assert "config file not found: nope.toml" in capsys.readouterr().err
    (tmp_path / "ok.toml").write_text(BASE)
    assert main(["search", "ok.toml", "--sampler", "annealing"]) == 2
    assert "study.sampler (command line) = 'annealing' is not allowed" in capsys.readouterr().err
    assert main(["search", "ok.toml", "--device", "tpu"]) == 2
    assert "device 'tpu' is not allowed; allowed: auto, cpu, cuda, cuda:N" in capsys.readouterr().err
    assert main(["search", "ok.toml", "--n-trials", "lots"]) == 2
    assert "--n-trials must be an integer >= 0, got 'lots'" in capsys.readouterr().err


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    import nas.data

    monkeypatch.setattr(nas.data, "debian_fashion_mnist_dir", lambda: None)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fm.toml").write_text(BASE.replace('name = "synthetic"', 'name = "fashion-mnist"\ndata_dir = "empty"'))
    assert main(["search", "fm.toml"]) == 2
    err = capsys.readouterr().err
    assert ("Fashion-MNIST not found (empty)" in err and "apt-get install dataset-fashion-mnist" in err
            and "--data-dir" in err)


def test_subprocess_error_has_no_traceback(tmp_path, nas_cli):
    (tmp_path / "bad.toml").write_text(CASES["bad sampler"][0])
    result = nas_cli("search", "bad.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
