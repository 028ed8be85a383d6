"""Spec -> readable, self-contained PyTorch source (``model.py`` of an export; imports only torch).

There is one model source: the generated module holds the *source* of the classes the search trained
(each space's ``*_model.py`` and the shared blocks in ``search_spaces/_modules.py``, copied as they are),
followed by the spec's constructor arguments as a literal and a ``build()`` function. So the trial's
``state_dict`` loads into it with ``strict=True`` and gives the same logits, and it reads like torchvision:
a few small block classes, one model class, a builder on top.

Example::

    source = generate(spec, class_names=["top", "bottom", "left", "right"])
    Path("model.py").write_text(source, encoding="utf-8")
"""
from __future__ import annotations

import ast
import inspect
import json
import pprint
import re
import sys
from types import ModuleType
from typing import Any, NamedTuple

import search_spaces
from search_spaces import SpecError
from search_spaces import _modules as shared_blocks

_HEADER = '''"""Exported classifier: {summary}.

Self-contained PyTorch source: the model classes below are the code the search trained, copied as they
are; it imports only torch, so you can read it, edit it and ship it without the search tool. Inputs are
raw values of shape (batch, {shape}) -- pixel values in [0, 1] for images; the model normalises them
itself. The output holds one logit per class in CLASS_NAMES{ensemble_note}.

Usage (weights.safetensors sits next to this file; reading it needs the `safetensors` package)::

    import torch
    from safetensors.torch import load_file
    from model import build

    model = build()
    model.load_state_dict(load_file("weights.safetensors"))
    model.eval()
    probabilities = torch.softmax(model(inputs), dim=1)

build(calibrated=True) divides the output by TEMPERATURE (temperature scaling, fitted on the validation
split by the search): the same predictions, with confidences that match accuracy better. TEMPERATURE is
None when the search fitted none.
"""
'''

_CONSTANTS = '''
ARCHITECTURE = {architecture}
EXPORTED_FROM = {origin}
INPUT_SHAPE = {input_shape}
CLASS_NAMES = {class_names}
'''

_ARGUMENTS = '''

# The architecture spec's constructor arguments ({model} of search space {space!r}).
ARGUMENTS = {arguments}
'''

_MEMBER_ARGUMENTS = '''
# Member {index}: {summary} ({model} of search space {space!r}).
MEMBER_{index} = {arguments}
'''

_WEIGHTS = '''
# How much each member's softmax counts in the ensemble's average (how often greedy selection picked it).
WEIGHTS = {weights}
'''

_BUILD = '''
# Fitted on the validation split; build(calibrated=True) divides the output by it. None: not fitted.
TEMPERATURE = {temperature}


def _divide_by_temperature(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    return output / TEMPERATURE


def build(calibrated: bool = False) -> nn.Module:
    """The exported architecture with fresh weights; load weights.safetensors into it.

    calibrated=True divides its output by TEMPERATURE (the state-dict keys stay the same).
    """
    model = {expression}
    if calibrated:
        if TEMPERATURE is None:
            raise ValueError("no temperature was fitted for this model (the search did not measure calibration)")
        model.register_forward_hook(_divide_by_temperature)
    return model
'''

_DOCSTRING_UNSAFE = re.compile(r"[^\w .,:;()+=/-]")


def _docstring_text(text: str) -> str:
    """Only characters that cannot end or escape a docstring (the exact text is in a repr() literal too)."""
    return _DOCSTRING_UNSAFE.sub("", text)


def _literal(value: Any) -> Any:
    """``value`` as plain JSON data (str, int, float, bool, None, list, dict), whose repr() is a Python literal."""
    return json.loads(json.dumps(value, allow_nan=False)) if value is not None else None


class _Definition(NamedTuple):
    source: str
    uses: set[str]
    constant: bool  # an assignment: consecutive constants are not separated by blank lines


