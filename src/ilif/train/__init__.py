"""Training and evaluation of the spiking models (``ilif train``, ``ilif eval``).

Programmatic use::

    from ilif.train import TrainConfig, run_training
    summary = run_training(TrainConfig(dataset="digits", model="digits-small", epochs=3))
"""

from ilif.train.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from ilif.train.config import ConfigError, TrainConfig
from ilif.train.loop import NonFiniteLossError, evaluate
from ilif.train.loss import SpikingLoss, predict
from ilif.train.runner import run_training

__all__ = [
    "TrainConfig", "ConfigError", "run_training", "evaluate", "load_checkpoint",
    "read_checkpoint", "CheckpointError", "NonFiniteLossError", "SpikingLoss", "predict",
]
