"""Static image datasets: scikit-learn's 8×8 digits (embedded, no download) and CIFAR-10/100 read
from the original python-pickle layout.

Every dataset returns ``(x, y)``: ``x`` a float tensor ``[C, H, W]`` scaled to ``[0, 1]``, then
augmented (training only) and normalised ``(x − mean) / std``; ``y`` an ``int``.
"""

from __future__ import annotations

import io
import pickle
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ilif.data.errors import DatasetError, DatasetNotFoundError
from ilif.data.transforms import Compose, Cutout, Normalize, RandomCrop, RandomHorizontalFlip

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
CIFAR_SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html (the 'CIFAR-10/100 python version')"

# Fixed split of scikit-learn's 1,797 digits: the first 1,437 (80 %) train, the last 360 test.
DIGITS_TRAIN_SIZE = 1437


class ImageDataset(Dataset):
    """Images held in memory: ``x = transform(images[i] · scale)``, ``y = targets[i]``."""

    def __init__(self, images: torch.Tensor, targets: Sequence[int], classes: Sequence[str],
                 transform: Callable[[torch.Tensor], torch.Tensor] | None, scale: float = 1.0):
        if images.ndim != 4 or images.shape[0] != len(targets):
            raise ValueError(f"images must be [N, C, H, W] with N = len(targets), got "
                             f"{tuple(images.shape)} and {len(targets)} targets")
        self.images = images
        self.targets = [int(t) for t in targets]
        self.classes = list(classes)
        self.transform = transform
        self.scale = scale

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.images[index].to(torch.float32) * self.scale
        if self.transform is not None:
            x = self.transform(x)
        return x, self.targets[index]


def image_transform(mean: Sequence[float], std: Sequence[float], augment: bool,
                    crop: int | None = None, padding: int = 4, flip: bool = True,
                    cutout: bool = True) -> Compose:
    """The paper's pipeline: [random crop (pad ``padding``) → Cutout → h-flip] when ``augment``,
    then normalisation (images in ``[0, 1]``; Cutout's grey fill happens before normalising)."""
    steps: list = []
    if augment:
        if crop is not None:
            steps.append(RandomCrop(crop, padding=padding))
        if cutout:
            steps.append(Cutout())
        if flip:
            steps.append(RandomHorizontalFlip())
    steps.append(Normalize(mean, std))
    return Compose(steps)


# ----------------------------------------------------------------------------------- digits
def load_digits_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The fixed split of scikit-learn's digits: images float ``[N, 8, 8]`` in ``[0, 1]``
    (pixel / 16) and labels ``[N]``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    labels = bunch.target.astype(np.int64)
    part = slice(0, DIGITS_TRAIN_SIZE) if split == "train" else slice(DIGITS_TRAIN_SIZE, None)
    return images[part], labels[part]


def digits_mean_std() -> tuple[float, float]:
    """Mean and std of the training split's pixels (after /16), used to normalise both splits."""
    images, _ = load_digits_arrays("train")
    return float(images.mean()), float(images.std())


def digits_dataset(split: str, augment: bool) -> ImageDataset:
    """scikit-learn's real 8×8 digits, 1 channel; augmentation = random crop 8 with padding 1."""
    images, labels = load_digits_arrays(split)
    mean, std = digits_mean_std()
    transform = image_transform((mean,), (std,), augment, crop=8, padding=1, flip=False,
                                cutout=False)
    return ImageDataset(torch.from_numpy(images).unsqueeze(1), labels.tolist(),
                        [str(d) for d in range(10)], transform)


