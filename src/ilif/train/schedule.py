"""The learning-rate schedule, set per epoch from a closed form (so it can be rebuilt)."""

from __future__ import annotations

import math

import torch


class EpochSchedule:
    """Per-epoch learning rate for epoch index ``e = 0 … E−1`` of ``E = total_epochs``::

    cosine:    lr_e = lr_0 · ½·(1 + cos(π·e/E))   (CosineAnnealingLR with T_max = E, η_min = 0)
    constant:  lr_e = lr_0

    Being a closed form of the configuration (``lr``, ``scheduler``, ``epochs``), the schedule
    has no state of its own: a resumed run rebuilds it, for a new total or a new rate too.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, kind: str, total_epochs: int) -> None:
        if kind not in ("cosine", "constant"):
            raise ValueError(f"scheduler must be 'cosine' or 'constant', got {kind!r}")
        self.optimizer = optimizer
        self.kind = kind
        self.total_epochs = int(total_epochs)
        self.base_lrs = [float(group["lr"]) for group in optimizer.param_groups]

    def factor(self, epoch_index: int) -> float:
        if self.kind == "constant":
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * epoch_index / self.total_epochs))

    def set_epoch(self, epoch_index: int) -> float:
        """Set the optimiser's learning rates for ``epoch_index``; returns the first group's."""
        factor = self.factor(epoch_index)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        return self.optimizer.param_groups[0]["lr"]
