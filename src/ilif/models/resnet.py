"""Spiking ResNets: the paper's pre-activation ResNet-18 and the ResNet-19 of SNN papers."""

from __future__ import annotations

from torch import Tensor, nn

from ilif.models.base import SpikingModel
from ilif.models.layers import MakeNeuron, TimeDistributed


def _conv3x3(cin: int, cout: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)


class PreActBlock(nn.Module):
    """Pre-activation basic block (docs/training.md)::

    a = neuron(BN(x)) ;  y = conv(neuron(BN(conv(a)))) + shortcut
    shortcut = x, or a 1×1 conv of ``a`` where the stride or the channel count changes.
    """

    def __init__(self, cin: int, cout: int, stride: int, make_neuron: MakeNeuron) -> None:
        super().__init__()
        self.bn1 = TimeDistributed(nn.BatchNorm2d(cin))
        self.neuron1 = make_neuron(cin)
        self.conv1 = TimeDistributed(_conv3x3(cin, cout, stride))
        self.bn2 = TimeDistributed(nn.BatchNorm2d(cout))
        self.neuron2 = make_neuron(cout)
        self.conv2 = TimeDistributed(_conv3x3(cout, cout))
        self.shortcut = (
            TimeDistributed(nn.Conv2d(cin, cout, 1, stride=stride, bias=True))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        a = self.neuron1(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(a)
        return self.conv2(self.neuron2(self.bn2(self.conv1(a)))) + skip


class PreActResNet18(SpikingModel):
    """Pre-activation spiking ResNet-18 (docs/training.md): 3×3 64-channel stem conv, blocks
    [2, 2, 2, 2] of 64-128-256-512 channels, head BN → neuron → global avg-pool → linear."""

    def __init__(self, make_neuron: MakeNeuron, num_classes: int, in_channels: int, T: int) -> None:
        super().__init__(T)
        self.stem = TimeDistributed(_conv3x3(in_channels, 64))
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            for i in range(2):
                blocks.append(PreActBlock(cin, cout, stride if i == 0 else 1, make_neuron))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head_bn = TimeDistributed(nn.BatchNorm2d(cin))
        self.head_neuron = make_neuron(cin)
        self.classifier = TimeDistributed(
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))
        )

    def forward_sequence(self, x_seq: Tensor) -> Tensor:
        x = self.blocks(self.stem(x_seq))
        return self.classifier(self.head_neuron(self.head_bn(x)))


class BasicBlock(nn.Module):
    """Post-activation basic block (ResNet-19)::

    y = neuron(BN(conv(neuron(BN(conv(x))))) + shortcut(x)),  shortcut a 1×1 conv → BN on change.
    """

    def __init__(self, cin: int, cout: int, stride: int, make_neuron: MakeNeuron) -> None:
        super().__init__()
        self.conv_bn1 = TimeDistributed(
            nn.Sequential(_conv3x3(cin, cout, stride, bias=False), nn.BatchNorm2d(cout))
        )
        self.neuron1 = make_neuron(cout)
        self.conv_bn2 = TimeDistributed(
            nn.Sequential(_conv3x3(cout, cout, bias=False), nn.BatchNorm2d(cout))
        )
        self.shortcut = (
            TimeDistributed(
                nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
                )
            )
            if stride != 1 or cin != cout
            else nn.Identity()
        )
        self.neuron2 = make_neuron(cout)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv_bn2(self.neuron1(self.conv_bn1(x)))
        return self.neuron2(y + self.shortcut(x))


class ResNet19(SpikingModel):
    """Spiking ResNet-19 (Zheng et al., 2021): 3×3 128-channel stem conv → BN → neuron, blocks
    [3, 3, 2] of 128-256-512 channels, global avg-pool → linear 256 → neuron → linear."""

    def __init__(self, make_neuron: MakeNeuron, num_classes: int, in_channels: int, T: int) -> None:
        super().__init__(T)
        self.stem = TimeDistributed(
            nn.Sequential(_conv3x3(in_channels, 128, bias=False), nn.BatchNorm2d(128))
        )
        self.stem_neuron = make_neuron(128)
        blocks, cin = [], 128
        for cout, stride, count in ((128, 1, 3), (256, 2, 3), (512, 2, 2)):
            for i in range(count):
                blocks.append(BasicBlock(cin, cout, stride if i == 0 else 1, make_neuron))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.hidden = TimeDistributed(
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 256))
        )
        self.hidden_neuron = make_neuron(256)
        self.classifier = TimeDistributed(nn.Linear(256, num_classes))

    def forward_sequence(self, x_seq: Tensor) -> Tensor:
        x = self.blocks(self.stem_neuron(self.stem(x_seq)))
        return self.classifier(self.hidden_neuron(self.hidden(x)))


def resnet18(make_neuron, num_classes, in_channels, T) -> PreActResNet18:
    return PreActResNet18(make_neuron, num_classes, in_channels, T)


def resnet19(make_neuron, num_classes, in_channels, T) -> ResNet19:
    return ResNet19(make_neuron, num_classes, in_channels, T)
