"""Hostile stored text: no code injection into model.py, no path escape, no leaked password, no DNS rebinding.

The hostile inputs are generated (seeded combinations of the characters that break Python source, file paths,
terminals and rich markup) and the specs are mutated leaf by leaf, so a new field or a new kind of name is
covered without touching this file.
"""
from __future__ import annotations

import ast
import copy
import json
import math
import os
import random
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import optuna
import pytest

import search_spaces
from conftest import PATIENCE, run_nas
import test_distributed
from test_distributed import PASSWORD
from nas import codegen
from nas.paths import safe_filename

postgres = test_distributed.postgres  # the fixture: a real PostgreSQL server for this module

# What breaks out of a string literal, a docstring, a format string, a path, a terminal or rich markup.
FRAGMENTS = ['"""', "'''", '"', "'", "\\", "\n", "\r\n", "\t", "{}", "{0}", "%s", "#", "\u2028", "\x1b[31m", "[/]",
             "[bold]", "../", "/", "..", "é", "\\N{BULLET}", ")", "; import os; os.system('touch pwned')", "\\x00"]
PAYLOAD = 'demo"""; import pathlib; pathlib.Path("ran").write_text("ran"); """'


def hostile_names(count: int = 40, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    names = [PAYLOAD, *FRAGMENTS]
    names += ["".join(rng.choice(FRAGMENTS + ["a", "b", "1"]) for _ in range(rng.randint(2, 6))) for _ in range(count)]
    return names


def sample_spec(space: str, seed: int = 0) -> dict[str, Any]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    spec = search_spaces.get(space).sample(study.ask(),
                                           {"ensemble": 2} if space == "mlp" else {"ensemble": 2, "cardinality": 2})
    return {**spec, "input_shape": [1, 8, 8], "num_classes": 3, "normalize": {"mean": [0.5], "std": [0.25]}}


# Module constants that carry stored text or spec values: they must be plain literals.
LITERALS = {"ARCHITECTURE", "EXPORTED_FROM", "INPUT_SHAPE", "CLASS_NAMES", "ARGUMENTS"}


def top_level_shape(source: str) -> list[str]:
    """The module's top-level code with the literal constants' values left out: two exports with the same shape
    run exactly the same code, whatever text the constants hold."""
    shape = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id in LITERALS:
            ast.literal_eval(node.value)  # raises unless the value is a plain literal
            shape.append(f"literal {node.targets[0].id}")
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            shape.append("docstring")
        else:
            shape.append(ast.dump(node))
    return shape


def constants(source: str) -> dict[str, Any]:
    return {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(source).body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in LITERALS}


@pytest.mark.parametrize("space", search_spaces.available())
def test_stored_text_reaches_model_py_only_as_literals(space, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = sample_spec(space)
    reference = codegen.generate(spec, class_names=["a", "b", "c"], origin={"study": "plain", "trial": 1})
    expected_shape = top_level_shape(reference)
    for name in hostile_names():
        classes = [name, name + "x", "c"]
        source = codegen.generate(spec, class_names=classes, origin={"study": name, "trial": 7})
        assert top_level_shape(source) == expected_shape, name
        values = constants(source)
        assert values["EXPORTED_FROM"] == {"study": name, "trial": 7} and values["CLASS_NAMES"] == classes
        namespace: dict[str, Any] = {}
        exec(compile(source, "model.py", "exec"), namespace)  # noqa: S102 - the point: running it runs nothing else
        assert sorted(k for k in namespace if not k.startswith("__")) == sorted(
            k for k in _run(reference) if not k.startswith("__"))
        assert namespace["build"]().state_dict().keys() == search_spaces.build(spec).state_dict().keys()
    assert list(tmp_path.iterdir()) == [], "generated code wrote files"


def _run(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(source, "model.py", "exec"), namespace)  # noqa: S102
    return namespace


def leaves(value: Any, path: tuple = ()) -> Iterator[tuple]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    else:
        yield path


def containers(value: Any, path: tuple = ()) -> Iterator[tuple]:
    if isinstance(value, dict):
        yield path
        for key, item in value.items():
            yield from containers(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from containers(item, (*path, index))


def with_value(spec: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    mutated = copy.deepcopy(spec)
    target = mutated
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return mutated


# Never valid for any spec leaf: text, nothing, non-finite numbers, containers where a scalar or list belongs.
NEVER_VALID = [*hostile_names(8, seed=1), None, math.nan, math.inf, -math.inf, {}, {"x": 1}]


@pytest.mark.parametrize("space", search_spaces.available())
def test_every_spec_leaf_is_validated_before_codegen(space):
    """Mutate each leaf of a valid spec: invalid values are refused; whatever is accepted still generates a plain
    module."""
    spec = sample_spec(space, seed=3)
    expected_shape = top_level_shape(codegen.generate(spec))
    for path in leaves(spec):
        for value in [*NEVER_VALID, True, -1, 10**9, 0.5, [], [1]]:
            mutated = with_value(spec, path, value)
            try:
                source = codegen.generate(mutated)
            except search_spaces.SpecError:
                continue
            assert not any(value is bad for bad in NEVER_VALID), (path, value)
            assert top_level_shape(source) == expected_shape, (path, value)
    for path in containers(spec):
        with pytest.raises(search_spaces.SpecError):
            codegen.generate(with_value(spec, (*path, 'x"""'), 1) if path else {**spec, 'x"""': 1})


# ---------------------------------------------------------------------------------------------- CLI, end to end
CONFIG = """
[study]
name = "unused"
n_trials = 1
sampler = "random"
[data]
name = "synthetic"
synthetic_size = 200
[space]
name = "mlp"
depth = 1
width = [16]
ensemble = 1
[training]
epochs = 1
[objectives.accuracy]
[objectives.params]
"""


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


def test_hostile_study_name_end_to_end(tmp_path):
    """search, status, export, report with a study name that is code, a path and markup at once."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "exp.toml").write_text(CONFIG)
    name = PAYLOAD + "\n../../../escaped/x [/] {}"
    storage = "sqlite:///runs/nas.db"
    search = run_nas("search", "exp.toml", "--storage", storage, "--study-name", name, "--out", "front", cwd=work)
    assert search.returncode == 0, search.stderr
    front = files_under(work / "front")
    assert {p.name for p in front} == {f"{safe_filename(name)}-pareto.csv", f"{safe_filename(name)}-pareto.json"}
    assert json.loads((work / "front" / f"{safe_filename(name)}-pareto.json").read_text())["study"] == name
    status = run_nas("status", "--storage", storage, "--study-name", name, cwd=work)
    assert status.returncode == 0 and "1 COMPLETE" in status.stdout, status.stderr
    export = run_nas("export", "--storage", storage, "--study-name", name, "--trial", "0", cwd=work)
    assert export.returncode == 0, export.stderr
    [folder] = list((work / "exported").iterdir())
    assert folder.name == f"{safe_filename(name)}-t0"
    source = (folder / "model.py").read_text(encoding="utf-8")
    assert constants(source)["EXPORTED_FROM"] == {"study": name, "trial": 0}
    assert top_level_shape(source) == top_level_shape(codegen.generate(
        json.loads((folder / "spec.json").read_text())["spec"], class_names=constants(source)["CLASS_NAMES"],
        origin={"study": "plain", "trial": 0}))
    umask = os.umask(0)
    os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask, "export folders follow the umask (not mkdtemp's 0700)"
    report = run_nas("report", "--storage", storage, "--study-name", name, cwd=work)
    assert report.returncode == 0, report.stderr
    assert (work / f"{safe_filename(name)}-report.html").is_file()
    verify = run_nas("verify", str(folder), cwd=work)
    assert verify.returncode in (0, 1) and "Traceback" not in verify.stderr, verify.stderr
    for result in (search, status, export, report, verify):
        assert "Traceback" not in result.stdout + result.stderr
    for artifact in ("../../../secret", "/etc/passwd", "a/../../b"):  # a storage altered by someone else
        with sqlite3.connect(work / "runs" / "nas.db") as db:
            db.execute("UPDATE trial_user_attributes SET value_json = ? WHERE key = 'weights_artifact'",
                       (json.dumps(artifact),))
        altered = run_nas("export", "--storage", storage, "--study-name", name, "--trial", "0", "--out", "again",
                          cwd=work)
        assert altered.returncode == 2 and altered.stderr.count("\n") == 1 and "not an artifact id" in altered.stderr
    assert not any(path.name == "ran" for path in tmp_path.rglob("*")), "the study name ran as code"
    outside = [p for p in files_under(tmp_path) if work not in p.parents]
    assert outside == [], f"files written outside the working folder: {outside}"


# ---------------------------------------------------------------------------------------------- passwords
@pytest.mark.parametrize("form", ["userinfo", "query"])
def test_password_never_shown_stored_or_written(postgres, tmp_path, form):
    secret = PASSWORD
    host = f"127.0.0.1:{postgres.port}"
    url = f"postgresql://nas:{secret}@{host}/nas" if form == "userinfo" else f"postgresql://nas@{host}/nas?password={secret}"
    study = f"pw-{form}"
    (tmp_path / "exp.toml").write_text(CONFIG)
    runs = [
        run_nas("search", "exp.toml", "--storage", url, "--study-name", study, "--n-trials", "0", cwd=tmp_path),
        run_nas("search", "exp.toml", "--storage", url, "--study-name", study, "--resume", "--out", "front",
                cwd=tmp_path),
        run_nas("status", "--storage", url, "--study-name", study, cwd=tmp_path),
        run_nas("export", "--storage", url, "--study-name", study, "--trial", "0", "--out", "exported", cwd=tmp_path),
        run_nas("report", "--storage", url, "--study-name", study, "--out", "report.html", cwd=tmp_path),
        run_nas("status", "--storage", url.replace(secret, "wrong-Pw"), "--study-name", study, cwd=tmp_path),
    ]
    for result in runs[:-1]:
        assert result.returncode == 0, result.stderr
    assert runs[-1].returncode == 2 and "wrong-Pw" not in runs[-1].stderr
    assert "***" in runs[0].stdout, "the URL is shown, masked"
    for result in runs:
        assert secret not in result.stdout + result.stderr
    for path in files_under(tmp_path):
        assert secret.encode() not in path.read_bytes(), f"password written to {path}"
    stored = optuna.load_study(study_name=study, storage=url).user_attrs["config"]["study"]["storage"]
    assert stored == f"postgresql://nas@{host}/nas", "stored without credentials"
    dump = subprocess.run([*postgres.prefix, str(postgres.bin_dir / "pg_dump"), "-h", "127.0.0.1",
                           "-p", str(postgres.port), "-U", "postgres", "nas"], capture_output=True, timeout=PATIENCE)
    assert dump.returncode == 0 and b"CREATE TABLE" in dump.stdout, dump.stderr
    assert secret.encode() not in dump.stdout, "password stored in the database"


# ---------------------------------------------------------------------------------------------- dashboard
def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _status(port: int, host_header: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host_header})
    try:
        with urllib.request.urlopen(request, timeout=PATIENCE) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_dashboard_answers_only_its_own_host_names_and_fails_fast_on_a_busy_port(tmp_path):
    optuna.create_study(study_name="plain", storage=f"sqlite:///{tmp_path}/d.db")
    port = _free_port()
    command = [sys.executable, "-m", "nas", "dashboard", "--storage", f"sqlite:///{tmp_path}/d.db", "--port", str(port),
               "--allow-host", "nas.example"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                first = _status(port, f"127.0.0.1:{port}")
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None and time.monotonic() < deadline, "dashboard did not start"
                time.sleep(0.3)
        assert first == 200
        for allowed in (f"localhost:{port}", f"[::1]:{port}", "nas.example"):
            assert _status(port, allowed) == 200, allowed
        for rebound in (f"attacker.example:{port}", "127.0.0.1.attacker.example", "nas.example.attacker.example"):
            assert _status(port, rebound) == 400, rebound
        busy = run_nas("dashboard", "--storage", f"sqlite:///{tmp_path}/d.db", "--port", str(port), cwd=tmp_path)
        assert busy.returncode == 2 and busy.stdout == "", busy.stdout
        assert busy.stderr.count("\n") == 1 and f"port {port}" in busy.stderr and "--port" in busy.stderr
    finally:
        process.terminate()
        process.wait(timeout=PATIENCE)
    unresolvable = run_nas("dashboard", "--storage", f"sqlite:///{tmp_path}/d.db", "--host", "no-such-host.invalid",
                           cwd=tmp_path)
    assert unresolvable.returncode == 2 and unresolvable.stdout == "" and unresolvable.stderr.count("\n") == 1
    assert "--host" in unresolvable.stderr and "cannot be resolved" in unresolvable.stderr


@pytest.mark.parametrize("reference", ["this:x", "antigravity:x", "os:system", "os.path:join"])
def test_stored_references_never_import_standard_library_modules(reference, capsys):
    """A spec or config read from storage may name a user's module ("pkg.mod:Name"); a standard-library one is never
    imported (some act on import: ``this`` prints, ``antigravity`` opens a browser)."""
    import objectives
    from nas.extensions import load_extension

    before = set(sys.modules)
    with pytest.raises(search_spaces.SpecError, match="standard-library"):
        codegen.generate({"space": reference, "input_shape": [1, 8, 8], "num_classes": 3})
    with pytest.raises((ImportError, ValueError), match="standard-library"):
        objectives.load(reference)
    with pytest.raises(ImportError, match="standard-library"):
        load_extension("robust_nas.samplers", reference)
    assert {"this", "antigravity"}.isdisjoint(set(sys.modules) - before)
    assert capsys.readouterr().out == ""
