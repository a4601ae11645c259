"""The training configuration: one dataclass, every field a CLI flag and a YAML key."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ilif.neurons.base import DEFAULT_TAU


def _field(default: Any, help: str) -> Any:
    """A dataclass field with its help text (shown by ``ilif train --help``)."""
    if callable(default):
        return field(default_factory=default, metadata={"help": help})
    return field(default=default, metadata={"help": help})


class ConfigError(ValueError):
    """A configuration key or value that cannot be used (the message names it)."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (defaults: the paper's setting where it has one).

    The flag of a field is its name with dashes (``batch_size`` -> ``--batch-size``).
    """

    # data
    dataset: str = _field("digits", "dataset name (see `ilif.data.list_datasets()`)")
    data_root: str | None = _field(None, "folder holding the dataset files")
    T: int | None = _field(None, "time steps (default: the dataset's, 4 for static images)")
    augment: bool | None = _field(None, "augment training data (default: the dataset's)")
    val_split: float = _field(0.1, "validation share of the training set; 0: none")
    train_size: int | None = _field(None, "keep this many (seeded) training samples")
    # model and neuron
    model: str = _field("digits-small", "model name (see `ilif.models.list_models()`)")
    neuron: str = _field("ilif", "neuron: a registered name (`ilif.neurons.neuron_names()`)")
    surrogate: str = _field("rectangle", "surrogate: rectangle, triangle, sigmoid, atan")
    width: float = _field(1.0, "surrogate width γ")
    tau: float = _field(DEFAULT_TAU, "membrane time constant τ")
    neuron_kwargs: dict[str, Any] = _field(dict, "extra neuron arguments, e.g. {ciu_gain: 0.05}")
    backend: str = _field("auto", "neuron engine: auto, torch, cpu, triton")
    dropout: float = _field(0.0, "dropout probability (vgg11 and the small convnets)")
    # optimisation
    epochs: int = _field(10, "total epochs (may be raised on --resume)")
    batch_size: int = _field(64, "batch size per process")
    optimizer: str = _field("sgd", "sgd (with momentum) or adamw")
    lr: float = _field(0.1, "initial learning rate")
    momentum: float = _field(0.9, "SGD momentum")
    weight_decay: float = _field(5e-4, "weight decay")
    scheduler: str = _field("cosine", "cosine (T_max = epochs, per epoch) or constant")
    loss_lambda: float = _field(0.05, "λ of L = (1−λ)·mean_t CE + λ·mean_t MSE")
    loss_target: str = _field("constant", "MSE target: constant (loss_target_value) or onehot")
    loss_target_value: float = _field(1.0, "the constant MSE target")
    label_smoothing: float = _field(0.0, "label smoothing of the cross-entropy")
    grad_clip: float | None = _field(None, "clip the gradient norm to this value")
    amp: bool | None = _field(
        None, "mixed precision: on (--amp: bfloat16 on the CPU, float16 + gradient scaling on "
        "CUDA unless amp_dtype says bf16), off (--no-amp); unset: on for CUDA, off on the CPU")
    amp_dtype: str = _field("auto", "autocast type: auto (CUDA fp16, CPU bf16), fp16 or bf16")
    compile: bool = _field(False, "torch.compile the model for training")
    compile_backend: str = _field("inductor", "torch.compile backend (inductor, aot_eager, ...)")
    accumulate: int = _field(1, "batches per optimiser step (gradient accumulation)")
    global_batch: int | None = _field(
        None, "samples per optimiser step over all processes; sets accumulate = global_batch / "
        "(batch_size · processes), so a run keeps it on any number of processes")
    sync_bn: bool = _field(False, "SyncBatchNorm across processes (CUDA, several processes)")
    # run
    seed: int = _field(1234, "random seed (initialisation, data order, validation split)")
    out: str = _field("runs/train", "run directory")
    resume: str | None = _field(None, "continue the run of this checkpoint")
    limit_train_batches: int | None = _field(
        None, "at most this many optimiser steps per epoch (batches when accumulate is 1)")
    limit_eval_batches: int | None = _field(None, "at most this many batches per evaluation")
    device: str = _field("auto", "auto, cpu, cuda or cuda:N")
    workers: int = _field(0, "DataLoader worker processes")
    image_size: int | None = _field(
        None, "imagenet: crop side (default 224; evaluation resizes to ⌊side·256/224⌋ first)")
    quiet: bool = _field(False, "no progress bars (one line per epoch)")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name), _HINTS[f.name]))
        self.validate()

    # ------------------------------------------------------------------------------- checks
    def validate(self) -> None:
        """Range and choice checks that need no data or model (names are checked where used)."""
        choices = {
            "optimizer": ("sgd", "adamw"),
            "scheduler": ("cosine", "constant"),
            "loss_target": ("constant", "onehot"),
            "amp_dtype": ("auto", "fp16", "bf16"),
        }
        for key, options in choices.items():
            if getattr(self, key) not in options:
                raise ConfigError(
                    f"{key} must be one of {', '.join(options)}, got {key}={getattr(self, key)!r}"
                )
        positive = ("epochs", "batch_size", "T", "limit_train_batches", "limit_eval_batches",
                    "train_size", "accumulate", "global_batch", "image_size")
        for key in positive:
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"{key} must be >= 1, got {key}={value!r}")
        for key in ("lr", "width"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"{key} must be > 0, got {key}={getattr(self, key)!r}")
        for key in ("weight_decay", "momentum", "label_smoothing", "workers"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {key}={getattr(self, key)!r}")
        if not 0.0 <= self.val_split < 1.0:
            raise ConfigError(f"val_split must lie in [0, 1), got val_split={self.val_split!r}")
        if not 0.0 <= self.loss_lambda <= 1.0:
            raise ConfigError(
                f"loss_lambda must lie in [0, 1], got loss_lambda={self.loss_lambda!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must lie in [0, 1), got dropout={self.dropout!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be > 0 (or null), got {self.grad_clip!r}")

    # --------------------------------------------------------------------------- conversion
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """A config from a mapping; an unknown key is an error naming it (and the closest key)."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a mapping of keys to values, got {values!r}")
        names = cls.field_names()
        for key in values:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    f"{source}: unknown key {key!r}{hint} Valid keys: {', '.join(names)}"
                )
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a YAML config; keyword ``overrides`` replace its values (unknown keys: errors)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of keys to values")
        return cls.from_dict({**values, **overrides}, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})


_HINTS = typing.get_type_hints(TrainConfig)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert ``value`` to the field's type (YAML reads ``1e-3`` as a string, flags are text)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        hint = next(a for a in args if a is not type(None))
    try:
        if hint is bool:
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
                return False
            if isinstance(value, bool | int) and value in (0, 1):
                return bool(value)
            raise ValueError
        if hint is int:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if number != int(number):
                raise ValueError
            return int(number)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            if not isinstance(value, str | Path):
                raise ValueError
            return str(value)
        if typing.get_origin(hint) is dict:
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except (TypeError, ValueError):
        expected = getattr(hint, "__name__", str(hint))
        raise ConfigError(f"{name} must be {expected}, got {name}={value!r}") from None
    return value
