"""ilif.data: datasets (static images and event streams), event readers/writers, an event-camera
emulator, event-to-frame integration with an on-disk cache, and augmentation.

``get_dataset(name, root, split, T, augment)`` is the entry point (``from_tonic`` wraps a tonic
dataset the same way); ``list_datasets()`` and ``dataset_info(name)`` describe what exists. See
docs/data.md for formats and layouts.
"""

from ilif.data import events, frames, transforms
from ilif.data.errors import DatasetError, DatasetNotFoundError
from ilif.data.registry import (
    DATASETS,
    DatasetInfo,
    dataset_info,
    get_dataset,
    list_datasets,
    train_val_split,
)
from ilif.data.tonic_io import events_from_tonic, from_tonic

__all__ = [
    "DATASETS", "DatasetInfo", "DatasetError", "DatasetNotFoundError", "dataset_info",
    "get_dataset", "list_datasets", "train_val_split", "events", "frames", "transforms",
    "from_tonic", "events_from_tonic",
]
