"""The datasets by name and what a model needs to know about each (read by the registry's
:func:`~ilif.data.get_dataset` and by the dataset builders)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset: ``x`` is ``[in_channels, *image_size]``
    (static) or ``[T, in_channels, *image_size]`` (event, ``T = default_T`` unless given)."""

    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    kind: str  # "static" | "event"
    default_T: int | None
    needs_root: bool
    source: str = ""


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("digits", 10, 1, (8, 8), "static", None, False,
                    "embedded: scikit-learn's load_digits (UCI optical digits test set)"),
        DatasetInfo("digits-dvs", 10, 2, (8, 8), "event", 8, False,
                    "embedded: digits turned into saccade events by data.events.from_images"),
        DatasetInfo("cifar10", 10, 3, (32, 32), "static", None, True,
                    "https://www.cs.toronto.edu/~kriz/cifar.html (CIFAR-10 python version)"),
        DatasetInfo("cifar100", 100, 3, (32, 32), "static", None, True,
                    "https://www.cs.toronto.edu/~kriz/cifar.html (CIFAR-100 python version)"),
        DatasetInfo("nmnist", 10, 2, (34, 34), "event", 10, True,
                    "https://www.garrickorchard.com/datasets/n-mnist (Train.zip, Test.zip)"),
        DatasetInfo("cifar10-dvs", 10, 2, (48, 48), "event", 10, True,
                    "https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671 "
                    "(one zip of AEDAT 2.0 files per class)"),
        DatasetInfo("dvs-gesture", 11, 2, (128, 128), "event", 20, True,
                    "https://research.ibm.com/interactive/dvsgesture/ (DvsGesture.tar.gz)"),
        DatasetInfo("imagenet", 1000, 3, (224, 224), "static", None, True,
                    "https://image-net.org/ (ILSVRC-2012 train and val, as train/<wnid>/ and "
                    "val/)"),
    )
}
