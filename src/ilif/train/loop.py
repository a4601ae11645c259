"""One training epoch and one evaluation pass."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ilif.monitors import SpikeMonitor
from ilif.train.distributed import DistContext, all_reduce_sum
from ilif.train.loss import predict, topk_correct
from ilif.train.precision import autocast

ALONE = DistContext()  # a single process


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


def call_callbacks(callbacks: Sequence[Any], method: str, *args: Any) -> None:
    """Call ``method(*args)`` on every callback that has it."""
    for callback in callbacks:
        hook = getattr(callback, method, None)
        if callable(hook):
            hook(*args)


def spike_summary(monitor: SpikeMonitor | None, ctx: DistContext) -> dict[str, Any]:
    """The monitor's whole-network rates and per-layer firing rates, averaged over processes."""
    if monitor is None:
        return {}
    summary = monitor.summary()
    # overactive_share and dead_share are counted on evaluation passes only (SpikeMonitor)
    keys = ("firing_rate", "open_rate", "surrogate_mean")
    names = list(summary["layers"])
    values = torch.tensor(
        [summary[k] for k in keys] + [summary["layers"][n]["firing_rate"] for n in names],
        dtype=torch.float64,
    )
    values = all_reduce_sum(values, ctx) / ctx.world_size
    out: dict[str, Any] = {k: float(v) for k, v in zip(keys, values[: len(keys)], strict=True)}
    out["layer_firing_rate"] = {
        n: float(v) for n, v in zip(names, values[len(keys) :], strict=True)
    }
    return out


