"""``run_training(config)``: a whole run, from data and model to the files in the run directory.

The run directory holds ``config.yaml`` (resolved), ``metrics.jsonl`` (one line per epoch),
``tensorboard/``, ``checkpoint_last.pt``, ``checkpoint_best.pt`` (best validation accuracy) and
``summary.json``. Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import platform
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ilif.data import dataset_info
from ilif.files import write_json, write_jsonl, write_text
from ilif.models import create_model
from ilif.monitors import SpikeMonitor
from ilif.train import checkpoint as ckpt
from ilif.train.config import TrainConfig
from ilif.train.data import build_data, eval_loader, resolve_T, start_epoch, train_loader
from ilif.train.distributed import (
    barrier,
    init_distributed,
    is_rank_zero,
    log,
    shutdown_distributed,
)
from ilif.train.loop import call_callbacks, evaluate, train_one_epoch
from ilif.train.loss import SpikingLoss
from ilif.train.precision import autocast_dtype, grad_scaler
from ilif.train.schedule import EpochSchedule

LAST, BEST = "checkpoint_last.pt", "checkpoint_best.pt"
TIME_KEYS = ("epoch_time_s", "wall_time_s")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def versions() -> dict[str, str]:
    from ilif.version import __version__

    return {"ilif": __version__, "torch": str(torch.__version__), "numpy": np.__version__,
            "python": platform.python_version()}


def model_args(config: TrainConfig, info: Any, T: int) -> dict[str, Any]:
    """The :func:`ilif.models.create_model` arguments of a run (stored in its checkpoints)."""
    return dict(
        name=config.model, neuron=config.neuron, num_classes=info.num_classes,
        in_channels=info.in_channels, T=T, surrogate=config.surrogate, width=config.width,
        tau=config.tau, backend=config.backend, dropout=config.dropout or None,
        **config.neuron_kwargs,
    )


def steps_per_update(config: TrainConfig, world_size: int) -> int:
    """Batches each process accumulates per optimiser step: ``global_batch / (batch_size ·
    world_size)`` when ``global_batch`` is set (it must divide evenly), else ``accumulate``."""
    if config.global_batch is None:
        return config.accumulate
    share = config.batch_size * world_size
    if config.global_batch % share:
        raise ValueError(
            f"global_batch={config.global_batch} is not a multiple of batch_size × processes = "
            f"{config.batch_size} × {world_size} = {share}; choose a batch_size that divides "
            f"global_batch / {world_size}"
        )
    return config.global_batch // share


def use_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every BatchNorm turned into :class:`torch.nn.SyncBatchNorm` (statistics
    over the whole global batch of a step's processes); it runs on CUDA only."""
    if device.type != "cuda":
        raise ValueError("sync_bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU "
                         "implementation); drop --sync-bn")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


