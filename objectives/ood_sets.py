"""Outlier families: synthetic or foreign inputs a model was not trained to classify.

One registry serves two purposes that must never overlap for a trial: the OOD objective *scores*
on some families, and outlier-exposure training *trains* on others (``nas.robust_training``).
Everything is generated locally and deterministically from a ``torch.Generator``: noise, transforms
of in-distribution images, scikit-learn's bundled digits and letters rendered from the TrueType
fonts that ship with matplotlib. Nothing is downloaded.

Example::

    import torch
    from objectives import ood_sets

    x = torch.rand(100, 1, 28, 28)
    letters = ood_sets.generate("letters", x, n=64, generator=torch.Generator().manual_seed(0))
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

Maker = Callable[[torch.Tensor, "torch.Tensor | None", int, torch.Generator], torch.Tensor]
"""``make(reference, labels, n, generator) -> n outliers in [0, 1]`` shaped like ``reference[0]``."""

LETTERS = "ABCDEFGHIJ"
# Fonts bundled with matplotlib (mpl-data/fonts/ttf); regular, bold and slanted faces vary the weight.
LETTER_FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
    "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmb10.ttf", "cmti10.ttf",
)


@dataclass(frozen=True)
class OutlierFamily:
    """A named generator. ``image_only`` families need ``[C, H, W]`` inputs (not 1-D signals)."""

    name: str
    description: str
    make: Maker
    image_only: bool = False


_FAMILIES: dict[str, OutlierFamily] = {}


def _family(name: str, description: str, image_only: bool = False) -> Callable[[Maker], Maker]:
    def decorate(make: Maker) -> Maker:
        _FAMILIES[name] = OutlierFamily(name, description, make, image_only)
        return make

    return decorate


def available() -> list[str]:
    return sorted(_FAMILIES)


def get(name: str) -> OutlierFamily:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown outlier family '{name}'; allowed: {', '.join(available())}") from None


def applicable(name: str, reference: torch.Tensor) -> bool:
    """Whether the family can be generated for inputs shaped like ``reference`` (image vs signal)."""
    return not get(name).image_only or reference.dim() == 4


def generate(
    name: str,
    reference: torch.Tensor,
    n: int,
    generator: torch.Generator,
    labels: torch.Tensor | None = None,
    data_range: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """``n`` samples of family ``name`` shaped like ``reference[0]``, scaled to ``data_range``.

    ``reference`` (in-distribution inputs in ``data_range``) feeds the families derived from real
    images (inverted, shuffled, mixup, patch-permuted) and sets the output shape for the others.
    """
    family = get(name)
    if not applicable(name, reference):
        raise ValueError(f"outlier family '{name}' needs image inputs [C, H, W], got shape {list(reference.shape[1:])}")
    low, high = data_range
    unit = (reference.float() - low) / max(high - low, 1e-12)
    out = family.make(unit.clamp(0.0, 1.0), labels, int(n), generator)
    return (low + (high - low) * out.clamp(0.0, 1.0)).to(reference.dtype)


def _pick(reference: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    return reference[torch.randint(len(reference), (n,), generator=generator)]


def _spatial(reference: torch.Tensor) -> tuple[int, ...]:
    return tuple(reference.shape[2:])


# ------------------------------------------------------------------------------------ scoring sets
@_family("uniform", "uniform noise over the data range")
def _uniform(reference: torch.Tensor, labels: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand((n, *reference.shape[1:]), generator=generator)


@_family("gaussian", "Gaussian noise with the in-distribution mean and std, clipped to the range")
def _gaussian(reference: torch.Tensor, labels: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn((n, *reference.shape[1:]), generator=generator)
    return reference.mean() + reference.std() * noise


@_family("inverted", "in-distribution inputs with values flipped (high <-> low)")
def _inverted(reference: torch.Tensor, labels: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
    return 1.0 - _pick(reference, n, generator)


@_family("shuffled", "in-distribution inputs with their pixels permuted at random (same histogram, no shape)")
def _shuffled(reference: torch.Tensor, labels: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
    picked = _pick(reference, n, generator)
    flat = picked.flatten(2)
    order = torch.rand((n, flat.shape[-1]), generator=generator).argsort(dim=1)
    return flat.gather(2, order[:, None, :].expand_as(flat)).view_as(picked)


def _resize_gray(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(n, h, w) in [0, 1] -> (n, C, H, W) like ``reference``, same picture in every channel."""
    resized = F.interpolate(images[:, None], size=_spatial(reference), mode="bilinear", align_corners=False)
    return resized.expand(-1, reference.shape[1], -1, -1).contiguous()


@functools.lru_cache(maxsize=1)
def _digit_images() -> torch.Tensor:
    from sklearn.datasets import load_digits  # bundled with the scikit-learn wheel

    return torch.from_numpy((load_digits().images / 16.0).astype(np.float32))


