"""The paper's loss (TET style, docs/training.md) and the prediction rule."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SpikingLoss(nn.Module):
    """Per-step cross-entropy plus λ·MSE on the readouts ``O_t`` (``outputs``: ``[T, N, K]``)::

    L = (1 − λ)·(1/T)·Σ_t CE(O_t, y) + λ·(1/T)·Σ_t MSE(O_t, target)

    ``target`` is the constant ``target_value`` for every class (``"constant"``) or the one-hot
    label (``"onehot"``); MSE is averaged over the batch and the classes.
    """

    def __init__(
        self,
        lam: float = 0.05,
        target: str = "constant",
        target_value: float = 1.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if target not in ("constant", "onehot"):
            raise ValueError(f"target must be 'constant' or 'onehot', got target={target!r}")
        self.lam = float(lam)
        self.target = target
        self.target_value = float(target_value)
        self.label_smoothing = float(label_smoothing)

    @classmethod
    def from_config(cls, config) -> SpikingLoss:
        """The loss a :class:`ilif.train.TrainConfig` asks for (training and ``ilif eval``)."""
        return cls(config.loss_lambda, config.loss_target, config.loss_target_value,
                   config.label_smoothing)

    def forward(self, outputs: Tensor, labels: Tensor) -> Tensor:
        if outputs.dim() != 3:
            raise ValueError(f"outputs must be [T, N, classes], got shape {tuple(outputs.shape)}")
        steps, batch, classes = outputs.shape
        outputs = outputs.float()
        ce = F.cross_entropy(
            outputs.reshape(steps * batch, classes),
            labels.repeat(steps),
            label_smoothing=self.label_smoothing,
        )
        if self.lam == 0.0:
            return ce
        if self.target == "onehot":
            goal = F.one_hot(labels, classes).to(outputs.dtype).expand_as(outputs)
        else:
            goal = torch.full_like(outputs, self.target_value)
        return (1.0 - self.lam) * ce + self.lam * F.mse_loss(outputs, goal)


def predict(outputs: Tensor) -> Tensor:
    """The predicted class ``argmax_k Σ_t O_t[k]`` of ``outputs`` ``[T, N, K]``."""
    return outputs.sum(dim=0).argmax(dim=-1)


def topk_correct(outputs: Tensor, labels: Tensor, k: int = 5) -> Tensor:
    """How many ``labels`` are among the ``min(k, K)`` largest ``Σ_t O_t`` of ``outputs``
    ``[T, N, K]`` (top-1 when ``k = 1``, the same rule as :func:`predict`), as a tensor on the
    outputs' device (no host sync per batch)."""
    scores = outputs.sum(dim=0)
    top = scores.topk(min(k, scores.shape[-1]), dim=-1).indices
    return (top == labels.unsqueeze(-1)).any(dim=-1).sum()
