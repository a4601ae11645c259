"""Datasets and loaders of a training run: seeded splits, sharded samplers, replayable order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

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
    common = dict(root=config.data_root, T=T if info.kind == "event" else None)
    train = data.get_dataset(config.dataset, split="train", augment=config.augment, **common)
    test = data.get_dataset(config.dataset, split="test", augment=False, **common)
    val = None
    if config.val_split > 0:
        plain = data.get_dataset(config.dataset, split="train", augment=False, **common)
        train, val = data.train_val_split(train, config.val_split, config.seed, eval_dataset=plain)
    if config.train_size is not None and config.train_size < len(train):
        drawn = np.random.default_rng(config.seed + 1).permutation(len(train))
        train = Subset(train, np.sort(drawn[: config.train_size]).tolist())
    return RunData(train, val, test, info, T)


class ShuffleShardSampler(Sampler[int]):
    """A fresh permutation every epoch, drawn from ``seed`` and the epoch alone (so any epoch can
    be replayed), split across ``world_size`` processes (padded to equal shards)."""

    def __init__(self, size: int, seed: int, ctx: DistContext) -> None:
        self.size, self.seed, self.ctx, self.epoch = size, seed, ctx, 0
        self.per_rank = -(-size // ctx.world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        order += order[: self.per_rank * self.ctx.world_size - self.size]
        return iter(order[self.ctx.rank :: self.ctx.world_size])

    def __len__(self) -> int:
        return self.per_rank


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
    sampler = ShuffleShardSampler(len(dataset), config.seed, ctx)
    return DataLoader(
        dataset, batch_size=config.batch_size, sampler=sampler, num_workers=config.workers,
        drop_last=len(sampler) > config.batch_size, pin_memory=pin,
        generator=torch.Generator(),
    )


def start_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    """Fix the epoch's sample order and the workers' random seeds from ``seed`` and ``epoch``."""
    loader.sampler.set_epoch(epoch)
    loader.generator.manual_seed(seed * 100_003 + epoch + 50_021)


def eval_loader(
    dataset: Dataset, batch_size: int, workers: int, ctx: DistContext, pin: bool
) -> DataLoader:
    return DataLoader(
        dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset), ctx),
        num_workers=workers, pin_memory=pin,
    )