# ------------------------------------------------------------------------------------ CIFAR
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays (no arbitrary code from a corrupted file)."""

    _allowed = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the pickle")
        return super().find_class(module, name)


def _text(key) -> str:
    return key.decode("latin1") if isinstance(key, bytes) else str(key)


def read_cifar_batch(path: str | Path, label_key: str, num_classes: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR python batch: images uint8 ``[N, 3, 32, 32]`` (the stored ``data`` is
    ``[N, 3072]`` channel-major) and labels int64 ``[N]`` from ``label_key``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetNotFoundError(f"cannot read CIFAR batch file {path}: {exc}") from exc
    try:
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as exc:  # any unpickling failure means a cut or corrupted file
        raise DatasetError(f"CIFAR batch file {path} is truncated or corrupted "
                           f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(batch, dict):
        raise DatasetError(f"CIFAR batch file {path} holds a {type(batch).__name__}, "
                           "expected a dict with 'data' and labels")
    batch = {_text(k): v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        desc = (f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray)
                else type(data).__name__)
        raise DatasetError(f"CIFAR batch file {path}: 'data' must be uint8 [N, 3072], got {desc}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"CIFAR batch file {path}: '{label_key}' is not a list of "
                           "integers") from exc
    if labels.ndim != 1 or len(labels) != len(data):
        raise DatasetError(f"CIFAR batch file {path}: {len(data)} images but '{label_key}' has "
                           f"shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(f"CIFAR batch file {path}: labels outside [0, {num_classes})")
    return data.reshape(-1, 3, 32, 32), labels


def _natural_key(path: Path) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name))


def _find_folder(root: Path, folder: str, markers: Sequence[str], name: str,
                 layout: str) -> Path:
    """``<root>/<folder>`` or, when the batch files lie directly in it, ``root`` itself."""
    if not root.is_dir():
        raise DatasetNotFoundError(f"{name}: root folder {root} does not exist; expected "
                                   f"{layout}; obtain it from {CIFAR_SOURCE}")
    for candidate in (root / folder, root):
        if candidate.is_dir() and any(any(candidate.glob(m)) for m in markers):
            return candidate
    raise DatasetNotFoundError(f"{name}: no {folder}/ under {root}; expected {layout}; "
                               f"obtain it from {CIFAR_SOURCE}")


def cifar_dataset(name: str, root: str | Path, split: str, augment: bool,
                  label_type: str = "fine") -> ImageDataset:
    """CIFAR-10 (``<root>/cifar-10-batches-py/data_batch_*``, ``test_batch``) or CIFAR-100
    (``<root>/cifar-100-python/train``, ``test``). Reads whichever training batches exist and
    never checks the official md5 sums. ``label_type`` ('fine' | 'coarse') is for CIFAR-100."""
    root = Path(root).expanduser()
    if name == "cifar10":
        folder, num_classes, label_key = "cifar-10-batches-py", 10, "labels"
        mean, std = CIFAR10_MEAN, CIFAR10_STD
        layout = (f"{root}/cifar-10-batches-py/ holding data_batch_1 … data_batch_5, "
                  "test_batch and batches.meta")
    else:
        if label_type not in ("fine", "coarse"):
            raise ValueError(f"label_type must be 'fine' or 'coarse', got {label_type!r}")
        folder, label_key = "cifar-100-python", f"{label_type}_labels"
        num_classes = 100 if label_type == "fine" else 20
        mean, std = CIFAR100_MEAN, CIFAR100_STD
        layout = f"{root}/cifar-100-python/ holding train, test and meta"
    markers = ("data_batch_*", "test_batch") if name == "cifar10" else ("train", "test")
    base = _find_folder(root, folder, markers, name, layout)
    if name == "cifar10":
        files = (sorted(base.glob("data_batch_*"), key=_natural_key) if split == "train"
                 else [base / "test_batch"])
    else:
        files = [base / ("train" if split == "train" else "test")]
    missing = [f for f in files if not f.is_file()]
    if not files or missing:
        what = ", ".join(str(f) for f in missing) or f"{base}/data_batch_*"
        raise DatasetNotFoundError(f"{name} ({split}): missing {what}; expected {layout}; "
                                   f"obtain it from {CIFAR_SOURCE}")
    parts = [read_cifar_batch(f, label_key, num_classes) for f in files]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    classes = _cifar_classes(base, name, num_classes, label_type)
    transform = image_transform(mean, std, augment, crop=32, padding=4)
    return ImageDataset(torch.from_numpy(images), labels.tolist(), classes, transform,
                        scale=1.0 / 255.0)


def _cifar_classes(base: Path, name: str, num_classes: int, label_type: str) -> list[str]:
    """Class names from ``batches.meta`` / ``meta`` when readable, else the label numbers."""
    meta = base / ("batches.meta" if name == "cifar10" else "meta")
    key = "label_names" if name == "cifar10" else f"{label_type}_label_names"
    try:
        with open(meta, "rb") as fh:
            content = _ArrayUnpickler(fh, encoding="latin1").load()
        names = [_text(n) for n in {_text(k): v for k, v in content.items()}[key]]
        if len(names) == num_classes:
            return names
    except Exception:  # the class names are cosmetic; fall back to numbers
        pass
    return [str(i) for i in range(num_classes)]