def _to_device(batch: Sequence[Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    x, y = batch[0], batch[1]
    non_blocking = device.type == "cuda"
    return x.to(device, non_blocking=non_blocking), y.to(device, non_blocking=non_blocking)


def _limit(loader: DataLoader, limit: int | None) -> int:
    return len(loader) if limit is None else min(len(loader), limit)


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loss_fn: nn.Module,
    device: torch.device,
    *,
    epoch: int,
    amp: torch.dtype | bool | None = None,
    grad_clip: float | None = None,
    limit_batches: int | None = None,
    monitor: SpikeMonitor | None = None,
    ctx: DistContext = ALONE,
    callbacks: Sequence[Any] = (),
    progress: bool = True,
    last_checkpoint: str = "",
    accumulate: int = 1,
) -> dict[str, Any]:
    """One pass over ``loader``; returns the epoch's ``train_loss``, ``train_accuracy`` (over all
    processes) and the monitor's spike rates.

    Each optimiser step takes ``accumulate`` batches per process: the gradient is that of
    ``(1/accumulate)·Σ_j L_j`` (and the mean over processes), so ``accumulate`` batches of ``B`` on
    ``P`` processes step as one batch of ``accumulate·B·P``. ``limit_batches`` bounds the
    optimiser steps; batches left over at the end (fewer than ``accumulate``) are skipped.
    ``amp``: the autocast type (:mod:`ilif.train.precision`).
    """
    if accumulate < 1:
        raise ValueError(f"accumulate must be >= 1, got {accumulate}")
    model.train()
    if monitor is not None:
        monitor.reset()
    steps = len(loader) // accumulate
    total = accumulate * (steps if limit_batches is None else min(steps, limit_batches))
    no_sync = getattr(model, "no_sync", None)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    bar = tqdm(total=total, desc=f"epoch {epoch}", disable=not progress, leave=False,
               dynamic_ncols=True)
    for batch_idx, batch in enumerate(loader):
        if batch_idx >= total:
            break
        x, y = _to_device(batch, device)
        first, last = batch_idx % accumulate == 0, (batch_idx + 1) % accumulate == 0
        # the gradient all-reduce of data parallelism runs on the step's last batch only
        sync = nullcontext() if last or no_sync is None else no_sync()
        with sync:
            with autocast(device, amp):
                outputs = model(x)
            loss = loss_fn(outputs, y)
            flag = all_reduce_sum(torch.isfinite(loss.detach()).to(torch.float64), ctx)
            if int(flag.item()) != ctx.world_size:
                bar.close()
                raise NonFiniteLossError(
                    f"the loss became {loss.item()} at epoch {epoch}, batch {batch_idx + 1}; the "
                    f"run stopped. The last good checkpoint is kept: "
                    f"{last_checkpoint or 'none yet'}. Try a lower --lr, --grad-clip, or another "
                    "seed."
                )
            if first:
                optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss / accumulate).backward()  # x / 1 is exact: K = 1 is unchanged
        if last:
            scaler.unscale_(optimizer)
            call_callbacks(callbacks, "on_after_backward", model, batch_idx // accumulate)
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
        with torch.no_grad():
            loss_sum += loss.detach().double() * y.shape[0]
            correct += (predict(outputs.detach().float()) == y).sum()
        count += y.shape[0]
        if progress:
            postfix = {"loss": f"{loss_sum.item() / count:.4f}",
                       "acc": f"{100 * correct.item() / count:.1f}%"}
            if monitor is not None and (batch_idx % 10 == 0 or batch_idx + 1 == total):
                postfix["fr"] = f"{monitor.summary()['firing_rate']:.4f}"
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
    bar.close()
    totals = all_reduce_sum(
        torch.stack([loss_sum, correct, torch.tensor(float(count), dtype=torch.float64,
                                                     device=device)]), ctx
    ).tolist()
    metrics = {
        "train_loss": totals[0] / max(totals[2], 1),
        "train_accuracy": totals[1] / max(totals[2], 1),
        "train_samples": int(totals[2]),
    }
    metrics.update(spike_summary(monitor, ctx))
    return metrics


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | str | None = None,
    *,
    loss_fn: nn.Module | None = None,
    amp: torch.dtype | bool | None = None,
    limit_batches: int | None = None,
    monitor: SpikeMonitor | None = None,
    ctx: DistContext = ALONE,
    progress: bool = False,
    desc: str = "eval",
) -> dict[str, Any]:
    """Accuracy (``argmax Σ_t O_t``), mean loss and spike rates of ``model`` over ``loader``.

    Returns ``accuracy``, ``correct``, ``count``, ``top5_accuracy`` (the label among the
    ``min(5, classes)`` largest ``Σ_t O_t``), ``loss`` (NaN without ``loss_fn``), ``seconds``
    and, with a ``monitor``, its rates (``firing_rate``, ``layer_firing_rate``, ...). With several
    processes each evaluates its shard and the counts are summed. ``amp``: the autocast type
    (:mod:`ilif.train.precision`; ``True``: float16 on CUDA).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    if monitor is not None:
        monitor.reset()
    start = time.perf_counter()
    total = _limit(loader, limit_batches)
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss·n, correct, n, top-5
    for batch_idx, batch in enumerate(tqdm(loader, total=total, desc=desc, leave=False,
                                           disable=not progress, dynamic_ncols=True)):
        if batch_idx >= total:
            break
        x, y = _to_device(batch, device)
        with autocast(device, amp):
            outputs = model(x)
        if loss_fn is not None:
            sums[0] += loss_fn(outputs, y).double() * y.shape[0]
        outputs = outputs.float()
        sums[1] += (predict(outputs) == y).sum()
        sums[2] += y.shape[0]
        sums[3] += topk_correct(outputs, y, 5)
    loss_sum, correct, count, top5 = all_reduce_sum(sums, ctx).tolist()
    model.train(was_training)
    result: dict[str, Any] = {
        "accuracy": correct / count if count else math.nan,
        "loss": loss_sum / count if (count and loss_fn is not None) else math.nan,
        "top5_accuracy": top5 / count if count else math.nan,
        "correct": int(correct),
        "count": int(count),
        "seconds": time.perf_counter() - start,
    }
    result.update(spike_summary(monitor, ctx))
    return result
