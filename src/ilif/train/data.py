"""Datasets and loaders of a training run: seeded splits, sharded samplers, replayable order."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset

from ilif import data
from ilif.train.config import TrainConfig
from ilif.train.distributed import DistContext

DEFAULT_STATIC_T = 4


@dataclass
class RunData:
    """The three parts of a run's data and the facts a model needs."""

    train: Dataset
    val: Dataset | None
    test: Dataset
    info: Any  # ilif.data.DatasetInfo
    T: int


def resolve_T(config: TrainConfig, info: Any) -> int:
    """Time steps: the config's, else the dataset's default (event data), else 4."""
    if config.T is not None:
        return config.T
    return int(info.default_T) if info.default_T else DEFAULT_STATIC_T


def build_data(config: TrainConfig) -> RunData:
    """Train (augmented as the config says), validation (the same images un-augmented, a seeded
    ``val_split`` share held out of training) and test sets."""
    info = data.dataset_info(config.dataset)
    T = resolve_T(config, info)
    common: dict[str, Any] = dict(root=config.data_root, T=T if info.kind == "event" else None)
    if config.image_size is not None:
        if config.dataset != "imagenet":
            raise ValueError(f"image_size applies to the imagenet dataset, not {config.dataset!r}"
                             "; leave it unset")
        common["image_size"] = config.image_size
    train = data.get_dataset(config.dataset, split="train", augment=config.augment, **common)
    classes = getattr(train, "classes", None)
    if classes is not None and len(classes) != info.num_classes:  # a subset of the classes
        info = dataclasses.replace(info, num_classes=len(classes))
    test = data.get_dataset(config.dataset, split="test", augment=False, **common)
    val = None
    if config.val_split > 0:
        plain = data.get_dataset(config.dataset, split="train", augment=False, **common)
        train, val = data.train_val_split(train, config.val_split, config.seed, eval_dataset=plain)
    if config.train_size is not None and config.train_size < len(train):
        drawn = np.random.default_rng(config.seed + 1).permutation(len(train))
        train = Subset(train, np.sort(drawn[: config.train_size]).tolist())
    return RunData(train, val, test, info, T)


def shuffle_seed(seed: int) -> int:
    """The ``DistributedSampler`` seed of a run: epoch ``e``'s order is
    ``randperm(N, generator=manual_seed(shuffle_seed + e))``, the same on every process and for
    every number of processes (each process takes every ``world_size``-th index of it)."""
    return seed * 100_003


def train_sampler(size: int, seed: int, ctx: DistContext) -> DistributedSampler:
    """A fresh permutation every epoch, drawn from ``seed`` and the epoch alone (so any epoch can
    be replayed), split across ``world_size`` processes (padded to equal shards)."""
    # the sampler asks its dataset for the length only
    return DistributedSampler(range(size), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                              seed=shuffle_seed(seed), drop_last=False)


class ShardSampler(Sampler[int]):
    """Every ``world_size``-th index from ``rank``, in order, no padding (exact evaluation)."""

    def __init__(self, size: int, ctx: DistContext) -> None:
        self.indices = list(range(ctx.rank, size, ctx.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def train_loader(
    dataset: Dataset, config: TrainConfig, ctx: DistContext, pin: bool
) -> DataLoader:
    """The training loader; call :func:`start_epoch` before iterating it each epoch."""
    sampler = train_sampler(len(dataset), config.seed, ctx)
    return DataLoader(
        dataset, batch_size=config.batch_size, sampler=sampler, num_workers=config.workers,
        drop_last=len(sampler) > config.batch_size, pin_memory=pin,
        generator=torch.Generator(),
    )


def start_epoch(loader: DataLoader, seed: int, epoch: int, rank: int = 0) -> None:
    """Fix the epoch's sample order (``DistributedSampler.set_epoch``) and the random seeds of
    the augmentation from ``seed``, ``epoch`` and the process's ``rank`` (the workers' base seed;
    without workers, on ranks > 0, torch's global generator), so that processes draw different
    augmentations and any epoch can be replayed."""
    loader.sampler.set_epoch(epoch)
    base = seed * 100_003 + epoch + 50_021
    loader.generator.manual_seed(base + 1_000_003 * rank)
    if rank > 0 and loader.num_workers == 0:
        torch.manual_seed(base + 1_000_003 * rank)


def eval_loader(
    dataset: Dataset, batch_size: int, workers: int, ctx: DistContext, pin: bool
) -> DataLoader:
    return DataLoader(
        dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset), ctx),
        num_workers=workers, pin_memory=pin,
    )
