"""Spec -> readable, self-contained PyTorch source (``model.py`` of an export; imports only torch).

The generated module mirrors ``search_spaces.build(spec)`` layer for layer, with the sizes written
out as literals, so the trial's ``state_dict`` loads into it with ``strict=True`` and gives the same
logits. It reads like torchvision: a few small block classes, one model class, a ``build()`` function.

Example::

    source = generate(spec, class_names=["top", "bottom", "left", "right"])
    Path("model.py").write_text(source)
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Callable

import search_spaces
from search_spaces import SpecError

# Source for each activation in search_spaces._modules.ACTIVATIONS (a test keeps the two in step).
ACTIVATION_SOURCE: dict[str, str] = {
    "relu": "nn.ReLU()",
    "gelu": "nn.GELU()",
    "silu": "nn.SiLU()",
    "tanh": "nn.Tanh()",
    "leaky_relu": "nn.LeakyReLU(0.1)",
}
_POOL_SOURCE = {"max": "MaxPool", "avg": "AvgPool"}

_HEADER = '''"""Exported classifier: {summary}.

Self-contained PyTorch source generated from the architecture spec in spec.json; it imports only
torch, so you can read it, edit it and ship it without the search tool. Inputs are raw values of
shape (batch, {shape}) -- pixel values in [0, 1] for images; the model normalises them itself.
The output holds one logit per class in CLASS_NAMES{ensemble_note}.

Usage (weights.safetensors sits next to this file; reading it needs the `safetensors` package)::

    import torch
    from safetensors.torch import load_file
    from model import build

    model = build()
    model.load_state_dict(load_file("weights.safetensors"))
    model.eval()
    probabilities = torch.softmax(model(inputs), dim=1)
"""
import torch
from torch import nn

ARCHITECTURE = {architecture}
EXPORTED_FROM = {origin}
INPUT_SHAPE = {input_shape}
CLASS_NAMES = {class_names}
'''

_NORMALIZE = '''

class Normalize(nn.Module):
    """Per-channel (x - mean) / std, the statistics of the training split."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view({view}))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view({view}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
'''

_ENSEMBLE = '''