@_family("digits", "scikit-learn's handwritten digits (8x8, bundled) resized to the input shape", image_only=True)
def _digits(reference: torch.Tensor, labels: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
    digits = _digit_images()
    return _resize_gray(digits[torch.randint(len(digits), (n,), generator=generator)], reference)


def font_dir() -> Path:
    """matplotlib's bundled TrueType folder (installed with the package, never downloaded)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def letter_fonts() -> list[Path]:
    fonts = [font_dir() / name for name in LETTER_FONTS if (font_dir() / name).is_file()]
    if not fonts:
        raise ValueError(f"no letter fonts found in {font_dir()}; reinstall matplotlib (it ships DejaVu, STIX and Computer Modern fonts)")
    return fonts


@functools.lru_cache(maxsize=8)
def render_letters(n: int, height: int, width: int, seed: int) -> np.ndarray:
    """notMNIST-like glyphs A-J: bright letter on black, varied font, weight, size and position.

    Deterministic for a given ``(n, height, width, seed)`` and installed font files.
    """
    from PIL import Image, ImageDraw, ImageFont

    fonts = letter_fonts()
    rng = np.random.default_rng(seed)
    scale = 4  # render large, then downsample: smooth edges at any target size
    canvas = (width * scale, height * scale)
    out = np.empty((n, height, width), dtype=np.float32)
    for index in range(n):
        letter = LETTERS[rng.integers(len(LETTERS))]
        font_path = fonts[rng.integers(len(fonts))]
        size = int(min(canvas) * rng.uniform(0.5, 0.85))
        dx, dy = (rng.uniform(-0.1, 0.1, size=2) * np.array(canvas)).astype(int)
        image = Image.new("L", canvas, 0)
        font = ImageFont.truetype(str(font_path), size)
        ImageDraw.Draw(image).text((canvas[0] // 2 + dx, canvas[1] // 2 + dy), letter, fill=255, font=font, anchor="mm")
        out[index] = np.asarray(image.resize((width, height), Image.Resampling.BOX), dtype=np.float32) / 255.0
    return out


@_family("letters", "letters A-J rendered from matplotlib's bundled DejaVu/STIX/Computer Modern fonts", image_only=True)
def _letters(reference: torch.Tensor, labels: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    height, width = _spatial(reference)
    return _resize_gray(torch.from_numpy(render_letters(n, height, width, seed).copy()), reference)


# ---------------------------------------------------------------------------- training families
@_family("mixup", "pixel-wise mixes of two in-distribution inputs of different classes")
def _mixup(reference: torch.Tensor, labels: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
    first = torch.randint(len(reference), (n,), generator=generator)
    second = torch.randint(len(reference), (n,), generator=generator)
    if labels is not None and labels.unique().numel() > 1:
        for _ in range(8):  # redraw partners of the same class (a handful of rounds suffices)
            same = labels[first] == labels[second]
            if not same.any():
                break
            second[same] = torch.randint(len(reference), (int(same.sum()),), generator=generator)
    weight = torch.empty(n).uniform_(0.35, 0.65, generator=generator).view(-1, *[1] * (reference.dim() - 1))
    return weight * reference[first] + (1.0 - weight) * reference[second]


@_family("patch_permuted", "in-distribution inputs cut into a 4x4 grid (4 segments for signals) with the patches shuffled")
def _patch_permuted(reference: torch.Tensor, labels: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
    picked = _pick(reference, n, generator).clone()
    grid = 4
    spatial = _spatial(reference)
    sizes = [max(1, s // grid) for s in spatial]
    cells = [min(grid, s // size) for s, size in zip(spatial, sizes)]
    region = picked[(..., *[slice(0, c * size) for c, size in zip(cells, sizes)])]
    # (n, C, c1, s1[, c2, s2]) -> patches along one axis, permute, fold back
    shape = [n, reference.shape[1]]
    for c, size in zip(cells, sizes):
        shape += [c, size]
    blocks = region.reshape(shape)
    if len(spatial) == 2:
        blocks = blocks.permute(0, 1, 2, 4, 3, 5).reshape(n, reference.shape[1], cells[0] * cells[1], sizes[0], sizes[1])
    order = torch.rand((n, blocks.shape[2]), generator=generator).argsort(dim=1)
    index = order.view(n, 1, -1, *[1] * len(spatial)).expand_as(blocks)
    blocks = blocks.gather(2, index)
    if len(spatial) == 2:
        blocks = blocks.reshape(n, reference.shape[1], cells[0], cells[1], sizes[0], sizes[1]).permute(0, 1, 2, 4, 3, 5)
    picked[(..., *[slice(0, c * size) for c, size in zip(cells, sizes)])] = blocks.reshape(region.shape)
    return picked


@_family("smoothed_noise", "uniform noise blurred into blobs, rescaled to the full range")
def _smoothed_noise(reference: torch.Tensor, labels: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
    noise = torch.rand((n, *reference.shape[1:]), generator=generator)
    pool = F.avg_pool2d if reference.dim() == 4 else F.avg_pool1d
    kernel = max(3, (min(_spatial(reference)) // 6) * 2 + 1)
    for _ in range(2):
        noise = pool(noise, kernel, stride=1, padding=kernel // 2, count_include_pad=False)
    flat = noise.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(1e-6)).view_as(noise)
