"""ImageNet (ILSVRC-2012) in its standard folder layout, decoded with PIL sample by sample.

Layout (docs/data.md)::

    <root>/train/<wnid>/*.JPEG
    <root>/val/<wnid>/*.JPEG           or   <root>/val/*.JPEG + a label file of "filename wnid"
                                            lines (<root>/val_labels.txt or <root>/val/labels.txt)

The classes are the ``train/`` sub-folders (sorted), so a folder with a subset of the classes
is a smaller ImageNet. Only the file list is held in memory; each ``__getitem__`` opens, decodes
and transforms one file. Training: random-resized crop (scale 0.08-1, aspect 3/4-4/3) to
``image_size``, horizontal flip, normalisation; evaluation: resize the shorter side to
``⌊image_size·256/224⌉`` and take the centre ``image_size`` square. Randomness comes from torch's
global generator (seeded per DataLoader worker).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ilif.data.errors import DatasetError, DatasetNotFoundError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
EXTENSIONS = (".jpeg", ".jpg", ".png")
LABEL_FILES = ("val_labels.txt", "val/labels.txt")
SOURCE = ("https://image-net.org/ (ILSVRC-2012 train and validation images, unpacked into "
          "train/<wnid>/ and val/)")
LAYOUT = ("<root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG (or a flat <root>/val/ with "
          "<root>/val_labels.txt of 'filename wnid' lines)")


# ------------------------------------------------------------------------------ transforms
def decode(path: Path) -> Image.Image:
    """The RGB image of ``path``; a missing or undecodable file is a ``DatasetError`` naming it."""
    try:
        with Image.open(path) as image:
            image.load()  # decode now, inside the error handling
            return image if image.mode == "RGB" else image.convert("RGB")
    except FileNotFoundError as exc:
        raise DatasetNotFoundError(f"imagenet: image file {path} does not exist") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"imagenet: cannot decode image file {path} ({exc}); the file is "
                           "corrupted or not an image: replace or delete it") from exc


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


class RandomResizedCrop:
    """A random box of area ``s·W·H`` (``s ~ U(scale)``) and aspect ``r`` (``log r ~
    U(log ratio)``), resized to ``size × size`` (bilinear); after 10 failed draws, the centre
    box of the nearest allowed aspect. The same rule as the ImageNet training recipes'."""

    def __init__(self, size: int, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3),
                 generator: torch.Generator | None = None) -> None:
        self.size, self.scale, self.ratio, self.generator = int(size), scale, ratio, generator

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``(left, top, w, h)`` of the crop in a ``width × height`` image."""
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * _uniform(*self.scale, self.generator)
            aspect = math.exp(_uniform(*log_ratio, self.generator))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (), generator=self.generator))
                left = int(torch.randint(0, width - w + 1, (), generator=self.generator))
                return left, top, w, h
        aspect = width / height
        if aspect < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif aspect > self.ratio[1]:
            w, h = int(round(height * self.ratio[1])), height
        else:
            w, h = width, height
        return (width - w) // 2, (height - h) // 2, w, h

    def __call__(self, image: Image.Image) -> Image.Image:
        left, top, w, h = self.box(*image.size)
        return image.resize((self.size, self.size), Image.Resampling.BILINEAR,
                            box=(left, top, left + w, top + h))


class ResizeCenterCrop:
    """Resize the shorter side to ``resize`` and cut the centre ``crop × crop`` square, in one
    resampling: the output pixel ``j`` samples the source at ``o + (j + ½)·s − ½`` with
    ``s = min(W, H) / resize`` and ``o`` the crop's offset in source pixels."""

    def __init__(self, resize: int, crop: int) -> None:
        if crop > resize:
            raise ValueError(f"crop ({crop}) must not exceed resize ({resize})")
        self.resize, self.crop = int(resize), int(crop)

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        step = min(width, height) / self.resize
        side = self.crop * step
        left, top = (width - side) / 2, (height - side) / 2
        return image.resize((self.crop, self.crop), Image.Resampling.BILINEAR,
                            box=(left, top, left + side, top + side))