class _Run:
    """The state of one training run while it goes (see :func:`run_training`)."""

    def __init__(self, config: TrainConfig, callbacks: Sequence[Any]) -> None:
        self.config, self.callbacks = config, tuple(callbacks)
        self.ctx, self.device = init_distributed(config.device)
        self.out = Path(config.out)
        self.amp = autocast_dtype(self.device, config.amp, config.amp_dtype)
        self.accumulate = steps_per_update(config, self.ctx.world_size)
        self.global_batch = config.batch_size * self.ctx.world_size * self.accumulate
        self.progress = not config.quiet and is_rank_zero()
        self.started = time.perf_counter()

    def say(self, message: str) -> None:
        """A line of the run's log (printed by rank 0)."""
        log(message)

    # ------------------------------------------------------------------------------ set-up
    def setup(self) -> None:
        config = self.config
        resumed = ckpt.read_checkpoint(config.resume) if config.resume else None
        if resumed is None and (self.out / LAST).exists():
            raise ckpt.CheckpointError(
                f"{self.out} already holds a run ({LAST}); continue it with "
                f"--resume {self.out / LAST}, or choose another --out"
            )
        if config.T is None:  # record the resolved number of steps
            self.config = config = config.replace(T=resolve_T(config, dataset_info(config.dataset)))
        seed_everything(config.seed)
        self.data = build_data(config)
        self.args = model_args(config, self.data.info, self.data.T)
        self.model = create_model(**self.args).to(self.device)
        self.parameters = sum(p.numel() for p in self.model.parameters())
        self.optimizer = build_optimizer(self.model, config)
        self.schedule = EpochSchedule(self.optimizer, config.scheduler, config.epochs)
        self.scaler = grad_scaler(self.device, self.amp)
        self.loss_fn = SpikingLoss.from_config(config)
        pin = self.device.type == "cuda"
        self.train_loader = train_loader(self.data.train, config, self.ctx, pin)
        eval_batch = config.batch_size
        self.val_loader = (eval_loader(self.data.val, eval_batch, config.workers, self.ctx, pin)
                           if self.data.val is not None else None)
        self.test_loader = eval_loader(self.data.test, eval_batch, config.workers, self.ctx, pin)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"epoch": 0, "score": -1.0}
        self.start_epoch, self.previous_wall = 0, 0.0
        if resumed is not None:
            self._restore(resumed)
        if config.sync_bn and self.ctx.enabled:
            self.model = use_sync_batchnorm(self.model, self.device)
        self.net: nn.Module = self.model
        if self.ctx.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if config.compile:
            self.net = torch.compile(self.net, backend=config.compile_backend)
        self.monitor = SpikeMonitor(self.model)
        if is_rank_zero():
            self._prepare_directory(resumed is not None)
        if self.ctx.enabled:
            log(f"{len(self.train_loader.sampler)} training samples per epoch on {self.device}",
                every_rank=True)

    def _restore(self, state: dict[str, Any]) -> None:
        config, path = self.config, self.config.resume
        changed = ckpt.check_compatible(state, config, path)
        ckpt.load_model_state(self.model, state, path)
        self.optimizer.load_state_dict(state["optimizer"])
        # the momentum buffers come back; the hyper-parameters are the configuration's (the
        # learning rate is set per epoch by the schedule, rebuilt from the configuration)
        for group in self.optimizer.param_groups:
            group["weight_decay"] = config.weight_decay
            if "momentum" in group:
                group["momentum"] = config.momentum
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.history = list(state["history"])
        self.best = dict(state["best"])
        self.start_epoch = int(state["epoch"])
        self._report_world_change(state)
        self.previous_wall = float(state.get("wall_time_s", 0.0))
        ckpt.restore_rng_state(state["rng"])
        self.say(f"resuming {path}: {self.start_epoch} of {config.epochs} epochs done")
        saved_epochs = int(state["config"]["epochs"])
        if saved_epochs != config.epochs:
            self.say(f"epochs changed from {saved_epochs} to {config.epochs}: the learning-rate "
                     f"schedule is rebuilt for {config.epochs} epochs")
        if changed:
            details = ", ".join(f"{k}: {state['config'].get(k)!r} -> {getattr(config, k)!r}"
                                for k in changed)
            self.say(f"warning: configuration changed on resume ({details}); the run will not "
                     "match an uninterrupted one")
        if self.start_epoch >= config.epochs:
            self.say(f"nothing to do: {self.start_epoch} epochs done, --epochs {config.epochs}")

    def _report_world_change(self, state: dict[str, Any]) -> None:
        """Say how a checkpoint of another number of processes continues (see docs/training.md:
        the schedule, the global batch and each epoch's sample order carry over; the losses
        do not match exactly)."""
        saved_world = int(state.get("world_size", 1))
        saved_batch = int(state.get("global_batch", state["config"]["batch_size"] * saved_world))
        if saved_world != self.ctx.world_size:
            self.say(f"processes changed from {saved_world} to {self.ctx.world_size}")
        if saved_batch != self.global_batch:
            self.say(f"warning: the global batch changes from {saved_batch} to "
                     f"{self.global_batch} samples per step; set global_batch={saved_batch} to "
                     "keep it")
        elif saved_world != self.ctx.world_size:
            self.say(f"global batch kept at {self.global_batch} = {self.config.batch_size} × "
                     f"{self.ctx.world_size} processes × {self.accumulate} accumulated")

    def _prepare_directory(self, resumed: bool) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.out.mkdir(parents=True, exist_ok=True)
        write_text(self.out / "config.yaml", self.config.to_yaml())
        write_jsonl(self.out / "metrics.jsonl", self.history)  # drops epochs not checkpointed
        self.writer = SummaryWriter(str(self.out / "tensorboard"),
                                    purge_step=self.start_epoch + 1 if resumed else None)

    # ----------------------------------------------------------------------------- epochs
    def run(self) -> dict[str, Any]:
        config = self.config
        self.say(f"training {config.model} with {config.neuron} neurons on {config.dataset} "
                 f"(T={self.data.T}, {len(self.data.train)} training samples, "
                 f"{self.parameters:,} parameters, device {self.device}"
                 + (f", {self.ctx.world_size} processes" if self.ctx.enabled else "")
                 + (f", global batch {self.global_batch}" if self.global_batch
                    != config.batch_size else "")
                 + (f", autocast {str(self.amp).removeprefix('torch.')}" if self.amp else "")
                 + (f", compiled ({config.compile_backend})" if config.compile else "") + ")")
        call_callbacks(self.callbacks, "on_train_start", self.model, config)
        for epoch in range(self.start_epoch + 1, config.epochs + 1):
            self._epoch(epoch)
        summary = self._summary()
        call_callbacks(self.callbacks, "on_train_end", self.model, summary)
        if is_rank_zero():
            write_json(self.out / "summary.json", summary)
        barrier(self.ctx)
        return summary

    def _epoch(self, epoch: int) -> None:
        config, begun = self.config, time.perf_counter()
        lr = self.schedule.set_epoch(epoch - 1)
        start_epoch(self.train_loader, config.seed, epoch, self.ctx.rank)
        last = str(self.out / LAST) if self.history else ""
        metrics: dict[str, Any] = {"epoch": epoch, "lr": lr}
        metrics.update(train_one_epoch(
            self.net, self.train_loader, self.optimizer, self.scaler, self.loss_fn, self.device,
            epoch=epoch, amp=self.amp, grad_clip=config.grad_clip,
            limit_batches=config.limit_train_batches, monitor=self.monitor, ctx=self.ctx,
            callbacks=self.callbacks, progress=self.progress, last_checkpoint=last,
            accumulate=self.accumulate,
        ))
        for part, loader in (("val", self.val_loader), ("test", self.test_loader)):
            if loader is None:
                continue
            result = evaluate(self.model, loader, self.device, loss_fn=self.loss_fn, amp=self.amp,
                              limit_batches=config.limit_eval_batches, monitor=self.monitor,
                              ctx=self.ctx, progress=self.progress, desc=part)
            metrics[f"{part}_loss"] = result["loss"]
            metrics[f"{part}_accuracy"] = result["accuracy"]
            metrics[f"{part}_top5_accuracy"] = result["top5_accuracy"]
            metrics[f"{part}_firing_rate"] = result["firing_rate"]
            metrics[f"{part}_samples"] = result["count"]
        metrics["epoch_time_s"] = time.perf_counter() - begun
        metrics["wall_time_s"] = self.previous_wall + time.perf_counter() - self.started
        call_callbacks(self.callbacks, "on_epoch_end", epoch, metrics)
        self.history.append(metrics)
        selector = "val_accuracy" if self.val_loader is not None else "test_accuracy"
        improved = metrics[selector] > self.best["score"]
        if improved:
            self.best = {"epoch": epoch, "score": metrics[selector], "selected_by": selector}
        self.say(
            f"epoch {epoch}/{config.epochs}  loss {metrics['train_loss']:.4f}  "
            f"train {100 * metrics['train_accuracy']:.2f}%  "
            + (f"val {100 * metrics['val_accuracy']:.2f}%  " if "val_accuracy" in metrics else "")
            + f"test {100 * metrics['test_accuracy']:.2f}%  "
            + (f"top-5 {100 * metrics['test_top5_accuracy']:.2f}%  "
               if self.data.info.num_classes > 5 else "")
            + f"fr {metrics['firing_rate']:.4f}  "
            f"lr {lr:.4g}  {metrics['epoch_time_s']:.1f}s" + ("  *best" if improved else "")
        )
        if is_rank_zero():
            self._log(epoch, metrics)
            write_jsonl(self.out / "metrics.jsonl", self.history)
            payload = self._checkpoint(epoch)
            ckpt.save_checkpoint(self.out / LAST, payload)
            if improved:
                ckpt.save_checkpoint(self.out / BEST, payload)
        barrier(self.ctx)

    def _checkpoint(self, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "config": self.config.to_dict(),
            "model_args": self.args,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "world_size": self.ctx.world_size,
            "global_batch": self.global_batch,
            "rng": ckpt.capture_rng_state(),
            "history": self.history,
            "best": self.best,
            "wall_time_s": self.history[-1]["wall_time_s"],
            "versions": versions(),
        }

    def _log(self, epoch: int, metrics: dict[str, Any]) -> None:
        for key, value in metrics.items():
            if key == "layer_firing_rate":
                for name, rate in value.items():
                    self.writer.add_scalar(f"firing_rate/{name}", rate, epoch)
            elif isinstance(value, int | float) and key != "epoch":
                group = "time" if key in TIME_KEYS else key.split("_")[0]
                self.writer.add_scalar(f"{group}/{key}", value, epoch)
        self.writer.flush()

    # ----------------------------------------------------------------------------- summary
    def _summary(self) -> dict[str, Any]:
        history, config = self.history, self.config
        final = history[-1] if history else {}
        at_best = next((m for m in history if m["epoch"] == self.best["epoch"]), {})
        peak = max(history, key=lambda m: m["test_accuracy"], default={})
        return {
            "run_dir": str(self.out),
            "dataset": config.dataset, "model": config.model, "neuron": config.neuron,
            "surrogate": config.surrogate, "width": config.width, "T": self.data.T,
            "tau": config.tau, "seed": config.seed,
            "epochs": len(history),
            "best_epoch": self.best["epoch"],
            "best_selected_by": self.best.get("selected_by"),
            "best_val_accuracy": at_best.get("val_accuracy"),
            "test_accuracy_at_best": at_best.get("test_accuracy"),
            "paper_protocol_max_test_accuracy": peak.get("test_accuracy"),
            "paper_protocol_max_test_epoch": peak.get("epoch"),
            "final_train_accuracy": final.get("train_accuracy"),
            "final_val_accuracy": final.get("val_accuracy"),
            "final_test_accuracy": final.get("test_accuracy"),
            "final_train_loss": final.get("train_loss"),
            "firing_rate": final.get("firing_rate"),
            "test_firing_rate": final.get("test_firing_rate"),
            "firing_rate_at_best": at_best.get("test_firing_rate"),
            "layer_firing_rate": final.get("layer_firing_rate"),
            "parameters": self.parameters,
            "wall_time_s": self.previous_wall + time.perf_counter() - self.started,
            "device": str(self.device),
            "world_size": self.ctx.world_size,
            "global_batch": self.global_batch,
            "accumulate": self.accumulate,
            "versions": versions(),
            "config": config.to_dict(),
        }

    def close(self) -> None:
        if getattr(self, "monitor", None) is not None:
            self.monitor.close()
        if getattr(self, "writer", None) is not None:
            self.writer.close()


def run_training(config: TrainConfig, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train as ``config`` says and return the summary (also written to ``summary.json``).

    ``callbacks``: objects with any of ``on_train_start(model, config)``,
    ``on_after_backward(model, batch_idx)``, ``on_epoch_end(epoch, metrics)`` (may add keys before
    the metrics are written), ``on_train_end(model, summary)`` (likewise). Under ``torchrun`` the
    processes share the work and only rank 0 writes files.
    """
    run = _Run(config, callbacks)
    try:
        run.setup()
        return run.run()
    finally:
        run.close()
        shutdown_distributed(run.ctx)


