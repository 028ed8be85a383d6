"""Outlier families: synthetic or foreign inputs a model was not trained to classify.

One registry serves two purposes that must never overlap for a trial: the OOD objective *scores*
on some families, and outlier-exposure training *trains* on others (``nas.robust_training``).
Everything is generated locally and deterministically from a ``torch.Generator``: noise, transforms
of in-distribution images, scikit-learn's bundled digits, glyphs rendered from the TrueType fonts
that ship with matplotlib, and pen scribbles drawn with PIL. Nothing is downloaded.

Held-out sets: families built from a finite pool of real material (fonts, digit images) draw from a
pool per split, so ``nas verify`` (``split="test"``) scores on fonts and images the search
(``split="val"``) never saw: :data:`FONT_POOLS` split matplotlib's fonts by typeface, and the
scikit-learn digits are halved by a fixed seeded permutation. Training (``split=None``) may use
every pool; the recipe keeps training and scored families apart.

Each family belongs to a group (OpenOOD's convention): ``near`` OOD keeps the look of real inputs
(glyphs, strokes, transformed images), ``far`` OOD does not (noise, constant images).

Example::

    import torch
    from objectives import ood_sets

    x = torch.rand(100, 1, 28, 28)
    letters = ood_sets.generate("letters", x, n=64, generator=torch.Generator().manual_seed(0), split="val")
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

Maker = Callable[..., torch.Tensor]
"""``make(reference, labels, n, generator[, split]) -> n outliers in [0, 1]`` shaped like ``reference[0]``
(``split`` only for families with ``pooled=True``)."""

LETTERS = "ABCDEFGHIJ"
LETTERS_KT = "KLMNOPQRST"
LOWERCASE = "abcdefghijklmnopqrstuvwxyz"
DIGITS = "0123456789"
SPLITS = ("val", "test")
GROUPS = ("near", "far")
# matplotlib's bundled fonts (mpl-data/fonts/ttf), split by typeface so that the test split's glyphs are not merely
# other weights of the validation split's typefaces: validation gets DejaVu Sans and Serif and Computer Modern Roman,
# test gets DejaVu Sans Mono, STIX General and Computer Modern Sans and Typewriter. Each covers A-Z, a-z and 0-9.
FONT_POOLS: dict[str, tuple[str, ...]] = {
    "val": (
        "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
        "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
        "cmr10.ttf", "cmb10.ttf", "cmti10.ttf",
    ),
    "test": (
        "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf",
        "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
        "cmss10.ttf", "cmtt10.ttf",
    ),
}
LETTER_FONTS = FONT_POOLS["val"] + FONT_POOLS["test"]
MAX_RENDER = 64  # pixels a side that glyphs and scribbles are drawn at, at most
# The fixed seed of the permutation that halves scikit-learn's digits into the validation and test pools: the
# pools must not depend on the study seed, so that no study's test images are another study's validation images.
POOL_SEED = 0


@dataclass(frozen=True)
class OutlierFamily:
    """A named generator. ``image_only`` families need ``[C, H, W]`` inputs (not 1-D signals); ``group`` is
    ``near`` or ``far`` OOD; ``pooled`` families draw from a pool per split (``make`` takes ``split``)."""

    name: str
    description: str
    make: Maker
    image_only: bool = False
    group: str = "near"
    pooled: bool = False
    depicts: frozenset[str] = frozenset()  # class names its images show (e.g. "A"): not OOD for data of those classes


_FAMILIES: dict[str, OutlierFamily] = {}


def _family(name: str, description: str, group: str, image_only: bool = False,
            pooled: bool = False, depicts: str = "") -> Callable[[Maker], Maker]:
    def decorate(make: Maker) -> Maker:
        _FAMILIES[name] = OutlierFamily(name, description, make, image_only, group, pooled, frozenset(depicts))
        return make

    return decorate


def available() -> list[str]:
    return sorted(_FAMILIES)


def get(name: str) -> OutlierFamily:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown outlier family '{name}'; allowed: {', '.join(available())}") from None


# Families drawn from the same material (typed characters in the same fonts; the same digit images): training on
# one of them and scoring on another would score a model on outliers it has seen.
SHARED_MATERIAL: tuple[frozenset[str], ...] = (
    frozenset({"letters", "letters_kt", "glyphs", "typed_digits"}),
    frozenset({"digits", "typed_digits"}),
)


def related(name: str) -> set[str]:
    """``name`` and every family that shares its material (see :data:`SHARED_MATERIAL`)."""
    return {name}.union(*(names for names in SHARED_MATERIAL if name in names))


def group(name: str) -> str:
    """``near`` or ``far``: whether the family keeps the look of real inputs (OpenOOD's near-/far-OOD)."""
    return get(name).group


def in_distribution(name: str, class_names: list[str] | None) -> list[str]:
    """The classes of ``class_names`` that family ``name`` depicts (e.g. ``letters`` for data of letters A-J):
    such a family is not OOD for that data, and scoring it as OOD would punish correct answers. Case is ignored
    (EMNIST's letters split names its merged upper- and lowercase classes a-z)."""
    depicts = {character.casefold() for character in get(name).depicts}
    return [str(c) for c in class_names or () if str(c).casefold() in depicts]


def applicable(name: str, reference: torch.Tensor) -> bool:
    """Whether the family can be generated for inputs shaped like ``reference`` (image vs signal)."""
    return not get(name).image_only or reference.dim() == 4


def _check_split(split: str | None) -> None:
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)} (or None for training), got {split!r}")


