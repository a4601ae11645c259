"""Dataset registry: names, facts about each dataset, and the single entry point
:func:`get_dataset`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset, Subset

from ilif.data.catalog import DATASETS, DatasetInfo
from ilif.data.errors import DatasetError

SPLITS = ("train", "test")


def list_datasets() -> list[str]:
    """The registered dataset names."""
    return list(DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    """Facts about dataset ``name``; unknown names raise ``ValueError`` listing the valid ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; valid names: "
                         f"{', '.join(DATASETS)}") from None


def _build_static(name: str, root: Path | None, split: str, T: int | None, augment: bool,
                  **kwargs: Any) -> Dataset:
    from ilif.data import static

    if name == "imagenet":
        from ilif.data import imagenet

        return imagenet.build(root, split, augment, **kwargs)
    if name == "digits":
        if kwargs:
            raise TypeError(f"digits takes no extra arguments, got {sorted(kwargs)}")
        return static.digits_dataset(split, augment)
    return static.cifar_dataset(name, root, split, augment, **kwargs)


def _build_event(name: str, root: Path | None, split: str, T: int | None, augment: bool,
                 **kwargs: Any) -> Dataset:
    from ilif.data import eventsets

    return eventsets.build(name, root, split, T, augment, **kwargs)


_BUILDERS: dict[str, Callable[..., Dataset]] = {
    name: (_build_static if info.kind == "static" else _build_event)
    for name, info in DATASETS.items()
}


def get_dataset(name: str, root: str | Path | None = None, split: str = "train",
                T: int | None = None, augment: bool | None = None, **kwargs: Any) -> Dataset:
    """Dataset ``name`` as a torch ``Dataset`` of ``(x, y)``.

    Static images give ``x`` float ``[C, H, W]`` (normalised); event datasets give ``x`` float
    ``[T, 2, H, W]`` event-count frames (``T`` defaults to ``dataset_info(name).default_T``;
    static datasets ignore ``T``: the model repeats the image). ``augment=None`` means on for
    the training split of static datasets, off otherwise; the test split is never augmented.
    ``kwargs`` go to the dataset (e.g. ``cache_dir``, ``split_by``, ``size`` for event data,
    ``label_type`` for CIFAR-100).
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if T is not None and (isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1):
        raise ValueError(f"T must be a positive integer, got {T!r}")
    if augment is None:
        augment = info.kind == "static" and split == "train"
    if augment and split == "test":
        raise ValueError(f"{name}: the test split is never augmented (got augment=True)")
    if info.needs_root and root is None:
        raise DatasetError(f"{name} needs root=<folder holding the dataset>; see docs/data.md "
                           f"for the layout; obtain it from {info.source}")
    root_path = Path(root).expanduser() if root is not None else None
    return _BUILDERS[name](name, root_path, split, T, bool(augment), **kwargs)


def train_val_split(dataset: Dataset, val_fraction: float, seed: int,
                    eval_dataset: Dataset | None = None) -> tuple[Subset, Subset]:
    """Seeded random split of ``dataset`` into ``(train, val)`` subsets.

    ``val`` holds ``round(val_fraction · N)`` indices drawn by ``numpy.random.default_rng(seed)``
    ; the same indices are taken from ``eval_dataset`` when given, so the validation part can
    come from an un-augmented view of the same data
    (``get_dataset(name, split="train", augment=False)``).
    """
    n = len(dataset)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n_val = int(round(val_fraction * n))
    if not 0 < n_val < n:
        raise ValueError(f"val_fraction={val_fraction} of {n} samples leaves an empty part")
    if eval_dataset is not None and len(eval_dataset) != n:
        raise ValueError(f"eval_dataset has {len(eval_dataset)} samples, dataset has {n}; "
                         "they must be two views of the same data")
    order = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    val_source = eval_dataset if eval_dataset is not None else dataset
    return Subset(dataset, train_idx.tolist()), Subset(val_source, val_idx.tolist())
