"""Checkpoints: atomic writes, random-number states, and refusing files that do not fit."""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ilif.files import atomic_write
from ilif.train.config import TrainConfig

FORMAT = "ilif-checkpoint"
FORMAT_VERSION = 1
# Config keys that define the network's parameters: a checkpoint cannot serve another value.
ARCHITECTURE_KEYS = ("model", "neuron", "dataset", "neuron_kwargs")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or written for another model."""


# ----------------------------------------------------------------------------------- RNG state
def capture_rng_state() -> dict[str, Any]:
    """The global random states (torch, CUDA, numpy, python) as tensors and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back the states :func:`capture_rng_state` took."""
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    np.random.set_state(
        (npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
         npy["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------ write and read
def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus the format tag) to ``path`` atomically."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    atomic_write(path, lambda handle: torch.save(payload, handle))


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The content of checkpoint ``path``; a missing, corrupted or foreign file raises
    :class:`CheckpointError` saying which and why."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile,
            ValueError) as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = next((line for line in lines if "error:" in line), lines[0] if lines else "")
        raise CheckpointError(
            f"{path} is not a readable checkpoint (corrupted, truncated or foreign file?): "
            f"{reason or type(err).__name__}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an ilif training checkpoint (no {FORMAT!r} tag)")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {state.get('format_version')!r}; this ilif "
            f"reads version {FORMAT_VERSION}"
        )
    for key in ("config", "model", "model_args", "epoch"):
        if key not in state:
            raise CheckpointError(f"{path} lacks the entry {key!r}: incomplete checkpoint")
    return state


def check_compatible(state: dict[str, Any], config: TrainConfig, path: str | Path) -> list[str]:
    """Refuse a checkpoint written for another network; return the other config keys that
    differ (a resumed run then does not reproduce an uninterrupted one)."""
    saved = state["config"]
    for key in ARCHITECTURE_KEYS:
        if saved.get(key) != getattr(config, key):
            raise CheckpointError(
                f"checkpoint {path} was written for {key}={saved.get(key)!r}, not "
                f"{key}={getattr(config, key)!r}: it belongs to another model; start a new run "
                "(another --out) or resume with the checkpoint's settings"
            )
    ignore = {"resume", "out", "epochs", "quiet", "workers", "device", "data_root"}
    return [
        key for key, value in config.to_dict().items()
        if key not in ignore and saved.get(key, value) != value
    ]


def load_model_state(model: nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """Load the weights; a parameter set that does not match is refused with the names."""
    own, saved = set(model.state_dict()), set(state["model"])
    if own != saved:
        missing, extra = sorted(own - saved)[:5], sorted(saved - own)[:5]
        raise CheckpointError(
            f"checkpoint {path} does not fit this model ({type(model).__name__}): "
            f"missing {missing}, unexpected {extra}"
        )
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint {path} does not fit this model: {str(err).splitlines()[-1].strip()}"
        ) from None


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, TrainConfig, dict[str, Any]]:
    """``(model, config, state)`` from a checkpoint: the model rebuilt and its weights loaded
    (in eval mode, on ``device``), the run's config, and the whole checkpoint content."""
    from ilif.models import create_model

    state = read_checkpoint(path)
    config = TrainConfig.from_dict(state["config"], source=f"{path} (config)")
    model = create_model(**state["model_args"])
    load_model_state(model, state, path)
    return model.to(device).eval(), config, state
