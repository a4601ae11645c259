"""Plain spiking convnets from a layer list: VGG-11-BN and the compact CPU-scale models."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ilif.models.base import SpikingModel
from ilif.models.layers import MakeNeuron, SpikingConv, TimeDistributed

# Layer lists: an int is a ``conv3x3 → BN → neuron (→ dropout)`` with that many channels,
# "P" a 2×2 average pooling.
VGG11 = (64, "P", 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P")
CIFAR_SMALL = (32, "P", 64, "P", 128, "P")
DIGITS_SMALL = (16, 32, "P")


class SpikingConvNet(SpikingModel):
    """``[conv → BN → neuron → dropout | avgpool]* → adaptive avgpool (head_pool²) → linear``."""

    def __init__(
        self,
        layers: Sequence[int | str],
        make_neuron: MakeNeuron,
        num_classes: int,
        in_channels: int,
        T: int,
        head_pool: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(T)
        blocks: list[nn.Module] = []
        channels = in_channels
        for item in layers:
            if item == "P":
                blocks.append(TimeDistributed(nn.AvgPool2d(2)))
            else:
                blocks.append(SpikingConv(channels, int(item), make_neuron, dropout))
                channels = int(item)
        self.features = nn.Sequential(*blocks)
        self.pool = TimeDistributed(nn.AdaptiveAvgPool2d(head_pool))
        self.classifier = TimeDistributed(
            nn.Sequential(nn.Flatten(), nn.Linear(channels * head_pool * head_pool, num_classes))
        )

    def forward_sequence(self, x_seq: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x_seq)))


def vgg11(make_neuron, num_classes, in_channels, T, dropout=0.0) -> SpikingConvNet:
    """Spiking VGG-11-BN (docs/training.md): conv → BN → neuron → dropout, avg pooling, 7×7 adaptive
    pool, linear."""
    return SpikingConvNet(VGG11, make_neuron, num_classes, in_channels, T, 7, dropout)


def cifar_small(make_neuron, num_classes, in_channels, T, dropout=0.0) -> SpikingConvNet:
    """A compact 3-conv network for 32×32 images that trains in minutes on a CPU:
    32-P-64-P-128-P (conv → BN → neuron, 2×2 average pooling), linear 128·4·4 → classes."""
    return SpikingConvNet(CIFAR_SMALL, make_neuron, num_classes, in_channels, T, 4, dropout)


def digits_small(make_neuron, num_classes, in_channels, T, dropout=0.0) -> SpikingConvNet:
    """A 2-conv network for 8×8 images (sklearn digits) that trains in seconds: 16-32-P, linear."""
    return SpikingConvNet(DIGITS_SMALL, make_neuron, num_classes, in_channels, T, 4, dropout)