class RandomFlip:
    """Mirror left-right with probability ½."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def __call__(self, image: Image.Image) -> Image.Image:
        if float(torch.rand((), generator=self.generator)) < 0.5:
            return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image


def to_tensor(image: Image.Image, mean: Sequence[float] = MEAN,
              std: Sequence[float] = STD) -> torch.Tensor:
    """``x[c] = (pixel[c]/255 − mean[c]) / std[c]`` as float32 ``[3, H, W]`` (computed as
    ``pixel·(1/(255·std)) − mean/std`` on a channel-first copy)."""
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy())
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    return pixels.to(torch.float32).mul_(1.0 / (255.0 * s)).sub_(m / s)


def eval_resize(image_size: int) -> int:
    """The shorter side before the centre crop: 256 for 224 (the ratio 256/224 kept)."""
    return int(round(image_size * 256 / 224))


def image_transform(augment: bool, image_size: int = 224) -> Callable[[Image.Image], torch.Tensor]:
    """Training (``augment``): random-resized crop → flip → tensor; else resize → centre crop."""
    steps: list[Callable[[Image.Image], Image.Image]] = (
        [RandomResizedCrop(image_size), RandomFlip()] if augment
        else [ResizeCenterCrop(eval_resize(image_size), image_size)]
    )

    def transform(image: Image.Image) -> torch.Tensor:
        for step in steps:
            image = step(image)
        return to_tensor(image)

    return transform


# --------------------------------------------------------------------------------- dataset
class ImageFolderDataset(Dataset):
    """``(transform(decode(files[i])), targets[i])``; holds the file list only."""

    def __init__(self, files: Sequence[Path], targets: Sequence[int], classes: Sequence[str],
                 transform: Callable[[Image.Image], torch.Tensor]) -> None:
        if len(files) != len(targets):
            raise ValueError(f"{len(files)} files but {len(targets)} targets")
        self.files = [Path(f) for f in files]
        self.targets = [int(t) for t in targets]
        self.classes = list(classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(decode(self.files[index])), self.targets[index]


def _images(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in EXTENSIONS)


def find_classes(root: Path, classes: Sequence[str] | None = None) -> list[str]:
    """The class folders of ``<root>/train`` (sorted), or the given ``classes`` (checked)."""
    train = root / "train"
    if not train.is_dir():
        raise DatasetNotFoundError(f"imagenet: {train} does not exist; expected {LAYOUT}; "
                                   f"obtain the data from {SOURCE}")
    found = sorted(d.name for d in train.iterdir() if d.is_dir())
    if not found:
        raise DatasetNotFoundError(f"imagenet: {train} holds no class folders; expected "
                                   f"{LAYOUT}")
    if classes is None:
        return found
    missing = [c for c in classes if c not in found]
    if missing:
        raise DatasetNotFoundError(f"imagenet: classes {missing[:5]} have no folder in {train}")
    return list(classes)


def read_label_file(path: Path) -> dict[str, str]:
    """``{filename: wnid}`` from lines ``filename wnid`` (blank lines and ``#`` comments
    skipped); a malformed line is a ``DatasetError`` naming the file and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"imagenet: cannot read the label file {path} ({exc})") from exc
    labels: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DatasetError(f"imagenet: {path}, line {number}: expected 'filename wnid', got "
                               f"{line!r}")
        labels[parts[0]] = parts[1]
    return labels


def _val_samples(root: Path, classes: list[str], label_file: Path | None
                 ) -> tuple[list[Path], list[int]]:
    val = root / "val"
    if not val.is_dir():
        raise DatasetNotFoundError(f"imagenet: {val} does not exist; expected {LAYOUT}")
    index = {c: i for i, c in enumerate(classes)}
    files: list[Path] = []
    targets: list[int] = []
    if label_file is None and any(d.is_dir() for d in val.iterdir()):
        for wnid in classes:
            folder = val / wnid
            if not folder.is_dir():
                raise DatasetNotFoundError(f"imagenet: {folder} does not exist: every training "
                                           "class needs a validation folder")
            found = _images(folder)
            files += found
            targets += [index[wnid]] * len(found)
        return files, targets
    if label_file is None:
        candidates = [root / name for name in LABEL_FILES]
        label_file = next((c for c in candidates if c.is_file()), None)
        if label_file is None:
            raise DatasetNotFoundError(
                f"imagenet: {val} is flat but no label file was found (looked for "
                f"{', '.join(map(str, candidates))}); write one with 'filename wnid' lines or "
                "pass val_labels=<file>")
    for name, wnid in sorted(read_label_file(Path(label_file)).items()):
        if wnid in index:  # other classes: not part of this (sub)set
            files.append(val / name)
            targets.append(index[wnid])
    return files, targets


def build(root: Path, split: str, augment: bool, image_size: int = 224,
          classes: Sequence[str] | None = None, val_labels: str | Path | None = None
          ) -> ImageFolderDataset:
    """The ``train`` split (``train/``) or the ``test`` split (``val/``) of an ImageNet folder."""
    if isinstance(image_size, bool) or int(image_size) < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    classes = find_classes(root, classes)
    if split == "train":
        files, targets = [], []
        for i, wnid in enumerate(classes):
            found = _images(root / "train" / wnid)
            files += found
            targets += [i] * len(found)
    else:
        files, targets = _val_samples(root, classes, Path(val_labels) if val_labels else None)
    if not files:
        raise DatasetNotFoundError(f"imagenet: no images for the {split} split under {root}; "
                                   f"expected {LAYOUT}")
    return ImageFolderDataset(files, targets, classes, image_transform(augment, int(image_size)))