class Ensemble(nn.Module):
    """Independently trained members; the output is the log of their averaged softmax,
    so softmax(output) is the members' mean probability."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Stacked member logits, shape (members, batch, classes)."""
        return torch.stack([member(x) for member in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_probs = torch.log_softmax(self.member_logits(x).float(), dim=-1)
        return torch.logsumexp(log_probs, dim=0) - torch.log(torch.tensor(float(len(self.members))))
'''

_BUILD = '''

def build() -> nn.Module:
    """The exported architecture with fresh weights; load weights.safetensors into it."""
    return {expression}
'''

_DOCSTRING_UNSAFE = re.compile(r"[^\w .,:;()+=/-]")
_NO_BN = "nn.Identity(),  # no batch norm (kept so layer numbers match the weights)"


def _literal(value: Any) -> Any:
    """``value`` as plain JSON data (str, int, float, bool, None, list, dict), whose repr() is a Python literal."""
    return json.loads(json.dumps(value, allow_nan=False)) if value is not None else None


def _lines(items: list[str], indent: int) -> str:
    pad = " " * indent
    return "\n".join(pad + item for item in items)


def _name(source: str) -> str:
    """``"nn.LeakyReLU(0.1)"`` -> ``"LeakyReLU"`` (for docstrings)."""
    return source.split("(")[0].removeprefix("nn.")


def _floats(values: list[float]) -> str:
    return "[" + ", ".join(repr(float(v)) for v in values) + "]"


def _normalize_call(spec: dict[str, Any]) -> str:
    channels = spec["input_shape"][0]
    norm = spec.get("normalize") or {"mean": [0.0] * channels, "std": [1.0] * channels}
    return f"Normalize(mean={_floats(norm['mean'])}, std={_floats(norm['std'])})"


# ------------------------------------------------------------------------------------------------ mlp
def _mlp(spec: dict[str, Any]) -> tuple[str, str]:
    activation = ACTIVATION_SOURCE[spec["activation"]]
    dropout = float(spec.get("dropout", 0.0))
    layers = ["nn.Flatten(),"]
    width_in = math.prod(spec["input_shape"])
    for width in spec["hidden"]:
        layers.append(f"nn.Linear({width_in}, {int(width)}),")
        if spec["batch_norm"]:
            layers.append(f"nn.BatchNorm1d({int(width)}),")
        layers += [f"{activation},", f"nn.Dropout({dropout!r}),"]
        width_in = int(width)
    steps = "Linear" + (" -> BatchNorm" if spec["batch_norm"] else "") + f" -> {_name(activation)} -> Dropout"
    source = f'''

class MLP(nn.Module):
    """Normalise -> flatten -> [{steps}] x {len(spec["hidden"])} -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.normalize = {_normalize_call(spec)}
        self.features = nn.Sequential(
{_lines(layers, 12)}
        )
        self.classifier = nn.Linear({width_in}, {int(spec["num_classes"])})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))
'''
    return source, "MLP"


# ------------------------------------------------------------------------------------------------ cnn
def _conv_block(spec: dict[str, Any], dims: int) -> str:
    conv, norm = f"nn.Conv{dims}d", f"nn.BatchNorm{dims}d"
    batch_norm, activation, groups = spec["batch_norm"], ACTIVATION_SOURCE[spec["activation"]], int(spec["cardinality"])
    bias = "False" if batch_norm else "True"

    def bn(channels: str) -> str:
        return f"{norm}({channels})," if batch_norm else _NO_BN

    if groups == 1:
        doc = f"Conv -> {'BatchNorm -> ' if batch_norm else ''}{_name(activation)}."
        body = [f"{conv}(c_in, c_out, kernel, padding=kernel // 2, bias={bias}),", bn("c_out")]
        shortcut, merge = "", "self.body(x)"
    else:
        doc = f"ResNeXt block: 1x1 conv -> grouped conv ({groups} groups) -> 1x1 conv, plus a shortcut."
        body = [
            f"{conv}(c_in, c_out, 1, bias={bias}),", bn("c_out"), f"{activation},",
            f"{conv}(c_out, c_out, kernel, padding=kernel // 2, groups={groups}, bias={bias}),", bn("c_out"), f"{activation},",
            f"{conv}(c_out, c_out, 1, bias={bias}),", bn("c_out"),
        ]
        shortcut_bn = f"{norm}(c_out)" if batch_norm else "nn.Identity()"
        shortcut = f"""
        if c_in == c_out:
            self.shortcut = nn.Identity()
        else:  # project the input to c_out channels
            self.shortcut = nn.Sequential({conv}(c_in, c_out, 1, bias=False), {shortcut_bn})"""
        merge = "self.body(x) + self.shortcut(x)"
    return f'''

class ConvBlock(nn.Module):
    """{doc}"""

    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
{_lines(body, 12)}
        ){shortcut}
        self.activation = {activation}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation({merge})
'''


def _cnn(spec: dict[str, Any]) -> tuple[str, str]:
    shape = [int(size) for size in spec["input_shape"]]
    dims = len(shape) - 1
    activation = ACTIVATION_SOURCE[spec["activation"]]
    dropout = float(spec.get("dropout", 0.0))
    channels, sizes = shape[0], list(shape[1:])
    layers = []
    for block in spec["blocks"]:
        layers.append(f"ConvBlock({channels}, {int(block['channels'])}, kernel={int(block['kernel'])}),")
        channels = block["channels"]
        # Same rule as search_spaces.cnn: never pool a map that is already 1 wide.
        if block["pool"] != "none" and min(sizes) >= 2:
            layers.append(f"nn.{_POOL_SOURCE[block['pool']]}{dims}d(2),")
            sizes = [size // 2 for size in sizes]
    flat = channels * math.prod(sizes)
    flat_source = " * ".join(str(n) for n in [channels, *sizes])
    head = ["nn.Flatten(),", f"nn.Dropout({dropout!r}),"]
    width = flat_source
    if spec.get("hidden", 0):
        head += [f"nn.Linear({width}, {int(spec['hidden'])}),", f"{activation},", f"nn.Dropout({dropout!r}),"]
        width = str(spec["hidden"])
    head.append(f"nn.Linear({width}, {int(spec['num_classes'])}),")
    source = _conv_block(spec, dims) + f'''

class CNN(nn.Module):
    """Normalise -> {len(spec["blocks"])} conv blocks with pooling -> flatten ({flat} features) -> classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.normalize = {_normalize_call(spec)}
        self.features = nn.Sequential(
{_lines(layers, 12)}
        )
        self.classifier = nn.Sequential(
{_lines(head, 12)}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))
'''
    return source, "CNN"


GENERATORS: dict[str, Callable[[dict[str, Any]], tuple[str, str]]] = {"mlp": _mlp, "cnn": _cnn}


def _docstring_text(text: str) -> str:
    """Only characters that cannot end or escape a docstring (the exact text is in a repr() literal too)."""
    return _DOCSTRING_UNSAFE.sub("", text)


def generate(spec: dict[str, Any], class_names: list[str] | None = None, origin: dict[str, Any] | None = None) -> str:
    """Python source of a module whose ``build()`` matches ``search_spaces.build(spec)``.

    Text that comes from storage or data (class names, ``origin`` such as the study name and trial number)
    reaches the source only as ``repr()`` literals; numbers only after the space validated the spec.
    Raises :class:`search_spaces.SpecError` when the spec is invalid or its space has no generator.
    """
    search_spaces.build(spec)  # validates every key and type with the space's own messages
    if spec["space"] not in GENERATORS:
        raise SpecError(f"export has no code generator for space '{spec['space']}'; supported: {', '.join(sorted(GENERATORS))}")
    shape = [int(size) for size in spec["input_shape"]]
    names = list(class_names) if class_names else [str(i) for i in range(spec["num_classes"])]
    if len(names) != spec["num_classes"]:
        raise SpecError(f"{len(names)} class names given for a spec with num_classes = {spec['num_classes']}")
    ensemble = int(spec.get("ensemble", 1))
    model_source, model_class = GENERATORS[spec["space"]](spec)
    summary = search_spaces.summary(spec)
    header = _HEADER.format(
        summary=_docstring_text(summary),
        architecture=repr(summary),
        origin=repr(_literal(origin)),
        shape=", ".join(map(str, shape)),
        ensemble_note=" (for this ensemble: the log of the members' mean softmax)" if ensemble > 1 else "",
        input_shape=repr(tuple(shape)),
        class_names=repr([str(name) for name in names]),
    )
    view = ", ".join(["1", "-1"] + ["1"] * (len(shape) - 1))
    expression = f"{model_class}()" if ensemble == 1 else f"Ensemble([{model_class}() for _ in range({ensemble})])"
    return (
        header
        + _NORMALIZE.format(view=view)
        + model_source
        + (_ENSEMBLE if ensemble > 1 else "")
        + _BUILD.format(expression=expression)
    )