def generate(
    name: str,
    reference: torch.Tensor,
    n: int,
    generator: torch.Generator,
    labels: torch.Tensor | None = None,
    data_range: tuple[float, float] = (0.0, 1.0),
    split: str | None = None,
) -> torch.Tensor:
    """``n`` samples of family ``name`` shaped like ``reference[0]``, scaled to ``data_range``.

    ``reference`` (in-distribution inputs in ``data_range``) feeds the families derived from real
    images (inverted, shuffled, mixup, patch-permuted) and sets the output shape for the others.
    ``split`` (``val`` or ``test``) chooses the pool of the pooled families (fonts, digit images); None (training)
    draws from every pool.
    """
    family = get(name)
    _check_split(split)
    if not applicable(name, reference):
        raise ValueError(f"outlier family '{name}' needs image inputs [C, H, W], got shape {list(reference.shape[1:])}")
    low, high = data_range
    unit = (reference.float() - low) / max(high - low, 1e-12)
    extra = {"split": split} if family.pooled else {}
    out = family.make(unit.clamp(0.0, 1.0), labels, int(n), generator, **extra)
    return (low + (high - low) * out.clamp(0.0, 1.0)).to(reference.dtype)


def _pick(reference: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    return reference[torch.randint(len(reference), (n,), generator=generator)]


def _spatial(reference: torch.Tensor) -> tuple[int, ...]:
    return tuple(reference.shape[2:])


def _render_size(reference: torch.Tensor) -> tuple[int, int]:
    """The size glyphs and scribbles are drawn at: the input's, at most :data:`MAX_RENDER` a side (larger inputs get
    the drawing resized; drawing at 4x their size would be slow, and the cached drawings large)."""
    height, width = _spatial(reference)
    scale = min(1.0, MAX_RENDER / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _seed(generator: torch.Generator) -> int:
    """A numpy/PIL seed drawn from ``generator`` (the renderers are cached by it)."""
    return int(torch.randint(2**31 - 1, (1,), generator=generator))


# ------------------------------------------------------------------------------------ far-OOD sets
@_family("uniform", "uniform noise over the data range", "far")
def _uniform(reference: torch.Tensor, labels: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand((n, *reference.shape[1:]), generator=generator)


@_family("gaussian", "Gaussian noise with the in-distribution mean and std, clipped to the range", "far")
def _gaussian(reference: torch.Tensor, labels: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn((n, *reference.shape[1:]), generator=generator)
    return reference.mean() + reference.std() * noise


@_family("binary_noise", "binary noise: each value the range's low or high end, a density from 0.1 to 0.9 per input",
         "far")
def _binary_noise(reference: torch.Tensor, labels: torch.Tensor | None, n: int,
                  generator: torch.Generator) -> torch.Tensor:
    density = torch.empty(n).uniform_(0.1, 0.9, generator=generator).view(-1, *[1] * (reference.dim() - 1))
    return (torch.rand((n, *reference.shape[1:]), generator=generator) < density).float()


@_family("constant", "constant inputs: one random value per channel over the whole input", "far")
def _constant(reference: torch.Tensor, labels: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
    level = torch.rand((n, reference.shape[1], *[1] * len(_spatial(reference))), generator=generator)
    return level.expand(n, *reference.shape[1:]).contiguous()


@_family("shuffled", "in-distribution inputs with their pixels permuted at random (same histogram, no shape)", "far")
def _shuffled(reference: torch.Tensor, labels: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
    picked = _pick(reference, n, generator)
    flat = picked.flatten(2)
    order = torch.rand((n, flat.shape[-1]), generator=generator).argsort(dim=1)
    return flat.gather(2, order[:, None, :].expand_as(flat)).view_as(picked)


# ----------------------------------------------------------------------------------- near-OOD sets
@_family("inverted", "in-distribution inputs with values flipped (high <-> low)", "near")
def _inverted(reference: torch.Tensor, labels: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
    return 1.0 - _pick(reference, n, generator)


@_family("flipped", "in-distribution images flipped upside down (not OOD for classes that are symmetric that way)",
         "near", image_only=True)
def _flipped(reference: torch.Tensor, labels: torch.Tensor | None, n: int, generator: torch.Generator) -> torch.Tensor:
    return _pick(reference, n, generator).flip(-2)


def _resize_gray(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(n, h, w) in [0, 1] -> (n, C, H, W) like ``reference``, same picture in every channel."""
    resized = F.interpolate(images[:, None], size=_spatial(reference), mode="bilinear", align_corners=False)
    return resized.expand(-1, reference.shape[1], -1, -1).contiguous()


@functools.lru_cache(maxsize=1)
def _digit_images() -> torch.Tensor:
    from sklearn.datasets import load_digits  # bundled with the scikit-learn wheel

    return torch.from_numpy((load_digits().images / 16.0).astype(np.float32))


def digit_pool(split: str | None) -> np.ndarray:
    """Indices into scikit-learn's digits that ``split`` draws from: disjoint halves for ``val`` and ``test``
    (a permutation seeded by :data:`POOL_SEED`, alternate positions), every image for None."""
    _check_split(split)
    count = len(_digit_images())
    if split is None:
        return np.arange(count)
    order = np.random.default_rng(POOL_SEED).permutation(count)
    return np.sort(order[SPLITS.index(split) :: 2])


@_family("digits", "scikit-learn's handwritten digits (8x8, bundled) resized to the input shape; half of them per "
         "split", "near", image_only=True, pooled=True, depicts=DIGITS)
def _digits(reference: torch.Tensor, labels: torch.Tensor | None, n: int, generator: torch.Generator,
            split: str | None = None) -> torch.Tensor:
    pool = torch.from_numpy(digit_pool(split))
    return _resize_gray(_digit_images()[pool[torch.randint(len(pool), (n,), generator=generator)]], reference)


def font_dir() -> Path:
    """matplotlib's bundled TrueType folder (installed with the package, never downloaded)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def fonts(split: str | None = None) -> list[Path]:
    """The installed font files of ``split``'s pool (:data:`FONT_POOLS`); None: both pools."""
    _check_split(split)
    names = LETTER_FONTS if split is None else FONT_POOLS[split]
    found = [font_dir() / name for name in names if (font_dir() / name).is_file()]
    if not found:
        raise ValueError(f"no {split or 'letter'} fonts found in {font_dir()}; reinstall matplotlib (it ships DejaVu, "
                         "STIX and Computer Modern fonts)")
    return found


def letter_fonts() -> list[Path]:
    """Every font the glyph families render from (both splits' pools)."""
    return fonts(None)


def font_names(split: str | None) -> list[str]:
    """``split``'s installed fonts by name (what the OOD objective's settings report)."""
    return [path.stem for path in fonts(split)]


GLYPH_SCALE = 4  # glyphs are drawn at this multiple of the output size, then box-downsampled (smooth edges)


def _draw_glyph(character: str, font_path: str, height: int, width: int, size: float, offset: np.ndarray,
                rotation: float = 0.0, stroke: int = 0) -> np.ndarray:
    """One bright glyph on black, ``(height, width)`` in [0, 1]: ``size`` (fraction of the canvas), ``offset``
    (fractions of the canvas, x then y), ``rotation`` (degrees, counter-clockwise) and ``stroke`` (pixels of the
    large canvas: > 0 thickens the outline, < 0 erodes it)."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    canvas = (width * GLYPH_SCALE, height * GLYPH_SCALE)
    dx, dy = (offset * np.array(canvas)).astype(int)
    image = Image.new("L", canvas, 0)
    font = ImageFont.truetype(font_path, int(min(canvas) * size))
    ImageDraw.Draw(image).text((canvas[0] // 2 + dx, canvas[1] // 2 + dy), character, fill=255, font=font,
                               anchor="mm", stroke_width=max(stroke, 0), stroke_fill=255)
    if stroke < 0:
        image = image.filter(ImageFilter.MinFilter(2 * -stroke + 1))
    if rotation:
        image = image.rotate(rotation, resample=Image.Resampling.BILINEAR)
    return np.asarray(image.resize((width, height), Image.Resampling.BOX), dtype=np.float32) / 255.0


def _draw_glyphs(characters: str, font_files: tuple[str, ...], n: int, height: int, width: int,
                 seed: int) -> np.ndarray:
    """Bright glyphs on black: a random character of ``characters`` per image, in a random font of ``font_files``,
    with varied size and position; rendered large and box-downsampled for smooth edges at any size."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, height, width), dtype=np.float32)
    for index in range(n):
        character = characters[rng.integers(len(characters))]
        font_path = font_files[rng.integers(len(font_files))]
        size = rng.uniform(0.5, 0.85)
        out[index] = _draw_glyph(character, font_path, height, width, size, rng.uniform(-0.1, 0.1, size=2))
    return out


@dataclass(frozen=True)
class Augmentation:
    """How much rendered characters vary (uniform ranges): ``size`` (fraction of the image the font size takes),
    ``shift`` (largest offset, fraction of the image), ``rotation`` (largest angle, degrees) and ``stroke``
    (outline change in pixels of the 4x canvas: negative thins, positive thickens)."""

    size: tuple[float, float] = (0.5, 0.9)
    shift: float = 0.12
    rotation: float = 15.0
    stroke: tuple[int, int] = (-1, 4)


def render_labelled(characters: str, split: str | None, n: int, height: int, width: int, seed: int,
                    augmentation: Augmentation = Augmentation()) -> tuple[np.ndarray, np.ndarray]:
    """``n`` augmented glyphs and their labels (the index of each one's character in ``characters``), typed in
    ``split``'s fonts (:data:`FONT_POOLS`; None: every font), classes in equal shares, in a seeded order.

    A classification task (the ``letters`` data set), not outliers: deterministic for the arguments and the
    installed font files, and the first k of ``n`` images do not depend on ``n``.
    """
    font_files = tuple(str(path) for path in fonts(split))
    rng = np.random.default_rng(seed)
    labels = np.empty(n, dtype=np.int64)
    out = np.empty((n, height, width), dtype=np.float32)
    for index in range(n):
        if index % len(characters) == 0:  # each run of len(characters) images holds every class once
            cycle = rng.permutation(len(characters))
        labels[index] = cycle[index % len(characters)]
        font_path = font_files[rng.integers(len(font_files))]
        size = rng.uniform(*augmentation.size)
        offset = rng.uniform(-augmentation.shift, augmentation.shift, size=2)
        rotation = rng.uniform(-augmentation.rotation, augmentation.rotation)
        stroke = int(rng.integers(augmentation.stroke[0], augmentation.stroke[1] + 1))
        out[index] = _draw_glyph(characters[labels[index]], font_path, height, width, size, offset, rotation, stroke)
    return out, labels


@functools.lru_cache(maxsize=8)
def render_glyphs(characters: str, split: str | None, n: int, height: int, width: int, seed: int) -> np.ndarray:
    """``n`` glyphs of ``characters`` typed in ``split``'s fonts; deterministic for the arguments and the installed
    font files (cached: every trial of a study scores on the same glyphs)."""
    return _draw_glyphs(characters, tuple(str(path) for path in fonts(split)), n, height, width, seed)


@functools.lru_cache(maxsize=8)
def render_letters(n: int, height: int, width: int, seed: int, split: str | None = None) -> np.ndarray:
    """notMNIST-like glyphs A-J: bright letter on black, varied font, weight, size and position.

    Deterministic for a given ``(n, height, width, seed, split)`` and installed font files.
    """
    return _draw_glyphs(LETTERS, tuple(str(path) for path in fonts(split)), n, height, width, seed)


@_family("letters", "letters A-J rendered from matplotlib's bundled fonts, a disjoint pool of typefaces per split",
         "near", image_only=True, pooled=True, depicts=LETTERS)
def _letters(reference: torch.Tensor, labels: torch.Tensor | None, n: int, generator: torch.Generator,
             split: str | None = None) -> torch.Tensor:
    height, width = _render_size(reference)
    images = render_letters(n, height, width, _seed(generator), split)
    return _resize_gray(torch.from_numpy(images.copy()), reference)


def _typed(characters: str, reference: torch.Tensor, n: int, generator: torch.Generator,
           split: str | None) -> torch.Tensor:
    """``n`` of ``characters`` typed in the split's fonts, grey, in the reference's shape."""
    height, width = _render_size(reference)
    images = render_glyphs(characters, split, n, height, width, _seed(generator))
    return _resize_gray(torch.from_numpy(images.copy()), reference)


@_family("letters_kt", "letters K-T typed in the split's fonts: OOD for the 'letters' data set (A-J)", "near",
         image_only=True, pooled=True, depicts=LETTERS_KT)
def _letters_kt(reference: torch.Tensor, labels: torch.Tensor | None, n: int, generator: torch.Generator,
                split: str | None = None) -> torch.Tensor:
    return _typed(LETTERS_KT, reference, n, generator, split)


@_family("glyphs", "lowercase letters a-z typed in the split's fonts (other characters than 'letters')", "near",
         image_only=True, pooled=True)
def _glyphs(reference: torch.Tensor, labels: torch.Tensor | None, n: int, generator: torch.Generator,
            split: str | None = None) -> torch.Tensor:
    return _typed(LOWERCASE, reference, n, generator, split)


@_family("typed_digits", "digits 0-9 typed in the split's fonts (in-distribution in meaning for digit data)", "near",
         image_only=True, pooled=True, depicts=DIGITS)
def _typed_digits(reference: torch.Tensor, labels: torch.Tensor | None, n: int, generator: torch.Generator,
                  split: str | None = None) -> torch.Tensor:
    return _typed(DIGITS, reference, n, generator, split)


def _bezier(control: np.ndarray, steps: int = 32) -> np.ndarray:
    """Points of the cubic Bezier curve with the 4 ``control`` points (4, 2)."""
    t = np.linspace(0.0, 1.0, steps)[:, None]
    weights = np.hstack([(1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3])
    return weights @ control


@functools.lru_cache(maxsize=8)
def render_scribbles(n: int, height: int, width: int, seed: int) -> np.ndarray:
    """Pen scribbles: 1 to 3 bright cubic Bezier strokes of random width on black (strokes without a glyph's
    shape). Deterministic for the arguments."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    scale = 4
    canvas = np.array([width * scale, height * scale])
    out = np.empty((n, height, width), dtype=np.float32)
    for index in range(n):
        image = Image.new("L", tuple(int(v) for v in canvas), 0)
        draw = ImageDraw.Draw(image)
        for _ in range(rng.integers(1, 4)):
            control = rng.uniform(0.1, 0.9, size=(4, 2)) * canvas
            stroke = max(1, int(min(canvas) * rng.uniform(0.04, 0.12)))
            points = [tuple(point) for point in _bezier(control).tolist()]
            draw.line(points, fill=255, width=stroke, joint="curve")
        out[index] = np.asarray(image.resize((width, height), Image.Resampling.BOX), dtype=np.float32) / 255.0
    return out


@_family("scribbles", "pen scribbles: 1-3 random Bezier strokes drawn with PIL", "near", image_only=True)
def _scribbles(reference: torch.Tensor, labels: torch.Tensor | None, n: int,
               generator: torch.Generator) -> torch.Tensor:
    height, width = _render_size(reference)
    return _resize_gray(torch.from_numpy(render_scribbles(n, height, width, _seed(generator)).copy()), reference)


# ---------------------------------------------------------------------------- training families
@_family("mixup", "pixel-wise mixes of two in-distribution inputs of different classes", "near")
def _mixup(reference: torch.Tensor, labels: torch.Tensor | None, n: int,
           generator: torch.Generator) -> torch.Tensor:
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


@_family("patch_permuted", "in-distribution inputs cut into a 4x4 grid (4 segments for signals) with the "
         "patches shuffled", "near")
def _patch_permuted(reference: torch.Tensor, labels: torch.Tensor | None, n: int,
                    generator: torch.Generator) -> torch.Tensor:
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
        blocks = blocks.permute(0, 1, 2, 4, 3, 5).reshape(n, reference.shape[1], cells[0] * cells[1], *sizes)
    order = torch.rand((n, blocks.shape[2]), generator=generator).argsort(dim=1)
    index = order.view(n, 1, -1, *[1] * len(spatial)).expand_as(blocks)
    blocks = blocks.gather(2, index)
    if len(spatial) == 2:
        blocks = blocks.reshape(n, reference.shape[1], cells[0], cells[1], sizes[0], sizes[1]).permute(0, 1, 2, 4, 3, 5)
    picked[(..., *[slice(0, c * size) for c, size in zip(cells, sizes)])] = blocks.reshape(region.shape)
    return picked


@_family("smoothed_noise", "uniform noise blurred into blobs, rescaled to the full range", "far")
def _smoothed_noise(reference: torch.Tensor, labels: torch.Tensor | None, n: int,
                    generator: torch.Generator) -> torch.Tensor:
    noise = torch.rand((n, *reference.shape[1:]), generator=generator)
    pool = F.avg_pool2d if reference.dim() == 4 else F.avg_pool1d
    kernel = max(3, (min(_spatial(reference)) // 6) * 2 + 1)
    for _ in range(2):
        noise = pool(noise, kernel, stride=1, padding=kernel // 2, count_include_pad=False)
    flat = noise.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(1e-6)).view_as(noise)
