"""Event-camera datasets: N-MNIST, CIFAR10-DVS, DVS128 Gesture and the embedded digits-dvs.

Each sample is read as an event stream, integrated into ``[T, 2, H, W]`` count frames
(:func:`ilif.data.frames.integrate`) and cached on disk (:class:`ilif.data.frames.FrameCache`)
under ``cache_dir`` (default ``<root>/.ilif-cache``), keyed by the source file's identity and every
parameter that changes the frames.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ilif.data import events as ev
from ilif.data.catalog import DATASETS
from ilif.data.errors import DatasetError, DatasetNotFoundError
from ilif.data.frames import CACHE_FORMAT, RESIZE_MODES, SPLIT_BY, FrameCache, integrate
from ilif.data.transforms import Compose, RandomCrop, RandomHorizontalFlip

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
GESTURE_CLASSES = ("hand_clapping", "right_hand_wave", "left_hand_wave", "right_arm_clockwise",
                   "right_arm_counter_clockwise", "left_arm_clockwise",
                   "left_arm_counter_clockwise", "arm_roll", "air_drums", "air_guitar", "other")
GESTURE_LABEL_HEADER = "class,startTime_usec,endTime_usec"
CIFAR10DVS_SPLIT_SEED = 1234
CIFAR10DVS_TRAIN_FRACTION = 0.9


@dataclass(frozen=True)
class EventSample:
    """One sample: its events come from ``source`` (restricted to ``window = [start, end)`` µs
    when given); ``label`` is the class index."""

    source: Path
    label: int
    window: tuple[int, int] | None = None


def natural_key(path: Path) -> tuple:
    """Sort key ordering ``a2`` before ``a10``."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p)
                 for p in re.split(r"(\d+)", path.name))


