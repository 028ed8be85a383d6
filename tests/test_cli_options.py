"""Every option of every sub-command refuses the values its validator rules out: one line naming it, exit 2.

The cases are generated from the real parser: each option's ``type`` (a :mod:`nas.cli_types` validator)
declares what it accepts, so an option added anywhere is covered, and one added without a validator fails.
"""
from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from nas.cli import build_parser, main
from nas.cli_types import Number, Text


def sub_commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def value_options(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """The options and positionals that take a value (not flags, not --help)."""
    return (action for action in parser._actions if action.nargs != 0)


def invalid_texts(kind: Number | Text) -> dict[str, str]:
    """What the validator's declaration rules out, as command-line text."""
    if isinstance(kind, Text):
        return {"empty": "", "blank": "  "}
    cases = {"not a number": "many", "empty": "", "nan": "nan", "inf": "inf", "-inf": "-inf"}
    if kind.kind is int:
        cases["fraction"] = "1.5"
    if kind.low is not None:
        cases["below low"] = str(kind.kind(kind.low if kind.low_open else kind.low - 1))
    if kind.high is not None:
        cases["above high"] = str(kind.kind(kind.high + 1))
    return cases


def valid_text(action: argparse.Action) -> str:
    if action.choices:
        return str(next(iter(action.choices)))
    kind = action.type
    if isinstance(kind, Number):
        low = kind.low if kind.low is not None else 0
        return str(kind.kind(low + 1 if kind.low_open else low))
    return "x"


def argv_with(command: str, parser: argparse.ArgumentParser, given: dict[argparse.Action, str]) -> list[str]:
    """``command`` with the ``given`` values and every other required option and positional filled in validly."""
    options, positionals = [], []
    for action in value_options(parser):
        text = given.get(action, valid_text(action))
        if action.option_strings and (action.required or action in given):
            options.append(f"{action.option_strings[-1]}={text}")
        elif not action.option_strings:
            positionals.append(text)
    return [command, *options, *(["--", *positionals] if positionals else [])]


CASES = {f"{command} {action.dest}": (command, action.dest) for command, parser in sub_commands().items()
         for action in value_options(parser)}


def _action(command: str, dest: str) -> tuple[argparse.ArgumentParser, argparse.Action]:
    parser = sub_commands()[command]
    return parser, next(action for action in value_options(parser) if action.dest == dest)


def test_all_nine_sub_commands_are_walked():
    assert set(sub_commands()) == {"search", "status", "export", "verify", "dashboard", "report", "analyze",
                                   "worker", "ensemble"}
    assert {"search timeout", "worker retry_for", "dashboard port", "verify gap_tolerance", "status study_name"} \
        <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_option_has_a_shared_validator(case):
    """No option takes raw text: each one names a validator (or a fixed list of choices)."""
    _, action = _action(*CASES[case])
    assert isinstance(action.type, (Number, Text)) or action.choices, f"{case}: add type= from nas.cli_types"


@pytest.mark.parametrize("case", [case for case in CASES if not _action(*CASES[case])[1].choices])
def test_bad_value_is_one_line_naming_the_option(case, capsys):
    command, dest = CASES[case]
    parser, action = _action(command, dest)
    name = action.option_strings[-1] if action.option_strings else action.dest
    wrong = []
    for label, text in invalid_texts(action.type).items():
        code = main(argv_with(command, parser, {action: text}))
        err = capsys.readouterr().err.strip()
        if code != 2 or len(err.splitlines()) != 1 or not err.startswith(f"nas: error: {name} must "):
            wrong.append(f"{label} ({text!r}): exit {code}, stderr {err!r}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("command", sorted(sub_commands()))
def test_valid_values_of_every_option_parse(command):
    """The generated bad values fail because of the value: the boundary values each validator allows parse."""
    parser = sub_commands()[command]
    every_option = {action: valid_text(action) for action in value_options(parser)}
    args = parser.parse_args(argv_with(command, parser, every_option)[1:])
    for action in value_options(parser):
        value = getattr(args, action.dest)
        value = value[0] if isinstance(value, list) else value
        assert str(value) == valid_text(action) or value == action.type(valid_text(action)), (action.dest, value)


# ------------------------------------------------------------------------- exit codes of nas search
TINY = """
[study]
name = "tiny"
storage = "sqlite:///runs/tiny.db"
n_trials = 1
max_failed = 2
sampler = "random"
[data]
name = "synthetic"
synthetic_size = 60
[space]
name = "mlp"
depth = 1
width = 8
ensemble = 1
[training]
epochs = 1
[objectives.accuracy]
"""


def test_search_where_every_trial_failed_exits_1_with_the_reason(tmp_path, capsys, monkeypatch):
    """Trials that cannot store their weights (the artifact folder is a file) all FAIL: exit 1, not 0."""
    import optuna
    from optuna.trial import TrialState

    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file where the artifact folder should be")
    (tmp_path / "tiny.toml").write_text(TINY.replace("[data]", 'artifacts = "blocker/artifacts"\n[data]'))
    assert main(["search", "tiny.toml"]) == 1
    err = capsys.readouterr().err.strip()
    study = optuna.load_study(study_name="tiny", storage="sqlite:///runs/tiny.db")
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 2 and not study.get_trials(states=(TrialState.COMPLETE,))
    assert len(err.splitlines()) == 1, err
    assert err.startswith("nas: error: no trial completed in study 'tiny': 2 FAILED"), err
    assert failed[0].user_attrs["fail_reason"] in err


def test_resume_of_a_study_that_does_not_exist_names_those_that_do(tmp_path, capsys, monkeypatch):
    import optuna

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY)
    assert main(["search", "tiny.toml", "--n-trials", "0"]) == 0  # creates study 'tiny', trains nothing
    capsys.readouterr()
    assert main(["search", "tiny.toml", "--study-name", "tiyn", "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no study named 'tiyn'" in err and "studies there: tiny" in err, err
    assert optuna.get_all_study_names("sqlite:///runs/tiny.db") == ["tiny"], "no new study may be created"
    assert main(["search", "tiny.toml", "--storage", "sqlite:///runs/tyni.db", "--resume"]) == 2
    assert "no such file" in capsys.readouterr().err and not (tmp_path / "runs" / "tyni.db").exists()