def _definitions(module: ModuleType, imports: dict[str, set[str]]) -> dict[str, _Definition]:
    """A model module's top-level definitions by name; its absolute imports are added to ``imports``
    (``"import torch"`` -> {}, ``"from typing import"`` -> {"Any", ...}).

    Model modules import only torch, the standard library and, for the built-in spaces, ``._modules`` (whose
    definitions are copied too); anything else would make the export depend on more than torch, so it is an error.
    A space of your own (``experiments/custom/``) is found the same way: its ``model`` class's module is copied.
    """
    source = inspect.getsource(module)
    ours = module.__name__.split(".")[0] == shared_blocks.__name__.split(".")[0]  # a built-in space's model module
    definitions: dict[str, _Definition] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and (node.level and ours or node.module == "__future__"):
            continue  # our relative imports name copied definitions (``._modules``); annotations stay plain
        if isinstance(node, ast.ImportFrom) and node.level:
            raise SpecError(f"{module.__name__} imports from a relative module: a model module of your own may "
                            "import only torch and the standard library")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
            roots = {name.split(".")[0] for name in modules}
            if not roots <= {"torch", *sys.stdlib_module_names}:
                raise SpecError(f"{module.__name__} imports {', '.join(sorted(roots))}: "
                                "model modules may import only torch")
            if isinstance(node, ast.Import):
                imports.update({f"import {name}": set() for name in modules})
            else:
                imports.setdefault(f"from {node.module} import", set()).update(alias.name for alias in node.names)
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the module docstring
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            name = node.name
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            name = target.id if isinstance(target, ast.Name) else None
        else:
            name = None
        if name is None:
            raise SpecError(f"{module.__name__}: only imports, classes, functions and constants can be exported")
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        text = "\n".join(source.splitlines()[first - 1:node.end_lineno])
        used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        definitions[name] = _Definition(text, used - {name}, isinstance(node, (ast.Assign, ast.AnnAssign)))
    return definitions


def _import_lines(imports: dict[str, set[str]]) -> str:
    """Standard library first, then torch, each sorted; ``from typing import A`` and ``... import B`` merged."""
    def line(statement: str) -> str:
        return f"{statement} {', '.join(sorted(imports[statement]))}" if imports[statement] else statement

    def is_torch(statement: str) -> bool:
        return statement.split()[1].split(".")[0] == "torch"

    order = sorted(imports,
                   key=lambda statement: (is_torch(statement), statement.split()[1], statement.startswith("from")))
    lines = [line(statement) for statement in order]
    first_torch = next((i for i, statement in enumerate(order) if is_torch(statement)), len(order))
    return "\n".join(lines[:first_torch] + ([""] if 0 < first_torch < len(lines) else []) + lines[first_torch:])


def _body(names: list[str], definitions: dict[str, _Definition]) -> str:
    parts = []
    for index, name in enumerate(names):
        if index:
            both_constants = definitions[names[index - 1]].constant and definitions[name].constant
            parts.append("\n" if both_constants else "\n\n\n")
        parts.append(definitions[name].source)
    return "".join(parts)


def _needed(roots: list[str], definitions: dict[str, _Definition]) -> list[str]:
    """The definitions ``roots`` use, directly or not, in source order (so each is defined before use)."""
    needed, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in definitions and name not in needed:
            needed.add(name)
            todo.extend(definitions[name].uses)
    return [name for name in definitions if name in needed]