def file_identity(path: Path) -> dict[str, Any]:
    """What identifies a source file's content for the cache: resolved path, size, mtime."""
    stat = path.stat()
    return {"path": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class EventFrameDataset(Dataset):
    """``(x, y)`` with ``x = transform(frames)`` float ``[T, 2, h, w]`` and ``y`` the label.

    ``load_events(i)`` gives sample ``i``'s event stream and ``sample_key(i)`` a JSON-able
    identity of that stream (``None`` disables caching for the sample)."""

    def __init__(self, name: str, labels: Sequence[int], classes: Sequence[str],
                 load_events: Callable[[int], np.ndarray],
                 sample_key: Callable[[int], dict[str, Any]] | None,
                 sensor_size: tuple[int, int], T: int, split_by: str = "number",
                 size: tuple[int, int] | None = None, resize_mode: str = "map",
                 cache: FrameCache | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        if split_by not in SPLIT_BY:
            raise ValueError(f"split_by must be one of {SPLIT_BY}, got {split_by!r}")
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
        if size is not None:
            size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"size must be (height, width) of positive ints, got {size}")
        self.name = name
        self.targets = [int(v) for v in labels]
        self.classes = list(classes)
        self.load_events = load_events
        self.sample_key = sample_key
        self.sensor_size = tuple(sensor_size)
        self.T, self.split_by, self.size, self.resize_mode = T, split_by, size, resize_mode
        self.cache = cache
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def frame_params(self) -> dict[str, Any]:
        return {"T": self.T, "split_by": self.split_by, "sensor_size": list(self.sensor_size),
                "size": list(self.size) if self.size else None, "resize_mode": self.resize_mode,
                "format": CACHE_FORMAT}

    def cache_key(self, index: int) -> dict[str, Any] | None:
        """Everything that determines sample ``index``'s frames (None: not cached)."""
        if self.cache is None or self.sample_key is None:
            return None
        return {"dataset": self.name, "sample": self.sample_key(index), **self.frame_params()}

    def integrate(self, events: np.ndarray) -> np.ndarray:
        """Frames of one event stream with this dataset's parameters."""
        return integrate(events, self.T, self.sensor_size, self.split_by, self.size,
                         self.resize_mode)

    def compute_frames(self, index: int) -> np.ndarray:
        return self.integrate(self.load_events(index))

    def frames(self, index: int) -> np.ndarray:
        """The un-augmented frames of sample ``index`` (from the cache when present)."""
        key = self.cache_key(index)
        if key is None:
            return self.compute_frames(index)
        return self.cache.get(key, lambda: self.compute_frames(index))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(np.ascontiguousarray(self.frames(index), dtype=np.float32))
        if self.transform is not None:
            x = self.transform(x)
        return x, self.targets[index]

    def prepare(self, progress: bool = True) -> None:
        """Integrate (and cache) every sample now, with a progress bar."""
        for index in tqdm(range(len(self)), desc=f"{self.name}: frames", disable=not progress):
            self.frames(index)


class FileEventDataset(EventFrameDataset):
    """Samples that are files, or time windows of files, read by ``reader``. On a cache miss of a
    windowed sample, every window of that file is integrated and cached at once, so a recording
    is decoded once however the samples are visited."""

    def __init__(self, name: str, samples: Sequence[EventSample], classes: Sequence[str],
                 reader: Callable[[Path], np.ndarray], **kwargs: Any):
        self.samples = list(samples)
        self.reader = reader
        self.siblings: dict[Path, list[int]] = {}
        for index, sample in enumerate(self.samples):
            self.siblings.setdefault(sample.source, []).append(index)
        super().__init__(name, [s.label for s in self.samples], classes, self._events,
                         self._key, **kwargs)

    def _events(self, index: int, decoded: np.ndarray | None = None) -> np.ndarray:
        sample = self.samples[index]
        events = self.reader(sample.source) if decoded is None else decoded
        if sample.window:
            start, end = sample.window
            events = events[(events["t"] >= start) & (events["t"] < end)]
        return events

    def _key(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        try:
            identity = file_identity(sample.source)
        except OSError as exc:
            raise DatasetNotFoundError(f"{self.name}: sample file {sample.source} is gone: "
                                       f"{exc}") from exc
        return {**identity, "window": list(sample.window) if sample.window else None}

    def frames(self, index: int) -> np.ndarray:
        key = self.cache_key(index)
        source = self.samples[index].source
        if key is None or len(self.siblings[source]) == 1:
            return super().frames(index)
        found = self.cache.load(key)
        if found is not None:
            return found
        decoded = self.reader(source)
        wanted = None
        for sibling in self.siblings[source]:
            sibling_key = self.cache_key(sibling)
            if sibling != index and self.cache.load(sibling_key) is not None:
                continue
            frames = self.integrate(self._events(sibling, decoded))
            self.cache.save(sibling_key, frames)
            if sibling == index:
                wanted = frames
        return wanted


# ---------------------------------------------------------------------------- helpers
def _find_base(root: Path, name: str, subfolders: Sequence[str], marker: Callable[[Path], bool],
               layout: str) -> Path:
    """The first of ``root`` and ``root/<subfolder>`` that satisfies ``marker``."""
    source = DATASETS[name].source
    if not root.is_dir():
        raise DatasetNotFoundError(f"{name}: root folder {root} does not exist; expected "
                                   f"{layout}; obtain the data from {source}")
    for candidate in (root, *(root / s for s in subfolders)):
        if candidate.is_dir() and marker(candidate):
            return candidate
    raise DatasetNotFoundError(f"{name}: {root} does not hold the dataset; expected {layout} "
                               f"(also accepted under {', '.join(subfolders)}/); obtain the data "
                               f"from {source}")


def _cache(root: Path | None, cache_dir: str | Path | None, cache: bool, name: str
           ) -> FrameCache | None:
    if not cache:
        return None
    directory = Path(cache_dir).expanduser() if cache_dir is not None else root / ".ilif-cache"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"{name}: cannot create the frame cache folder {directory} ({exc}); "
                           "pass cache_dir=<a writable folder> or cache=False") from exc
    return FrameCache(directory)


def _augmentation(size: tuple[int, int], flip: bool) -> Compose:
    """Random translation (crop with padding ⌊h/8⌋) and, where the classes allow, h-flip."""
    steps: list = [RandomCrop(size, padding=max(1, size[0] // 8))]
    if flip:
        steps.append(RandomHorizontalFlip())
    return Compose(steps)


def _class_files(folder: Path, suffixes: tuple[str, ...], name: str) -> list[Path]:
    files = sorted((f for f in folder.iterdir() if f.is_file() and f.suffix in suffixes),
                   key=natural_key)
    if not files:
        raise DatasetNotFoundError(f"{name}: no {' or '.join(suffixes)} files in {folder}")
    return files


# -------------------------------------------------------------------------------- N-MNIST
def nmnist_samples(root: Path, split: str) -> list[EventSample]:
    """``<root>/Train/<digit>/*.bin`` or ``<root>/Test/<digit>/*.bin`` (all 10 digit folders)."""
    part = "Train" if split == "train" else "Test"
    layout = f"{root}/{part}/<0-9>/<id>.bin (the unzipped Train.zip / Test.zip)"
    base = _find_base(root, "nmnist", ("NMNIST", "N-MNIST", "nmnist"),
                      lambda c: (c / part).is_dir(), layout)
    missing = [str(d) for d in range(10) if not (base / part / str(d)).is_dir()]
    if missing:
        raise DatasetNotFoundError(f"nmnist: {base / part} lacks the digit folders "
                                   f"{', '.join(missing)}; expected {layout}")
    return [EventSample(f, digit) for digit in range(10)
            for f in _class_files(base / part / str(digit), (".bin",), "nmnist")]


# ---------------------------------------------------------------------------- CIFAR10-DVS
def cifar10dvs_split(files: Sequence[Path], class_index: int, split: str,
                     seed: int = CIFAR10DVS_SPLIT_SEED,
                     train_fraction: float = CIFAR10DVS_TRAIN_FRACTION) -> list[Path]:
    """The seeded 9:1 split of one class: files in natural name order, permuted by
    ``numpy.random.default_rng([seed, class_index])``; the first ``round(0.9·n)`` train."""
    order = np.random.default_rng([seed, class_index]).permutation(len(files))
    n_train = int(round(train_fraction * len(files)))
    chosen = order[:n_train] if split == "train" else order[n_train:]
    return [files[i] for i in sorted(chosen)]


def read_cifar10dvs_file(path: Path) -> np.ndarray:
    """A CIFAR10-DVS recording: AEDAT 2.0 (``.aedat``, the raw release) or AEDAT 4.0
    (``.aedat4``, the converted release), both from a 128×128 DVS128."""
    if path.suffix == ".aedat4":
        return ev.read_aedat4(path, sensor_size=ev.DVS128_SENSOR)
    return ev.read_aedat2(path)


def cifar10dvs_samples(root: Path, split: str) -> list[EventSample]:
    """``<root>/<class>/*.aedat`` (or ``*.aedat4``) for the 10 CIFAR-10 class names."""
    layout = (f"{root}/<class>/cifar10_<class>_<i>.aedat for the classes "
              f"{', '.join(CIFAR10_CLASSES)}")
    base = _find_base(root, "cifar10-dvs", ("CIFAR10-DVS", "cifar10-dvs", "CIFAR10DVS"),
                      lambda c: (c / CIFAR10_CLASSES[0]).is_dir(), layout)
    missing = [c for c in CIFAR10_CLASSES if not (base / c).is_dir()]
    if missing:
        raise DatasetNotFoundError(f"cifar10-dvs: {base} lacks the class folders "
                                   f"{', '.join(missing)}; expected {layout}")
    samples = []
    for index, cls in enumerate(CIFAR10_CLASSES):
        files = _class_files(base / cls, (".aedat", ".aedat4"), "cifar10-dvs")
        samples += [EventSample(f, index) for f in cifar10dvs_split(files, index, split)]
    return samples


# ------------------------------------------------------------------------- DVS128 Gesture
def read_gesture_labels(path: str | Path) -> list[tuple[int, int, int]]:
    """Rows ``(class 1–11, start µs, end µs)`` of a DVS128 Gesture ``*_labels.csv``."""
    path = Path(path)
    text = ev.read_file_text(path, "DVS128 Gesture label")
    lines = text.splitlines()
    if not lines or lines[0].strip() != GESTURE_LABEL_HEADER:
        raise DatasetError(f"DVS128 Gesture label file {path}: first line must be "
                           f"{GESTURE_LABEL_HEADER!r}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split(",")
        try:
            label, start, end = (int(f) for f in fields)
        except ValueError:
            raise DatasetError(f"DVS128 Gesture label file {path}, line {number}: expected "
                               f"three integers 'class,start,end', got {line!r}") from None
        if not 1 <= label <= len(GESTURE_CLASSES) or not 0 <= start < end:
            raise DatasetError(f"DVS128 Gesture label file {path}, line {number}: class must be "
                               f"1–{len(GESTURE_CLASSES)} and 0 <= start < end, got {line!r}")
        rows.append((label, start, end))
    if not rows:
        raise DatasetError(f"DVS128 Gesture label file {path} has no labelled gestures")
    return rows


def read_trials(path: Path) -> list[str]:
    """The recording names listed in ``trials_to_train.txt`` / ``trials_to_test.txt``."""
    text = ev.read_file_text(path, "dvs-gesture trial list")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    bad = [n for n in names if not n.endswith(".aedat") or "/" in n or "\\" in n]
    if bad:
        raise DatasetError(f"dvs-gesture: trial list {path} has entries that are not plain "
                           f"'.aedat' file names: {bad[:3]}")
    return names


def gesture_samples(root: Path, split: str) -> list[EventSample]:
    """One sample per labelled gesture of each recording listed in ``trials_to_<split>.txt``."""
    trials = f"trials_to_{split}.txt"
    layout = (f"{root}/{trials} naming userXX_<lighting>.aedat files (AEDAT 3.1) that lie "
              "beside it with their userXX_<lighting>_labels.csv")
    base = _find_base(root, "dvs-gesture", ("DvsGesture", "dvs-gesture"),
                      lambda c: (c / trials).is_file(), layout)
    samples = []
    for name in read_trials(base / trials):
        recording = base / name
        if not recording.is_file():
            raise DatasetNotFoundError(f"dvs-gesture: {recording}, listed in {base / trials}, "
                                       "does not exist")
        labels = base / f"{recording.stem}_labels.csv"
        samples += [EventSample(recording, label - 1, (start, end))
                    for label, start, end in read_gesture_labels(labels)]
    return samples


# ------------------------------------------------------------------------------ digits-dvs
def digits_dvs_streams(split: str, threshold: float = 0.2, shift: float = 1.0
                       ) -> tuple[list[np.ndarray], list[int]]:
    """scikit-learn's digits (the fixed ``digits`` split) seen by the emulated event camera
    (:func:`ilif.data.events.from_images`): one event stream and label per image."""
    from ilif.data.static import load_digits_arrays

    images, labels = load_digits_arrays(split)
    return ev.from_images(images, threshold=threshold, shift=shift), labels.tolist()


# --------------------------------------------------------------------------------- builder
_FILE_DATASETS: dict[str, tuple[Callable[[Path, str], list[EventSample]],
                                Callable[[Path], np.ndarray], Sequence[str], tuple[int, int],
                                bool]] = {
    # name: (sample lister, reader, classes, sensor (H, W), flip in augmentation)
    "nmnist": (nmnist_samples, ev.read_nmnist_bin, [str(d) for d in range(10)],
               ev.NMNIST_SENSOR, False),
    "cifar10-dvs": (cifar10dvs_samples, read_cifar10dvs_file, CIFAR10_CLASSES, ev.DVS128_SENSOR,
                    True),
    "dvs-gesture": (gesture_samples, ev.read_aedat31, GESTURE_CLASSES, ev.DVS128_SENSOR, False),
}


def build(name: str, root: Path | None, split: str, T: int | None, augment: bool,
          split_by: str = "number", size: int | tuple[int, int] | None | str = "default",
          resize_mode: str = "map", cache_dir: str | Path | None = None, cache: bool = True,
          **kwargs: Any) -> EventFrameDataset:
    """Build event dataset ``name`` (see :func:`ilif.data.get_dataset`). ``size='default'`` is
    the registry's ``image_size`` (48×48 for CIFAR10-DVS); ``None`` keeps the sensor size.
    digits-dvs is computed in memory (no cache; ``threshold`` and ``shift`` go to the
    emulator); the others are cached under ``cache_dir`` (default ``<root>/.ilif-cache``)."""
    info = DATASETS[name]
    T = info.default_T if T is None else int(T)
    if name == "digits-dvs":
        streams, labels = digits_dvs_streams(split, **kwargs)
        sensor, flip, classes = info.image_size, False, [str(d) for d in range(10)]
    else:
        if kwargs:
            raise TypeError(f"{name} got unexpected arguments {sorted(kwargs)}")
        lister, reader, classes, sensor, flip = _FILE_DATASETS[name]
        samples = lister(root, split)
    if size == "default":
        size = info.image_size if info.image_size != sensor else None
    out_size = sensor if size is None else ((size, size) if isinstance(size, int) else size)
    common = dict(sensor_size=sensor, T=T, split_by=split_by, size=size,
                  resize_mode=resize_mode,
                  transform=_augmentation(tuple(out_size), flip) if augment else None)
    if name == "digits-dvs":
        return EventFrameDataset(name, labels, classes, streams.__getitem__, None, **common)
    return FileEventDataset(name, samples, classes, reader,
                            cache=_cache(root, cache_dir, cache, name), **common)