def generate(spec: dict[str, Any], class_names: list[str] | None = None, origin: dict[str, Any] | None = None,
             temperature: float | None = None) -> str:
    """Python source of a module whose ``build()`` is ``search_spaces.build(spec)``, class for class.

    ``temperature`` (fitted on the validation split) becomes ``TEMPERATURE``, applied by ``build(calibrated=True)``.

    Text that comes from storage or data (class names, ``origin`` such as the study name and trial number) and
    the spec's values reach the source only as ``repr()`` literals, after the space validated the spec.
    Raises :class:`search_spaces.SpecError` when the spec is invalid.
    """
    if not isinstance(spec, dict):
        raise SpecError("spec must be a dict with a 'space' key")
    space = search_spaces.get(spec.get("space"))
    arguments = _literal(space.check(spec))  # validates every key and type with the space's own messages
    ensemble = int(spec.get("ensemble", 1))
    shape = [int(size) for size in spec["input_shape"]]
    names = list(class_names) if class_names else [str(i) for i in range(spec["num_classes"])]
    if len(names) != spec["num_classes"]:
        raise SpecError(f"{len(names)} class names given for a spec with num_classes = {spec['num_classes']}")

    imports: dict[str, set[str]] = {}
    if "members" in arguments:  # a heterogeneous ensemble (space 'ensemble'): one class per family of its members
        modules, roots, blocks, expression = _ensemble_parts(arguments)
    else:
        modules = [inspect.getmodule(space.model)]
        model = space.model.__name__
        roots = [model] + (["Ensemble"] if ensemble > 1 else [])
        blocks = _ARGUMENTS.format(model=model, space=space.name,
                                   arguments=pprint.pformat(arguments, width=110, sort_dicts=False))
        expression = _member_expression(model, "ARGUMENTS", ensemble)
    definitions = _collect([shared_blocks, *modules], imports)
    body = _body(_needed([*roots, "nn"], definitions), definitions)
    summary = search_spaces.summary(spec)
    ensemble_note = "\n(for this ensemble: the log of the members' mean softmax)"
    return (
        _HEADER.format(summary=_docstring_text(summary), shape=", ".join(map(str, shape)),
                       ensemble_note=ensemble_note if ensemble > 1 or "members" in arguments else "")
        + _import_lines(imports) + "\n"
        + _CONSTANTS.format(architecture=repr(summary), origin=repr(_literal(origin)), input_shape=repr(tuple(shape)),
                            class_names=repr([str(name) for name in names]))
        + "\n\n" + body + "\n" + blocks
        + _BUILD.format(expression=expression, temperature=repr(None if temperature is None else float(temperature)))
    )


def _member_expression(model: str, arguments: str, ensemble: int) -> str:
    """``MLP(**ARGUMENTS)``, or a homogeneous deep ensemble of them."""
    if ensemble == 1:
        return f"{model}(**{arguments})"
    return f"Ensemble([{model}(**{arguments}) for _ in range({ensemble})])"


def _ensemble_parts(arguments: dict[str, Any]) -> tuple[list[ModuleType], list[str], str, str]:
    """For a heterogeneous ensemble's checked arguments: the members' model modules, the classes it needs, the
    ``MEMBER_<i>``/``WEIGHTS`` constants and the ``build()`` expression averaging the members."""
    modules: list[ModuleType] = []
    roots, blocks, members = ["Ensemble"], [], []
    for index, member in enumerate(arguments["members"]):
        space = search_spaces.get(member["space"])
        module = inspect.getmodule(space.model)
        if module not in modules:
            modules.append(module)
        model = space.model.__name__
        roots.append(model)
        member_arguments = _literal(space.check(member))
        blocks.append(_MEMBER_ARGUMENTS.format(
            index=index, summary=_docstring_text(search_spaces.summary(member)), model=model, space=space.name,
            arguments=pprint.pformat(member_arguments, width=110, sort_dicts=False)))
        members.append(_member_expression(model, f"MEMBER_{index}", int(member.get("ensemble", 1))))
    blocks.append(_WEIGHTS.format(weights=repr(arguments["weights"])))
    listed = "".join(f"\n        {member}," for member in members)
    return modules, roots, "\n" + "".join(blocks), f"Ensemble([{listed}\n    ], weights=WEIGHTS)"


def _collect(modules: list[ModuleType], imports: dict[str, set[str]]) -> dict[str, _Definition]:
    """The top-level definitions of ``modules``; two modules defining one name differently is an error (the
    generated file can hold only one of them)."""
    definitions: dict[str, _Definition] = {}
    for module in modules:
        for name, definition in _definitions(module, imports).items():
            if name in definitions and definitions[name].source != definition.source:
                raise SpecError(f"{module.__name__} defines {name!r} differently from another member's model module; "
                                "one model.py cannot hold both (rename one of them)")
            definitions[name] = definition
    return definitions
